using System.Net;
using System.Text.Json.Nodes;
using k8s;
using k8s.Autorest;
using TsCgnat.KubeApiServer;
using TsCgnat.TestSupport;
using Xunit.Abstractions;

namespace TsCgnat.Api.Tests.OnKubeApiServer;

/// <summary>
/// The CRDs in config/crds on a real kube-apiserver (v1.36 in CI): accepted and Established, and one table of
/// policies run through both the server's schema and CEL rules and <see cref="PolicyValidator"/> (what the agent
/// applies to policy files and the operator to stored objects). They must agree row by row: both accept, or both
/// refuse at the same field. Each row also names a phrase each side's message holds, so a user reads the same
/// reason in <c>kubectl apply</c> and in <c>ts-cgnat-agent apply</c>; where the two wordings must differ, the row
/// says why.
/// </summary>
[Collection(SharedKubeApiServer.Collection)]
public sealed class CrdOnKubeApiServerTests(ITestOutputHelper output)
{
    private const string Broad = "broader than /16; a broad exemption brings back the spoofing risk (CVE-2019-14899)";
    private const string NotCidr = "is not an IPv4 prefix in canonical CIDR notation";

    /// <summary>A row: its name, the spec as JSON (also YAML), and what each side says (null: accepted).</summary>
    public sealed record Row(string Name, string Spec, Refusal? Validator, Refusal? Server, string? WhyTheyDiffer = null)
    {
        public override string ToString() => Name;
    }

    /// <summary>A refusal: the field path as each side prints it, and a phrase of the message.</summary>
    public sealed record Refusal(string Path, string Phrase);

    public static TheoryData<Row> Rows => [.. BuildRows()];

    [SkippableFact]
    public async Task Both_CRDs_from_config_crds_are_accepted_by_server_side_apply_and_become_Established()
    {
        var server = await SharedKubeApiServer.WithCrdsAsync();

        // Applied once more: server-side apply of the same files is a no-op the server accepts.
        var applied = KubeTools.Ok(server.AdminKubeconfig, KubeTools.Kubectl, "apply", "--server-side", "--field-manager=tscgnat-tests", "-f", Path.Combine(Repo.Root, "config", "crds"));
        output.WriteLine(applied);
        Assert.Contains("cgnatallowpolicies.tscgnat.io serverside-applied", applied, StringComparison.Ordinal);
        Assert.Contains("cgnatnodestates.tscgnat.io serverside-applied", applied, StringComparison.Ordinal);
        foreach (var crd in new[] { "cgnatallowpolicies.tscgnat.io", "cgnatnodestates.tscgnat.io" })
        {
            var established = KubeTools.Ok(server.AdminKubeconfig, KubeTools.Kubectl, "get", "crd", crd, "-o", "jsonpath={.status.conditions[?(@.type==\"Established\")].status}");
            Assert.Equal("True", established);
        }
    }

    [SkippableFact]
    public async Task Kubectl_explain_reads_the_descriptions_from_the_server()
    {
        var server = await SharedKubeApiServer.WithCrdsAsync();

        var explained = await Eventually.ValueAsync(
            () => KubeTools.Run(server.AdminKubeconfig, KubeTools.Kubectl, "explain", "cgap.spec.allowedSources.cidr"),
            o => o.Succeeded, "kubectl explain cgap.spec.allowedSources.cidr (discovery sees the new CRD)");
        output.WriteLine(explained.StdOut);
        Assert.Contains("Canonical IPv4 prefix inside 100.64.0.0/10", explained.StdOut, StringComparison.Ordinal);
    }

    [SkippableTheory]
    [MemberData(nameof(Rows))]
    public async Task The_server_and_the_validator_agree(Row row)
    {
        var server = await SharedKubeApiServer.WithCrdsAsync();

        var validator = ValidatorSays(row);
        var refusedByServer = await ServerSaysAsync(server, row);
        output.WriteLine($"validator: {validator ?? "accepted"}\nserver:    {refusedByServer ?? "accepted"}");

        Assert.Equal(row.Validator is null, validator is null);
        Assert.Equal(row.Server is null, refusedByServer is null);
        if (row.WhyTheyDiffer is null)
        {
            Assert.Equal(row.Validator is null, row.Server is null); // a row without a reason may not differ in outcome
        }

        if (row.Validator is { } v)
        {
            Assert.Contains($"{v.Path}: ", validator, StringComparison.Ordinal);
            Assert.Contains(v.Phrase, validator, StringComparison.Ordinal);
        }

        if (row.Server is { } s)
        {
            Assert.Contains(s.Path, refusedByServer, StringComparison.Ordinal);
            Assert.Contains(s.Phrase, refusedByServer, StringComparison.Ordinal);
        }
    }

    private static IEnumerable<Row> BuildRows()
    {
        static string Sources(string entries, string? extra = null) => $$"""{"allowedSources":[{{entries}}]{{extra}}}""";
        static string Cidr(string cidr) => Sources($$"""{"cidr":"{{cidr}}"}""");
        static Row Same(string name, string spec, string path, string phrase) => new(name, spec, new(path, phrase), new(path, phrase));

        yield return new("the Alibaba Cloud sample", """{"allowedSources":[{"cidr":"100.100.0.0/16","interfaces":["eth0"],"description":"DNS, mirrors, metadata"}]}""", null, null);
        yield return new("a subnet router", """{"routedSubnets":[{"cidr":"100.64.0.0/24","description":"lab LAN"}],"allowedSources":[{"cidr":"100.64.0.0/24"}]}""", null, null);
        yield return new("an empty spec (selects nothing to exempt)", "{}", null, null);
        yield return new("a /32", Cidr("100.127.255.255/32"), null, null);
        yield return new("the whole range with allowBroadRanges", Sources("""{"cidr":"100.64.0.0/10"}""", ""","allowBroadRanges":true"""), null, null);
        yield return new("a selector with expressions", """{"nodeSelector":{"matchExpressions":[{"key":"zone","operator":"In","values":["a","b"]}]},"allowedSources":[{"cidr":"100.100.0.0/16"}]}""", null, null);
        yield return new("fifteen-character interface names", Sources("""{"cidr":"100.100.0.0/16","interfaces":["abcdefghijklmno","eth0.100","br_lan-1"]}"""), null, null);

        foreach (var (cidr, phrase) in new[]
        {
            ("lab-network", NotCidr), ("100.64.0.0", NotCidr), ("100.64.0.0/33", NotCidr),
            ("100.064.0.0/16", NotCidr), ("100.64.0.0/016", NotCidr), // the validator adds "no leading zeros"; the server's isCIDR refuses them before its pattern rule
            ("fd00::/8", "Tailscale has no IPv6 CGNAT drop"),
            ("100.64.0.1/24", "has host bits set; write the network address"),
            ("10.0.0.0/8", "is outside 100.64.0.0/10; Tailscale does not drop it"),
            ("100.128.0.0/16", "is outside 100.64.0.0/10"),
            ("100.63.255.255/32", "is outside 100.64.0.0/10"),
            ("0.0.0.0/0", "is wider than 100.64.0.0/10"),
        })
        {
            yield return Same($"cidr \"{cidr}\"", Cidr(cidr), "spec.allowedSources[0].cidr", phrase);
        }

        yield return Same("routed subnet outside the range", """{"routedSubnets":[{"cidr":"192.168.1.0/24"}]}""", "spec.routedSubnets[0].cidr", "is outside 100.64.0.0/10");
        yield return new("an empty cidr", Cidr(""), new("spec.allowedSources[0].cidr", "is required"), new("spec.allowedSources[0].cidr", NotCidr),
            "the validator treats an empty string as a missing value; CEL sees a string that is no CIDR");
        yield return new("a /12 without allowBroadRanges", Cidr("100.96.0.0/12"),
            new("spec.allowedSources[0].cidr", Broad), new("spec.allowedSources", Broad),
            "the rule depends on allowBroadRanges, so in the CRD it sits on spec (design 11) and the server can only point at the list; the validator names the entry");
        yield return new("a duplicate cidr", Sources("""{"cidr":"100.100.0.0/16"},{"cidr":"100.100.0.0/16"}"""),
            new("spec.allowedSources[1].cidr", "100.100.0.0/16"), new("spec.allowedSources[1]", "Duplicate value"),
            "the server's list-map check words its own message; both refuse the second entry");
        yield return new("an unknown field", """{"allowedSource":[{"cidr":"100.100.0.0/16"}]}""",
            new("spec.allowedSource", "unknown field \"allowedSource\""), new("spec.allowedSource", "unknown field \"spec.allowedSource\""),
            "strict field validation words its own message (kubectl --validate=strict, the API's fieldValidation=Strict)");
        yield return new("an entry without a cidr", Sources("{}"),
            new("spec.allowedSources[0].cidr", "required"), new("spec.allowedSources[0].cidr", "Required value"),
            "the server's required-field message is fixed");
        yield return new("a cidr that is a number", Sources("""{"cidr":5}"""),
            new("spec.allowedSources[0].cidr", "string"), new("spec.allowedSources[0].cidr", "must be of type string"),
            "type errors are worded by each side's decoder");
        yield return Same("an interface with a colon", Sources("""{"cidr":"100.100.0.0/16","interfaces":["eth0:1"]}"""), "spec.allowedSources[0].interfaces[0]", "eth0:1");
        yield return new("an interface name of 16 characters", Sources("""{"cidr":"100.100.0.0/16","interfaces":["abcdefghijklmnop"]}"""),
            new("spec.allowedSources[0].interfaces[0]", "15"), new("spec.allowedSources[0].interfaces[0]", "15"));
        yield return new("\"..\" as an interface", Sources("""{"cidr":"100.100.0.0/16","interfaces":[".."]}"""),
            new("spec.allowedSources[0].interfaces[0]", "not \".\" or \"..\""), new("spec.allowedSources[0].interfaces", "\".\" and \"..\" are not interface names"),
            "the CEL rule sits on the list (the pattern cannot exclude them), so the server points at the list; the validator names the entry");
        yield return new("a description of 257 characters", Sources($$"""{"cidr":"100.100.0.0/16","description":"{{new string('d', 257)}}"}"""),
            new("spec.allowedSources[0].description", "256"), new("spec.allowedSources[0].description", "256"));
        yield return new("1025 entries", Sources(string.Join(',', Enumerable.Range(0, 1025).Select(i => $$"""{"cidr":"100.{{64 + (i / 256)}}.{{i % 256}}.0/24"}"""))),
            new("spec.allowedSources", "1024"), new("spec.allowedSources", "must have at most 1024 items"));
        yield return new("17 interfaces on one source", Sources($$"""{"cidr":"100.100.0.0/16","interfaces":[{{string.Join(',', Enumerable.Range(0, 17).Select(i => $"\"eth{i}\""))}}]}"""),
            new("spec.allowedSources[0].interfaces", "16"), new("spec.allowedSources[0].interfaces", "must have at most 16 items"));
        yield return new("a selector operator that does not exist", """{"nodeSelector":{"matchExpressions":[{"key":"zone","operator":"Near"}]},"allowedSources":[{"cidr":"100.100.0.0/16"}]}""",
            new("spec.nodeSelector.matchExpressions[0].operator", "Near"), new("spec.nodeSelector.matchExpressions[0].operator", "Unsupported value: \"Near\""));
    }

    private static string? ValidatorSays(Row row)
    {
        var yaml = $"apiVersion: tscgnat.io/v1alpha1\nkind: CgnatAllowPolicy\nmetadata:\n  name: row\nspec: {row.Spec}\n";
        var (_, problems) = PolicyDocuments.Parse(yaml, "row.yaml");
        return problems.Count == 0 ? null : string.Join("\n", problems.Select(p => p.ToString()));
    }

    /// <summary>Creates the policy as a dry run with strict field validation (as <c>kubectl apply --validate=strict</c>); the server's refusal, or null.</summary>
    private static async Task<string?> ServerSaysAsync(KubeApiServer.KubeApiServer server, Row row)
    {
        var body = new JsonObject
        {
            ["apiVersion"] = "tscgnat.io/v1alpha1",
            ["kind"] = "CgnatAllowPolicy",
            ["metadata"] = new JsonObject { ["name"] = UniqueName.For("row-") },
            ["spec"] = JsonNode.Parse(row.Spec),
        };
        using var client = server.Client();
        try
        {
            await client.CustomObjects.CreateClusterCustomObjectAsync(body, "tscgnat.io", "v1alpha1", "cgnatallowpolicies", dryRun: "All", fieldValidation: "Strict");
            return null;
        }
        catch (HttpOperationException e) when (e.Response.StatusCode is HttpStatusCode.UnprocessableEntity or HttpStatusCode.BadRequest)
        {
            return JsonNode.Parse(e.Response.Content)?["message"]?.GetValue<string>() ?? e.Response.Content;
        }
    }
}

[CollectionDefinition(SharedKubeApiServer.Collection)]
public sealed class KubeApiServerCollectionDefinition;
