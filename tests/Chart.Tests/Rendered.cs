using TsCgnat.KubeApiServer;
using YamlDotNet.RepresentationModel;

namespace TsCgnat.Chart.Tests;

/// <summary>
/// The chart's manifests rendered by real helm with every optional part on (<see cref="HelmTemplate.EverythingOn"/>)
/// and parsed, for structural checks; each document with the template it came from. Tests that use it are
/// [SkippableFact]s: without helm they skip outside CI and fail under CI=true.
/// </summary>
internal static class Rendered
{
    private static readonly Lazy<IReadOnlyList<(string Template, YamlNode Document)>> Documents = new(Render);

    public static IReadOnlyList<(string Template, YamlNode Document)> All
    {
        get
        {
            _ = KubeTools.Helm; // skips (outside CI) or fails here, inside the test, when helm is missing
            return Documents.Value;
        }
    }

    public static YamlNode Single(string kind, string nameSuffix) =>
        All.Select(x => x.Document)
            .Single(d => Yaml.Text(d, "kind") == kind && (Yaml.Text(d, "metadata", "name") ?? "").EndsWith(nameSuffix, StringComparison.Ordinal));

    public static IEnumerable<YamlNode> OfKind(params string[] kinds) =>
        All.Select(x => x.Document).Where(d => kinds.Contains(Yaml.Text(d, "kind")));

    /// <summary>helm prints "# Source: CHART/templates/NAME" above each document.</summary>
    private static List<(string Template, YamlNode Document)> Render() =>
    [
        .. HelmTemplate.Render(HelmTemplate.EverythingOn).Split("\n---", StringSplitOptions.RemoveEmptyEntries)
            .Select(text => (Source: text.Split('\n').FirstOrDefault(l => l.StartsWith("# Source: ", StringComparison.Ordinal)), Text: text))
            .Where(d => d.Source is not null)
            .SelectMany(d => Yaml.Documents(d.Text).Select(doc => (Path.GetFileName(d.Source!), doc))),
    ];
}
