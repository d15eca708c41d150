using System.Diagnostics;
using System.Globalization;
using TsCgnat.TestSupport;

namespace TsCgnat.Bench.Repair;

/// <summary>Wall-clock milliseconds: one clock for the bench, its observers and the shell loop ($EPOCHREALTIME).</summary>
internal static class Clock
{
    public static double NowMs() => (DateTime.UtcNow - DateTime.UnixEpoch).TotalMilliseconds;
}

/// <summary>
/// Watches our rules from outside the agent and records every change in a <see cref="Timeline"/>.
/// Its process runs inside the namespace and is read line by line on a dedicated thread, so a line is
/// timestamped as soon as it arrives and the bench's own async work cannot delay it.
/// </summary>
internal abstract class Observer : IDisposable
{
    private readonly Process _process;
    private readonly Thread _reader;

    protected Observer(string netns, string what, params string[] command)
    {
        What = what;
        var start = new ProcessStartInfo("ip") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in (string[])["netns", "exec", netns, .. command])
        {
            start.ArgumentList.Add(arg);
        }

        _process = Process.Start(start) ?? throw new BenchException($"could not start {what}");
        _process.ErrorDataReceived += (_, e) =>
        {
            if (e.Data is { Length: > 0 } line)
            {
                LastError = line;
            }
        };
        _process.BeginErrorReadLine();
        _reader = new Thread(Read) { IsBackground = true, Name = what, Priority = ThreadPriority.Highest };
        _reader.Start();
    }

    public string What { get; }

    public Timeline Timeline { get; } = new();

    /// <summary>When the last line arrived (any line, also one that changed nothing that matters).</summary>
    public double LastLineMs { get; private set; }

    public string? LastError { get; private set; }

    public bool Exited => _process.HasExited;

    /// <summary>Returns once the observer has seen the table as it is now; every change after that is recorded.</summary>
    public abstract Task WaitReadyAsync(CancellationToken cancellationToken);

    protected abstract void OnLine(double ms, string line);

    private void Read()
    {
        while (_process.StandardOutput.ReadLine() is { } line)
        {
            var ms = Clock.NowMs();
            LastLineMs = ms;
            OnLine(ms, line);
        }
    }

    public void Dispose()
    {
        try
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit(5000);
        }
        catch (InvalidOperationException)
        {
            // already gone
        }

        _reader.Join(2000);
        _process.Dispose();
    }
}

/// <summary>
/// <c>nft -a monitor</c> in the namespace: every change to nf_tables, as it happens. The state is recorded at the end
/// of each transaction (the <c># new generation</c> line nft prints after its events; <c>monitor ruleset</c> leaves
/// it out), so the rules of one transaction, which the kernel swaps in at once, never show half applied.
/// </summary>
internal sealed class NftMonitor : Observer
{
    private const string ReadyTable = "tsrbready";
    private readonly NftFilterTable _table = new();
    private readonly Lock _lock = new();
    private readonly string _netns;
    private volatile bool _ready;

    public NftMonitor(string netns) : base(netns, "nft monitor", "nft", "-a", "monitor")
    {
        _netns = netns;
    }

    protected override void OnLine(double ms, string line)
    {
        if (line.StartsWith($"add table ip {ReadyTable}", StringComparison.Ordinal))
        {
            _ready = true;
        }

        lock (_lock)
        {
            var endOfTransaction = line.StartsWith("# new generation ", StringComparison.Ordinal);
            if (!endOfTransaction)
            {
                _table.Apply(line);
            }

            if (endOfTransaction || Timeline.Latest is null)
            {
                Timeline.Record(ms, _table.State);
            }
        }
    }

    /// <summary>
    /// Waits until the monitor is subscribed: nft prints nothing when it starts, so a throwaway table is added
    /// (and deleted) until its event comes through; then takes in what the table already holds (tailscaled may have
    /// written it before the monitor started). Done before the agent starts and while tailscaled is settled, so
    /// no change falls between the listing and the events.
    /// </summary>
    public override async Task WaitReadyAsync(CancellationToken cancellationToken)
    {
        for (var attempt = 0; !_ready; attempt++)
        {
            if (attempt == 200 || Exited)
            {
                throw new BenchException($"nft monitor did not start: {LastError}");
            }

            Sh.Run("ip", "netns", "exec", _netns, "nft", "add", "table", "ip", ReadyTable);
            Sh.Run("ip", "netns", "exec", _netns, "nft", "delete", "table", "ip", ReadyTable);
            await Task.Delay(100, cancellationToken);
        }

        var listing = Sh.Run("ip", "netns", "exec", _netns, "nft", "-a", "list", "table", "ip", "filter");
        lock (_lock)
        {
            if ((listing.Succeeded && _table.Seed(listing.StdOut)) || Timeline.Latest is null)
            {
                Timeline.Record(Clock.NowMs(), _table.State);
            }
        }
    }
}

/// <summary>
/// iptables-legacy has no change events, so a shell loop in the namespace runs <c>iptables-legacy-save -t filter</c>
/// back to back. Before each save it prints <c>@ $EPOCHREALTIME</c> (a bash builtin: no process, microseconds), so a
/// snapshot is known to show the state at some moment between its own mark and the next one: that interval is the
/// sampling resolution, and it is recorded for every sample.
/// </summary>
internal sealed class LegacySampler : Observer
{
    private const string Loop = "while :; do echo \"@ $EPOCHREALTIME\"; iptables-legacy-save -t filter; done";
    private readonly List<string> _lines = [];
    private readonly List<double> _periods = [];
    private readonly Lock _lock = new();
    private double? _mark;

    public LegacySampler(string netns) : base(netns, "iptables-legacy-save loop", "bash", "-c", Loop)
    {
    }

    /// <summary>Sampling intervals (ms from one snapshot's start to the next), for the resolution in the report.</summary>
    public IReadOnlyList<double> Periods
    {
        get
        {
            lock (_lock)
            {
                return [.. _periods];
            }
        }
    }

    public void ClearPeriods()
    {
        lock (_lock)
        {
            _periods.Clear();
        }
    }

    protected override void OnLine(double ms, string line)
    {
        if (!line.StartsWith("@ ", StringComparison.Ordinal))
        {
            _lines.Add(line);
            return;
        }

        var mark = double.Parse(line[2..], NumberStyles.Float, CultureInfo.InvariantCulture) * 1000;
        if (_mark is { } previous)
        {
            // The snapshot between the previous mark and this one is complete; date it by its own start.
            Timeline.Record(previous, LegacySave.Parse(_lines));
            lock (_lock)
            {
                _periods.Add(mark - previous);
            }
        }

        _lines.Clear();
        _mark = mark;
    }

    public override async Task WaitReadyAsync(CancellationToken cancellationToken)
    {
        for (var attempt = 0; Timeline.Latest is null; attempt++)
        {
            if (attempt == 300 || Exited)
            {
                throw new BenchException($"the iptables-legacy-save loop did not start: {LastError}");
            }

            await Task.Delay(100, cancellationToken);
        }
    }
}
