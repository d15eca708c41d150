using OpenTelemetry;
using OpenTelemetry.Metrics;

namespace TsCgnat.Telemetry.Tests;

/// <summary>An in-memory MeterProvider over the tscgnat meter, read through snapshots the way an exporter sees them.</summary>
internal sealed class Recorded : IDisposable
{
    private readonly List<MetricSnapshot> _exported = [];
    private readonly MeterProvider _provider;

    public Recorded() =>
        _provider = Sdk.CreateMeterProviderBuilder().AddMeter(TsCgnatMetrics.MeterName).AddInMemoryExporter(_exported).Build();

    /// <summary>Collects now and returns what was exported, by instrument name.</summary>
    public IReadOnlyDictionary<string, MetricSnapshot> Collect()
    {
        _exported.Clear();
        Assert.True(_provider.ForceFlush());
        return _exported.ToDictionary(m => m.Name, StringComparer.Ordinal);
    }

    /// <summary>The one point of <paramref name="metric"/> whose attributes are exactly <paramref name="tags"/>.</summary>
    public static MetricPoint Point(MetricSnapshot metric, params (string Key, object Value)[] tags)
    {
        var wanted = tags.Select(t => $"{t.Key}={t.Value}").Order(StringComparer.Ordinal).ToArray();
        var matches = metric.MetricPoints.Where(p => Attributes(p).SequenceEqual(wanted)).ToList();
        Assert.True(matches.Count == 1,
            $"{metric.Name}: expected one point with [{string.Join(", ", wanted)}], found {matches.Count} among " +
            string.Join(" | ", metric.MetricPoints.Select(p => string.Join(", ", Attributes(p)))));
        return matches[0];
    }

    public static string[] Attributes(MetricPoint point)
    {
        var list = new List<string>();
        foreach (var tag in point.Tags)
        {
            list.Add($"{tag.Key}={tag.Value}");
        }

        return [.. list.Order(StringComparer.Ordinal)];
    }

    public void Dispose() => _provider.Dispose();
}
