using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;

namespace TsCgnat.TestSupport;

/// <summary>
/// The tailscaled lifecycle steps that rebuild its chains in mode on (docs/tailscale.md section 2), as
/// emulator commands. One table for the lifecycle tests (tests/NodeAgent.Tests, a few rounds of each step) and
/// the lifecycle soak (bench/Lifecycle, 20 cycles of all of them).
/// </summary>
public static class TailscaleLifecycle
{
    /// <summary>The bound on how long the path may stay broken after tailscaled finished a rebuild (issue 3).</summary>
    public static readonly TimeSpan BackWithin = TimeSpan.FromSeconds(1);

    /// <summary>
    /// down then up: tailscaled removes its jumps, flushes and deletes ts-input/ts-forward, then builds them again;
    /// restart: the same within one command; crash then start: the chains stay behind (no clean-up) and the next
    /// start deletes and rebuilds them.
    /// </summary>
    public static IReadOnlyList<(string Name, string[][] Commands)> Steps { get; } =
    [
        ("down/up", [["down"], ["up"]]),
        ("restart", [["restart"]]),
        ("crash+start", [["crash"], ["start", "on"]]),
    ];

    public static string[][] Commands(string step) => Steps.Single(s => s.Name == step).Commands;

    /// <summary>True when <paramref name="address"/> answers one of the short probes sent within <paramref name="within"/>.</summary>
    public static bool Probe(string netns, string address, TimeSpan within)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < within)
        {
            if (Sh.Run("ip", "netns", "exec", netns, "ping", "-n", "-c", "1", "-W", "0.2", address).ExitCode == 0)
            {
                return true;
            }
        }

        return false;
    }
}

/// <summary>A lifecycle step and when it ran: the echo requests sent in between count against it.</summary>
public sealed record TimedStep(string Name, DateTimeOffset Start, DateTimeOffset End);

/// <summary>
/// <c>ping -D -i 0.01</c> running in a namespace for as long as it lives. Losses are counted afterwards from
/// the gaps in the answered sequence numbers (ping's output may come in bursts), each gap placed in
/// time by the answers around it.
/// </summary>
public sealed partial class Pinger : IDisposable
{
    private static readonly TimeSpan Interval = TimeSpan.FromMilliseconds(10);
    private readonly Process _process;
    private readonly SortedDictionary<long, double> _answered = [];
    private int _lastRaw;
    private int _wraps;

    public Pinger(string netns, string address)
    {
        var info = new ProcessStartInfo("ip") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in new[] { "netns", "exec", netns, "stdbuf", "-oL", "ping", "-n", "-D", "-i", "0.01", "-W", "1", address })
        {
            info.ArgumentList.Add(arg);
        }

        _process = Process.Start(info)!;
        _process.OutputDataReceived += (_, e) => OnLine(e.Data);
        _process.BeginOutputReadLine();
    }

    public int Replies
    {
        get
        {
            lock (_answered)
            {
                return _answered.Count;
            }
        }
    }

    /// <summary>Unanswered requests per step, each attributed to the step during which it was sent.</summary>
    public List<(string Name, int Lost)> LostPer(IReadOnlyList<TimedStep> steps)
    {
        var lost = steps.Select(s => (s.Name, Lost: 0)).ToList();
        lock (_answered)
        {
            long? previous = null;
            double previousAt = 0;
            foreach (var (seq, at) in _answered)
            {
                for (var missing = previous + 1 ?? seq; missing < seq; missing++)
                {
                    var sent = DateTimeOffset.FromUnixTimeMilliseconds((long)(previousAt * 1000 + (missing - previous!.Value) * Interval.TotalMilliseconds));
                    var index = steps.ToList().FindIndex(s => sent >= s.Start && sent <= s.End);
                    if (index >= 0)
                    {
                        lost[index] = (lost[index].Name, lost[index].Lost + 1);
                    }
                }

                (previous, previousAt) = (seq, at);
            }
        }

        return lost;
    }

    public void Dispose()
    {
        _process.Kill(entireProcessTree: true);
        _process.WaitForExit();
        _process.Dispose();
    }

    private void OnLine(string? line)
    {
        if (line is null || Answer().Match(line) is not { Success: true } match)
        {
            return;
        }

        var raw = int.Parse(match.Groups[2].Value, CultureInfo.InvariantCulture);
        lock (_answered)
        {
            // icmp_seq is 16 bits and wraps after 65,535 requests (11 minutes at 10 ms): count the wraps so that
            // a long run under load does not fold late answers onto early ones.
            if (raw < _lastRaw - 32_768)
            {
                _wraps++;
            }

            _lastRaw = raw;
            _answered[(_wraps * 65_536L) + raw] = double.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
        }
    }

    [GeneratedRegex(@"^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+)")]
    private static partial Regex Answer();
}
