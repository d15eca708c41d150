using System.Text;
using CsCheck;

namespace TsCgnat.Api.Tests;

/// <summary>
/// The fast reader of the plain YAML subset (PlainYaml, issue 11) must either leave a text to YamlDotNet or read it
/// exactly as YamlDotNet does: documents, lines, JSON and top-level keys. A reader that disagreed would be a parser
/// differential in a firewall's input. Every text of the other policy tests is compared too (PolicyText.Parse).
/// </summary>
public sealed class PlainYamlTests
{
    private const string Header = "apiVersion: tscgnat.io/v1alpha1\nkind: CgnatAllowPolicy\nmetadata:\n  name: lab\n";

    public static TheoryData<string> InSubset => new()
    {
        Header + "spec:\n  allowedSources:\n    - cidr: 100.64.0.0/24\n",
        Header + "spec:\n  allowedSources:\n  - cidr: 100.64.0.0/24\n    interfaces: [eth0, eth1]\n  routedSubnets:\n  - 100.65.0.0/16\n",
        Header + "spec:\n  nodeSelector: {}\n  allowedSources: []\n",
        Header + "spec:\n  allowedSources:\n    -   cidr: '100.64.0.0/24'\n        description: \"quoted: with a colon\"\n",
        "# a comment first\n---\n" + Header + "spec: # trailing\n  allowedSources: # list\n    # between\n    - cidr: 100.64.0.0/24 # the DNS\n\n",
        Header + "spec:\n  allowedSources:\n    - cidr: 100.64.0.0/24\n---\n" + Header.Replace("lab", "two", StringComparison.Ordinal) + "spec: {}\n",
        "---\n---\n" + Header + "spec: {}\n---\n",
        Header + "spec:\n  nodeSelector:\n    matchLabels:\n      topology.kubernetes.io/region: cn-hangzhou\n      tier: \"1\"\n    matchExpressions:\n    - key: node-role.kubernetes.io/worker\n      operator: Exists\n      values:\n",
        Header + "spec:\n  allowedSources:\n    - cidr: 100.64.0.0/24\n      interfaces: [ ]\n      description: a, b [c] {d} it's 100% #1\n",
        Header + "  labels:\n    a: true\n    b: 1\n    c: -1.5e3\n    d: null\n    e: ~\n    f: 0x10\n    g: 1e999\n    h: TRUE\nspec: {}\n",
        "kind: CgnatAllowPolicy\n",
        "a: 1\nb:\nc: x\n",
        "a:\n- b\n-\n- c\n",
        "list:\n  - 1\n  - two\n  - 'three'\n  - \"\"\n  - ''\n",
        "labels:\n" + string.Concat(Enumerable.Range(0, 40).Select(i => $"  k{i}: v{i}\n")),
    };

    public static TheoryData<string> OutsideSubset => new()
    {
        Header + "spec:\n\tallowedSources: []\n",
        Header.Replace("\n", "\r\n", StringComparison.Ordinal) + "spec: {}\r\n",
        Header + "spec: &a {}\n",
        Header + "spec: *a\n",
        Header + "spec: !!map {}\n",
        Header + "spec:\n  allowedSources:\n    - cidr: 100.64.0.0/24\n      description: |\n        two\n        lines\n",
        Header + "spec:\n  allowedSources:\n    - cidr: 100.64.0.0/24\n      description: one\n        and two\n",
        Header + "spec:\n  allowedSources:\n    - cidr: 100.64.0.0/24\n      description: \"escaped \\\" quote\"\n",
        Header + "spec:\n  allowedSources:\n    - cidr: 100.64.0.0/24\n      description: 'it''s'\n",
        Header + "spec: {allowedSources: []}\n",
        Header + "spec:\n  allowedSources: [{cidr: 100.64.0.0/24}]\n",
        Header + "spec: {}\nspec: {}\n",
        Header + "spec:\n  ? complex\n  : key\n",
        Header + "spec:\n  \"quoted\": key\n",
        Header + "spec:\n  a: b: c\n",
        "%YAML 1.2\n---\n" + Header + "spec: {}\n",
        Header + "spec: {}\n...\n",
        Header + "spec:\n  description: café\n",
        "- a\n- b\n",
        "a:\n- - c\n",
        "labels:\n" + string.Concat(Enumerable.Range(0, 40).Select(i => $"  k{i}: v{i}\n")) + "  k3: again\n",
        "labels:\n  k1: a\n  k2: b\n  k1: c\n",
        "just text\n",
        "  a: 1\n",
        "a: 1\n  b: 2\n",
        "a: 1\n- b\n",
        Header + "spec:\n  allowedSources:\n    - cidr: 100.64.0.0/24\n   - cidr: 100.64.1.0/24\n",
    };

    [Theory]
    [MemberData(nameof(InSubset))]
    public void Texts_of_the_subset_are_read_by_the_fast_reader_exactly_as_by_YamlDotNet(string text)
    {
        Assert.NotNull(PlainYaml.TryRead(text));
        Assert.Null(PolicyYaml.PlainDisagreement(text));
    }

    [Theory]
    [MemberData(nameof(OutsideSubset))]
    public void Texts_outside_the_subset_are_left_to_YamlDotNet(string text)
    {
        Assert.Null(PlainYaml.TryRead(text));
        var (policies, problems) = PolicyDocuments.Parse(text, "x.yaml");
        Assert.True(policies.Count + problems.Count > 0, "YamlDotNet's reading gives policies or problems");
    }

    [Fact]
    public void Every_sample_policy_in_the_repository_is_in_the_subset_and_read_alike()
    {
        var files = new[] { "config/samples", "deploy/systemd" }
            .SelectMany(d => Directory.EnumerateFiles(Path.Combine(TestSupport.Repo.Root, d), "*.yaml"))
            .ToList();
        Assert.NotEmpty(files);
        foreach (var file in files)
        {
            var text = File.ReadAllText(file);
            Assert.True(PlainYaml.TryRead(text) is not null, $"{file} is outside the fast reader's subset");
            Assert.True(PolicyYaml.PlainDisagreement(text) is null, $"{file}: {PolicyYaml.PlainDisagreement(text)}");
        }
    }

    /// <summary>Policies written the ways people write them: indentation, list style, quotes, comments, documents.</summary>
    private static readonly Gen<string> Policies =
        Gen.Select(Gen.Int[2, 4], Gen.Bool, Gen.Int[0, 3], Gen.Int[1, 12], Gen.Int[0, 3], Gen.Bool, Gen.Int[0, int.MaxValue])
            .Select(t => Write(t.Item1, t.Item2, t.Item3, t.Item4, t.Item5, t.Item6, t.Item7));

    [Fact]
    public void Generated_policies_are_in_the_subset_and_read_alike()
    {
        Policies.Sample(text =>
        {
            Assert.True(PlainYaml.TryRead(text) is not null, $"outside the subset:\n{text}");
            var disagreement = PolicyYaml.PlainDisagreement(text);
            Assert.True(disagreement is null, $"{disagreement}\n--- text:\n{text}");
        }, iter: 400);
    }

    [Fact]
    public void Generated_policies_with_a_few_characters_changed_are_read_alike_or_left_to_YamlDotNet()
    {
        const string Alphabet = " \n-:#'\"[]{},.&*!|>?%@`~\\/0aZ";
        var mutated = Gen.Select(Policies, Gen.Int[1, 4].SelectMany(n => Gen.Select(Gen.Int[0, int.MaxValue], Gen.Int[0, Alphabet.Length - 1], Gen.Int[0, 2]).Array[n]))
            .Select(t =>
            {
                var text = new StringBuilder(t.Item1);
                foreach (var (at, c, how) in t.Item2)
                {
                    var i = at % (text.Length + 1);
                    switch (how)
                    {
                        case 0: text.Insert(i, Alphabet[c]); break;
                        case 1 when i < text.Length: text[i] = Alphabet[c]; break;
                        case 2 when i < text.Length: text.Remove(i, 1); break;
                    }
                }

                return text.ToString();
            });
        var fast = 0;
        mutated.Sample(text =>
        {
            var disagreement = PolicyYaml.PlainDisagreement(text);
            Assert.True(disagreement is null, $"{disagreement}\n--- text:\n{text}");
            if (PlainYaml.TryRead(text) is not null)
            {
                Interlocked.Increment(ref fast);
            }
        }, iter: 3000, threads: 1);

        // Not vacuous: many changed texts stay in the subset (a changed name, CIDR or comment), and are compared.
        Assert.True(fast > 600, $"only {fast} of 3000 changed texts were read by the fast reader");
    }

    private static string Write(int indent, bool sameColumnLists, int comments, int sources, int documents, bool quoted, int seed)
    {
        var random = new Random(seed);
        var pad = new string(' ', indent);
        var text = new StringBuilder();
        if (comments > 2)
        {
            text.Append("# policies\n---\n");
        }

        for (var d = 0; d <= documents % 3; d++)
        {
            if (d > 0)
            {
                text.Append("---\n");
            }

            text.Append($"apiVersion: tscgnat.io/v1alpha1\nkind: CgnatAllowPolicy\nmetadata:\n{pad}name: p{d}-{random.Next(100)}\n");
            text.Append("spec:").Append(comments > 1 ? " # spec\n" : "\n");
            if (random.Next(3) == 0)
            {
                text.Append($"{pad}nodeSelector:\n{pad}{pad}matchLabels:\n{pad}{pad}{pad}kubernetes.io/os: linux\n");
            }

            var list = sameColumnLists ? pad : pad + pad;
            text.Append($"{pad}allowedSources:\n");
            for (var s = 0; s < sources; s++)
            {
                var cidr = $"100.{64 + random.Next(64)}.{random.Next(256)}.0/24";
                text.Append($"{list}- cidr: ").Append(quoted && s % 2 == 0 ? $"'{cidr}'" : cidr);
                text.Append(comments > 0 && s % 3 == 0 ? " # dns\n" : "\n");
                var field = list + "  ";
                switch (random.Next(5))
                {
                    case 0:
                        text.Append($"{field}interfaces: [eth{random.Next(3)}, ens{random.Next(9)}]\n");
                        break;
                    case 1:
                        text.Append($"{field}interfaces:\n{field}- eth0\n");
                        break;
                    case 2:
                        text.Append($"{field}description: ").Append(quoted ? "\"Alibaba: DNS\"" : "Alibaba DNS, mirrors").Append('\n');
                        break;
                    case 3:
                        text.Append($"{field}interfaces: []\n");
                        break;
                }

                if (comments > 1 && s % 4 == 1)
                {
                    text.Append($"{list}# next\n\n");
                }
            }

            if (random.Next(2) == 0)
            {
                text.Append($"{pad}routedSubnets:\n{list}- 100.{64 + random.Next(64)}.0.0/16\n");
            }
        }

        return text.ToString();
    }
}
