using System.Diagnostics;
using System.Text.RegularExpressions;
using TsCgnat.TestSupport;
using Xunit.Abstractions;

namespace TsCgnat.NodeAgent.Tests;

/// <summary>
/// The agent (<c>run</c>) against each way tailscaled can manage the firewall: its iptables runner over
/// iptables-legacy or iptables-nft, and its native nftables runner, in mode on, nodivert, switching
/// between them, and with stateful filtering (issue 3).
/// </summary>
[Collection("netns")]
public sealed partial class TailscaleLifecycleTests(ITestOutputHelper output) : IDisposable
{
    private const int Cycles = 20;
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    /// <summary>The issue's bound on how long the path may stay broken after tailscaled finished a rebuild.</summary>
    private static readonly TimeSpan BackWithin = TimeSpan.FromSeconds(1);

    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    /// <summary>The agent on u2. Legacy has no change events: its poll runs every 0.25 s here so that a repair
    /// fits the issue's 1 s bound with room to spare (the default is 1 s, and the bench measures it).</summary>
    private RunningAgent StartAgent(Lab lab, params string[] extra) => new(
    [
        "run", "--policy-file", _dir.File("seed.yaml", Policies.Seed), "--netns", lab.Ns("u2"), "--state-dir", _dir.Sub("state"),
        "--tailscale-socket", Path.Combine(_dir.Path, "no-tailscaled.sock"), "--resync-interval", "300", "--legacy-poll-interval", "0.25",
        .. extra,
    ]);

    [SkippableTheory]
    [InlineData("legacy")]
    [InlineData("nft")]
    [InlineData("nftables")]
    public void In_mode_on_the_agent_keeps_u3_reachable_through_20_cycles_of_down_up_restart_and_crash(string backend)
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

        using var pinger = new Pinger(lab.Ns("u2"), Lab.U3);
        var losses = new List<string>();
        for (var cycle = 1; cycle <= Cycles; cycle++)
        {
            foreach (var (step, commands) in new (string, string[][])[]
            {
                ("down/up", [["down"], ["up"]]),
                ("restart", [["restart"]]),
                ("crash+start", [["crash"], ["start", "on"]]),
            })
            {
                var lostBefore = pinger.Lost;
                foreach (var command in commands)
                {
                    tailscaled.Run(command); // fails the test if tailscaled's start fails (with nft: because of us)
                }

                // The rebuild is done; the path must work again within the bound.
                var done = pinger.LastSent;
                Assert.True(pinger.WaitForReplyAfter(done, BackWithin),
                    $"cycle {cycle} {step}: no reply from u3 within {BackWithin.TotalSeconds} s after tailscaled finished; agent said:\n{agent.Output}");
                losses.Add($"{cycle}/{step}: {pinger.Lost - lostBefore}");
            }

            Assert.True(lab.Reaches("u4", Lab.U3), $"u4 -> u3 after cycle {cycle}");
        }

        Assert.False(lab.Reaches("u2", Lab.U3Unlisted), "a source no policy allows is still dropped");
        output.WriteLine($"{backend}: packets lost per step (u2 pings u3 every 10 ms): {string.Join(", ", losses)}");
        output.WriteLine(string.Join('\n', agent.Output.Split('\n').Where(l => l.Contains("repaired drift", StringComparison.Ordinal)).TakeLast(5)));
    }

    [SkippableTheory]
    [InlineData("legacy", "Indirect", "InChain")]
    [InlineData("nft", "Indirect", "InChain")]
    [InlineData("nftables", "InChain", "InChain")]
    public void Switching_nodivert_to_on_and_back_changes_the_strategy_and_leaves_nothing_stale(string backend, string nodivert, string on)
    {
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

            agent.WaitFor(() => Ours(lab, backend) == Expected(strategy), $"mode {mode}: only the {strategy} rules", Patience);
            Assert.True(lab.Reaches("u2", Lab.U3), $"u2 -> u3 in mode {mode}");
            Assert.True(lab.Reaches("u4", Lab.U3), $"u4 -> u3 in mode {mode}");
        }

        static string Expected(string strategy) => strategy == "Indirect" ? "chains and hooks" : "exemptions in ts-*";
    }

    [SkippableTheory]
    [InlineData("legacy")]
    [InlineData("nft")]
    [InlineData("nftables")]
    public void With_stateful_filtering_a_new_connection_from_u3_into_the_tailnet_is_dropped_and_replies_pass(string backend)
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
    private static string Ours(Lab lab, string backend)
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

    /// <summary><c>ping -O -i 0.01</c> running in a namespace: which echo requests were answered, which were not.</summary>
    private sealed partial class Pinger : IDisposable
    {
        private readonly Process _process;
        private long _lastReply = -1;
        private long _lastSent = -1;
        private long _lost;

        public Pinger(string netns, string address)
        {
            var info = new ProcessStartInfo("ip") { RedirectStandardOutput = true, RedirectStandardError = true };
            foreach (var arg in new[] { "netns", "exec", netns, "ping", "-n", "-O", "-i", "0.01", "-W", "1", address })
            {
                info.ArgumentList.Add(arg);
            }

            _process = Process.Start(info)!;
            _process.OutputDataReceived += (_, e) => OnLine(e.Data);
            _process.BeginOutputReadLine();
        }

        public long Lost => Interlocked.Read(ref _lost);

        public long LastSent => Interlocked.Read(ref _lastSent);

        public bool WaitForReplyAfter(long seq, TimeSpan patience)
        {
            var clock = Stopwatch.StartNew();
            while (Interlocked.Read(ref _lastReply) <= seq)
            {
                if (clock.Elapsed > patience)
                {
                    return false;
                }

                Thread.Sleep(5);
            }

            return true;
        }

        public void Dispose()
        {
            _process.Kill();
            _process.WaitForExit();
            _process.Dispose();
        }

        private void OnLine(string? line)
        {
            if (line is null || Seq().Match(line) is not { Success: true } match)
            {
                return;
            }

            var seq = long.Parse(match.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
            if (line.StartsWith("no answer yet", StringComparison.Ordinal))
            {
                Interlocked.Increment(ref _lost);
            }
            else
            {
                Interlocked.Exchange(ref _lastReply, Math.Max(seq, Interlocked.Read(ref _lastReply)));
            }

            Interlocked.Exchange(ref _lastSent, Math.Max(seq, Interlocked.Read(ref _lastSent)));
        }

        [GeneratedRegex(@"icmp_seq=(\d+)")]
        private static partial Regex Seq();
    }
}
