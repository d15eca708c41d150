using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text;
using TsCgnat.Firewall.Processes;

namespace TsCgnat.TestSupport;

/// <summary>One process the runner started: which tool, how much went in and out, and how long it took.</summary>
public sealed record CommandRecord(string Program, IReadOnlyList<string> Arguments, int StdinBytes, CommandOutput Output, double StartMs, double Ms);

/// <summary>
/// Decorator that counts and times every process the engine starts, and bounds each one: a process
/// that outlives the timeout is killed (CliWrap kills on cancellation) and reported as a timeout.
/// </summary>
public sealed class CountingRunner(ICommandRunner inner, TimeSpan timeout) : ICommandRunner
{
    private readonly ConcurrentQueue<CommandRecord> _records = new();
    private long _origin = Stopwatch.GetTimestamp();
    private int _launches;

    /// <summary>Processes started since the last <see cref="Reset"/>.</summary>
    public int Launches => Volatile.Read(ref _launches);

    /// <summary>Finished processes since the last <see cref="Reset"/>, in the order they finished.</summary>
    public IReadOnlyList<CommandRecord> Records => [.. _records];

    /// <summary>What ran, as "iptables-legacy-save" or "ipset save" (ipset named with its command).</summary>
    public IReadOnlyList<string> Programs =>
        [.. Records.Select(r => r.Program == "ipset" && r.Arguments.Count > 0 ? $"ipset {r.Arguments[0]}" : r.Program)];

    public void Reset()
    {
        _records.Clear();
        Interlocked.Exchange(ref _launches, 0);
        _origin = Stopwatch.GetTimestamp();
    }

    public async Task<CommandOutput> RunAsync(string program, IReadOnlyList<string> arguments, string? standardInput, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _launches);
        using var bounded = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        bounded.CancelAfter(timeout);
        var start = Stopwatch.GetTimestamp();
        try
        {
            var output = await inner.RunAsync(program, arguments, standardInput, bounded.Token);
            _records.Enqueue(new CommandRecord(
                program,
                arguments,
                standardInput is null ? 0 : Encoding.UTF8.GetByteCount(standardInput),
                output,
                Stopwatch.GetElapsedTime(_origin, start).TotalMilliseconds,
                Stopwatch.GetElapsedTime(start).TotalMilliseconds));
            return output;
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new TimeoutException($"{program} {string.Join(' ', arguments)} did not finish within {timeout.TotalSeconds:F0} s and was killed");
        }
    }
}
