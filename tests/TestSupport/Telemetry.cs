using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using TsCgnat.Telemetry;

namespace TsCgnat.TestSupport;

/// <summary>
/// Measurements of one <see cref="TsCgnatMetrics"/> instance, through a <see cref="MeterListener"/> on its own
/// meter: other tests in this process record on meters of the same name at the same time.
/// </summary>
public sealed class Measured : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly ConcurrentQueue<(string Instrument, double Value, string[] Tags)> _recorded = new();
    private readonly ConcurrentQueue<(string Instrument, double Value, string[] Tags)> _observed = new();

    public Measured(Meter meter)
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (ReferenceEquals(instrument.Meter, meter))
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<long>((instrument, value, tags, _) => Add(instrument, value, tags));
        _listener.SetMeasurementEventCallback<double>((instrument, value, tags, _) => Add(instrument, value, tags));
        _listener.Start();
    }

    /// <summary>Every value a counter or histogram recorded with exactly these attributes.</summary>
    public IReadOnlyList<double> Values(string instrument, params (string Key, string Value)[] tags)
    {
        var wanted = Key(tags);
        return [.. _recorded.Where(m => m.Instrument == instrument && m.Tags.SequenceEqual(wanted)).Select(m => m.Value)];
    }

    public double Sum(string instrument, params (string Key, string Value)[] tags) => Values(instrument, tags).Sum();

    /// <summary>What an observable gauge reports now with exactly these attributes, or null when it reports no such series.</summary>
    public double? Gauge(string instrument, params (string Key, string Value)[] tags)
    {
        lock (_observed)
        {
            _observed.Clear();
            _listener.RecordObservableInstruments(); // the gauges' callbacks run here, on this thread
            var wanted = Key(tags);
            return _observed.Where(m => m.Instrument == instrument && m.Tags.SequenceEqual(wanted)).Select(m => (double?)m.Value).SingleOrDefault();
        }
    }

    public void Dispose() => _listener.Dispose();

    private void Add(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags)
    {
        var copy = new string[tags.Length];
        for (var i = 0; i < tags.Length; i++)
        {
            copy[i] = $"{tags[i].Key}={tags[i].Value}";
        }

        Array.Sort(copy, StringComparer.Ordinal);
        (instrument.IsObservable ? _observed : _recorded).Enqueue((instrument.Name, value, copy));
    }

    private static string[] Key((string Key, string Value)[] tags) =>
        [.. tags.Select(t => $"{t.Key}={t.Value}").Order(StringComparer.Ordinal)];
}

/// <summary>The finished <c>tscgnat.reconcile</c> spans whose tag <c>key</c> is <c>value</c> (a node, a policy).</summary>
public sealed class Spans : IDisposable
{
    private readonly ActivityListener _listener;
    private readonly ConcurrentQueue<Activity> _stopped = new();

    public Spans(string key, string value)
    {
        _listener = new ActivityListener
        {
            ShouldListenTo = source => source.Name == TsCgnatTracing.SourceName,
            Sample = (ref ActivityCreationOptions<ActivityContext> _) => ActivitySamplingResult.AllDataAndRecorded,
            ActivityStopped = activity =>
            {
                if (Equals(activity.GetTagItem(key), value))
                {
                    _stopped.Enqueue(activity);
                }
            },
        };
        ActivitySource.AddActivityListener(_listener);
    }

    public IReadOnlyList<Activity> Stopped => [.. _stopped];

    public void Dispose() => _listener.Dispose();
}
