using YamlDotNet.RepresentationModel;

namespace TsCgnat.Chart.Tests;

/// <summary>The chart's manifests rendered by the stub renderer and parsed, for structural checks.</summary>
internal static class Rendered
{
    public static readonly IReadOnlyList<(string Template, YamlNode Document)> All =
        [.. ChartPaths.ManifestNames().SelectMany(name =>
            Yaml.Documents(GoTemplate.Parse(ChartPaths.ReadTemplate(name)).Stub()).Select(doc => (name, doc)))];

    public static YamlNode Single(string kind, string nameSuffix) =>
        All.Select(x => x.Document)
            .Single(d => Yaml.Text(d, "kind") == kind && (Yaml.Text(d, "metadata", "name") ?? "").EndsWith(nameSuffix, StringComparison.Ordinal));

    public static IEnumerable<YamlNode> OfKind(params string[] kinds) =>
        All.Select(x => x.Document).Where(d => kinds.Contains(Yaml.Text(d, "kind")));
}
