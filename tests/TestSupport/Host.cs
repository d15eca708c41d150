using TsCgnat.Firewall.Processes;
using Xunit;

namespace TsCgnat.TestSupport;

/// <summary>Where the repository is and how to run things in tests.</summary>
public static class Repo
{
    public static string Root { get; } = FindRoot();

    public static string Fixture(string name) => Path.Combine(Root, "tests", "fixtures", name);

    private static string FindRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            if (File.Exists(Path.Combine(dir.FullName, "TsCgnatOperator.sln")))
            {
                return dir.FullName;
            }
        }

        throw new InvalidOperationException("TsCgnatOperator.sln not found above " + AppContext.BaseDirectory);
    }
}

/// <summary>
/// Tests that need root and network namespaces run in CI and fail there when they cannot; elsewhere
/// they are skipped with the reason.
/// </summary>
public static class Privileges
{
    private static readonly Lazy<string?> Missing = new(FindMissing);

    public static bool InCi => string.Equals(Environment.GetEnvironmentVariable("CI"), "true", StringComparison.OrdinalIgnoreCase);

    /// <summary>Call first in a [SkippableFact] that needs root, ip netns, iptables and ipset.</summary>
    public static void RequireNetns()
    {
        var missing = Missing.Value;
        if (missing is null)
        {
            return;
        }

        if (InCi)
        {
            throw new InvalidOperationException($"CI=true but this test cannot run: {missing}. .ci/run must install and allow it.");
        }

        Skip.If(true, $"needs root with network namespaces, iptables (legacy and nft), ipset and nft: {missing}");
    }

    /// <summary>
    /// Call first in a [SkippableFact] that runs <paramref name="tool"/> (e.g. promtool or prometheus, from Debian's
    /// prometheus package): its full path, a failure under CI=true when it is missing, else a skip with the reason.
    /// </summary>
    public static string RequireTool(string tool, string package)
    {
        var path = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, tool))
            .FirstOrDefault(File.Exists);
        if (path is not null)
        {
            return path;
        }

        if (InCi)
        {
            throw new InvalidOperationException($"CI=true but {tool} is not installed: .ci/run must install the Debian package {package}.");
        }

        Skip.If(true, $"needs {tool} (apt-get install {package})");
        return tool;
    }

    private static string? FindMissing()
    {
        if (Environment.UserName != "root")
        {
            return $"running as {Environment.UserName}, not root";
        }

        foreach (var tool in new[] { "ip", "iptables-legacy", "iptables-nft", "ipset", "nft", "ping" })
        {
            if (!Environment.GetEnvironmentVariable("PATH")!.Split(':').Any(d => File.Exists(Path.Combine(d, tool))))
            {
                return $"{tool} is not installed";
            }
        }

        var probe = $"tsc-probe-{Environment.ProcessId}";
        var add = Sh.Run("ip", "netns", "add", probe);
        Sh.Run("ip", "netns", "del", probe);
        return add.Succeeded ? null : $"'ip netns add' failed: {add.StdErr.Trim()}";
    }
}

/// <summary>Runs a process synchronously (tests only): arguments as a list, never a shell line.</summary>
public static class Sh
{
    private static readonly ProcessRunner Runner = new();

    public static CommandOutput Run(string program, params string[] args) => RunWithInput(program, args, null);

    public static CommandOutput RunWithInput(string program, IReadOnlyList<string> args, string? stdin) =>
        Runner.RunAsync(program, args, stdin, CancellationToken.None).GetAwaiter().GetResult();

    /// <summary>Runs and fails the test with the process output when it does not succeed.</summary>
    public static string Ok(string program, params string[] args)
    {
        var output = Run(program, args);
        if (!output.Succeeded)
        {
            throw new InvalidOperationException($"{program} {string.Join(' ', args)} exited {output.ExitCode}:\n{output.StdOut}\n{output.StdErr}");
        }

        return output.StdOut;
    }
}

/// <summary>Unique names, so parallel tests and leftover runs never collide.</summary>
public static class UniqueName
{
    private static int _counter;

    public static string For(string prefix) =>
        $"{prefix}{Environment.ProcessId % 100000:x}{Interlocked.Increment(ref _counter):x}{Random.Shared.Next(0x100):x2}";
}

/// <summary>A network namespace made for one test and always deleted.</summary>
public sealed class Netns : IDisposable
{
    /// <summary>Which of <paramref name="names"/> <c>ip netns list</c> still shows (what a run made and did not delete).</summary>
    public static List<string> StillListed(IEnumerable<string> names)
    {
        var listed = Sh.Run("ip", "netns", "list").StdOut
            .Split('\n', StringSplitOptions.RemoveEmptyEntries)
            .Select(l => l.Split(' ')[0])
            .ToHashSet(StringComparer.Ordinal);
        return [.. names.Where(listed.Contains)];
    }

    public Netns(string prefix = "tsc")
    {
        Name = UniqueName.For(prefix);
        Sh.Ok("ip", "netns", "add", Name);
        Sh.Ok("ip", "netns", "exec", Name, "ip", "link", "set", "lo", "up");
    }

    public string Name { get; }

    public ICommandRunner Runner => new NetnsRunner(new ProcessRunner(), Name);

    /// <summary>Runs a command inside the namespace and returns stdout; throws on failure.</summary>
    public string Exec(params string[] args) => Sh.Ok("ip", ["netns", "exec", Name, .. args]);

    public CommandOutput Try(params string[] args) => Sh.Run("ip", ["netns", "exec", Name, .. args]);

    public void Dispose() => Sh.Run("ip", "netns", "del", Name);
}
