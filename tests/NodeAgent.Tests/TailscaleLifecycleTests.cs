using System.Diagnostics;
using System.Text.RegularExpressions;
using TsCgnat.TestSupport;
using Xunit.Abstractions;

namespace TsCgnat.NodeAgent.Tests;

/// <summary>
/// The agent (<c>run</c>) against each way tailscaled can manage the firewall: its iptables runner over
/// iptables-legacy or iptables-nft, and its native nftables runner, in mode on, nodivert, switching
/// between them, and with stateful filtering (issue 3). One class per runner, so that a run can pick a
/// runner by name (<c>--filter FullyQualifiedName~NftablesLifecycle</c>). They stay in the serial "netns"
/// collection: run side by side on two cores they were slower, not faster (legacy 5 -> 10.6 min, nft
/// 7.4 -> 13.1 min here), since the emulated tailscaled and the agent are bound by process starts on the CPU.
/// </summary>
[Collection("netns")]
public sealed class LegacyLifecycleTests(ITestOutputHelper output) : TailscaleLifecycleTests(output, "legacy");

/// <summary>tailscaled's iptables runner over iptables-nft (see <see cref="TailscaleLifecycleTests"/>).</summary>
[Collection("netns")]
public sealed class NftLifecycleTests(ITestOutputHelper output) : TailscaleLifecycleTests(output, "nft");

/// <summary>tailscaled's native nftables runner (see <see cref="TailscaleLifecycleTests"/>).</summary>
[Collection("netns")]
public sealed class NftablesLifecycleTests(ITestOutputHelper output) : TailscaleLifecycleTests(output, "nftables");

/// <summary>The lifecycle tests, for the runner named by <paramref name="backend"/> (legacy, nft or nftables).</summary>
public abstract partial class TailscaleLifecycleTests(ITestOutputHelper output, string backend) : IDisposable
{
    private const int Cycles = 20;
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    /// <summary>The issue's bound on how long the path may stay broken after tailscaled finished a rebuild.</summary>
    private static readonly TimeSpan BackWithin = TimeSpan.FromSeconds(1);

    private readonly TempDir _dir = new();

    public void Dispose()
    {
        _dir.Dispose();
        GC.SuppressFinalize(this);
    }

    /// <summary>The agent on u2. Legacy has no change events: its poll runs every 0.25 s here so that a repair
    /// fits the issue's 1 s bound with room to spare (the default is 1 s, and the bench measures it).</summary>
    private RunningAgent StartAgent(Lab lab, params string[] extra) => new(
    [
        "run", "--policy-file", _dir.File("seed.yaml", Policies.Seed), "--netns", lab.Ns("u2"), "--state-dir", _dir.Sub("state"),
        "--tailscale-socket", Path.Combine(_dir.Path, "no-tailscaled.sock"), "--resync-interval", "300", "--legacy-poll-interval", "0.25",
        .. extra,
    ]);

    [SkippableFact]
    public void In_mode_on_the_agent_keeps_u3_reachable_through_20_cycles_of_down_up_restart_and_crash()
    {
        Privileges.RequireNetns();
        using var lab = new Lab();
        using var tailscaled = new TailscaledEmulator(lab.Ns("u2"), backend);
        tailscaled.Run("start", "on");
        Assert.False(lab.Reaches("u2", Lab.U3), "without the agent, Tailscale's drop cuts u2 off from u3");

        using var agent = StartAgent(lab);
        agent.WaitFor(() => lab.Reaches("u2", Lab.U3), "u2 -> u3 once the agent runs", Patience);
        Assert.True(lab.Reaches("u4", Lab.U3), "u4 -> u3 through u2");
        Assert.Contains("strategy InChain", agent.Output, StringComparison.Ordinal);

        var pinger = new Pinger(lab.Ns("u2"), Lab.U3);
        var steps = new List<(string Name, DateTimeOffset Start, DateTimeOffset End)>();
        using (pinger)
        {
            for (var cycle = 1; cycle <= Cycles; cycle++)
            {
                foreach (var (step, commands) in new (string, string[][])[]
                {
                    ("down/up", [["down"], ["up"]]),
                    ("restart", [["restart"]]),
                    ("crash+start", [["crash"], ["start", "on"]]),
                })
                {
                    var start = DateTimeOffset.UtcNow;
                    foreach (var command in commands)
                    {
                        tailscaled.Run(command); // fails the test if tailscaled's start fails (with nft: because of us)
                    }

                    // The rebuild is done; the path must work again within the bound.
                    Assert.True(Probe(lab.Ns("u2"), Lab.U3, BackWithin),
                        $"cycle {cycle} {step}: u3 did not answer within {BackWithin.TotalSeconds} s after tailscaled finished; agent said:\n{agent.Output}");
                    steps.Add(($"{cycle}/{step}", start, DateTimeOffset.UtcNow));
                }

                Assert.True(lab.Reaches("u4", Lab.U3), $"u4 -> u3 after cycle {cycle}");
            }
        }

        output.WriteLine($"{backend}: echo requests from u2 to u3 (every 10 ms) lost per step: "
            + string.Join(", ", pinger.LostPer(steps).Select(s => $"{s.Name}: {s.Lost}")));
        output.WriteLine($"{backend}: {pinger.Replies} replies, {pinger.LostPer(steps).Sum(s => s.Lost)} lost in all");
        Assert.False(lab.Reaches("u2", Lab.U3Unlisted), "a source no policy allows is still dropped");
        output.WriteLine(string.Join('\n', agent.Output.Split('\n').Where(l => l.Contains("repaired drift", StringComparison.Ordinal)).TakeLast(5)));
    }

    [SkippableFact]
    public void Switching_nodivert_to_on_and_back_changes_the_strategy_and_leaves_nothing_stale()
    {
        // Auto: Indirect for the iptables runner in nodivert, never with the native nftables runner.
        var nodivert = backend == "nftables" ? "InChain" : "Indirect";
        const string on = "InChain";
        Privileges.RequireNetns();
        using var lab = new Lab();
        using var tailscaled = new TailscaledEmulator(lab.Ns("u2"), backend);
        tailscaled.Run("start", "nodivert");
        using var agent = StartAgent(lab);

        var steps = new[] { ("nodivert", nodivert), ("on", on), ("nodivert", nodivert) };
        for (var i = 0; i < steps.Length; i++)
        {
            var (mode, strategy) = steps[i];
            if (i > 0)
            {
                tailscaled.Run("set-mode", mode);
            }

            agent.WaitFor(() => Ours(lab) == Expected(strategy), $"mode {mode}: only the {strategy} rules", Patience);
            Assert.True(lab.Reaches("u2", Lab.U3), $"u2 -> u3 in mode {mode}");
            Assert.True(lab.Reaches("u4", Lab.U3), $"u4 -> u3 in mode {mode}");
        }

        static string Expected(string strategy) => strategy == "Indirect" ? "chains and hooks" : "exemptions in ts-*";
    }

    [SkippableFact]
    public void With_stateful_filtering_a_new_connection_from_u3_into_the_tailnet_is_dropped_and_replies_pass()
    {
        Privileges.RequireNetns();
        using var lab = new Lab();
        using var tailscaled = new TailscaledEmulator(lab.Ns("u2"), backend);
        tailscaled.Run(new Dictionary<string, string> { ["STATEFUL"] = "1" }, "start", "on");
        using var agent = StartAgent(lab);

        agent.WaitFor(() => lab.Reaches("u4", Lab.U3), "u4 -> u3 (the reply leaves u2 through the exemption)", Patience);
        Assert.False(lab.Reaches("u3", Lab.U4Tailnet), "a new connection from u3 into the tailnet stays dropped");
        Assert.True(lab.Reaches("u2", Lab.U3), "u2 -> u3 (input path)");
        var forward = backend == "nftables"
            ? lab.Exec("u2", "nft", "list", "chain", "ip", "filter", "ts-forward")
            : lab.Exec("u2", $"iptables-{backend}", "-w", "-S", "ts-forward");
        Assert.Contains(backend == "nftables" ? "ct state established,related" : "--ctstate RELATED,ESTABLISHED", forward, StringComparison.Ordinal);
    }

    /// <summary>Which strategy's rules of ours are on u2 (and only those), or what is mixed.</summary>
    private string Ours(Lab lab)
    {
        var text = backend == "nftables"
            ? lab.Exec("u2", "nft", "list", "ruleset")
            : lab.Exec("u2", $"iptables-{backend}-save") + lab.Exec("u2", $"ip6tables-{backend}-save");
        var chains = text.Contains("TSCGNAT-INPUT", StringComparison.Ordinal) && text.Contains("ts-cgnat hook", StringComparison.Ordinal);
        var exemptions = text.Contains("ts-cgnat exemption", StringComparison.Ordinal);
        return (chains, exemptions) switch
        {
            (true, false) => "chains and hooks",
            (false, true) => "exemptions in ts-*",
            (true, true) => "both (stale rules left)",
            _ => "nothing",
        };
    }

    /// <summary>True when <paramref name="address"/> answers one of the short probes sent within <paramref name="within"/>.</summary>
    private static bool Probe(string netns, string address, TimeSpan within)
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

    /// <summary>
    /// <c>ping -D -i 0.01</c> running in a namespace for the whole test. Losses are counted afterwards from
    /// the gaps in the answered sequence numbers (ping's output may come in bursts), each gap placed in
    /// time by the answers around it.
    /// </summary>
    private sealed partial class Pinger : IDisposable
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
        public List<(string Name, int Lost)> LostPer(IReadOnlyList<(string Name, DateTimeOffset Start, DateTimeOffset End)> steps)
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

            var culture = System.Globalization.CultureInfo.InvariantCulture;
            var raw = int.Parse(match.Groups[2].Value, culture);
            lock (_answered)
            {
                // icmp_seq is 16 bits and wraps after 65,535 requests (11 minutes at 10 ms): count the wraps so that
                // a long run under load does not fold late answers onto early ones.
                if (raw < _lastRaw - 32_768)
                {
                    _wraps++;
                }

                _lastRaw = raw;
                _answered[(_wraps * 65_536L) + raw] = double.Parse(match.Groups[1].Value, culture);
            }
        }

        [GeneratedRegex(@"^\[(\d+\.\d+)\] \d+ bytes from .*icmp_seq=(\d+)")]
        private static partial Regex Answer();
    }
}
