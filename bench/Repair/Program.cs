using System.Globalization;
using System.Runtime.InteropServices;
using TsCgnat.TestSupport;

namespace TsCgnat.Bench.Repair;

/// <summary>
/// bench-repair: how long the agent's rules stay gone when tailscaled rewrites its chains, timed from outside the
/// agent (design section 10): against the emulator in mode on, next to what a 10 s poll would give, or against the
/// real tailscaled next to the emulator, with pings across every restart, down/up and crash. See README.md.
/// </summary>
internal static class Program
{
    private static readonly string[] RealBinaries = ["tailscaled", "tailscale", "tsreal-control"];

    private static async Task<int> Main(string[] args)
    {
        var options = Options.Parse(args, Console.Error);
        if (options is null)
        {
            return 64;
        }

        if (!Environment.IsPrivilegedProcess)
        {
            await Console.Error.WriteLineAsync($"bench-repair: must run as root (it creates network namespaces and runs the agent in them); running as {Environment.UserName}.");
            return 1;
        }

        if (options.Tailscaled == "real" && RealAssets() is { } why)
        {
            await Console.Error.WriteLineAsync($"bench-repair: --tailscaled real needs the real tailscaled: {why}");
            return 1;
        }

        var missing = MissingTools(options);
        if (missing.Count > 0)
        {
            await Console.Error.WriteLineAsync($"bench-repair: not installed or not on PATH: {string.Join(", ", missing)}");
            return 1;
        }

        if (!File.Exists(options.AgentPath))
        {
            await Console.Error.WriteLineAsync($"bench-repair: no agent at {options.AgentPath}; build it with `dotnet build src/NodeAgent -c Release`, set {Options.AotVariable} or pass --agent");
            return 1;
        }

        // The agent runs from a private copy of its build output: other work may rebuild it while the bench runs,
        // and every back end should measure the same build. The copy's program has its own name, so that a
        // clean-up elsewhere that stops agents by name (it happened during a run here) does not stop this one;
        // the app host finds its ts-cgnat-agent.dll whatever the host file is called. A NativeAOT binary is the
        // whole program: only it is copied, not the folder (which may hold the other programs and their symbols).
        var agentCopy = Directory.CreateTempSubdirectory("tsrb-agent-");
        var program = Path.Combine(agentCopy.FullName, "tsrb-agent-under-test");
        if (Options.IsNativeAot(options.AgentPath))
        {
            File.Copy(options.AgentPath, program);
            File.SetUnixFileMode(program, File.GetUnixFileMode(options.AgentPath));
        }
        else
        {
            CopyDirectory(Path.GetDirectoryName(options.AgentPath)!, agentCopy.FullName);
            File.Move(Path.Combine(agentCopy.FullName, Path.GetFileName(options.AgentPath)), program);
        }

        try
        {
            return await RunAsync(options with { AgentPath = program }, options.AgentPath);
        }
        finally
        {
            agentCopy.Delete(recursive: true);
        }
    }

    private static async Task<int> RunAsync(Options options, string agentBuilt)
    {
        using var cts = new CancellationTokenSource(options.Deadline);
        using var sigint = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
        using var sigterm = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
        void Stop(PosixSignalContext context)
        {
            context.Cancel = true;
            cts.Cancel();
        }

        var started = DateTimeOffset.Now;
        Console.WriteLine($"bench-repair  {started:yyyy-MM-dd HH:mm:ss zzz}  {Environment.ProcessorCount} cores  kernel {Environment.OSVersion.Version}  .NET {Environment.Version}");
        Console.WriteLine($"  load average at start: {RepairBench.LoadAverage()} (other work on this machine slows tailscaled, the emulator and the agent alike)");
        Console.WriteLine($"  {Sh.Run("iptables-legacy", "-V").StdOut.Trim()}; {Sh.Run("iptables-nft", "-V").StdOut.Trim()}; {Sh.Run("nft", "-v").StdOut.Trim()}");
        Console.WriteLine($"  agent {agentBuilt} ({(Options.IsNativeAot(agentBuilt) ? "NativeAOT" : "JIT build output")}, built {File.GetLastWriteTime(agentBuilt):yyyy-MM-dd HH:mm}, run from a copy), policy {options.PolicyFile}");
        if (options.Tailscaled == "real")
        {
            var assets = Environment.GetEnvironmentVariable(RealTailscale.Variable)!;
            Console.WriteLine($"  real tailscaled {Sh.Run(Path.Combine(assets, "tailscaled"), "--version").StdOut.Split('\n')[0].Trim()} from {assets} (tests/fixtures/tailnet.sh), next to the emulator (tests/fixtures/tailscaled-emu.sh in tests/fixtures/lab.sh)");
            Console.WriteLine($"  runners {string.Join(',', options.Backends)}; modes {string.Join(',', options.Modes)}; steps {string.Join(',', options.Steps)}; {string.Join(" and ", options.Targets)}; "
                + $"{options.Iterations} of each step per lab, {options.Warmup} warm-up round(s) not counted, settle {options.Settle.TotalMilliseconds:F0} ms");
        }
        else
        {
            Console.WriteLine($"  back ends {string.Join(',', options.Backends)}; {options.Iterations} rewrites each ('{options.Rewrite}' with tailscaled in mode on), "
                + $"{options.Warmup} warm-up rewrite(s) not counted, settle {options.Settle.TotalMilliseconds:F0} ms");
        }

        var exitCode = 0;
        IBench bench = options.Tailscaled == "real" ? new RealBench(options, cts.Token) : new RepairBench(options, cts.Token);
        try
        {
            await bench.RunAsync();
        }
        catch (Exception e) when (cts.IsCancellationRequested && e is OperationCanceledException or BenchException)
        {
            await Console.Error.WriteLineAsync($"bench-repair: stopped (interrupted, or the {options.Deadline.TotalMinutes:F0} min limit of --timeout-minutes was reached)");
            exitCode = 2;
        }
        catch (BenchException e)
        {
            await Console.Error.WriteLineAsync($"bench-repair: failed: {e.Message}");
            exitCode = 1;
        }

        var done = bench.Finished;
        if (done.Count > 0)
        {
            Console.WriteLine();
            if (exitCode != 0)
            {
                Console.WriteLine($"INCOMPLETE: only {string.Join(", ", done)} finished (see the error on stderr)");
            }

            bench.Print(Console.Out);
        }

        // Namespaces are deleted by their 'using' (processes in them are killed first); check that ip netns list agrees.
        var left = bench.LeftoverNamespaces();
        if (left.Count > 0)
        {
            await Console.Error.WriteLineAsync($"bench-repair: namespaces left behind: {string.Join(", ", left)}");
            return 1;
        }

        Console.WriteLine();
        Console.WriteLine($"finished in {(DateTimeOffset.Now - started).TotalSeconds:F0} s; load average at end: {RepairBench.LoadAverage()}");
        Console.WriteLine($"namespaces: {bench.CreatedNamespaces} created, all deleted (ip netns list shows none of them)");
        return exitCode;
    }

    private static void CopyDirectory(string from, string to)
    {
        foreach (var file in Directory.EnumerateFiles(from, "*", SearchOption.AllDirectories))
        {
            var target = Path.Combine(to, Path.GetRelativePath(from, file));
            Directory.CreateDirectory(Path.GetDirectoryName(target)!);
            File.Copy(file, target);
            File.SetUnixFileMode(target, File.GetUnixFileMode(file));
        }
    }

    private static List<string> MissingTools(Options options)
    {
        var tools = new List<string> { "ip", "bash", "ipset", "nft", "kill" };
        foreach (var backend in options.Backends)
        {
            tools.AddRange(backend == "legacy" ? ["iptables-legacy", "iptables-legacy-save"] : backend == "nft" ? ["iptables-nft"] : []);
        }

        if (options.Tailscaled == "real")
        {
            tools.AddRange(["ping", "socat", "conntrack", "unshare", "iptables-legacy", "iptables-nft"]);
        }

        var path = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries);
        return [.. tools.Distinct().Where(t => !path.Any(d => File.Exists(Path.Combine(d, t))))];
    }

    /// <summary>
    /// Finds the real tailscaled as scripts/test.sh does (TSCGNAT_TAILSCALE_ASSETS, else ../shared/tailscale beside the
    /// checkout) and sets the variable for tailnet.sh; the reason when it is not there.
    /// </summary>
    private static string? RealAssets()
    {
        var dir = Environment.GetEnvironmentVariable(RealTailscale.Variable);
        if (string.IsNullOrEmpty(dir))
        {
            dir = Path.GetFullPath(Path.Combine(Repo.Root, "..", "shared", "tailscale"));
        }

        var absent = RealBinaries.FirstOrDefault(b => !File.Exists(Path.Combine(dir, b)));
        if (absent is not null)
        {
            return $"{dir} has no {absent} (set {RealTailscale.Variable} to the folder with tailscaled, tailscale and tsreal-control)";
        }

        Environment.SetEnvironmentVariable(RealTailscale.Variable, dir);
        return null;
    }
}

internal sealed class BenchException(string message) : Exception(message);

/// <summary>One of the two modes: runs, says what finished, prints its tables, and tells which of its namespaces are left.</summary>
internal interface IBench
{
    int CreatedNamespaces { get; }

    /// <summary>What has been measured so far: when a later part fails, the report still shows these.</summary>
    IReadOnlyList<string> Finished { get; }

    Task RunAsync();

    void Print(TextWriter output);

    /// <summary>Our namespaces that <c>ip netns list</c> still shows.</summary>
    List<string> LeftoverNamespaces();
}

internal sealed record Options(
    IReadOnlyList<string> Backends,
    int Iterations,
    int Warmup,
    int PollComparison,
    string Rewrite,
    string AgentPath,
    string PolicyFile,
    TimeSpan Settle,
    TimeSpan RewriteTimeout,
    TimeSpan Deadline,
    string Tailscaled,
    IReadOnlyList<string> Modes,
    IReadOnlyList<string> Steps,
    IReadOnlyList<string> Targets,
    TimeSpan PingInterval,
    string? LogDir)
{
    /// <summary>The agent's default <c>--legacy-poll-interval</c>, in seconds: the legacy target.</summary>
    public const double DefaultLegacyPoll = 1;

    /// <summary>The folder of the NativeAOT binaries (.ci/run and scripts/aot-check.sh fill it).</summary>
    public const string AotVariable = "TSCGNAT_AOT_DIR";

    private const string AgentName = "ts-cgnat-agent";

    private const string Usage = """
        usage: bench-repair [--tailscaled emulator|real] [--iterations N] [--backends legacy,nft,nftables] [--warmup 1]
                            [--rewrite down-up|restart] [--poll-comparison 0]
                            [--modes on,nodivert] [--steps restart,down-up,crash-start] [--targets emulator,real]
                            [--ping-interval-ms 16] [--log-dir DIR]
                            [--agent PATH] [--policy FILE] [--settle-ms 1000]
                            [--rewrite-timeout-seconds 180] [--timeout-minutes 240]
          --tailscaled       emulator (default): the emulator alone in one namespace, mode on, as before;
                             real: for each runner x mode, the emulator's lab and then the real tailscaled's
                             (tests/fixtures/tailnet.sh), pings from u2 to u3 across every step, side by side
          --iterations       rewrites per back end (emulator: default 50), or each step per lab (real: default 10)
          --backends         legacy, nft (tailscaled's iptables runner over iptables-legacy / iptables-nft),
                             nftables (its native nftables runner)
          --warmup           rewrites (real: rounds of every step) run first and not counted
          --rewrite          emulator mode: down-up (`tailscale down` then `up`) or restart
          --poll-comparison  emulator mode: N > 0 also runs N rewrites on legacy with the agent polling every 10 s
          --modes            real mode: tailscaled's netfilter modes (the native runner in nodivert is refused by the agent: skipped)
          --steps            real mode: restart (SIGTERM, tailscaled --cleanup, start), down-up, crash-start (kill -9, start)
          --targets          real mode: which labs, emulator and/or real (default both, side by side)
          --ping-interval-ms real mode: one echo request from u2 to u3 every this many ms
          --log-dir          real mode: keep the agent's output and tailscaled's log of each lab there
          --agent            the ts-cgnat-agent to run, or a folder holding one (default: TSCGNAT_AOT_DIR's NativeAOT
                             binary if there is one, else src/NodeAgent/bin/Release/net10.0/ts-cgnat-agent)
          --policy           policy file (default: config/samples/subnet-router.yaml)
          --settle-ms        a rewrite is over when our rules are back and nothing changed for this long
        Must run as root. Each lab runs in fresh network namespaces, deleted afterwards (also on Ctrl+C).
        """;

    /// <summary>A NativeAOT build is one file; a JIT build has its assembly beside the app host.</summary>
    public static bool IsNativeAot(string agent) => !File.Exists(Path.ChangeExtension(agent, ".dll"));

    public static Options? Parse(string[] args, TextWriter error)
    {
        var backends = new List<string> { "legacy", "nft", "nftables" };
        int? iterations = null;
        var warmup = 1;
        var pollComparison = 0;
        var rewrite = "down-up";
        string? agent = null;
        var policy = Path.Combine(Repo.Root, "config", "samples", "subnet-router.yaml");
        var settle = TimeSpan.FromMilliseconds(1000);
        var rewriteTimeout = TimeSpan.FromSeconds(180);
        var deadline = TimeSpan.FromMinutes(240);
        var tailscaled = "emulator";
        var modes = new List<string> { "on", "nodivert" };
        var steps = new List<string> { "restart", "down-up", "crash-start" };
        var targets = new List<string> { "emulator", "real" };
        var pingInterval = TimeSpan.FromMilliseconds(16);
        string? logDir = null;
        var parsed = new BenchArguments("bench-repair", Usage)
            .Option("--tailscaled", kind => tailscaled = kind is "emulator" or "real" ? kind : throw new FormatException("--tailscaled must be emulator or real"))
            .Number("--iterations", 1, 10_000, n => iterations = n)
            .Number("--warmup", 0, 100, n => warmup = n)
            .Number("--poll-comparison", 0, 10_000, n => pollComparison = n)
            .List("--backends", Backend, list => backends = list)
            .List("--modes", m => m is "on" or "nodivert" ? m : throw new FormatException($"--modes: unknown mode '{m}' (on, nodivert)"), list => modes = list)
            .List("--steps", Step, list => steps = list)
            .List("--targets", t => t is "emulator" or "real" ? t : throw new FormatException($"--targets: unknown lab '{t}' (emulator, real)"), list => targets = list)
            .Number("--ping-interval-ms", 2, 1000, n => pingInterval = TimeSpan.FromMilliseconds(n))
            .Option("--log-dir", path => logDir = Path.GetFullPath(path))
            .Option("--rewrite", kind => rewrite = kind is "down-up" or "restart" ? kind : throw new FormatException("--rewrite must be down-up or restart"))
            .Option("--agent", path => agent = Path.GetFullPath(path))
            .Option("--policy", path => policy = Path.GetFullPath(path))
            .Number("--settle-ms", 100, 60_000, n => settle = TimeSpan.FromMilliseconds(n))
            .Number("--rewrite-timeout-seconds", 5, 3600, n => rewriteTimeout = TimeSpan.FromSeconds(n))
            .Number("--timeout-minutes", 1, 24 * 60, n => deadline = TimeSpan.FromMinutes(n))
            .TryParse(args, error);
        if (!parsed)
        {
            return null;
        }

        return new Options(
            backends, iterations ?? (tailscaled == "real" ? 10 : 50), warmup, pollComparison, rewrite, Agent(agent), policy, settle, rewriteTimeout, deadline,
            tailscaled, modes, steps, targets, pingInterval, logDir);
    }

    /// <summary>The agent a user runs: the NativeAOT binary where one is at hand, else the build output.</summary>
    private static string Agent(string? given)
    {
        if (given is not null)
        {
            return Directory.Exists(given) ? Path.Combine(given, AgentName) : given;
        }

        var aot = Environment.GetEnvironmentVariable(AotVariable);
        return !string.IsNullOrEmpty(aot) && File.Exists(Path.Combine(aot, AgentName))
            ? Path.Combine(aot, AgentName)
            : Path.Combine(Repo.Root, "src", "NodeAgent", "bin", "Release", "net10.0", AgentName);
    }

    private static string Backend(string name) => name switch
    {
        "legacy" or "iptables-legacy" => "legacy",
        "nft" or "iptables-nft" => "nft",
        "nftables" => "nftables",
        _ => throw new FormatException($"--backends: unknown back end '{name}' (legacy, nft, nftables)"),
    };

    private static string Step(string name) => name switch
    {
        "restart" or "down-up" or "crash-start" => name,
        _ => throw new FormatException($"--steps: unknown step '{name}' (restart, down-up, crash-start)"),
    };
}
