using System.Globalization;
using System.Runtime.Versioning;
using TsCgnat.TestSupport;

[assembly: SupportedOSPlatform("linux")]

namespace TsCgnat.Bench.Cli;

/// <summary>
/// bench-cli: the NativeAOT ts-cgnat-agent as whole processes (version, first apply, no-op apply, idle run) next to
/// the floor, in one run, with PASS or MISS against issue 11's table. See README.md.
/// </summary>
internal static class Program
{
    private static int Main(string[] args)
    {
        if (args is [Probe.Flag, ..])
        {
            return Probe.Run(args);
        }

        var options = Options.Parse(args, Console.Error);
        if (options is null)
        {
            return 64;
        }

        if (!Environment.IsPrivilegedProcess)
        {
            Console.Error.WriteLine($"bench-cli: must run as root (it creates network namespaces and runs the agent in them); running as {Environment.UserName}.");
            return 1;
        }

        if (!File.Exists(options.Agent))
        {
            Console.Error.WriteLine($"bench-cli: no agent at {options.Agent}; publish it with NativeAOT first (README.md) or pass --agent");
            return 1;
        }

        var bench = new CliBench(options);
        try
        {
            bench.Run(Console.Out);
            return 0;
        }
        catch (Exception e) when (e is BenchException or InvalidOperationException or IOException)
        {
            Console.Error.WriteLine($"bench-cli: failed: {e.Message}");
            return 1;
        }
        finally
        {
            bench.Dispose();
        }
    }
}

internal sealed record Options(string Agent, IReadOnlyList<int> Sizes, IReadOnlyList<string> Backends, int Repeat, int IdleSeconds)
{
    private const string Usage = """
        usage: bench-cli [--agent /tmp/ts-cgnat-aot/ts-cgnat-agent] [--sizes 10,1000,10000] [--backends nft,legacy] [--repeat 5] [--idle-seconds 10]
          --agent         the NativeAOT agent to measure (dotnet publish src/NodeAgent -c Release -r linux-x64 -p:PublishAot=true -o DIR)
          --sizes         allowed source CIDRs per row (distinct /24s in 100.64.0.0/10, over 10 policy files)
          --backends      iptables back ends tailscaled's chains are put in (nft, legacy)
          --repeat        fresh namespaces per row; in each, this many version and no-op apply runs
          --idle-seconds  how long the idle run is sampled (VmRSS and RssAnon once a second, the largest kept)
        Must run as root. Each row runs in fresh network namespaces, deleted afterwards.
        """;

    public static Options? Parse(string[] args, TextWriter error)
    {
        var agent = "/tmp/ts-cgnat-aot/ts-cgnat-agent";
        var sizes = new List<int> { 10, 1000, 10000 };
        var backends = new List<string> { "nft", "legacy" };
        var repeat = 5;
        var idleSeconds = 10;
        var parsed = new BenchArguments("bench-cli", Usage)
            .Option("--agent", path => agent = Path.GetFullPath(path))
            .List("--sizes", Size, list => sizes = list)
            .List("--backends", b => b is "nft" or "legacy" ? b : throw new FormatException($"--backends: unknown back end '{b}' (nft, legacy)"), list => backends = list)
            .Number("--repeat", 1, 100, n => repeat = n)
            .Number("--idle-seconds", 1, 600, n => idleSeconds = n)
            .TryParse(args, error);
        return parsed ? new Options(agent, sizes, backends, repeat, idleSeconds) : null;
    }

    private static int Size(string text) =>
        int.TryParse(text, CultureInfo.InvariantCulture, out var n) && n >= 1 && n <= Policies.MaxSize
            ? n
            : throw new FormatException($"--sizes: each size must be between 1 and {Policies.MaxSize}, not '{text}'");
}
