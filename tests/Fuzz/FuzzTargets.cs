using System.Text;
using System.Text.Json;
using k8s;
using k8s.Exceptions;
using k8s.Models;
using TsCgnat.Api;
using TsCgnat.Firewall.Formats;
using TsCgnat.Kube;
using TsCgnat.NodeAgent.State;
using TsCgnat.NodeAgent.Tailscale;

namespace TsCgnat.Fuzz;

/// <summary>
/// One target per parser of outside text (issue 10). Each runs the parser as the programs do and lets
/// through only what that parser documents as its refusal (a problem list, <see cref="FormatException"/>,
/// <see cref="JsonException"/>, ...): any other exception is a crash for the fuzzer to report.
/// </summary>
public static class FuzzTargets
{
    private static readonly string Scratch = Directory.CreateTempSubdirectory("tscgnat-fuzz-").FullName;

    public static IReadOnlyDictionary<string, Action<byte[]>> All { get; } = new Dictionary<string, Action<byte[]>>(StringComparer.Ordinal)
    {
        ["policy-yaml"] = PolicyYaml,
        ["plain-yaml"] = PlainYamlAgrees,
        ["iptables-save"] = IptablesSave,
        ["ipset-save"] = Ipset,
        ["nft-json"] = Nft,
        ["localapi-json"] = LocalApi,
        ["kubeconfig"] = Kubeconfig,
        ["watch-event"] = WatchEvent,
        ["state-cache"] = StateCache,
    };

    private static string Text(byte[] input) => Encoding.UTF8.GetString(input);

    /// <summary>Never throws: every problem is in the list, and a text without one has a policy.</summary>
    private static void PolicyYaml(byte[] input)
    {
        var (policies, problems) = PolicyDocuments.Parse(Text(input), "fuzz.yaml");
        if (policies.Count == 0 && problems.Count == 0)
        {
            throw new InvalidOperationException("neither a policy nor a problem");
        }
    }

    /// <summary>The fast reader of plain YAML leaves a text to YamlDotNet or reads it exactly as YamlDotNet does (issue 11).</summary>
    private static void PlainYamlAgrees(byte[] input)
    {
        if (Api.PolicyYaml.PlainDisagreement(Text(input)) is { } disagreement)
        {
            throw new InvalidOperationException(disagreement);
        }
    }

    private static void IptablesSave(byte[] input)
    {
        try
        {
            _ = SavedRuleset.Parse(Text(input)).RuleCount;
        }
        catch (FormatException)
        {
        }
    }

    private static void Ipset(byte[] input)
    {
        var text = Text(input);
        _ = IpsetSave.Parse(text);
        _ = IpsetSave.Parse(text, "ts-cgnat");
    }

    private static void Nft(byte[] input)
    {
        try
        {
            var ruleset = NftRuleset.Parse(Text(input));
            foreach (var rule in ruleset.Chains.SelectMany(c => c.Rules))
            {
                _ = rule.InterfaceMatches().ToList();
                _ = rule.Verdict();
                _ = rule.SourceMatch();
            }
        }
        catch (FormatException)
        {
        }
    }

    /// <summary>The three replies we read (prefs, status, one notification), and the notification stream.</summary>
    private static void LocalApi(byte[] input)
    {
        Json(() => JsonSerializer.Deserialize(input, TailscaleJsonContext.Default.TailscalePrefs));
        Json(() => JsonSerializer.Deserialize(input, TailscaleJsonContext.Default.TailscaleStatus));
        Json(() => JsonSerializer.Deserialize(input, TailscaleJsonContext.Default.IpnNotification));
        Json(() =>
        {
            using var stream = new MemoryStream(input);
            var all = JsonSerializer.DeserializeAsyncEnumerable(stream, TailscaleJsonContext.Default.IpnNotification, topLevelValues: true);
            return all.ToBlockingEnumerable().Count();
        });
    }

    private static void Kubeconfig(byte[] input)
    {
        var path = Path.Combine(Scratch, "kubeconfig");
        File.WriteAllBytes(path, input);
        try
        {
            _ = KubeConfig.Load(path);
        }
        catch (KubeConfigException)
        {
        }
    }

    /// <summary>One line of a watch, as KubernetesClient's watcher reads it (a bad line is its onError), then the object as <c>ListWatch</c> types it.</summary>
    private static void WatchEvent(byte[] input)
    {
        KubeJson.Use(WatchEventJsonContext.Default);
        KubeJson.Use(KubernetesClientJsonContext.Default);
        Json(() =>
        {
            var watchEvent = KubernetesJson.Deserialize<Watcher<object>.WatchEvent>(Text(input));
            if (watchEvent?.Object is JsonElement json)
            {
                Json(() => ListWatch.Read<CgnatAllowPolicy>(json));
                Json(() => ListWatch.Read<CgnatNodeState>(json));
                Json(() => ListWatch.Read<V1Node>(json));
            }

            return watchEvent;
        });
    }

    private static void StateCache(byte[] input)
    {
        File.WriteAllBytes(Path.Combine(Scratch, AppliedStateCache.FileName), input);
        try
        {
            _ = new AppliedStateCache(Scratch).Load()?.ToExemptions();
        }
        catch (InvalidDataException)
        {
        }
    }

    private static void Json<T>(Func<T> read)
    {
        try
        {
            _ = read();
        }
        catch (JsonException)
        {
        }
    }
}
