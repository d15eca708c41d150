using System.Collections.Concurrent;

namespace TsCgnat.NodeAgent.Triggers;

/// <summary>Repairs of drift, counted by cause, and how long each took from the change being seen to the rules being back.</summary>
public sealed class RepairStats
{
    private const int KeptLatencies = 1024;
    private readonly ConcurrentDictionary<string, long> _byCause = new(StringComparer.Ordinal);
    private readonly Queue<double> _latencies = new();

    public event Action<string, TimeSpan>? Repaired;

    public long Total => _byCause.Values.Sum();

    public IReadOnlyDictionary<string, long> ByCause => _byCause;

    public void Record(string cause, TimeSpan latency)
    {
        _byCause.AddOrUpdate(cause, 1, (_, n) => n + 1);
        lock (_latencies)
        {
            if (_latencies.Count == KeptLatencies)
            {
                _latencies.Dequeue();
            }

            _latencies.Enqueue(latency.TotalMilliseconds);
        }

        Repaired?.Invoke(cause, latency);
    }

    /// <summary>The latest latencies in milliseconds, oldest first.</summary>
    public IReadOnlyList<double> LatenciesMs()
    {
        lock (_latencies)
        {
            return [.. _latencies];
        }
    }
}
