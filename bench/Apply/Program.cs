using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Runtime.InteropServices;
using System.Runtime.Versioning;
using System.Text;
using TsCgnat.Api;
using TsCgnat.Firewall;
using TsCgnat.Firewall.Formats;
using TsCgnat.Firewall.Model;
using TsCgnat.Firewall.Processes;
using TsCgnat.TestSupport;

[assembly: SupportedOSPlatform("linux")]

namespace TsCgnat.Bench.Apply;

/// <summary>
/// bench-apply: the agent's apply against one bare iptables-restore and against the manual recipe,
/// for both iptables back ends, side by side in one run (design section 10). See README.md.
/// </summary>
internal static class Program
{
    private static async Task<int> Main(string[] args)
    {
        if (args is [Probe.Flag, ..])
        {
            return await Probe.RunAsync(args);
        }

        var options = Options.Parse(args, Console.Error);
        if (options is null)
        {
            return 64;
        }

        if (!Environment.IsPrivilegedProcess)
        {
            await Console.Error.WriteLineAsync(
                $"bench-apply: must run as root (it creates network namespaces and writes iptables and ipset in them); running as {Environment.UserName}.");
            return 1;
        }

        var missing = Bench.MissingTools(options.Backends);
        if (missing.Count > 0)
        {
            await Console.Error.WriteLineAsync($"bench-apply: not installed or not on PATH: {string.Join(", ", missing)}");
            return 1;
        }

        // Everything is bounded: the whole run by --timeout-minutes, each process by --command-timeout-seconds.
        using var cts = new CancellationTokenSource(options.Deadline);
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
        void Stop(PosixSignalContext context)
        {
            context.Cancel = true;
            cts.Cancel();
        }

        var bench = new Bench(options, cts.Token);
        var exitCode = 0;
        try
        {
            await bench.RunAsync();
        }
        catch (Exception e) when (cts.IsCancellationRequested
            && e is OperationCanceledException or BenchException or TimeoutException or FirewallToolException or InvalidOperationException)
        {
            // Ctrl+C reaches the whole process group, so a child may fail before our cancellation does: either way we stopped.
            await Console.Error.WriteLineAsync(
                $"bench-apply: stopped (interrupted, or the {options.Deadline.TotalMinutes:F0} min limit of --timeout-minutes was reached)");
            exitCode = 2;
        }
        catch (Exception e) when (e is BenchException or TimeoutException or FirewallToolException or InvalidOperationException)
        {
            await Console.Error.WriteLineAsync($"bench-apply: failed: {e.Message}");
            exitCode = 1;
        }

        // Namespaces are deleted by their 'using'; check that ip netns list agrees.
        var left = bench.LeftoverNamespaces();
        if (left.Count > 0)
        {
            await Console.Error.WriteLineAsync($"bench-apply: namespaces left behind: {string.Join(", ", left)}");
            return 1;
        }

        Console.WriteLine($"namespaces: {bench.CreatedNamespaces} created, all deleted (ip netns list shows none of them)");
        return exitCode;
    }
}

internal sealed class BenchException(string message) : Exception(message);

internal sealed record Options(
    IReadOnlyList<int> Sizes,
    int Repeat,
    bool Profile,
    IReadOnlyList<IptablesBackend> Backends,
    int ManualMax,
    TimeSpan Deadline,
    TimeSpan CommandTimeout)
{
    /// <summary>Distinct /24s inside 100.64.0.0/10.</summary>
    public const int MaxSize = 1 << 14;

    private const string Usage = """
        usage: bench-apply [--sizes 10,100,1000,10000] [--repeat 3] [--backends legacy,nft]
                           [--manual-max 1000] [--profile] [--timeout-minutes 30] [--command-timeout-seconds 120]
          --sizes       numbers of allowed source CIDRs (distinct /24s in 100.64.0.0/10, at most 16384)
          --repeat      runs of each measurement; the table shows medians
          --backends    iptables back ends to measure (legacy, nft)
          --manual-max  largest N for which the manual recipe (one iptables -I per CIDR) is run
          --profile     also print where the agent's apply and no-op spend their time (one extra run per row)
        Must run as root. Every measurement runs in a fresh network namespace, deleted afterwards.
        """;

    public static Options? Parse(string[] args, TextWriter error)
    {
        var sizes = new List<int> { 10, 100, 1000, 10000 };
        var repeat = 3;
        var profile = false;
        var backends = new List<IptablesBackend> { IptablesBackend.Legacy, IptablesBackend.Nft };
        var manualMax = 1000;
        var deadline = TimeSpan.FromMinutes(30);
        var commandTimeout = TimeSpan.FromSeconds(120);
        var parsed = new BenchArguments("bench-apply", Usage)
            .List("--sizes", Size, list => sizes = list)
            .Number("--repeat", 1, 100, n => repeat = n)
            .Flag("--profile", () => profile = true)
            .List("--backends", Backend, list => backends = list)
            .Number("--manual-max", 0, MaxSize, n => manualMax = n)
            .Number("--timeout-minutes", 1, 24 * 60, n => deadline = TimeSpan.FromMinutes(n))
            .Number("--command-timeout-seconds", 1, 3600, n => commandTimeout = TimeSpan.FromSeconds(n))
            .TryParse(args, error);
        return parsed ? new Options(sizes, repeat, profile, backends, manualMax, deadline, commandTimeout) : null;
    }

    private static int Size(string text) =>
        int.TryParse(text, CultureInfo.InvariantCulture, out var n) && n >= 1 && n <= MaxSize
            ? n
            : throw new FormatException($"--sizes: each size must be between 1 and {MaxSize} (the /24s in 100.64.0.0/10), not '{text}'");

    private static IptablesBackend Backend(string name) => name switch
    {
        "legacy" or "iptables-legacy" => IptablesBackend.Legacy,
        "nft" or "iptables-nft" => IptablesBackend.Nft,
        _ => throw new FormatException($"--backends: unknown back end '{name}' (legacy, nft)"),
    };
}


/// <summary>One run of each measurement for one back end and size.</summary>
internal sealed record Sample(double AgentMs, int ApplyProcs, double NoopMs, bool NoopWrote, int NoopProcs, double FloorMs, double? ManualMs);

/// <summary>The medians of one table row.</summary>
internal sealed record Row(IptablesBackend Backend, int N, double AgentMs, double FloorMs, double? ManualMs, double NoopMs, int NoopWroteCount, int Runs, string Procs)
{
    public double AgentOverFloor => AgentMs / FloorMs;

    public double? ManualOverAgent => ManualMs / AgentMs;
}

internal sealed class Bench(Options options, CancellationToken cancellationToken)
{
    private static readonly IPNetwork RoutedSubnet = IPNetwork.Parse("100.127.0.0/16");

    private readonly List<string> _namespaces = [];

    public int CreatedNamespaces => _namespaces.Count;

    public static List<string> MissingTools(IEnumerable<IptablesBackend> backends)
    {
        var tools = new List<string> { "ip", Tools.Ipset };
        foreach (var backend in backends)
        {
            tools.Add(Tools.Iptables(backend, IpFamily.V4));
            tools.Add(Tools.Save(backend, IpFamily.V4));
            tools.Add(Tools.Restore(backend, IpFamily.V4));
        }

        var path = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries);
        return [.. tools.Where(t => !path.Any(d => File.Exists(Path.Combine(d, t))))];
    }

    /// <summary>Our namespaces that <c>ip netns list</c> still shows.</summary>
    public List<string> LeftoverNamespaces() => Netns.StillListed(_namespaces);

    public async Task RunAsync()
    {
        var started = DateTimeOffset.Now;
        Console.WriteLine($"bench-apply  {started:yyyy-MM-dd HH:mm:ss zzz}  {Environment.ProcessorCount} cores  kernel {Environment.OSVersion.Version}  .NET {Environment.Version}");
        Console.WriteLine($"  load average at start: {LoadAverage()} (other work on this machine skews wall times; compare ratios within one run)");
        Console.WriteLine($"  {Sh.Run("iptables-legacy", "-V").StdOut.Trim()}; {Sh.Run("iptables-nft", "-V").StdOut.Trim()}; {Sh.Run(Tools.Ipset, "-v").StdOut.Trim()}");
        Console.WriteLine($"  sizes {string.Join(',', options.Sizes)}, {options.Repeat} runs each (medians), manual recipe up to N={options.ManualMax}, "
            + "every measurement in a fresh network namespace holding tailscaled-like ts-* chains");

        // JIT warm-up in a throwaway namespace per back end, so the first row is not compile time.
        Console.Write("warming up...");
        foreach (var backend in options.Backends)
        {
            await AgentAsync(backend, Exemptions(100), verify: false);
            await FloorAsync(backend, 10, verify: false);
            if (options.ManualMax > 0)
            {
                await ManualAsync(backend, Math.Min(10, options.ManualMax), verify: false);
            }
        }

        Console.WriteLine(" done");

        var rows = new List<Row>();
        foreach (var backend in options.Backends)
        {
            foreach (var n in options.Sizes)
            {
                var exemptions = Exemptions(n);
                var samples = new List<Sample>();
                for (var run = 0; run < options.Repeat; run++)
                {
                    var verify = run == 0;
                    var (agentMs, applyProcs, noopMs, noopWrote, noopProcs) = await AgentAsync(backend, exemptions, verify);
                    var floorMs = await FloorAsync(backend, n, verify);
                    double? manualMs = n <= options.ManualMax ? await ManualAsync(backend, n, verify) : null;
                    samples.Add(new Sample(agentMs, applyProcs, noopMs, noopWrote, noopProcs, floorMs, manualMs));
                }

                var procs = string.Join(",", samples.Select(s => $"{s.ApplyProcs}/{s.NoopProcs}").Distinct());
                var row = new Row(
                    backend,
                    n,
                    Median(samples.Select(s => s.AgentMs)),
                    Median(samples.Select(s => s.FloorMs)),
                    samples[0].ManualMs is null ? null : Median(samples.Select(s => s.ManualMs!.Value)),
                    Median(samples.Select(s => s.NoopMs)),
                    samples.Count(s => s.NoopWrote),
                    samples.Count,
                    procs);
                rows.Add(row);
                Console.Error.WriteLine($"  measured {Name(backend)} N={n}: agent {row.AgentMs:F1} ms, floor {row.FloorMs:F1} ms");
            }
        }

        Console.WriteLine();
        PrintTable(rows);
        Console.WriteLine();
        PrintTargets(rows);
        Console.WriteLine();
        await InsideAsync();

        if (options.Profile)
        {
            foreach (var backend in options.Backends)
            {
                Console.WriteLine();
                await ProfileAsync(backend);
            }
        }

        Console.WriteLine();
        Console.WriteLine($"finished in {(DateTimeOffset.Now - started).TotalSeconds:F0} s; load average at end: {LoadAverage()}");
    }

    /// <summary>
    /// The same apply, floor and no-op with the engine running inside the namespace (see <see cref="Probe"/>):
    /// what an agent on a node pays, where no command goes through <c>ip netns exec</c>.
    /// </summary>
    private async Task InsideAsync()
    {
        var self = Environment.ProcessPath!;
        string[] prefix = Path.GetFileNameWithoutExtension(self) == "dotnet" ? [self, typeof(Probe).Assembly.Location] : [self];
        Console.WriteLine($"inside the namespace: the engine runs in the namespace itself (as the agent does on a node), medians of {options.Repeat} runs (no-op: median of 7 per run)");
        Console.WriteLine("backend  N      agent_ms  floor_ms  agent/floor  noop_ms  noop_wrote  noop_procs");
        var verdicts = new List<string>();
        foreach (var backend in options.Backends)
        {
            var worstNoop = 0.0;
            double? bigRatio = null;
            foreach (var n in options.Sizes)
            {
                var results = new List<Dictionary<string, string>>();
                for (var run = 0; run < options.Repeat; run++)
                {
                    using var ns = FreshNamespace(backend);
                    var output = Sh.Run("ip", ["netns", "exec", ns.Name, .. prefix, Probe.Flag, Name(backend), n.ToString(CultureInfo.InvariantCulture), "7"]);
                    if (!output.Succeeded || !output.StdOut.StartsWith("probe ", StringComparison.Ordinal))
                    {
                        throw new BenchException($"probe in {ns.Name} ({Name(backend)}, N={n}) failed ({output.ExitCode}): {output.StdErr.Trim()}");
                    }

                    results.Add(output.StdOut.Trim()["probe ".Length..].Split(' ').Select(kv => kv.Split('=', 2)).ToDictionary(kv => kv[0], kv => kv[1]));
                }

                double M(string key) => Median(results.Select(r => double.Parse(r[key], CultureInfo.InvariantCulture)));
                var (agent, floor, noop) = (M("apply_ms"), M("floor_ms"), M("noop_ms"));
                var wrote = results.Any(r => r["noop_wrote"] != "False");
                worstNoop = Math.Max(worstNoop, noop);
                if (n == 10000)
                {
                    bigRatio = agent / floor;
                }

                Console.WriteLine(string.Create(
                    CultureInfo.InvariantCulture,
                    $"{Name(backend),-8} {n,-6} {agent,8:F1}  {floor,8:F1}  {agent / floor,11:F2}  {noop,7:F1}  {(wrote ? "TRUE" : "false"),-10}  {string.Join(',', results.Select(r => r["noop_procs"]).Distinct())}"));
            }

            verdicts.Add(bigRatio is { } ratio
                ? string.Create(CultureInfo.InvariantCulture, $"  {Name(backend),-7} apply N=10000 within 1.5x of one bare iptables-restore:  agent/floor = {ratio:F2}  {(ratio <= 1.5 ? "PASS" : "MISS")}")
                : $"  {Name(backend),-7} apply N=10000: not measured");
            verdicts.Add(string.Create(CultureInfo.InvariantCulture, $"  {Name(backend),-7} no-op resync under 30 ms:  worst median {worstNoop:F1} ms  {(worstNoop < 30 ? "PASS" : "MISS")}"));
        }

        Console.WriteLine();
        Console.WriteLine("targets (design section 10), inside the namespace:");
        verdicts.ForEach(Console.WriteLine);
    }

    private static string LoadAverage()
    {
        try
        {
            return string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3));
        }
        catch (IOException)
        {
            return "unknown";
        }
    }

    internal static string Name(IptablesBackend backend) => backend == IptablesBackend.Legacy ? "legacy" : "nft";

    /// <summary>N allowed sources, 100.64.0.0/24, 100.64.1.0/24, ..., none limited to interfaces, and one routed subnet.</summary>
    internal static Exemptions Exemptions(int n) =>
        new([.. Enumerable.Range(0, n).Select(i => new SourceExemption(Cidr(i), []))], [RoutedSubnet]);

    private static IPNetwork Cidr(int i) => new(new IPAddress(new byte[] { 100, (byte)(64 + (i >> 8)), (byte)(i & 0xff), 0 }), 24);

    internal static double Median(IEnumerable<double> values)
    {
        var sorted = values.Order().ToList();
        var mid = sorted.Count / 2;
        return sorted.Count % 2 == 1 ? sorted[mid] : (sorted[mid - 1] + sorted[mid]) / 2;
    }

    /// <summary>A fresh namespace with tailscaled-like chains written by <paramref name="backend"/>; always deleted by the caller's using.</summary>
    private Netns FreshNamespace(IptablesBackend backend)
    {
        cancellationToken.ThrowIfCancellationRequested();
        var ns = new Netns("tscb");
        _namespaces.Add(ns.Name);
        try
        {
            var output = Sh.RunWithInput("ip", ["netns", "exec", ns.Name, Tools.Restore(backend, IpFamily.V4), "--noflush"], TailscaledRules.NodivertChains);
            if (!output.Succeeded)
            {
                throw new BenchException($"creating the ts-* chains with {Tools.Restore(backend, IpFamily.V4)} in {ns.Name} failed: {output.StdErr.Trim()}");
            }

            return ns;
        }
        catch
        {
            ns.Dispose();
            throw;
        }
    }

    private CountingRunner RunnerIn(Netns ns) => new(new NetnsRunner(new ProcessRunner(), ns.Name), options.CommandTimeout);

    /// <summary>(1) one full reconcile from nothing, then (4) a second one right after, in the same namespace.</summary>
    private async Task<(double AgentMs, int ApplyProcs, double NoopMs, bool NoopWrote, int NoopProcs)> AgentAsync(
        IptablesBackend backend, Exemptions exemptions, bool verify)
    {
        using var ns = FreshNamespace(backend);
        var runner = RunnerIn(ns);
        var firewall = new HostFirewall(runner);
        var settings = new FirewallSettings();

        var clock = Stopwatch.StartNew();
        var apply = await firewall.ReconcileAsync(exemptions, settings, previousStateful: null, dryRun: false, cancellationToken);
        var agentMs = clock.Elapsed.TotalMilliseconds;
        var applyProcs = runner.Launches;
        if (apply.Plan.Backend.Backend != backend)
        {
            throw new BenchException($"the agent chose {Tools.Name(apply.Plan.Backend.Backend)} ({apply.Plan.Backend.Reason}) in a namespace set up with {Tools.Name(backend)}");
        }

        if (!apply.Wrote)
        {
            throw new BenchException($"the first reconcile in a fresh namespace wrote nothing ({Tools.Name(backend)}, N={exemptions.Sources.Count})");
        }

        runner.Reset();
        clock.Restart();
        var noop = await firewall.ReconcileAsync(exemptions, settings, apply.Plan.Stateful, dryRun: false, cancellationToken);
        var noopMs = clock.Elapsed.TotalMilliseconds;
        var noopProcs = runner.Launches;

        if (verify)
        {
            // Outside the timing: the kernel really holds the N sources, and our hook sits in INPUT.
            var header = ns.Exec(Tools.Ipset, "list", "TSCGNAT-SRC4", "-t");
            var expected = $"Number of entries: {exemptions.Sources.Count}";
            if (!header.Contains(expected, StringComparison.Ordinal))
            {
                throw new BenchException($"after the agent's apply, ipset TSCGNAT-SRC4 does not say '{expected}':\n{header}");
            }

            var input = ns.Exec(Tools.Iptables(backend, IpFamily.V4), "-S", "INPUT");
            if (!input.Contains("-j TSCGNAT-INPUT", StringComparison.Ordinal))
            {
                throw new BenchException($"after the agent's apply, INPUT has no hook into TSCGNAT-INPUT:\n{input}");
            }
        }

        return (agentMs, applyProcs, noopMs, noop.Wrote, noopProcs);
    }

    /// <summary>The naive content: one ACCEPT per source at the end of INPUT.</summary>
    internal static string NaiveRestore(int n)
    {
        var text = new StringBuilder("*filter\n");
        for (var i = 0; i < n; i++)
        {
            text.Append("-A INPUT -s ").Append(Cidr(i)).Append(" ! -i tailscale0 -j ACCEPT\n");
        }

        return text.Append("COMMIT\n").ToString();
    }

    /// <summary>(2) one bare iptables-restore --noflush of the naive content: the cheapest single write.</summary>
    private async Task<double> FloorAsync(IptablesBackend backend, int n, bool verify)
    {
        var input = NaiveRestore(n);
        using var ns = FreshNamespace(backend);
        var runner = RunnerIn(ns);
        var tool = Tools.Restore(backend, IpFamily.V4);

        var clock = Stopwatch.StartNew();
        var output = await runner.RunAsync(tool, ["--noflush"], input, cancellationToken);
        var ms = clock.Elapsed.TotalMilliseconds;
        if (!output.Succeeded)
        {
            throw new BenchException($"{tool} --noflush (floor, N={n}) failed ({output.ExitCode}): {output.StdErr.Trim()}");
        }

        if (verify)
        {
            VerifyInputRules(ns, backend, n, "floor");
        }

        return ms;
    }

    /// <summary>(3) the manual recipe: one iptables -I process per source.</summary>
    private async Task<double> ManualAsync(IptablesBackend backend, int n, bool verify)
    {
        var cidrs = Enumerable.Range(0, n).Select(i => Cidr(i).ToString()).ToList();
        using var ns = FreshNamespace(backend);
        var runner = RunnerIn(ns);
        var tool = Tools.Iptables(backend, IpFamily.V4);

        var clock = Stopwatch.StartNew();
        foreach (var cidr in cidrs)
        {
            var output = await runner.RunAsync(tool, ["-I", "INPUT", "-s", cidr, "-j", "ACCEPT"], null, cancellationToken);
            if (!output.Succeeded)
            {
                throw new BenchException($"{tool} -I INPUT -s {cidr} -j ACCEPT (manual) failed ({output.ExitCode}): {output.StdErr.Trim()}");
            }
        }

        var ms = clock.Elapsed.TotalMilliseconds;
        if (verify)
        {
            VerifyInputRules(ns, backend, n, "manual");
        }

        return ms;
    }

    private static void VerifyInputRules(Netns ns, IptablesBackend backend, int n, string what)
    {
        var rules = ns.Exec(Tools.Iptables(backend, IpFamily.V4), "-S", "INPUT")
            .Split('\n')
            .Count(l => l.StartsWith("-A INPUT -s 100.", StringComparison.Ordinal) && l.EndsWith("-j ACCEPT", StringComparison.Ordinal));
        if (rules != n)
        {
            throw new BenchException($"{what}: INPUT holds {rules} ACCEPT rules, expected {n}");
        }
    }

    private static void PrintTable(List<Row> rows)
    {
        var runs = rows.Count == 0 ? 0 : rows[0].Runs;
        Console.WriteLine($"medians of {runs} runs; ms = wall time; procs = processes the agent started (apply/no-op)");
        Console.WriteLine("backend  N      agent_ms  floor_ms  agent/floor  manual_ms  manual/agent  noop_ms  noop_wrote  procs(apply/noop)");
        foreach (var r in rows)
        {
            var manual = r.ManualMs is { } m ? m.ToString("F1", CultureInfo.InvariantCulture) : "-";
            var ratio = r.ManualOverAgent is { } q ? q.ToString("F1", CultureInfo.InvariantCulture) : "-";
            var wrote = r.NoopWroteCount == 0 ? "false" : $"TRUE {r.NoopWroteCount}/{r.Runs}";
            Console.WriteLine(string.Create(
                CultureInfo.InvariantCulture,
                $"{Name(r.Backend),-8} {r.N,-6} {r.AgentMs,8:F1}  {r.FloorMs,8:F1}  {r.AgentOverFloor,11:F2}  {manual,9}  {ratio,12}  {r.NoopMs,7:F1}  {wrote,-10}  {r.Procs}"));
        }
    }

    private void PrintTargets(List<Row> rows)
    {
        Console.WriteLine("targets (design section 10), from the medians above:");
        static string Verdict(bool pass) => pass ? "PASS" : "MISS";
        foreach (var backend in options.Backends)
        {
            var mine = rows.Where(r => r.Backend == backend).ToList();
            var name = Name(backend);

            var big = mine.FirstOrDefault(r => r.N == 10000);
            Console.WriteLine(big is null
                ? $"  {name,-7} apply N=10000 within 1.5x of one bare iptables-restore:  not measured (N=10000 not in --sizes)"
                : string.Create(CultureInfo.InvariantCulture, $"  {name,-7} apply N=10000 within 1.5x of one bare iptables-restore:  agent/floor = {big.AgentOverFloor:F2}  {Verdict(big.AgentOverFloor <= 1.5)}"));

            var mid = mine.FirstOrDefault(r => r.N == 1000);
            Console.WriteLine(mid?.ManualOverAgent is not { } speedup
                ? $"  {name,-7} apply N=1000 at least 100x faster than manual iptables -I:  not measured (N=1000 not in --sizes, or above --manual-max)"
                : string.Create(CultureInfo.InvariantCulture, $"  {name,-7} apply N=1000 at least 100x faster than manual iptables -I:  manual/agent = {speedup:F1}  {Verdict(speedup >= 100)}"));

            var wrote = mine.Where(r => r.NoopWroteCount > 0).Select(r => r.N).ToList();
            Console.WriteLine(wrote.Count == 0
                ? $"  {name,-7} no-op resync writes nothing:  wrote=false in every run at every N  PASS"
                : $"  {name,-7} no-op resync writes nothing:  wrote=true at N={string.Join(',', wrote)}  MISS");

            var worst = mine.MaxBy(r => r.NoopMs)!;
            Console.WriteLine(string.Create(
                CultureInfo.InvariantCulture,
                $"  {name,-7} no-op resync under 30 ms:  worst median {worst.NoopMs:F1} ms (N={worst.N}); per N: {string.Join(", ", mine.Select(r => $"{r.N}={r.NoopMs:F1}"))}  {Verdict(mine.All(r => r.NoopMs < 30))}"));
        }
    }

    /// <summary>Where the agent's time goes: per-process times against the bare cost of a launch, and the in-process parse and plan.</summary>
    private async Task ProfileAsync(IptablesBackend backend)
    {
        const int Samples = 15;
        Console.WriteLine($"profile {Name(backend)}: fixed cost of one process via 'ip netns exec' (median of {Samples}, fresh namespace with ts-* chains)");
        using (var ns = FreshNamespace(backend))
        {
            var runner = RunnerIn(ns);
            var direct = new CountingRunner(new ProcessRunner(), options.CommandTimeout);
            var restore = Tools.Restore(backend, IpFamily.V4);
            var probes = new (string Label, ICommandRunner Runner, string Program, string[] Args, string? Stdin)[]
            {
                ("true, started directly (no namespace switch)", direct, "true", [], null),
                ("true, via nsenter --net (setns only)", direct, "nsenter", [$"--net=/run/netns/{ns.Name}", "true"], null),
                ("true, via ip netns exec (setns + mount ns + sysfs)", runner, "true", [], null),
                ("iptables-legacy-save", runner, Tools.Save(IptablesBackend.Legacy, IpFamily.V4), [], null),
                ("ip6tables-legacy-save", runner, Tools.Save(IptablesBackend.Legacy, IpFamily.V6), [], null),
                ("iptables-nft-save", runner, Tools.Save(IptablesBackend.Nft, IpFamily.V4), [], null),
                ("ip6tables-nft-save", runner, Tools.Save(IptablesBackend.Nft, IpFamily.V6), [], null),
                ("ipset save (no sets)", runner, Tools.Ipset, ["save"], null),
                ("ipset restore (empty input)", runner, Tools.Ipset, ["restore"], ""),
                ($"{restore} --noflush -w 5 (empty input)", runner, restore, ["--noflush", "-w", "5"], ""),
                ($"{restore} --noflush -w 5 (*filter COMMIT)", runner, restore, ["--noflush", "-w", "5"], "*filter\nCOMMIT\n"),
                ($"{restore} --noflush -w 5 (*filter COMMIT *nat COMMIT)", runner, restore, ["--noflush", "-w", "5"], "*filter\nCOMMIT\n*nat\nCOMMIT\n"),
            };
            foreach (var (label, probeRunner, program, probeArgs, stdin) in probes)
            {
                var times = new List<double>();
                for (var i = 0; i < Samples; i++)
                {
                    var clock = Stopwatch.StartNew();
                    var output = await probeRunner.RunAsync(program, probeArgs, stdin, cancellationToken);
                    times.Add(clock.Elapsed.TotalMilliseconds);
                    if (!output.Succeeded)
                    {
                        throw new BenchException($"profile probe '{label}' failed ({output.ExitCode}): {output.StdErr.Trim()}");
                    }
                }

                Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"    {label,-62} {Median(times),7:F1} ms"));
            }

            // The engine's read starts 5 processes at once; is that faster than one after another here?
            var firewall = new HostFirewall(runner);
            var concurrent = new List<double>();
            var sequential = new List<double>();
            var reads = new (string Program, string[] Args)[]
            {
                (Tools.Save(IptablesBackend.Legacy, IpFamily.V4), []), (Tools.Save(IptablesBackend.Legacy, IpFamily.V6), []),
                (Tools.Save(IptablesBackend.Nft, IpFamily.V4), []), (Tools.Save(IptablesBackend.Nft, IpFamily.V6), []),
                (Tools.Ipset, ["save"]),
            };
            for (var i = 0; i < Samples; i++)
            {
                var clock = Stopwatch.StartNew();
                await firewall.ReadAsync(cancellationToken);
                concurrent.Add(clock.Elapsed.TotalMilliseconds);
                clock.Restart();
                foreach (var (program, readArgs) in reads)
                {
                    await runner.RunAsync(program, readArgs, null, cancellationToken);
                }

                sequential.Add(clock.Elapsed.TotalMilliseconds);
            }

            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"    {"the 5 reads, concurrent (HostFirewall.ReadAsync)",-62} {Median(concurrent),7:F1} ms"));
            Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"    {"the same 5 reads, one after another",-62} {Median(sequential),7:F1} ms"));
        }

        foreach (var n in options.Sizes)
        {
            var exemptions = Exemptions(n);
            using var ns = FreshNamespace(backend);
            var runner = RunnerIn(ns);
            var firewall = new HostFirewall(runner);
            var settings = new FirewallSettings();
            Console.WriteLine($"  N={n}");

            bool? stateful = null;
            foreach (var phase in new[] { "apply", "no-op" })
            {
                runner.Reset();
                var total = Stopwatch.StartNew();
                var clock = Stopwatch.StartNew();
                var snapshot = await firewall.ReadAsync(cancellationToken);
                var readMs = clock.Elapsed.TotalMilliseconds;
                var reads = runner.Records;

                // The parse inside ReadAsync, timed again on the same text (in-process CPU only).
                clock.Restart();
                foreach (var r in reads)
                {
                    _ = r.Program == Tools.Ipset ? (object)IpsetSave.Parse(r.Output.StdOut) : SavedRuleset.Parse(r.Output.StdOut);
                }

                var parseMs = clock.Elapsed.TotalMilliseconds;

                clock.Restart();
                var plan = HostFirewall.Plan(snapshot, exemptions, settings, stateful);
                var planMs = clock.Elapsed.TotalMilliseconds;
                stateful = plan.Stateful;

                runner.Reset();
                clock.Restart();
                if (!plan.IsEmpty)
                {
                    await firewall.WriteAsync(plan, cancellationToken);
                }

                var writeMs = clock.Elapsed.TotalMilliseconds;
                var writes = runner.Records;
                var totalMs = total.Elapsed.TotalMilliseconds;

                Console.WriteLine(string.Create(
                    CultureInfo.InvariantCulture,
                    $"    {phase}: total {totalMs:F1} ms = read {readMs:F1} (concurrent, {reads.Count} procs) + plan {planMs:F2} + write {writeMs:F1} ({writes.Count} procs, sequential); parse of the saved text {parseMs:F2} ms (inside read)"));
                foreach (var r in reads.OrderBy(r => r.StartMs))
                {
                    Console.WriteLine(string.Create(
                        CultureInfo.InvariantCulture,
                        $"      read  {Describe(r),-45} start +{r.StartMs,5:F1}  {r.Ms,7:F1} ms  out {r.Output.StdOut.Length,7} B"));
                }

                foreach (var r in writes)
                {
                    Console.WriteLine(string.Create(
                        CultureInfo.InvariantCulture,
                        $"      write {Describe(r),-45} start +{r.StartMs,5:F1}  {r.Ms,7:F1} ms  in  {r.StdinBytes,7} B"));
                }
            }
        }
    }

    private static string Describe(CommandRecord r) => $"{r.Program} {string.Join(' ', r.Arguments)}".Trim();
}

/// <summary>
/// Runs inside a namespace (started there by the parent with <c>ip netns exec</c>), so that every
/// process it starts is a plain launch, as for the agent on a real node (hostNetwork: the node's own
/// namespace), without the 10-20 ms that <c>ip netns exec</c> adds to each of the agent's commands.
/// </summary>
internal static class Probe
{
    public const string Flag = "--probe";

    /// <summary><c>--probe legacy|nft N REPS</c>: one apply, REPS no-op resyncs on the same engine, one floor; one result line.</summary>
    public static async Task<int> RunAsync(string[] args)
    {
        if (args is not [_, var backendName, var nText, var repsText]
            || backendName is not ("legacy" or "nft")
            || !int.TryParse(nText, CultureInfo.InvariantCulture, out var n)
            || !int.TryParse(repsText, CultureInfo.InvariantCulture, out var reps) || reps < 1)
        {
            await Console.Error.WriteLineAsync("usage: bench-apply --probe legacy|nft N REPS (run inside a prepared namespace)");
            return 64;
        }

        var backend = backendName == "legacy" ? IptablesBackend.Legacy : IptablesBackend.Nft;
        using var cts = new CancellationTokenSource(TimeSpan.FromMinutes(5));
        var runner = new CountingRunner(new ProcessRunner(), TimeSpan.FromMinutes(2));
        var firewall = new HostFirewall(runner);
        var settings = new FirewallSettings();
        var exemptions = Bench.Exemptions(n);

        // A dry run first compiles the read and plan paths (this process is fresh) and writes nothing.
        await firewall.ReconcileAsync(exemptions, settings, null, dryRun: true, cts.Token);

        var clock = Stopwatch.StartNew();
        var apply = await firewall.ReconcileAsync(exemptions, settings, null, dryRun: false, cts.Token);
        var applyMs = clock.Elapsed.TotalMilliseconds;
        if (!apply.Wrote || apply.Plan.Backend.Backend != backend)
        {
            await Console.Error.WriteLineAsync($"probe: the apply wrote {apply.Wrote} with {apply.Plan.Backend.Backend} ({apply.Plan.Backend.Reason})");
            return 1;
        }

        var noops = new List<double>();
        var wrote = false;
        var procs = new HashSet<int>();
        for (var i = 0; i < reps; i++)
        {
            runner.Reset();
            clock.Restart();
            var noop = await firewall.ReconcileAsync(exemptions, settings, apply.Plan.Stateful, dryRun: false, cts.Token);
            noops.Add(clock.Elapsed.TotalMilliseconds);
            wrote |= noop.Wrote;
            procs.Add(runner.Launches);
        }

        var tool = Tools.Restore(backend, IpFamily.V4);
        var input = Bench.NaiveRestore(n);
        clock.Restart();
        var floor = await new ProcessRunner().RunAsync(tool, ["--noflush"], input, cts.Token);
        var floorMs = clock.Elapsed.TotalMilliseconds;
        if (!floor.Succeeded)
        {
            await Console.Error.WriteLineAsync($"probe: {tool} (floor) failed: {floor.StdErr.Trim()}");
            return 1;
        }

        Console.WriteLine(string.Create(
            CultureInfo.InvariantCulture,
            $"probe apply_ms={applyMs:F2} floor_ms={floorMs:F2} noop_ms={Bench.Median(noops):F2} noop_wrote={wrote} noop_procs={string.Join('/', procs.Order())}"));
        return 0;
    }
}
