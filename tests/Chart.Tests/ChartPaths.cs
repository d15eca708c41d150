namespace TsCgnat.Chart.Tests;

/// <summary>Where the chart and its sources are in the checkout the tests run from.</summary>
internal static class ChartPaths
{
    public static readonly string Root = FindRoot();
    public static readonly string Chart = Path.Combine(Root, "charts", "ts-cgnat-operator");
    public static readonly string Templates = Path.Combine(Chart, "templates");
    public static readonly string Values = Path.Combine(Chart, "values.yaml");
    public static readonly string Schema = Path.Combine(Chart, "values.schema.json");
    public static readonly string ChartCrds = Path.Combine(Chart, "crds");
    public static readonly string ConfigCrds = Path.Combine(Root, "config", "crds");

    /// <summary>Every file helm renders or reads from templates/, by file name.</summary>
    public static IEnumerable<string> TemplateNames() =>
        Directory.EnumerateFiles(Templates).Select(Path.GetFileName).OfType<string>().Order(StringComparer.Ordinal);

    /// <summary>The templates that render Kubernetes objects (helm skips _*.tpl and NOTES.txt).</summary>
    public static IEnumerable<string> ManifestNames() =>
        TemplateNames().Where(n => n.EndsWith(".yaml", StringComparison.Ordinal) && !n.StartsWith('_'));

    public static string ReadTemplate(string name) => File.ReadAllText(Path.Combine(Templates, name));

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "TsCgnatOperator.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException($"no TsCgnatOperator.sln above {AppContext.BaseDirectory}");
    }
}
