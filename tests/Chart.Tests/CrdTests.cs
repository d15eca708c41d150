namespace TsCgnat.Chart.Tests;

/// <summary>helm installs the CRDs from the chart's crds/; they must be the generated ones.</summary>
public sealed class CrdTests
{
    [Fact]
    public void Chart_crds_equal_config_crds_byte_for_byte()
    {
        var generated = YamlFiles(ChartPaths.ConfigCrds);
        var packaged = YamlFiles(ChartPaths.ChartCrds);

        Assert.Equal(generated.Keys.Order(StringComparer.Ordinal), packaged.Keys.Order(StringComparer.Ordinal));
        Assert.All(generated, kv => Assert.True(
            kv.Value.AsSpan().SequenceEqual(packaged[kv.Key]),
            $"charts/ts-cgnat-operator/crds/{kv.Key} differs from config/crds/{kv.Key}: copy it again"));
    }

    private static Dictionary<string, byte[]> YamlFiles(string dir) =>
        Directory.Exists(dir)
            ? Directory.EnumerateFiles(dir, "*.yaml").ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes, StringComparer.Ordinal)
            : [];
}
