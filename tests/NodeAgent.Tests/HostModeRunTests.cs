using System.Diagnostics;
using TsCgnat.TestSupport;

namespace TsCgnat.NodeAgent.Tests;

/// <summary><c>ts-cgnat-agent run</c> in host mode, as systemd runs it, against a namespace's firewall.</summary>
[Collection("netns")]
public sealed class HostModeRunTests : IDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [SkippableFact]
    public void Run_follows_file_changes_keeps_the_last_good_rules_on_a_bad_file_and_leaves_rules_when_stopped()
    {
        Privileges.RequireNetns();
        using var ns = new Netns();
        using var tailscaled = new TailscaledEmulator(ns.Name, "legacy");
        tailscaled.Run("start", "nodivert");
        var policies = _dir.Sub("policies.d");
        File.WriteAllText(Path.Combine(policies, "seed.yaml"), Policies.Seed);
        using var agent = Start("run", "--policy-file", policies, "--netns", ns.Name, "--state-dir", _dir.Sub("state"), "--resync-interval", "60");

        // The set is written before the chains (sets first, so no rule ever names a missing set): wait for both.
        WaitFor(() => ns.Try("ipset", "list", "TSCGNAT-SRC4").StdOut.Contains("100.64.0.0/24", StringComparison.Ordinal)
            && ns.Exec("iptables-legacy-save").Contains("-A TSCGNAT-INPUT -s 100.64.0.0/10 ! -i tailscale0 -j DROP", StringComparison.Ordinal), agent, "first apply");

        // A new file in the directory is picked up without a signal.
        File.WriteAllText(Path.Combine(policies, "aliyun.yaml"), "apiVersion: tscgnat.io/v1alpha1\nkind: CgnatAllowPolicy\nmetadata: {name: aliyun}\nspec:\n  allowedSources:\n    - cidr: 100.100.0.0/16\n");
        WaitFor(() => ns.Try("ipset", "list", "TSCGNAT-SRC4").StdOut.Contains("100.100.0.0/16", StringComparison.Ordinal), agent, "file change");

        // A bad edit keeps the last good rules and says why.
        File.WriteAllText(Path.Combine(policies, "aliyun.yaml"), "apiVersion: tscgnat.io/v1alpha1\nkind: CgnatAllowPolicy\nmetadata: {name: aliyun}\nspec:\n  allowedSources:\n    - cidr: 10.0.0.0/8\n");
        WaitFor(() => agent.Output.Contains("keeping the last good rules", StringComparison.Ordinal), agent, "bad file reported");
        Assert.Contains("\"10.0.0.0/8\" is outside 100.64.0.0/10", agent.Output, StringComparison.Ordinal);
        Assert.Contains("100.100.0.0/16", ns.Exec("ipset", "list", "TSCGNAT-SRC4"), StringComparison.Ordinal);

        // SIGHUP re-reads (and does not kill the agent).
        File.Delete(Path.Combine(policies, "aliyun.yaml"));
        agent.Signal("HUP");
        WaitFor(() => !ns.Exec("ipset", "list", "TSCGNAT-SRC4").Contains("100.100.0.0/16", StringComparison.Ordinal), agent, "SIGHUP reload");
        Assert.False(agent.Process.HasExited);

        // Stopping leaves the rules in place (fail-static).
        agent.Signal("TERM");
        Assert.True(agent.Process.WaitForExit(10_000), "agent stops on SIGTERM");
        Assert.Equal(0, agent.Process.ExitCode);
        Assert.Contains("-A TSCGNAT-INPUT -s 100.64.0.0/10 ! -i tailscale0 -j DROP", ns.Exec("iptables-legacy-save"), StringComparison.Ordinal);
        Assert.Contains("100.64.0.0/24", ns.Exec("ipset", "list", "TSCGNAT-SRC4"), StringComparison.Ordinal);
    }

    [SkippableFact]
    public void Run_repairs_drift_at_the_periodic_resync()
    {
        Privileges.RequireNetns();
        using var ns = new Netns();
        using var tailscaled = new TailscaledEmulator(ns.Name, "legacy");
        tailscaled.Run("start", "nodivert");
        using var agent = Start("run", "--policy-file", _dir.File("seed.yaml", Policies.Seed), "--netns", ns.Name, "--state-dir", _dir.Sub("state"), "--resync-interval", "1");
        WaitFor(() => ns.Exec("iptables-legacy-save").Contains("-A TSCGNAT-INPUT -s 100.64.0.0/10 ! -i tailscale0 -j DROP", StringComparison.Ordinal), agent, "first apply");

        // Someone deletes our hook and empties our set; no file changes, no signal: only the timer.
        ns.Exec("iptables-legacy", "-w", "-D", "INPUT", "-m", "comment", "--comment", "ts-cgnat hook", "-j", "TSCGNAT-INPUT");
        ns.Exec("ipset", "flush", "TSCGNAT-SRC4");

        WaitFor(() => ns.Exec("iptables-legacy", "-w", "-S", "INPUT").Contains("ts-cgnat hook", StringComparison.Ordinal)
            && ns.Exec("ipset", "list", "TSCGNAT-SRC4").Contains("100.64.0.0/24", StringComparison.Ordinal), agent, "drift repaired");
    }

    /// <summary>Issue 10: a hostile edit (an alias bomb, then nesting 50,000 deep) is refused and logged; the rules stay, and drift is still repaired.</summary>
    [SkippableFact]
    public void Run_keeps_the_last_good_rules_and_keeps_repairing_after_a_hostile_edit()
    {
        Privileges.RequireNetns();
        using var ns = new Netns();
        using var tailscaled = new TailscaledEmulator(ns.Name, "legacy");
        tailscaled.Run("start", "nodivert");
        var policies = _dir.Sub("policies.d");
        var file = Path.Combine(policies, "seed.yaml");
        File.WriteAllText(file, Policies.Seed);
        using var agent = Start("run", "--policy-file", policies, "--netns", ns.Name, "--state-dir", _dir.Sub("state"), "--resync-interval", "1");
        WaitFor(() => ns.Try("ipset", "list", "TSCGNAT-SRC4").StdOut.Contains("100.64.0.0/24", StringComparison.Ordinal)
            && ns.Exec("iptables-legacy-save").Contains("-A TSCGNAT-INPUT -s 100.64.0.0/10 ! -i tailscale0 -j DROP", StringComparison.Ordinal), agent, "first apply");

        foreach (var (hostile, said) in new[] { ("alias-bomb.yaml", "(line 8): the YAML anchor &a0 is refused"), ("nested-flow.yaml", "(line 5): nested more than 32 lists or maps deep") })
        {
            File.Copy(Path.Combine(Repo.Root, "tests", "fixtures", "hostile", hostile), file, overwrite: true);
            WaitFor(() => agent.Output.Contains($"{file}: document 1 {said}", StringComparison.Ordinal), agent, $"{hostile} refused");
            Assert.Contains("keeping the last good rules", agent.Output, StringComparison.Ordinal);

            // The loop goes on: drift is repaired with the last good policies.
            ns.Exec("ipset", "flush", "TSCGNAT-SRC4");
            WaitFor(() => ns.Exec("ipset", "list", "TSCGNAT-SRC4").Contains("100.64.0.0/24", StringComparison.Ordinal), agent, $"drift repaired after {hostile}");
        }

        Assert.False(agent.Process.HasExited);
    }

    [SkippableFact]
    public void Run_restores_the_cached_state_before_reading_policies_even_when_they_are_unreadable()
    {
        Privileges.RequireNetns();
        using var ns = new Netns();
        using var tailscaled = new TailscaledEmulator(ns.Name, "nft");
        tailscaled.Run("start", "nodivert");
        var state = _dir.Sub("state");
        Agent.Ok("apply", "--policy-file", _dir.File("seed.yaml", Policies.Seed), "--netns", ns.Name, "--state-dir", state);
        Agent.Ok("cleanup", "--netns", ns.Name, "--state-dir", _dir.Sub("elsewhere")); // the host lost its rules (a reboot), the cache stayed

        using var agent = Start("run", "--policy-file", Path.Combine(_dir.Path, "missing.yaml"), "--netns", ns.Name, "--state-dir", state, "--resync-interval", "1");

        WaitFor(() => ns.Try("ipset", "list", "TSCGNAT-SRC4").StdOut.Contains("100.64.0.0/24", StringComparison.Ordinal), agent, "cache restored");
        WaitFor(() => agent.Output.Contains("no such file or directory", StringComparison.Ordinal), agent, "missing file reported");
        Assert.Contains("restored the cached state", agent.Output, StringComparison.Ordinal);
        Assert.Contains("-A TSCGNAT-INPUT -s 100.64.0.0/10 ! -i tailscale0 -j DROP", ns.Exec("iptables-nft-save"), StringComparison.Ordinal);

        // Still no valid policy: the cached state stays in force and drift is repaired at the next resync.
        ns.Exec("iptables-nft", "-w", "-F", "TSCGNAT-INPUT");
        WaitFor(() => ns.Exec("iptables-nft-save").Contains("-A TSCGNAT-INPUT -s 100.64.0.0/10 ! -i tailscale0 -j DROP", StringComparison.Ordinal), agent, "drift repaired from the cache");
    }

    private static void WaitFor(Func<bool> condition, RunningAgent agent, string what) => agent.WaitFor(condition, what, Patience);

    private static RunningAgent Start(params string[] args) => new(args);
}
