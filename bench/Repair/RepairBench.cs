using System.Globalization;
using TsCgnat.TestSupport;

namespace TsCgnat.Bench.Repair;

/// <summary>What one back end gave: the rewrites seen from outside, and what the agent logged meanwhile.</summary>
internal sealed record BackendResult(
    string Backend,
    double PollSeconds,
    Baseline Baseline,
    IReadOnlyList<RewriteMeasurement> Rewrites,
    IReadOnlyList<LoggedRepair> Logged,
    IReadOnlyList<double> RewriteCommandMs,
    IReadOnlyList<double> AfterCommandsMs,
    IReadOnlyList<double>? SamplePeriods,
    int FailedReconciles,
    string LoadStart,
    string LoadEnd)
{
    /// <summary>The agent polls iptables-legacy at a non-default interval: the side-by-side 10 s poll.</summary>
    public bool IsPollComparison => Backend == "legacy" && PollSeconds != Options.DefaultLegacyPoll;

    public string Label => IsPollComparison ? $"legacy, agent polling every {PollSeconds:0.#} s" : Backend;

    public List<double> Gaps => [.. Rewrites.Where(r => r.GapMs is not null).Select(r => r.GapMs!.Value)];
}

/// <summary>
/// Runs the agent against the tailscaled emulator in one fresh namespace per back end and rewrites tailscaled's
/// chains again and again, timing from outside how long our rules stay gone.
/// </summary>
internal sealed class RepairBench(Options options, CancellationToken cancellationToken) : IBench
{
    private readonly List<string> _namespaces = [];

    public int CreatedNamespaces => _namespaces.Count;

    public static string LoadAverage() => File.ReadAllText("/proc/loadavg").Trim();

    /// <summary>Our namespaces that <c>ip netns list</c> still shows.</summary>
    public List<string> LeftoverNamespaces() => Netns.StillListed(_namespaces);

    /// <summary>The back ends measured so far: when a later one fails, the report still shows these.</summary>
    public List<BackendResult> Results { get; } = [];

    public IReadOnlyList<string> Finished => [.. Results.Select(r => r.Label)];

    public void Print(TextWriter output) => Report.Print(Results, options, output);

    public async Task RunAsync()
    {
        foreach (var backend in options.Backends)
        {
            Results.Add(await RunBackendAsync(backend, options.Iterations, Options.DefaultLegacyPoll));
        }

        if (options.PollComparison > 0)
        {
            Results.Add(await RunBackendAsync("legacy", options.PollComparison, 10));
        }
    }

    private async Task<BackendResult> RunBackendAsync(string backend, int iterations, double pollSeconds)
    {
        var loadStart = LoadAverage();
        var label = pollSeconds == Options.DefaultLegacyPoll ? backend : $"{backend} (poll {pollSeconds} s)";
        Console.Error.WriteLine($"[{label}] load average {loadStart}");
        using var ns = new Netns("tsrb");
        _namespaces.Add(ns.Name);
        var stateDir = Directory.CreateTempSubdirectory("tsrb-state-");
        try
        {
            // The observer starts first, in the empty namespace, so it sees every rule from the first one on.
            using Observer observer = backend == "legacy" ? new LegacySampler(ns.Name) : new NftMonitor(ns.Name);
            await observer.WaitReadyAsync(cancellationToken);

            using var tailscaled = new TailscaledEmulator(ns.Name, backend);
            Emulate(tailscaled, "start", "on");

            string[] arguments =
            [
                "run", "--policy-file", options.PolicyFile, "--netns", ns.Name, "--state-dir", stateDir.FullName,
                "--tailscale-socket", "/nonexistent",
                .. pollSeconds == Options.DefaultLegacyPoll
                    ? Array.Empty<string>()
                    // Only the poll may repair in the side-by-side run, not the 30 s safety-net resync.
                    : ["--legacy-poll-interval", pollSeconds.ToString(CultureInfo.InvariantCulture), "--resync-interval", "3600"],
            ];
            using var agent = new AgentProcess(options.AgentPath, arguments);
            var baseline = await Sync.WaitInSyncAsync(observer, agent, options, cancellationToken);
            Console.Error.WriteLine($"[{label}] agent in sync: {baseline.In} rule(s) of ours in ts-input, {baseline.Fwd} in ts-forward ({baseline.Layout})");
            if (backend == "legacy")
            {
                // The agent's legacy poll takes its reference at its first tick, one interval after start, and
                // only reports a difference from it: a rewrite that is over before that tick goes unnoticed until
                // the resync (seen with a 10 s poll). So the first rewrite waits for that tick.
                await Task.Delay(TimeSpan.FromSeconds(pollSeconds) + options.Settle, cancellationToken);
            }

            var rewrites = new List<RewriteMeasurement>();
            var commandMs = new List<double>();
            var afterCommands = new List<double>();
            var loggedBefore = 0;
            for (var i = -options.Warmup; i < iterations; i++)
            {
                if (i == 0)
                {
                    loggedBefore = agent.Repairs.Count; // the warm-up's repairs are not counted
                    (observer as LegacySampler)?.ClearPeriods();
                }

                var from = Clock.NowMs();
                foreach (var step in options.Rewrite == "restart" ? ["restart"] : new[] { "down", "up" })
                {
                    Emulate(tailscaled, step);
                }

                var commandsDone = Clock.NowMs();
                await Sync.WaitSettledAsync(observer, agent, baseline, $"rewrite {i + 1}", options, cancellationToken);
                var measured = observer.Timeline.Measure(from, Clock.NowMs(), baseline);
                if (i < 0)
                {
                    Console.Error.WriteLine($"[{label}] warm-up rewrite: {Describe(measured)}");
                    continue;
                }

                rewrites.Add(measured);
                commandMs.Add(commandsDone - from);
                if (measured.BackAtMs is { } backAt)
                {
                    // Rules already back when tailscaled's last command returned count as 0: nothing was left to repair.
                    afterCommands.Add(Math.Max(0, backAt - commandsDone));
                }

                Console.Error.WriteLine(string.Create(
                    CultureInfo.InvariantCulture,
                    $"[{label}] rewrite {i + 1}/{iterations}: {Describe(measured)}; tailscaled's {options.Rewrite} took {commandsDone - from:F0} ms"));
            }

            var logged = agent.Repairs.Skip(loggedBefore).ToList();
            var periods = (observer as LegacySampler)?.Periods;
            return new BackendResult(backend, pollSeconds, baseline, rewrites, logged, commandMs, afterCommands, periods, agent.FailedReconciles, loadStart, LoadAverage());
        }
        finally
        {
            stateDir.Delete(recursive: true);
        }
    }

    private static string Describe(RewriteMeasurement m) => string.Create(
        CultureInfo.InvariantCulture,
        $"rules gone {(m.GapMs is { } gap ? $"{gap:F1} ms" : "never")}, drop without exemption {m.ExposedMs:F1} ms, back {m.Returns}x");

    private void Emulate(TailscaledEmulator tailscaled, params string[] command)
    {
        cancellationToken.ThrowIfCancellationRequested();
        try
        {
            tailscaled.Run(command);
        }
        catch (InvalidOperationException e)
        {
            throw new BenchException($"the tailscaled emulator failed on '{string.Join(' ', command)}': {e.Message}");
        }
    }
}
