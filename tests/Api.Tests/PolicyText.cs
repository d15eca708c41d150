using System.Text;

namespace TsCgnat.Api.Tests;

/// <summary>
/// Builds policy YAML whose line numbers a test can state: the header is lines 1-4 and "spec:" is
/// line 5, so the first line under spec is line 6.
/// </summary>
internal static class PolicyText
{
    public const string Source = "policy.yaml";

    public static string Header(string name = "lab") =>
        "apiVersion: tscgnat.io/v1alpha1\n" // line 1
        + "kind: CgnatAllowPolicy\n"         // line 2
        + "metadata:\n"                      // line 3
        + $"  name: {name}\n";               // line 4

    /// <summary>A policy named "lab" whose spec (line 5) holds <paramref name="specLines"/>, one per line from line 6.</summary>
    public static string WithSpec(params string[] specLines) => Named("lab", specLines);

    public static string Named(string name, params string[] specLines)
    {
        var text = new StringBuilder(Header(name)).Append("spec:\n");
        foreach (var line in specLines)
        {
            text.Append("  ").Append(line).Append('\n');
        }

        return text.ToString();
    }

    /// <summary>A policy with "spec: {}" on line 5: valid, and five lines long.</summary>
    public static string EmptySpec(string name = "lab") => Header(name) + "spec: {}\n";

    /// <summary>One allowed source whose cidr is written verbatim on line 7.</summary>
    public static string WithAllowedSource(string cidr) => WithSpec("allowedSources:", $"  - cidr: {cidr}");

    /// <summary>One allowed source 100.64.0.0/24 whose interface list is written verbatim on line 8.</summary>
    public static string WithInterfaces(string flowList) =>
        WithSpec("allowedSources:", "  - cidr: 100.64.0.0/24", $"    interfaces: {flowList}");

    /// <summary>Parses as the agent does; and every text a test parses is also a check that the fast YAML reader agrees with YamlDotNet.</summary>
    public static (IReadOnlyList<PolicyDocument> Policies, IReadOnlyList<PolicyProblem> Problems) Parse(string text)
    {
        Assert.Null(PolicyYaml.PlainDisagreement(text));
        return PolicyDocuments.Parse(text, Source);
    }

    /// <summary>Parses text that must be refused with exactly one problem, and returns that problem.</summary>
    public static PolicyProblem SingleProblem(string text)
    {
        var (policies, problems) = Parse(text);
        Assert.Empty(policies);
        return Assert.Single(problems);
    }

    /// <summary>Parses text that must be accepted as exactly one policy, and returns it.</summary>
    public static PolicyDocument SinglePolicy(string text)
    {
        var (policies, problems) = Parse(text);
        Assert.Empty(problems);
        return Assert.Single(policies);
    }

    /// <summary>Asserts where a problem was found: document number, line, and field path.</summary>
    public static void AssertAt(PolicyProblem problem, int? document, int? line, string? path)
    {
        Assert.Equal(Source, problem.Source);
        Assert.Equal(document, problem.Document);
        Assert.Equal(line, problem.Line);
        Assert.Equal(path, problem.Path);
    }

    /// <summary>Asserts that the message holds each of <paramref name="words"/>, case-sensitively.</summary>
    public static void AssertSays(PolicyProblem problem, params string[] words)
    {
        foreach (var word in words)
        {
            Assert.Contains(word, problem.Message, StringComparison.Ordinal);
        }
    }
}
