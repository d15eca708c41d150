using System.Diagnostics;
using TsCgnat.Api;

namespace TsCgnat.Chart.Tests;

/// <summary>
/// deploy/systemd: the unit, the sample policy and the install and uninstall scripts, run in a
/// throwaway root (DESTDIR) with a stand-in agent that records how it was called.
/// </summary>
public sealed class HostPackageTests : IDisposable
{
    private static readonly string SystemdDir = Path.Combine(ChartPaths.Root, "deploy", "systemd");
    private static readonly string UnitFile = Path.Combine(SystemdDir, "ts-cgnat-agent.service");

    private readonly string work = Directory.CreateTempSubdirectory("ts-cgnat-host-").FullName;
    private readonly string root;
    private readonly string standIn;

    public HostPackageTests()
    {
        root = Path.Combine(work, "root");
        standIn = Path.Combine(work, "ts-cgnat-agent");
        // Records its arguments next to the throwaway root, so a test can see that cleanup ran.
        File.WriteAllText(standIn, $"#!/bin/sh\necho \"$*\" >> '{Path.Combine(work, "calls")}'\n");
        File.SetUnixFileMode(standIn, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
    }

    public void Dispose() => Directory.Delete(work, recursive: true);

    [Fact]
    public void Install_puts_the_binary_the_unit_and_the_sample_policy_in_place()
    {
        var result = Run("install.sh", standIn);

        Assert.Equal(0, result.ExitCode);
        Assert.True(File.Exists(InRoot("usr/local/bin/ts-cgnat-agent")));
        Assert.Equal(File.ReadAllText(UnitFile), File.ReadAllText(InRoot("etc/systemd/system/ts-cgnat-agent.service")));
        Assert.Equal(File.ReadAllText(Path.Combine(SystemdDir, "policy.yaml")), File.ReadAllText(InRoot("etc/ts-cgnat/policy.yaml")));
        Assert.True(File.GetUnixFileMode(InRoot("usr/local/bin/ts-cgnat-agent")).HasFlag(UnixFileMode.OtherExecute));
    }

    [Fact]
    public void Install_keeps_a_policy_the_user_already_wrote()
    {
        Directory.CreateDirectory(InRoot("etc/ts-cgnat"));
        File.WriteAllText(InRoot("etc/ts-cgnat/policy.yaml"), "# mine\n");

        var result = Run("install.sh", standIn);

        Assert.Equal(0, result.ExitCode);
        Assert.Equal("# mine\n", File.ReadAllText(InRoot("etc/ts-cgnat/policy.yaml")));
        Assert.Contains("kept the existing", result.Output, StringComparison.Ordinal);
    }

    [Fact]
    public void Install_points_the_unit_at_the_binary_under_another_prefix()
    {
        var result = Run("install.sh", standIn, ("PREFIX", "/opt/ts-cgnat"));

        Assert.Equal(0, result.ExitCode);
        Assert.True(File.Exists(InRoot("opt/ts-cgnat/bin/ts-cgnat-agent")));
        Assert.Contains(
            "ExecStart=/opt/ts-cgnat/bin/ts-cgnat-agent run ",
            File.ReadAllText(InRoot("etc/systemd/system/ts-cgnat-agent.service")),
            StringComparison.Ordinal);
    }

    [Fact]
    public void Install_refuses_a_missing_binary()
    {
        var result = Run("install.sh", Path.Combine(work, "nothing-here"));

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("is not an executable file", result.Output, StringComparison.Ordinal);
        Assert.False(Directory.Exists(root));
    }

    [Fact]
    public void Uninstall_runs_cleanup_then_removes_the_files_and_keeps_the_policies()
    {
        Assert.Equal(0, Run("install.sh", standIn).ExitCode);
        Directory.CreateDirectory(InRoot("var/lib/ts-cgnat"));
        File.WriteAllText(InRoot("var/lib/ts-cgnat/applied-state.json"), "{}");

        var result = Run("uninstall.sh", ("CLEANUP", "yes"));

        Assert.Equal(0, result.ExitCode);
        Assert.Equal(["cleanup --state-dir /var/lib/ts-cgnat"], File.ReadAllLines(Path.Combine(work, "calls")));
        Assert.False(File.Exists(InRoot("usr/local/bin/ts-cgnat-agent")));
        Assert.False(File.Exists(InRoot("etc/systemd/system/ts-cgnat-agent.service")));
        Assert.False(Directory.Exists(InRoot("var/lib/ts-cgnat")));
        Assert.True(File.Exists(InRoot("etc/ts-cgnat/policy.yaml")));
    }

    [Fact]
    public void Uninstall_into_a_tree_leaves_this_hosts_firewall_alone_unless_cleanup_is_asked_for()
    {
        Assert.Equal(0, Run("install.sh", standIn).ExitCode);

        var result = Run("uninstall.sh");

        Assert.Equal(0, result.ExitCode);
        Assert.Contains("cleanup skipped (DESTDIR or CLEANUP=no); this host's rules were not touched", result.Output, StringComparison.Ordinal);
        Assert.False(File.Exists(Path.Combine(work, "calls")), "the agent was called");
        Assert.False(File.Exists(InRoot("usr/local/bin/ts-cgnat-agent")));
    }

    [Fact]
    public void Uninstall_with_purge_removes_the_policies_too()
    {
        Assert.Equal(0, Run("install.sh", standIn).ExitCode);

        var result = Run("uninstall.sh", "--purge");

        Assert.Equal(0, result.ExitCode);
        Assert.False(Directory.Exists(InRoot("etc/ts-cgnat")));
    }

    [Fact]
    public void Uninstall_stops_when_cleanup_fails_and_keeps_the_binary_to_run_it_again()
    {
        Assert.Equal(0, Run("install.sh", standIn).ExitCode);
        File.WriteAllText(InRoot("usr/local/bin/ts-cgnat-agent"), "#!/bin/sh\necho 'iptables-restore: lock held' >&2\nexit 1\n");

        var result = Run("uninstall.sh", ("CLEANUP", "yes"));

        Assert.Equal(1, result.ExitCode);
        Assert.True(File.Exists(InRoot("usr/local/bin/ts-cgnat-agent")));
    }

    [Fact]
    public void Uninstall_refuses_an_unknown_option()
    {
        var result = Run("uninstall.sh", "--force");

        Assert.Equal(2, result.ExitCode);
        Assert.Contains("usage: uninstall.sh [--purge]", result.Output, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("After", "tailscaled.service network-pre.target")]
    [InlineData("Wants", "tailscaled.service")]
    [InlineData("ExecStart", "/usr/local/bin/ts-cgnat-agent run --policy-file /etc/ts-cgnat/policy.yaml --state-dir /var/lib/ts-cgnat")]
    [InlineData("ExecReload", "/bin/kill -HUP $MAINPID")]
    [InlineData("Restart", "on-failure")]
    [InlineData("StateDirectory", "ts-cgnat")]
    [InlineData("CapabilityBoundingSet", "CAP_NET_ADMIN CAP_NET_RAW")]
    [InlineData("NoNewPrivileges", "yes")]
    [InlineData("ProtectSystem", "strict")]
    [InlineData("ReadWritePaths", "/run")]
    [InlineData("ProtectHome", "yes")]
    [InlineData("PrivateTmp", "yes")]
    [InlineData("RestrictAddressFamilies", "AF_UNIX AF_NETLINK AF_INET AF_INET6")]
    public void The_unit_sets(string key, string value)
    {
        var settings = File.ReadAllLines(UnitFile)
            .Where(l => l.Length > 0 && !l.StartsWith('#') && !l.StartsWith('[') && l.Contains('=', StringComparison.Ordinal))
            .Select(l => l.Split('=', 2))
            .ToLookup(kv => kv[0], kv => kv[1]);

        Assert.Equal([value], settings[key]);
    }

    [SkippableFact]
    public void The_unit_passes_systemd_analyze_verify()
    {
        var analyze = new[] { "/usr/bin/systemd-analyze", "/bin/systemd-analyze" }.FirstOrDefault(File.Exists);
        Skip.If(analyze is null, "systemd-analyze is not installed");
        // verify checks that ExecStart exists, so point it at the stand-in; everything else is verbatim.
        var unit = Path.Combine(work, "ts-cgnat-agent.service");
        File.WriteAllText(unit, File.ReadAllText(UnitFile).Replace("/usr/local/bin/ts-cgnat-agent", standIn, StringComparison.Ordinal));

        var result = Exec(analyze!, ["verify", unit], []);

        Assert.True(result.ExitCode == 0, result.Output);
        Assert.DoesNotContain("Unknown key", result.Output, StringComparison.Ordinal);
    }

    [Fact]
    public void The_sample_host_policy_is_valid_and_exempts_alibaba_cloud_internal_services()
    {
        var (policies, problems) = PolicyDocuments.Parse(File.ReadAllText(Path.Combine(SystemdDir, "policy.yaml")), "policy.yaml");

        Assert.Empty(problems);
        var source = Assert.Single(Assert.Single(policies).Policy.Spec.AllowedSources!);
        Assert.Equal("100.100.0.0/16", source.Cidr);
    }

    private string InRoot(string path) => Path.Combine(root, path);

    private (int ExitCode, string Output) Run(string script, params object[] args)
    {
        var arguments = args.OfType<string>().Prepend(Path.Combine(SystemdDir, script)).ToArray();
        var environment = args.OfType<(string, string)>().Append(("DESTDIR", root)).ToArray();
        return Exec("/bin/sh", arguments, environment);
    }

    private static (int ExitCode, string Output) Exec(string file, string[] arguments, (string Name, string Value)[] environment)
    {
        var start = new ProcessStartInfo(file) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in arguments)
        {
            start.ArgumentList.Add(argument);
        }

        foreach (var (name, value) in environment)
        {
            start.Environment[name] = value;
        }

        using var process = Process.Start(start)!;
        var stdout = process.StandardOutput.ReadToEndAsync();
        var stderr = process.StandardError.ReadToEndAsync();
        process.WaitForExit();
        return (process.ExitCode, stdout.Result + stderr.Result);
    }
}
