using System.Diagnostics;
using System.Globalization;
using System.Text.RegularExpressions;
using TsCgnat.TestSupport;

namespace TsCgnat.Bench.Repair;

/// <summary>What one stretch of pings saw: how many echo requests went out, how many got no answer.</summary>
internal sealed record PingCount(int Sent, int Answered, int Lost, int LongestRunLost)
{
    public static PingCount None { get; } = new(0, 0, 0, 0);
}

/// <summary>
/// <c>ping -D -i 0.016</c> from one namespace to one address (the lab's own; bounded by a count and a deadline, so a
/// bench that dies cannot leave it running for long), its replies read on a dedicated thread. Lost: the echo requests
/// from the first answered one (the bench waits for it before a step) to the last answered one that got no answer;
/// the ones after it were still in flight when the pinging stopped, which is only after the rules have been back and
/// quiet for the settle time.
/// </summary>
internal sealed partial class Pinger : IDisposable
{
    private readonly Process _process;
    private readonly Thread _reader;
    private readonly HashSet<int> _answered = [];
    private readonly Lock _lock = new();
    private int _transmitted = -1;

    public Pinger(string netns, string address, TimeSpan interval, TimeSpan limit)
    {
        var count = (int)Math.Ceiling(limit / interval);
        var start = new ProcessStartInfo("ip") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        string[] args =
        [
            "netns", "exec", netns, "ping", "-D", "-n", "-W", "1",
            "-i", (interval.TotalSeconds).ToString("0.###", CultureInfo.InvariantCulture),
            "-c", count.ToString(CultureInfo.InvariantCulture),
            "-w", Math.Ceiling(limit.TotalSeconds).ToString(CultureInfo.InvariantCulture),
            address,
        ];
        foreach (var arg in args)
        {
            start.ArgumentList.Add(arg);
        }

        // ip netns exec execs ping: the process is ping itself, so a SIGINT reaches it and it prints its summary.
        _process = Process.Start(start) ?? throw new BenchException("could not start ping");
        _process.ErrorDataReceived += (_, _) => { };
        _process.BeginErrorReadLine();
        _reader = new Thread(Read) { IsBackground = true, Name = "ping", Priority = ThreadPriority.AboveNormal };
        _reader.Start();
    }

    private int Answered
    {
        get
        {
            lock (_lock)
            {
                return _answered.Count;
            }
        }
    }

    /// <summary>Waits for the first answer: allowed traffic flows before the step. False at the deadline.</summary>
    public async Task<bool> WaitAnsweredAsync(TimeSpan timeout, CancellationToken cancellationToken)
    {
        var deadline = Clock.NowMs() + timeout.TotalMilliseconds;
        while (Answered == 0)
        {
            if (Clock.NowMs() > deadline || _process.HasExited)
            {
                return false;
            }

            await Task.Delay(10, cancellationToken);
        }

        return true;
    }

    /// <summary>Stops ping (SIGINT: it prints its summary) and counts.</summary>
    public PingCount Stop()
    {
        if (!_process.HasExited)
        {
            Sh.Run("kill", "-INT", _process.Id.ToString(CultureInfo.InvariantCulture));
            if (!_process.WaitForExit(5000))
            {
                _process.Kill();
            }
        }

        _process.WaitForExit();
        _reader.Join(5000);
        lock (_lock)
        {
            var first = _answered.Count == 0 ? 1 : _answered.Min();
            var last = _answered.Count == 0 ? 0 : _answered.Max();
            int lost = 0, run = 0, longest = 0;
            for (var seq = first; seq <= last; seq++)
            {
                if (_answered.Contains(seq))
                {
                    run = 0;
                    continue;
                }

                lost++;
                longest = Math.Max(longest, ++run);
            }

            return new PingCount(Math.Max(_transmitted, last) - first + 1, _answered.Count, lost, longest);
        }
    }

    public void Dispose()
    {
        try
        {
            if (!_process.HasExited)
            {
                _process.Kill();
                _process.WaitForExit(5000);
            }
        }
        catch (InvalidOperationException)
        {
            // already gone
        }

        _process.Dispose();
    }

    private void Read()
    {
        while (_process.StandardOutput.ReadLine() is { } line)
        {
            lock (_lock)
            {
                if (Reply().Match(line) is { Success: true } reply)
                {
                    _answered.Add(int.Parse(reply.Groups["seq"].Value, CultureInfo.InvariantCulture));
                }
                else if (Summary().Match(line) is { Success: true } summary)
                {
                    _transmitted = int.Parse(summary.Groups["sent"].Value, CultureInfo.InvariantCulture);
                }
            }
        }
    }

    [GeneratedRegex(@"^\[[0-9.]+\] \d+ bytes from .*icmp_seq=(?<seq>\d+) ")]
    private static partial Regex Reply();

    [GeneratedRegex(@"^(?<sent>\d+) packets transmitted, ")]
    private static partial Regex Summary();
}
