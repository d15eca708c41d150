using TsCgnat.TestSupport;

namespace TsCgnat.NodeAgent.Tests;

/// <summary>
/// The seed scenario end to end: a Tailscale subnet router (u2) on a CGNAT LAN, its LAN neighbour (u3)
/// and a tailnet peer (u4), with tailscaled emulated under each iptables back end and the real agent.
/// </summary>
[Collection("netns")]
public sealed class SeedScenarioTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private string[] Apply(Lab lab, params string[] extra) =>
        ["apply", "--netns", lab.Ns("u2"), "--state-dir", _dir.Sub("state"), .. extra];

    private string ApplySeed(Lab lab) => Agent.Ok(Apply(lab, "--policy-file", _dir.File("seed.yaml", Policies.Seed)));

    /// <summary>The lab with emulated tailscaled in nodivert and the seed policy applied by the agent.</summary>
    private ProtectedLab Protected(string backend)
    {
        Privileges.RequireNetns();
        var lab = new Lab();
        var seed = new ProtectedLab(lab, new TailscaledEmulator(lab.Ns("u2"), backend));
        try
        {
            seed.Tailscaled.Run("start", "nodivert");
            ApplySeed(lab);
            return seed;
        }
        catch
        {
            seed.Dispose();
            throw;
        }
    }

    private sealed record ProtectedLab(Lab Lab, TailscaledEmulator Tailscaled) : IDisposable
    {
        public void Dispose()
        {
            Tailscaled.Dispose();
            Lab.Dispose();
        }
    }

    [SkippableFact]
    public void Without_tailscale_u2_reaches_u3()
    {
        Privileges.RequireNetns();
        using var lab = new Lab();

        Assert.True(lab.Reaches("u2", Lab.U3));
    }

    [SkippableTheory]
    [InlineData("legacy")]
    [InlineData("nft")]
    public void Tailscale_in_mode_on_cuts_u2_off_from_u3_the_seed_problem(string backend)
    {
        Privileges.RequireNetns();
        using var lab = new Lab();
        using var tailscaled = new TailscaledEmulator(lab.Ns("u2"), backend);

        tailscaled.Run("start", "on");

        Assert.False(lab.Reaches("u2", Lab.U3));
        Assert.False(lab.Reaches("u4", Lab.U3));
        Assert.True(lab.Reaches("u4", Lab.U2Tailnet)); // the tailnet itself still works
    }

    [SkippableTheory]
    [InlineData("legacy")]
    [InlineData("nft")]
    public void Nodivert_plus_the_agent_lets_u2_reach_u3_and_routes_u4_to_u3(string backend)
    {
        Privileges.RequireNetns();
        using var lab = new Lab();
        using var tailscaled = new TailscaledEmulator(lab.Ns("u2"), backend);
        tailscaled.Run("start", "nodivert");

        var output = ApplySeed(lab);

        Assert.Contains($"back end: iptables-{backend}", output, StringComparison.Ordinal);
        Assert.Contains("tailscale V4: nodivert", output, StringComparison.Ordinal);
        Assert.True(lab.Reaches("u2", Lab.U3), "u2 -> u3");
        Assert.True(lab.Reaches("u4", Lab.U3), "u4 -> u3 through u2");
        Assert.True(lab.Reaches("u4", Lab.U2Tailnet), "u4 -> u2");
        Assert.True(lab.Reaches("u4", Lab.U2Lan), "u4 -> u2's LAN address");
    }

    [SkippableTheory]
    [InlineData("legacy", "restart")]
    [InlineData("legacy", "down-up")]
    [InlineData("legacy", "crash-start")]
    [InlineData("nft", "restart")]
    [InlineData("nft", "down-up")]
    [InlineData("nft", "crash-start")]
    public void After_a_tailscaled_lifecycle_step_connectivity_returns_with_no_agent_write(string backend, string step)
    {
        using var seed = Protected(backend);
        var (lab, tailscaled) = (seed.Lab, seed.Tailscaled);
        Assert.True(lab.Reaches("u2", Lab.U3));

        switch (step)
        {
            case "restart":
                tailscaled.Run("restart", "nodivert");
                break;
            case "down-up":
                tailscaled.Run("down");
                tailscaled.Run("up");
                break;
            case "crash-start":
                tailscaled.Run("crash");
                tailscaled.Run("start", "nodivert");
                break;
        }

        Assert.True(lab.Reaches("u2", Lab.U3), $"u2 -> u3 after {step}");
        Assert.True(lab.Reaches("u4", Lab.U3), $"u4 -> u3 after {step}");
        Assert.False(lab.Reaches("u2", Lab.U3Unlisted), $"Tailscale's drop is back in force after {step}");
        // No agent ran during the step, and the agent finds nothing to write afterwards.
        var dryRun = Agent.Ok(Apply(lab, "--policy-file", _dir.File("seed.yaml", Policies.Seed), "--dry-run"));
        Assert.Contains("in sync: nothing to write", dryRun, StringComparison.Ordinal);
    }

    [SkippableTheory]
    [InlineData("legacy")]
    [InlineData("nft")]
    public void A_source_outside_the_allowed_cidrs_is_still_dropped_by_tailscale(string backend)
    {
        using var seed = Protected(backend);
        var lab = seed.Lab;

        Assert.True(lab.Reaches("u2", Lab.U3));
        Assert.False(lab.Reaches("u2", Lab.U3Unlisted));
        // Tailscale's own rule dropped it, as copied into our chain (nodivert: nothing calls ts-input itself).
        var counters = lab.Exec("u2", $"iptables-{backend}", "-w", "-t", "filter", "-L", "TSCGNAT-INPUT", "-v", "-n", "-x");
        Assert.Matches(@"\n\s*[1-9][0-9]*\s+[0-9]+\s+DROP\s.*100\.64\.0\.0/10", counters);
    }

    [SkippableTheory]
    [InlineData("legacy")]
    [InlineData("nft")]
    public void Another_input_rule_that_drops_an_allowed_source_still_drops_it(string backend)
    {
        using var seed = Protected(backend);
        var lab = seed.Lab;

        // As ufw would: a rule further down INPUT. Our exemption returns to INPUT; it does not accept.
        lab.Exec("u2", $"iptables-{backend}", "-w", "-A", "INPUT", "-s", Lab.U3, "-j", "DROP");

        Assert.False(lab.Reaches("u2", Lab.U3));
        lab.Exec("u2", $"iptables-{backend}", "-w", "-D", "INPUT", "-s", Lab.U3, "-j", "DROP");
        Assert.True(lab.Reaches("u2", Lab.U3));
    }

    [SkippableTheory]
    [InlineData("legacy")]
    [InlineData("nft")]
    public void Removing_the_policy_removes_the_exemption_and_applying_it_again_brings_it_back(string backend)
    {
        Privileges.RequireNetns();
        using var lab = new Lab();
        using var tailscaled = new TailscaledEmulator(lab.Ns("u2"), backend);
        tailscaled.Run("start", "nodivert");
        var policies = _dir.Sub("policies.d");
        var file = Path.Combine(policies, "seed.yaml");
        File.WriteAllText(file, Policies.Seed);
        Agent.Ok(Apply(lab, "--policy-file", policies));
        Assert.True(lab.Reaches("u2", Lab.U3));

        File.Delete(file);
        Agent.Ok(Apply(lab, "--policy-file", policies));
        Assert.False(lab.Reaches("u2", Lab.U3), "exemption gone with the policy; Tailscale's drop applies again");

        File.WriteAllText(file, Policies.Seed);
        Agent.Ok(Apply(lab, "--policy-file", policies));
        Assert.True(lab.Reaches("u2", Lab.U3));
    }

    [SkippableFact]
    public void A_forced_back_end_is_used_and_said_so()
    {
        Privileges.RequireNetns();
        using var lab = new Lab();
        using var tailscaled = new TailscaledEmulator(lab.Ns("u2"), "legacy");
        tailscaled.Run("start", "nodivert");

        var output = Agent.Ok(Apply(lab, "--policy-file", _dir.File("seed.yaml", Policies.Seed), "--backend", "nft", "--dry-run"));

        Assert.Contains("back end: iptables-nft (iptables-nft was chosen with --backend)", output, StringComparison.Ordinal);
        // tailscaled's chains are in legacy, so iptables-nft holds nothing to copy: only the sets are planned, and nothing in legacy.
        Assert.Contains("# ipset restore", output, StringComparison.Ordinal);
        Assert.DoesNotContain("iptables-legacy-restore", output, StringComparison.Ordinal);
        Assert.DoesNotContain("TSCGNAT", lab.Exec("u2", "iptables-nft-save"), StringComparison.Ordinal); // a dry run writes nothing
    }

    [SkippableTheory]
    [InlineData("legacy")]
    [InlineData("nft")]
    public void Cleanup_leaves_nothing_of_ours_and_tailscales_chains_intact(string backend)
    {
        Privileges.RequireNetns();
        using var lab = new Lab();
        using var tailscaled = new TailscaledEmulator(lab.Ns("u2"), backend);
        tailscaled.Run("start", "nodivert");
        string TsRules(string family) => string.Join('\n', lab.Exec("u2", $"{family}-{backend}-save").Split('\n').Where(l => l.Contains("ts-", StringComparison.Ordinal) && !l.StartsWith('#')).Select(l => l.Split(" [", 2)[0]));
        var before4 = TsRules("iptables");
        var before6 = TsRules("ip6tables");
        ApplySeed(lab);

        var output = Agent.Ok("cleanup", "--netns", lab.Ns("u2"), "--state-dir", _dir.Sub("state"));

        Assert.StartsWith("removed:", output, StringComparison.Ordinal);
        foreach (var family in new[] { "iptables", "ip6tables" })
        {
            foreach (var b in new[] { "legacy", "nft" })
            {
                var save = lab.Exec("u2", $"{family}-{b}-save");
                Assert.DoesNotContain("TSCGNAT", save, StringComparison.Ordinal);
                Assert.DoesNotContain("ts-cgnat", save, StringComparison.Ordinal);
            }
        }

        Assert.Equal("", lab.Exec("u2", "ipset", "list", "-n").Trim());
        Assert.Equal(before4, TsRules("iptables"));
        Assert.Equal(before6, TsRules("ip6tables"));
        Assert.False(File.Exists(Path.Combine(_dir.Path, "state", "applied-state.json")));
        Assert.Contains("nothing of ours was left", Agent.Ok("cleanup", "--netns", lab.Ns("u2"), "--state-dir", _dir.Sub("state")), StringComparison.Ordinal);
    }
}
