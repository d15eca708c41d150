using System.Diagnostics;
using TsCgnat.Firewall.Processes;
using TsCgnat.TestSupport;

namespace TsCgnat.NodeAgent.Tests;

/// <summary>The real ts-cgnat-agent program, run as a process, as a user or systemd would.</summary>
public static class Agent
{
    /// <summary>
    /// The agent as its own project built it (same configuration as the tests), not the copy in the test
    /// output: the tests reference ASP.NET Core (for the fake tailscaled), whose shared framework then
    /// replaces the agent's Microsoft.Extensions packages in the test output, and the copied agent,
    /// which runs on the base framework alone, would not find them.
    /// </summary>
    public static string Program { get; } = Path.Combine(
        Repo.Root, "src", "NodeAgent", "bin", new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name, "net10.0", "ts-cgnat-agent");

    public static CommandOutput Run(params string[] args) => Sh.Run(Program, args);

    /// <summary>Runs and fails with everything the agent said when it does not exit 0.</summary>
    public static string Ok(params string[] args)
    {
        var output = Run(args);
        Assert.True(output.ExitCode == 0, $"ts-cgnat-agent {string.Join(' ', args)} exited {output.ExitCode}:\n{output.StdOut}\n{output.StdErr}");
        return output.StdOut;
    }
}

/// <summary>A temporary directory for policy files and agent state, always removed.</summary>
public sealed class TempDir : IDisposable
{
    public TempDir() => Directory.CreateDirectory(Path);

    public string Path { get; } = System.IO.Path.Combine(System.IO.Path.GetTempPath(), UniqueName.For("tscgnat-test-"));

    public string File(string name, string content)
    {
        var path = System.IO.Path.Combine(Path, name);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(path)!);
        System.IO.File.WriteAllText(path, content);
        return path;
    }

    public string Sub(string name)
    {
        var path = System.IO.Path.Combine(Path, name);
        Directory.CreateDirectory(path);
        return path;
    }

    public void Dispose() => Directory.Delete(Path, recursive: true);
}

public static class Policies
{
    /// <summary>The seed policy: the lab LAN as an allowed source and as a routed subnet.</summary>
    public const string Seed = """
        apiVersion: tscgnat.io/v1alpha1
        kind: CgnatAllowPolicy
        metadata:
          name: seed-lan
        spec:
          allowedSources:
            - cidr: 100.64.0.0/24
              description: LAN behind CGNAT (u3)
          routedSubnets:
            - cidr: 100.64.0.0/24
              description: routed into the tailnet by u2

        """;
}

[CollectionDefinition("netns", DisableParallelization = true)]
public class NetnsSerial;

public class SampleTests
{
    [Fact]
    public void Every_sample_policy_is_valid()
    {
        var samples = HostMode.PolicyFiles.Load([Path.Combine(Repo.Root, "config", "samples")]);

        Assert.Empty(samples.Problems);
        Assert.Equal(["aliyun-internal", "lab-lan"], samples.Policies.Select(p => p.Valid.Name).Order(StringComparer.Ordinal));
    }
}

/// <summary>The agent as a background process (<c>run</c>) whose output is collected, killed if a test leaves it running.</summary>
public sealed class RunningAgent : IDisposable
{
    private readonly System.Text.StringBuilder _output = new();

    public RunningAgent(params string[] args)
    {
        var info = new ProcessStartInfo(Agent.Program) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        Process = Process.Start(info)!;
        Process.OutputDataReceived += (_, e) => Append(e.Data);
        Process.ErrorDataReceived += (_, e) => Append(e.Data);
        Process.BeginOutputReadLine();
        Process.BeginErrorReadLine();
    }

    public Process Process { get; }

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    public void Signal(string name) => Sh.Ok("kill", "-" + name, Process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture));

    /// <summary>Waits for a condition on the host; fails with everything the agent said when it does not come, or the agent died.</summary>
    public void WaitFor(Func<bool> condition, string what, TimeSpan patience)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > patience)
            {
                Assert.Fail($"{what}: not seen within {patience.TotalSeconds} s; agent said:\n{Output}");
            }

            if (Process.HasExited)
            {
                Assert.Fail($"{what}: agent exited {Process.ExitCode}:\n{Output}");
            }

            Thread.Sleep(50);
        }
    }

    public void Dispose()
    {
        if (!Process.HasExited)
        {
            // The whole tree: killed alone, the agent's `nft monitor` child would live on in a deleted namespace.
            Process.Kill(entireProcessTree: true);
            Process.WaitForExit();
        }

        Process.Dispose();
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            _output.AppendLine(line);
        }
    }
}
