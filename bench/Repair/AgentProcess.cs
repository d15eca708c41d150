using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using TsCgnat.TestSupport;

namespace TsCgnat.Bench.Repair;

/// <summary>One repair as the agent logged it.</summary>
internal sealed record LoggedRepair(double AtMs, string Cause, double LatencyMs);

/// <summary>
/// The real <c>ts-cgnat-agent run</c>, started outside the namespace with <c>--netns</c> (as the lab tests run it),
/// its log kept and its "repaired drift" lines parsed.
/// </summary>
internal sealed partial class AgentProcess : IDisposable
{
    private readonly Process _process;
    private readonly List<LoggedRepair> _repairs = [];
    private readonly Queue<string> _tail = new();
    private readonly List<string> _lines = [];
    private readonly Lock _lock = new();

    public AgentProcess(string program, IEnumerable<string> arguments)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in arguments)
        {
            start.ArgumentList.Add(arg);
        }

        _process = Process.Start(start) ?? throw new BenchException($"could not start {program}");
        _process.OutputDataReceived += (_, e) => OnLine(e.Data);
        _process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public bool Exited => _process.HasExited;

    public IReadOnlyList<LoggedRepair> Repairs
    {
        get
        {
            lock (_lock)
            {
                return [.. _repairs];
            }
        }
    }

    /// <summary>The agent's last log lines, for a failure message.</summary>
    public string Tail
    {
        get
        {
            lock (_lock)
            {
                return string.Join('\n', _tail);
            }
        }
    }

    public int FailedReconciles { get; private set; }

    /// <summary>How many lines the agent has logged so far (to read what it logs from here on).</summary>
    public int LineCount
    {
        get
        {
            lock (_lock)
            {
                return _lines.Count;
            }
        }
    }

    public IReadOnlyList<string> LinesSince(int index)
    {
        lock (_lock)
        {
            return [.. _lines.Skip(index)];
        }
    }

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_lock)
        {
            if (_tail.Count == 40)
            {
                _tail.Dequeue();
            }

            _tail.Enqueue(line);
            _lines.Add(line);
            if (RepairLine().Match(line) is { Success: true } m)
            {
                _repairs.Add(new LoggedRepair(Clock.NowMs(), m.Groups["cause"].Value, double.Parse(m.Groups["ms"].Value, CultureInfo.InvariantCulture)));
            }

            if (line.Contains("reconcile failed", StringComparison.Ordinal))
            {
                FailedReconciles++;
            }
        }
    }

    /// <summary>SIGTERM (the agent leaves its rules and stops its nft monitor), then a kill of the whole tree if it hangs.</summary>
    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
            {
                Sh.Run("kill", "-TERM", _process.Id.ToString(CultureInfo.InvariantCulture));
                if (!_process.WaitForExit(10_000))
                {
                    _process.Kill(entireProcessTree: true);
                    _process.WaitForExit(5000);
                }
            }
        }
        catch (InvalidOperationException)
        {
            // already gone
        }

        _process.Dispose();
    }

    // HostModeAgent: "repaired drift ({Reason}): rules back {Latency:F1} ms after the change was seen"
    [GeneratedRegex(@"repaired drift \((?<cause>[^)]*)\): rules back (?<ms>[0-9.]+) ms after the change was seen")]
    private static partial Regex RepairLine();
}
