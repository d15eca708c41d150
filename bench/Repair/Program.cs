using System.Globalization;
using System.Runtime.InteropServices;
using TsCgnat.TestSupport;

namespace TsCgnat.Bench.Repair;

/// <summary>
/// bench-repair: how long the agent's rules stay gone when tailscaled (mode on) rewrites its chains, per back end,
/// timed from outside the agent, next to what a 10 s poll would give (design section 10). See README.md.
/// </summary>
internal static class Program
{
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

        var missing = MissingTools(options.Backends);
        if (missing.Count > 0)
        {
            await Console.Error.WriteLineAsync($"bench-repair: not installed or not on PATH: {string.Join(", ", missing)}");
            return 1;
        }

        if (!File.Exists(options.AgentPath))
        {
            await Console.Error.WriteLineAsync($"bench-repair: no agent at {options.AgentPath}; build it with `dotnet build src/NodeAgent -c Release` or pass --agent");
            return 1;
        }

        // The agent runs from a private copy of its build output: other work may rebuild it while the bench runs,
        // and every back end should measure the same build. The copy's program has its own name, so that a
        // clean-up elsewhere that stops agents by name (it happened during a run here) does not stop this one;
        // the app host finds its ts-cgnat-agent.dll whatever the host file is called.
        var agentCopy = Directory.CreateTempSubdirectory("tsrb-agent-");
        CopyDirectory(Path.GetDirectoryName(options.AgentPath)!, agentCopy.FullName);
        var program = Path.Combine(agentCopy.FullName, "tsrb-agent-under-test");
        File.Move(Path.Combine(agentCopy.FullName, Path.GetFileName(options.AgentPath)), program);
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
        Console.WriteLine($"  load average at start: {RepairBench.LoadAverage()} (other work on this machine slows the emulator and the agent alike)");
        Console.WriteLine($"  {Sh.Run("iptables-legacy", "-V").StdOut.Trim()}; {Sh.Run("iptables-nft", "-V").StdOut.Trim()}; {Sh.Run("nft", "-v").StdOut.Trim()}");
        Console.WriteLine($"  agent {agentBuilt} (built {File.GetLastWriteTime(agentBuilt):yyyy-MM-dd HH:mm}, run from a copy), policy {options.PolicyFile}");
        Console.WriteLine($"  back ends {string.Join(',', options.Backends)}; {options.Iterations} rewrites each ('{options.Rewrite}' with tailscaled in mode on), "
            + $"{options.Warmup} warm-up rewrite(s) not counted, settle {options.Settle.TotalMilliseconds:F0} ms");

        var bench = new RepairBench(options, cts.Token);
        var exitCode = 0;
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

        if (bench.Results.Count > 0)
        {
            Console.WriteLine();
            if (exitCode != 0)
            {
                Console.WriteLine($"INCOMPLETE: only {string.Join(", ", bench.Results.Select(r => r.Label))} finished (see the error on stderr)");
            }

            Report.Print(bench.Results, options, Console.Out);
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

    private static List<string> MissingTools(IEnumerable<string> backends)
    {
        var tools = new List<string> { "ip", "bash", "ipset", "nft", "kill" };
        foreach (var backend in backends)
        {
            tools.AddRange(backend == "legacy" ? ["iptables-legacy", "iptables-legacy-save"] : backend == "nft" ? ["iptables-nft"] : []);
        }

        var path = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries);
        return [.. tools.Distinct().Where(t => !path.Any(d => File.Exists(Path.Combine(d, t))))];
    }
}

internal sealed class BenchException(string message) : Exception(message);

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
    TimeSpan Deadline)
{
    /// <summary>The agent's default <c>--legacy-poll-interval</c>, in seconds: the legacy target.</summary>
    public const double DefaultLegacyPoll = 1;

    private const string Usage = """
        usage: bench-repair [--iterations 50] [--backends legacy,nft,nftables] [--rewrite down-up|restart] [--warmup 1]
                            [--poll-comparison 0] [--agent PATH] [--policy FILE] [--settle-ms 1000]
                            [--rewrite-timeout-seconds 180] [--timeout-minutes 240]
          --iterations       rewrites of tailscaled's chains per back end
          --backends         legacy, nft (tailscaled's iptables runner over iptables-legacy / iptables-nft),
                             nftables (its native nftables runner)
          --rewrite          down-up: `tailscale down` then `up`; restart: tailscaled restarted (both flush and rebuild ts-*)
          --warmup           rewrites run first and not counted (the agent's first repair includes JIT compilation)
          --poll-comparison  N > 0: also run N rewrites on legacy with the agent polling every 10 s, measured side by side
          --agent            the ts-cgnat-agent to run (default: src/NodeAgent/bin/Release/net10.0/ts-cgnat-agent)
          --policy           policy file (default: config/samples/subnet-router.yaml)
          --settle-ms        a rewrite is over when our rules are back and nothing changed for this long
        Must run as root. Each back end runs in a fresh network namespace, deleted afterwards (also on Ctrl+C).
        """;

    public static Options? Parse(string[] args, TextWriter error)
    {
        var backends = new List<string> { "legacy", "nft", "nftables" };
        var iterations = 50;
        var warmup = 1;
        var pollComparison = 0;
        var rewrite = "down-up";
        var agent = Path.Combine(Repo.Root, "src", "NodeAgent", "bin", "Release", "net10.0", "ts-cgnat-agent");
        var policy = Path.Combine(Repo.Root, "config", "samples", "subnet-router.yaml");
        var settle = TimeSpan.FromMilliseconds(1000);
        var rewriteTimeout = TimeSpan.FromSeconds(180);
        var deadline = TimeSpan.FromMinutes(240);
        var parsed = new BenchArguments("bench-repair", Usage)
            .Number("--iterations", 1, 10_000, n => iterations = n)
            .Number("--warmup", 0, 100, n => warmup = n)
            .Number("--poll-comparison", 0, 10_000, n => pollComparison = n)
            .List("--backends", Backend, list => backends = list)
            .Option("--rewrite", kind => rewrite = kind is "down-up" or "restart" ? kind : throw new FormatException("--rewrite must be down-up or restart"))
            .Option("--agent", path => agent = Path.GetFullPath(path))
            .Option("--policy", path => policy = Path.GetFullPath(path))
            .Number("--settle-ms", 100, 60_000, n => settle = TimeSpan.FromMilliseconds(n))
            .Number("--rewrite-timeout-seconds", 5, 3600, n => rewriteTimeout = TimeSpan.FromSeconds(n))
            .Number("--timeout-minutes", 1, 24 * 60, n => deadline = TimeSpan.FromMinutes(n))
            .TryParse(args, error);
        return parsed ? new Options(backends, iterations, warmup, pollComparison, rewrite, agent, policy, settle, rewriteTimeout, deadline) : null;
    }

    private static string Backend(string name) => name switch
    {
        "legacy" or "iptables-legacy" => "legacy",
        "nft" or "iptables-nft" => "nft",
        "nftables" => "nftables",
        _ => throw new FormatException($"--backends: unknown back end '{name}' (legacy, nft, nftables)"),
    };
}
