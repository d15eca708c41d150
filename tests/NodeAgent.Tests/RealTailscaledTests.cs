using System.Diagnostics;
using TsCgnat.TestSupport;
using Xunit.Abstractions;

namespace TsCgnat.NodeAgent.Tests;

// The seed scenario on the real tailscaled (tests/fixtures/tailnet.sh): one class per runner x mode, each with one
// lab and one agent for all of its cases (the class fixture), each lifecycle step one case that leaves the lab as
// it found it. Serial, in the "netns" collection, like the emulator's lifecycle tests: real daemons and the agent
// are bound by the two cores, and side by side they were slower there (not measured for these). The 30 cases took
// 5.9 and 6.1 min in two runs here: per runner x mode 17-35 s for the lab, the baseline and the agent's start, then
// 5-12 s a step (scripts/test.sh prints each from the TRX files).
[Collection("netns")]
public sealed class RealLegacyOnTests(RealLegacyOn lab, ITestOutputHelper output) : RealTailscaledTests(lab, output), IClassFixture<RealLegacyOn>;

[Collection("netns")]
public sealed class RealLegacyNodivertTests(RealLegacyNodivert lab, ITestOutputHelper output) : RealTailscaledTests(lab, output), IClassFixture<RealLegacyNodivert>;

[Collection("netns")]
public sealed class RealNftOnTests(RealNftOn lab, ITestOutputHelper output) : RealTailscaledTests(lab, output), IClassFixture<RealNftOn>;

[Collection("netns")]
public sealed class RealNftNodivertTests(RealNftNodivert lab, ITestOutputHelper output) : RealTailscaledTests(lab, output), IClassFixture<RealNftNodivert>;

[Collection("netns")]
public sealed class RealNftablesOnTests(RealNftablesOn lab, ITestOutputHelper output) : RealTailscaledTests(lab, output), IClassFixture<RealNftablesOn>;

[Collection("netns")]
public sealed class RealNftablesNodivertTests(RealNftablesNodivert lab, ITestOutputHelper output) : RealTailscaledTests(lab, output), IClassFixture<RealNftablesNodivert>;

// Without a reachable LocalAPI the agent tells mode on from nodivert by the firewall alone, where a mode-on stop and start
// look like nodivert for a moment (its jumps go first and come last): iptables-nft in mode on is where the agent, tried
// that way, flipped its strategy at every restart.
[Collection("netns")]
public sealed class RealNftOnWithoutLocalApiTests(RealNftOnWithoutLocalApi lab, ITestOutputHelper output) : RealTailscaledTests(lab, output), IClassFixture<RealNftOnWithoutLocalApi>;

public sealed class RealNftOnWithoutLocalApi() : RealTailnetFixture("nft", "on", localApi: false);

public sealed class RealLegacyOn() : RealTailnetFixture("legacy", "on");

public sealed class RealLegacyNodivert() : RealTailnetFixture("legacy", "nodivert");

public sealed class RealNftOn() : RealTailnetFixture("nft", "on");

public sealed class RealNftNodivert() : RealTailnetFixture("nft", "nodivert");

public sealed class RealNftablesOn() : RealTailnetFixture("nftables", "on");

public sealed class RealNftablesNodivert() : RealTailnetFixture("nftables", "nodivert");

/// <summary>A lifecycle step as users trigger it, as tailnet.sh commands on u2.</summary>
public static class RealSteps
{
    public const string Restart = "restart";
    public const string DownUp = "down+up";
    public const string CrashStart = "crash+start";
    public const string Switch = "mode switch and back";

    public static IReadOnlyList<string> All { get; } = [Restart, DownUp, CrashStart, Switch];

    public static string Other(string mode) => mode == "on" ? "nodivert" : "on";

    /// <summary>The phases of a step: each a list of commands, after each phase the seed must hold in its mode.</summary>
    public static IReadOnlyList<(string Mode, string[][] Commands)> Phases(string step, string mode) => step switch
    {
        Restart => [(mode, [["restart"]])],
        DownUp => [(mode, [["down"], ["up"]])],
        CrashStart => [(mode, [["crash"], ["start"]])],
        Switch => [(Other(mode), [["set-mode", Other(mode)]]), (mode, [["set-mode", mode]])],
        _ => throw new ArgumentOutOfRangeException(nameof(step), step, "no such step"),
    };
}

/// <summary>
/// One lab on the real tailscaled for one runner x mode: built when the first case needs it, then the baseline (every
/// step without the agent, what tailscaled logs on its own), then the agent on u2 for the rest of the cases.
/// </summary>
/// <param name="localApi">Whether the agent is given tailscaled's LocalAPI socket (false: a path where there is none).</param>
public abstract class RealTailnetFixture(string runner, string mode, bool localApi = true) : IDisposable
{
    private readonly TempDir _dir = new();
    private readonly Lock _lock = new();
    private Tailnet? _lab;
    private RunningAgent? _agent;
    private string? _broken;

    public string Runner => runner;

    public string Mode => mode;

    /// <summary>What each step logged without the agent (error-like lines), how long it took, and the seed then.</summary>
    public Dictionary<string, BaselineStep> Baseline { get; } = [];

    public TimeSpan Setup { get; private set; }

    public Tailnet Lab => _lab ?? throw new InvalidOperationException("the lab is not built");

    public RunningAgent Agent => _agent ?? throw new InvalidOperationException("the agent does not run");

    public string AgentOutput => _agent?.Output ?? "";

    /// <summary>
    /// True when tailscaled's CGNAT drop is in force in this mode, which our exemptions then punch through. The native
    /// nftables runner in nodivert leaves its chains uncalled: nothing drops, and the agent is to write nothing and say
    /// so (the agent's design for that case: refuse, with a warning).
    /// </summary>
    public static bool DropInForce(string runner, string mode) => runner != "nftables" || mode == "on";

    /// <summary>The lab, baseline and agent, built once; a build that failed fails every case with its reason.</summary>
    public void Ensure(ITestOutputHelper output)
    {
        lock (_lock)
        {
            if (_broken is not null)
            {
                throw new InvalidOperationException($"the {runner}/{mode} lab is broken: {_broken}");
            }

            if (_agent is not null)
            {
                return;
            }

            var clock = Stopwatch.StartNew();
            try
            {
                _lab = new Tailnet(runner, mode);
                output.WriteLine($"{runner}/{mode}: lab up in {clock.Elapsed.TotalSeconds:F1} s");
                RunBaseline(output);
                var agentClock = Stopwatch.StartNew();
                StartAgent();
                output.WriteLine($"{runner}/{mode}: the agent's first pass done {agentClock.Elapsed.TotalSeconds:F1} s after its start:\n  "
                    + string.Join("\n  ", AgentOutput.Split('\n').Take(8)));
                Setup = clock.Elapsed;
                output.WriteLine($"{runner}/{mode}: lab, baseline and agent ready in {Setup.TotalSeconds:F1} s");
            }
            catch (Exception e)
            {
                _broken = e.Message;
                throw;
            }
        }
    }

    /// <summary>Marks the lab unusable for the cases after this one (a step left it in a state no case starts from).</summary>
    public void Break(string why)
    {
        lock (_lock)
        {
            _broken ??= why;
        }
    }

    public RunningAgent RestartAgent()
    {
        _agent?.Dispose();
        _agent = null;
        StartAgent();
        return _agent!;
    }

    public void Dispose()
    {
        _agent?.Dispose();
        _lab?.Dispose();
        _dir.Dispose();
        GC.SuppressFinalize(this);
    }

    private void RunBaseline(ITestOutputHelper output)
    {
        foreach (var step in RealSteps.All)
        {
            var offset = Lab.LogLength("u2");
            var clock = Stopwatch.StartNew();
            foreach (var (_, commands) in RealSteps.Phases(step, mode))
            {
                foreach (var command in commands)
                {
                    var result = Lab.Step("u2", command);
                    Assert.True(result.Succeeded, $"baseline {step}: tailnet.sh {string.Join(' ', command)} failed without the agent:\n{result.StdErr}");
                }
            }

            var took = clock.Elapsed;
            var u3 = Lab.Reaches("u2", Tailnet.U3);
            var unlisted = Lab.Reaches("u2", Tailnet.U3Unlisted);
            var log = Lab.LogSince("u2", offset);
            Baseline[step] = new BaselineStep(took, TailscaledLog.ErrorLike(log), TailscaledLog.Unexplained(log), u3, unlisted);
            output.WriteLine($"{runner}/{mode}: baseline {step} (no agent) took {took.TotalSeconds:F1} s, {Baseline[step].ErrorLike.Count} error-like lines, all allowed: {Baseline[step].Unexplained.Count == 0}");
        }
    }

    private void StartAgent()
    {
        _agent = new RunningAgent(
            "run", "--policy-file", _dir.File("seed.yaml", Policies.Seed), "--netns", Lab.Ns("u2"), "--state-dir", _dir.Sub("state"),
            "--tailscale-socket", localApi ? Lab.Socket("u2") : Path.Combine(_dir.Path, "no-tailscaled.sock"), "--resync-interval", "300", "--legacy-poll-interval", "0.25");
        var agent = _agent;
        if (DropInForce(runner, mode))
        {
            agent.WaitFor(() => Lab.Reaches("u2", Tailnet.U3) && agent.Output.Contains("reconciled (", StringComparison.Ordinal),
                $"{runner}/{mode}: u2 -> u3 once the agent runs, and its first pass logged", TimeSpan.FromSeconds(60));
        }
        else
        {
            // Nothing to see in the traffic: the first pass is logged as a write or, refused, as a warning.
            agent.WaitFor(() => agent.Output.Contains("reconciled (", StringComparison.Ordinal) || agent.Output.Contains("warn:", StringComparison.Ordinal),
                $"{runner}/{mode}: the agent's first pass logged (a write or a warning)", TimeSpan.FromSeconds(60));
        }
    }
}

public sealed record BaselineStep(TimeSpan Took, IReadOnlyList<string> ErrorLike, IReadOnlyList<string> Unexplained, bool U3Answered, bool UnlistedAnswered);

/// <summary>
/// The seed scenario on the real tailscaled, for one runner x mode: with the agent running on u2, after each lifecycle
/// step u2 and u3 reach each other, u2 forwards u3's traffic into the tailnet, 100.64.9.9 stays dropped, tailscaled
/// still runs and logs no error the baseline does not explain, and the agent wrote no more than the step needed.
/// </summary>
public abstract class RealTailscaledTests(RealTailnetFixture fixture, ITestOutputHelper output)
{
    /// <summary>Only keeps a broken agent or daemon from hanging the run; a repair takes about a second here.</summary>
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    public static TheoryData<string> Steps { get; } = [.. RealSteps.All];

    private string Runner => fixture.Runner;

    private string Mode => fixture.Mode;

    [SkippableFact]
    public void Without_the_agent_every_step_logs_only_what_the_allow_list_explains()
    {
        RealTailscale.RequireAssets();
        fixture.Ensure(output);
        foreach (var (step, baseline) in fixture.Baseline)
        {
            output.WriteLine($"{Runner}/{Mode} {step}: {baseline.Took.TotalSeconds:F1} s, u3 answered u2: {baseline.U3Answered}, 100.64.9.9 answered u2: {baseline.UnlistedAnswered}");
            foreach (var line in baseline.ErrorLike)
            {
                output.WriteLine("  " + line);
            }
        }

        var unexplained = fixture.Baseline.SelectMany(b => b.Value.Unexplained.Select(l => $"{b.Key}: {l}")).ToList();
        Assert.True(unexplained.Count == 0, "tailscaled logged, without the agent, error-like lines the allow-list does not explain "
            + "(extend TailscaledLog.Allowed with the reason, or find what in the lab causes them):\n" + string.Join('\n', unexplained));
        // Without the agent, tailscaled's drop is what the seed scenario is about: in mode on it cuts u3 off; in nodivert
        // nothing calls it.
        Assert.All(fixture.Baseline, b => Assert.True(b.Value.U3Answered == (Mode != "on"), $"{b.Key}: u3 answered u2 without the agent: {b.Value.U3Answered}"));
    }

    [SkippableTheory]
    [MemberData(nameof(Steps))]
    public void With_the_agent_the_seed_holds_after(string step)
    {
        RealTailscale.RequireAssets();
        fixture.Ensure(output);
        var lab = fixture.Lab;
        var agent = fixture.Agent;
        Assert.False(agent.Process.HasExited, $"the agent exited before {step}:\n{agent.Output}");
        Assert.True(lab.Settled("u2"), $"u2 not settled in mode {Mode} before {step}");
        var ours = OwnRules(lab);
        var total = Stopwatch.StartNew();
        var timings = new List<string>();
        try
        {
            foreach (var (mode, commands) in RealSteps.Phases(step, Mode))
            {
                RunPhase(lab, agent, step, mode, commands, timings);
            }

            // As it found it: our own rules exactly as before the step (nothing stale, nothing twice). Not the copies
            // of tailscaled's rules, which follow its chains: those differ where tailscaled's do (a mode switch loses
            // its udp 41641 rule, the next rebuild brings it back), and are checked against them after each phase.
            WaitFor(() => OwnRules(lab) == ours, $"{step}: our own rules as before the step", lab, agent, 0, 0, () => $"before:\n{ours}\nnow:\n{OwnRules(lab)}");
        }
        catch
        {
            Restore(lab, step);
            throw;
        }
        finally
        {
            output.WriteLine($"{Runner}/{Mode} {step}: {total.Elapsed.TotalSeconds:F1} s in all; " + string.Join("; ", timings));
        }
    }

    private void RunPhase(Tailnet lab, RunningAgent agent, string step, string mode, string[][] commands, List<string> timings)
    {
        var what = mode == Mode ? step : $"{step} (to {mode})";
        var ours = OurRules(lab, sets: false);
        var logOffset = lab.LogLength("u2");
        var agentOffset = agent.Output.Length;
        var clock = Stopwatch.StartNew();
        foreach (var command in commands)
        {
            var result = lab.Step("u2", command);
            Assert.True(result.Succeeded, $"{what}: tailnet.sh {string.Join(' ', command)} failed:\n{result.StdErr}\n"
                + $"tailscaled since the step:\n{Tail(lab.LogSince("u2", logOffset))}\nagent since the step:\n{agent.Output[agentOffset..]}");
        }

        var daemonDone = clock.Elapsed;
        var dropInForce = RealTailnetFixture.DropInForce(Runner, mode);
        WaitFor(() => lab.Reaches("u2", Tailnet.U3), $"{what}: u2 -> u3", lab, agent, logOffset, agentOffset);
        var back = clock.Elapsed;
        WaitFor(() => lab.Reaches("u3", Tailnet.U2Lan), $"{what}: u3 -> u2", lab, agent, logOffset, agentOffset);
        WaitFor(() => lab.ForwardsIntoTailnet(Tailnet.U3), $"{what}: u2 forwards u3's traffic into the tailnet", lab, agent, logOffset, agentOffset);
        if (!dropInForce)
        {
            // Refused: nothing of ours in the runner's tables but our sets (a switch into this mode from one where
            // the agent had exemptions in tailscaled's chains takes one write to remove them).
            WaitFor(() => OurRules(lab, sets: false) == "", $"{what}: no rule of ours in the firewall of the native runner in nodivert", lab, agent, logOffset, agentOffset,
                () => OurRules(lab, sets: false));
        }

        // Everything else is checked, and every problem found reported together.
        var problems = new List<string>();
        var indirect = dropInForce && mode == "nodivert" && Runner != "nftables";
        if (indirect && !Within(TimeSpan.FromSeconds(10), () => CopyMismatch(lab) is null))
        {
            problems.Add("our copy of tailscaled's rules is not in step with its chains: " + CopyMismatch(lab));
        }

        if (dropInForce && lab.Reaches("u2", Tailnet.U3Unlisted))
        {
            problems.Add("100.64.9.9 (no policy allows it) answered u2: tailscaled's drop is not in force");
        }

        if (dropInForce && lab.ForwardsIntoTailnet(Tailnet.U3Unlisted))
        {
            problems.Add("u2 forwarded 100.64.9.9 (no policy allows it) into the tailnet");
        }

        if (!lab.DaemonRunning("u2"))
        {
            problems.Add($"tailscaled on u2 no longer runs; its log since the step:\n{Tail(lab.LogSince("u2", logOffset))}");
        }

        var unexplained = TailscaledLog.Unexplained(lab.LogSince("u2", logOffset));
        if (unexplained.Count > 0)
        {
            problems.Add("tailscaled logged errors the baseline does not explain (our rules are the difference):\n" + string.Join('\n', unexplained));
        }

        var lines = agent.Output[agentOffset..].Split('\n');
        var writes = lines.Where(l => l.Contains("reconciled (", StringComparison.Ordinal)).ToList();
        output.WriteLine($"{Runner}/{Mode} {what}: agent wrote {writes.Count} times:\n  " + string.Join("\n  ", writes));
        timings.Add($"{what}: tailscaled done {daemonDone.TotalSeconds:F1} s, u3 answering u2 {back.TotalSeconds:F1} s, checks done {clock.Elapsed.TotalSeconds:F1} s, {writes.Count} writes");
        var failures = lines.Where(l => l.Contains(" fail: ", StringComparison.Ordinal) || l.Contains(" crit: ", StringComparison.Ordinal)).ToList();
        if (failures.Count > 0)
        {
            problems.Add("the agent logged failures:\n" + string.Join('\n', failures));
        }

        if (dropInForce)
        {
            var expected = mode == "on" || Runner == "nftables" ? "InChain" : "Indirect";
            var wrong = writes.Where(l => !l.Contains($"strategy {expected} ", StringComparison.Ordinal)).ToList();
            if (wrong.Count > 0)
            {
                problems.Add($"in mode {mode} on {Runner} every write is to be strategy {expected}, these were not:\n" + string.Join('\n', wrong));
            }
        }

        var (bound, why) = Bound(step, mode, hadRules: ours != "");
        if (writes.Count > bound)
        {
            problems.Add($"{writes.Count} writes, more than the {bound} this step needs ({why}):\n" + string.Join('\n', writes));
        }

        if (!dropInForce && !fixture.AgentOutput.Contains("warn:", StringComparison.Ordinal))
        {
            problems.Add("the agent never warned that it leaves the native runner in nodivert alone");
        }

        Assert.True(problems.Count == 0, $"{what}:\n- " + string.Join("\n- ", problems));
    }

    /// <summary>
    /// The writes a phase needs. With InChain our rules live in tailscaled's chains and go with them, so a rebuild
    /// needs one (the exemptions, once its drop is back). With Indirect our chains copy tailscaled's, so its chains
    /// going needs one (ours go too) and coming back one. A mode switch changes the strategy: one. Refused (the
    /// native runner in nodivert): none, or one to take out the exemptions the mode before left in its chains.
    /// </summary>
    private (int Bound, string Why) Bound(string step, string mode, bool hadRules) =>
        !RealTailnetFixture.DropInForce(Runner, mode) ? hadRules
            ? (1, "refused, the exemptions left in tailscaled's chains removed: one write")
            : (0, "refused: nothing to write")
        : step == RealSteps.Switch ? (1, "a mode switch changes the strategy: one write")
        : mode == "on" || Runner == "nftables" ? (1, "InChain: one write per rebuild, once tailscaled's drop is back in its chain")
        : (2, "Indirect: one write when tailscaled's chains go, one when they are back");

    private static void WaitFor(Func<bool> condition, string what, Tailnet lab, RunningAgent agent, long logOffset, int agentOffset, Func<string>? detail = null)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > Patience)
            {
                Assert.Fail($"{what}: not seen within {Patience.TotalSeconds} s{(detail is null ? "" : "\n" + detail())}\n"
                    + $"tailscaled since the step:\n{Tail(lab.LogSince("u2", logOffset))}\nagent since the step:\n{agent.Output[agentOffset..]}");
            }

            Assert.False(agent.Process.HasExited, $"{what}: the agent exited {(agent.Process.HasExited ? agent.Process.ExitCode : 0)}:\n{agent.Output[agentOffset..]}");
            Thread.Sleep(100);
        }
    }

    /// <summary>After a failed case: u2 back in the fixture's mode, running, the agent running, for the next case.</summary>
    private void Restore(Tailnet lab, string step)
    {
        if (!lab.DaemonRunning("u2"))
        {
            var start = lab.Step("u2", "start");
            if (!start.Succeeded)
            {
                fixture.Break($"after {step}, tailscaled on u2 did not start again: {start.StdErr}");
                return;
            }
        }

        if (lab.Mode("u2") != Mode && !lab.Step("u2", "set-mode", Mode).Succeeded)
        {
            fixture.Break($"after {step}, u2 could not be put back in mode {Mode}");
            return;
        }

        if (fixture.Agent.Process.HasExited)
        {
            fixture.RestartAgent();
        }

        if (!lab.Step("u2", "settle").Succeeded)
        {
            fixture.Break($"after {step}, u2 did not settle in mode {Mode}");
        }
    }

    /// <summary>Our rules and chains on u2, in listing order (and our nft sets unless <paramref name="sets"/> is false).</summary>
    private static string OurRules(Tailnet lab, bool sets = true) => string.Join('\n', lab.Firewall().Split('\n')
        .Where(l => l.Contains("ts-cgnat", StringComparison.Ordinal) || l.Contains("TSCGNAT", StringComparison.Ordinal))
        .Where(l => sets || !l.TrimStart().StartsWith("set TSCGNAT", StringComparison.Ordinal)));

    /// <summary>
    /// Our rules without the copies of tailscaled's (a rule in a TSCGNAT-* chain that names nothing of ours: with
    /// Indirect our chains hold our exemptions, then a copy of ts-input, ts-forward or ts-postrouting).
    /// </summary>
    private static string OwnRules(Tailnet lab) => string.Join('\n', OurRules(lab).Split('\n').Where(l => Copy(l) is null));

    /// <summary>The copied rule's body (<c>-A TSCGNAT-INPUT BODY</c> with nothing of ours in BODY), or null.</summary>
    private static string? Copy(string line)
    {
        foreach (var chain in new[] { "INPUT", "FORWARD", "POSTROUTING" })
        {
            var prefix = $"-A TSCGNAT-{chain} ";
            if (line.StartsWith(prefix, StringComparison.Ordinal)
                && !line[prefix.Length..].Contains("TSCGNAT", StringComparison.Ordinal) && !line[prefix.Length..].Contains("ts-cgnat", StringComparison.Ordinal))
            {
                return line[prefix.Length..];
            }
        }

        return null;
    }

    /// <summary>
    /// Where, in any table of either family, the copy in TSCGNAT-X is not tailscaled's ts-x rule for rule in order;
    /// null when every copy is in step.
    /// </summary>
    private static string? CopyMismatch(Tailnet lab)
    {
        // iptables-save prints one block per table and family, from "*table" to "COMMIT".
        foreach (var block in lab.Firewall().Split("COMMIT"))
        {
            var lines = block.Split('\n');
            foreach (var chain in new[] { "INPUT", "FORWARD", "POSTROUTING" })
            {
                var theirs = lines.Where(l => l.StartsWith($"-A ts-{chain.ToLowerInvariant()} ", StringComparison.Ordinal))
                    .Select(l => l[$"-A ts-{chain.ToLowerInvariant()} ".Length..]).ToList();
                var copy = lines.Where(l => l.StartsWith($"-A TSCGNAT-{chain} ", StringComparison.Ordinal)).Select(Copy).OfType<string>().ToList();
                if (!theirs.SequenceEqual(copy))
                {
                    var table = lines.FirstOrDefault(l => l.StartsWith('*')) ?? "?";
                    return $"{table} ts-{chain.ToLowerInvariant()}:\n  {string.Join("\n  ", theirs)}\nTSCGNAT-{chain} copy:\n  {string.Join("\n  ", copy)}";
                }
            }
        }

        return null;
    }

    private static bool Within(TimeSpan patience, Func<bool> condition)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > patience)
            {
                return false;
            }

            Thread.Sleep(100);
        }

        return true;
    }

    private static string Tail(string log) => string.Join('\n', log.Split('\n').TakeLast(40));
}
