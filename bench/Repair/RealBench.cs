using System.Globalization;
using TsCgnat.TestSupport;

namespace TsCgnat.Bench.Repair;

/// <summary>One lifecycle step seen from outside the agent, with the pings that crossed it and what the agent and tailscaled logged.</summary>
internal sealed record StepMeasurement(
    string Step,
    RewriteMeasurement Rules,
    PingCount Pings,
    double CommandMs,
    double? AfterMs,
    int Writes,
    IReadOnlyList<string> OtherStrategy,
    IReadOnlyList<string> AgentProblems,
    IReadOnlyList<string> TailscaledUnexplained);

/// <summary>What one lab (real or emulated tailscaled, one runner and mode) gave.</summary>
internal sealed record TargetResult(
    string Runner,
    string Mode,
    string Kind,
    Baseline Baseline,
    double SetupMs,
    IReadOnlyList<StepMeasurement> Steps,
    IReadOnlyList<LoggedRepair> Logged,
    int FailedReconciles,
    IReadOnlyList<double>? SamplePeriods,
    string LoadStart,
    string LoadEnd)
{
    public IEnumerable<StepMeasurement> Of(string step) => Steps.Where(s => s.Step == step);
}

/// <summary>
/// The real-tailscaled mode: for each runner x mode, the emulator's lab and then the real daemon's, each with the agent
/// on u2 and pings from u2 to u3 across every restart, down/up and crash, timed from outside the agent as the
/// emulator mode times it.
/// </summary>
internal sealed class RealBench(Options options, CancellationToken cancellationToken) : IBench
{
    public const string Neighbour = "100.64.0.3";

    private readonly List<string> _namespaces = [];

    public int CreatedNamespaces => _namespaces.Count;

    public List<TargetResult> Results { get; } = [];

    public IReadOnlyList<string> Finished => [.. Results.Select(r => $"{r.Kind} {r.Runner}/{r.Mode}")];

    public void Print(TextWriter output) => RealReport.Print(Results, Skipped, options, output);

    /// <summary>The runner x mode pairs not measured, and why.</summary>
    public List<(string Runner, string Mode, string Why)> Skipped { get; } = [];

    /// <summary>The agent's layout for a runner and mode (what its design says it picks).</summary>
    public static Layout Expected(string runner, string mode) => mode == "on" || runner == "nftables" ? Layout.InChain : Layout.Indirect;

    public static string[] Commands(string step) => step switch
    {
        "restart" => ["restart"],
        "down-up" => ["down", "up"],
        "crash-start" => ["crash", "start"],
        _ => throw new ArgumentOutOfRangeException(nameof(step), step, "no such step"),
    };

    public List<string> LeftoverNamespaces() => Netns.StillListed(_namespaces);

    public async Task RunAsync()
    {
        foreach (var runner in options.Backends)
        {
            foreach (var mode in options.Modes)
            {
                if (runner == "nftables" && mode == "nodivert")
                {
                    Skipped.Add((runner, mode, "refused by the agent: nothing calls the native runner's chains in nodivert, so it writes nothing (no drop to repair)"));
                    continue;
                }

                foreach (var kind in options.Targets)
                {
                    Results.Add(await RunTargetAsync(kind, runner, mode));
                }
            }
        }
    }

    private async Task<TargetResult> RunTargetAsync(string kind, string runner, string mode)
    {
        var label = $"{kind} {runner}/{mode}";
        var loadStart = RepairBench.LoadAverage();
        Console.Error.WriteLine($"[{label}] load average {loadStart}");
        var setupFrom = Clock.NowMs();
        using ITailscaledLab lab = kind == "real" ? new RealLab(runner, mode) : new EmulatorLab(runner, mode);
        _namespaces.AddRange(lab.Namespaces);
        var stateDir = Directory.CreateTempSubdirectory("tsrb-state-");
        AgentProcess? agentForLog = null;
        try
        {
            using Observer observer = runner == "legacy" ? new LegacySampler(lab.Router) : new NftMonitor(lab.Router);
            await observer.WaitReadyAsync(cancellationToken);
            using var agent = new AgentProcess(options.AgentPath,
                ["run", "--policy-file", options.PolicyFile, "--netns", lab.Router, "--state-dir", stateDir.FullName, "--tailscale-socket", lab.Socket]);
            agentForLog = agent;
            var baseline = await Sync.WaitInSyncAsync(observer, agent, options, cancellationToken);
            var setupMs = Clock.NowMs() - setupFrom;
            Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"[{label}] lab and agent in sync after {setupMs / 1000:F1} s: {baseline.In} exemption(s) for INPUT, {baseline.Fwd} for FORWARD, layout {baseline.Layout}"));
            if (baseline.Layout != Expected(runner, mode))
            {
                Console.Error.WriteLine($"[{label}] NOTE: the agent's rules are laid out {baseline.Layout}, its design says {Expected(runner, mode)} for this runner and mode");
            }

            if (runner == "legacy")
            {
                // As in the emulator mode: the legacy poll takes its reference at its first tick, one interval after start.
                await Task.Delay(TimeSpan.FromSeconds(Options.DefaultLegacyPoll) + options.Settle, cancellationToken);
            }

            var steps = new List<StepMeasurement>();
            var loggedBefore = 0;
            for (var i = -options.Warmup; i < options.Iterations; i++)
            {
                if (i == 0)
                {
                    loggedBefore = agent.Repairs.Count;
                    (observer as LegacySampler)?.ClearPeriods();
                }

                foreach (var step in options.Steps)
                {
                    var measured = await MeasureStepAsync(lab, observer, agent, baseline, Expected(runner, mode), step, label);
                    var what = i < 0 ? "warm-up" : $"{i + 1}/{options.Iterations}";
                    Console.Error.WriteLine(string.Create(CultureInfo.InvariantCulture,
                        $"[{label}] {step} {what}: {measured.Pings.Lost} of {measured.Pings.Sent} pings lost, rules gone {(measured.Rules.GapMs is { } gap ? $"{gap:F1} ms" : "never")}, "
                        + $"drop without exemption {measured.Rules.ExposedMs:F1} ms, tailscaled's step {measured.CommandMs:F0} ms, {measured.Writes} write(s)"));
                    if (i >= 0)
                    {
                        steps.Add(measured);
                    }
                }
            }

            var logged = agent.Repairs.Skip(loggedBefore).ToList();
            return new TargetResult(runner, mode, kind, baseline, setupMs, steps, logged, agent.FailedReconciles,
                (observer as LegacySampler)?.Periods, loadStart, RepairBench.LoadAverage());
        }
        finally
        {
            KeepLogs(label, lab, agentForLog);
            stateDir.Delete(recursive: true);
        }
    }

    private async Task<StepMeasurement> MeasureStepAsync(
        ITailscaledLab lab, Observer observer, AgentProcess agent, Baseline baseline, Layout expected, string step, string label)
    {
        using var pinger = new Pinger(lab.Router, Neighbour, options.PingInterval, options.RewriteTimeout + TimeSpan.FromSeconds(60));
        if (!await pinger.WaitAnsweredAsync(TimeSpan.FromSeconds(5), cancellationToken))
        {
            throw new BenchException($"[{label}] before {step}: u3 ({Neighbour}) does not answer u2 though our rules are in place; the agent's log ends:\n{agent.Tail}");
        }

        var agentFrom = agent.LineCount;
        var logFrom = lab.LogLength;
        var from = Clock.NowMs();
        foreach (var command in Commands(step))
        {
            cancellationToken.ThrowIfCancellationRequested();
            lab.Run(command);
        }

        var commandsDone = Clock.NowMs();
        await Sync.WaitSettledAsync(observer, agent, baseline, $"[{label}] {step}", options, cancellationToken);
        var pings = pinger.Stop();
        var rules = observer.Timeline.Measure(from, Clock.NowMs(), baseline);
        var lines = agent.LinesSince(agentFrom);
        var writes = lines.Where(l => l.Contains("reconciled (", StringComparison.Ordinal)).ToList();
        return new StepMeasurement(
            step,
            rules,
            pings,
            commandsDone - from,
            rules.BackAtMs is { } back ? Math.Max(0, back - commandsDone) : null,
            writes.Count,
            [.. writes.Where(l => !l.Contains($"strategy {expected} ", StringComparison.Ordinal))],
            [.. lines.Where(l => l.Contains(" fail: ", StringComparison.Ordinal) || l.Contains(" crit: ", StringComparison.Ordinal) || l.Contains(" warn: ", StringComparison.Ordinal))],
            TailscaledLog.Unexplained(lab.LogSince(logFrom)));
    }

    /// <summary>With --log-dir: the agent's whole output and tailscaled's log of each lab, to read what happened.</summary>
    private void KeepLogs(string label, ITailscaledLab lab, AgentProcess? agent)
    {
        if (options.LogDir is null)
        {
            return;
        }

        Directory.CreateDirectory(options.LogDir);
        var name = label.Replace(' ', '-').Replace('/', '-');
        if (agent is not null)
        {
            File.WriteAllLines(Path.Combine(options.LogDir, $"{name}.agent.log"), agent.LinesSince(0));
        }

        if (lab.LogPath is { } log && File.Exists(log))
        {
            File.Copy(log, Path.Combine(options.LogDir, $"{name}.tailscaled.log"), overwrite: true);
        }
    }
}
