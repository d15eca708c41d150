using System.Globalization;
using System.Text;

namespace TsCgnat.Bench.Cli;

/// <summary>The policies of one row: N allowed sources, the distinct /24s from 100.64.0.0/24 on, spread over 10 policy files.</summary>
internal static class Policies
{
    /// <summary>Policies per row: the "10 policies × 1,000 CIDRs" at N = 10,000.</summary>
    public const int Count = 10;

    /// <summary>Distinct /24s inside 100.64.0.0/10.</summary>
    public const int MaxSize = 1 << 14;

    public static IEnumerable<string> Cidrs(int n) =>
        Enumerable.Range(0, n).Select(i => string.Create(CultureInfo.InvariantCulture, $"100.{64 + (i >> 8)}.{i & 0xff}.0/24"));

    /// <summary>The YAML of policy <paramref name="index"/> of <see cref="Count"/>: every Count-th CIDR, from the index-th on.</summary>
    public static string Yaml(int n, int index)
    {
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"apiVersion: tscgnat.io/v1alpha1\nkind: CgnatAllowPolicy\nmetadata:\n  name: bench-{index}\nspec:\n  allowedSources:\n");
        foreach (var cidr in Cidrs(n).Where((_, i) => i % Count == index))
        {
            text.Append("    - cidr: ").Append(cidr).Append('\n');
        }

        return text.ToString();
    }

    /// <summary>Writes the <see cref="Count"/> policy files of a row (a policy with no entry is left out: N &lt; 10).</summary>
    public static void Write(string directory, int n)
    {
        Directory.CreateDirectory(directory);
        for (var index = 0; index < Math.Min(Count, n); index++)
        {
            File.WriteAllText(Path.Combine(directory, $"bench-{index}.yaml"), Yaml(n, index));
        }
    }
}

internal static class Stats
{
    public static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToList();
        return sorted.Count == 0 ? double.NaN
            : sorted.Count % 2 == 1 ? sorted[sorted.Count / 2]
            : (sorted[(sorted.Count / 2) - 1] + sorted[sorted.Count / 2]) / 2;
    }
}

internal sealed class BenchException(string message) : Exception(message);
