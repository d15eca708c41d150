using TsCgnat.Firewall.Processes;
using TsCgnat.TestSupport;

namespace TsCgnat.NodeAgent.Tests;

/// <summary>The real ts-cgnat-agent program, run as a process, as a user or systemd would.</summary>
public static class Agent
{
    public static string Program { get; } = Path.Combine(AppContext.BaseDirectory, "ts-cgnat-agent");

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
