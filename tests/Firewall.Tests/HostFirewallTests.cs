using System.Net;
using TsCgnat.Api;
using TsCgnat.Firewall.Model;
using TsCgnat.Firewall.Processes;
using TsCgnat.TestSupport;

namespace TsCgnat.Firewall.Tests;

/// <summary>The engine against the real kernel, in a namespace per test, under both iptables back ends.</summary>
[Collection("netns")]
public class HostFirewallTests
{
    private static readonly Exemptions Seed = new(
        [new SourceExemption(IPNetwork.Parse("100.64.0.0/24"), []), new SourceExemption(IPNetwork.Parse("100.100.0.0/16"), ["eth0"])],
        [IPNetwork.Parse("100.64.0.0/24")]);

    private static readonly FirewallSettings Defaults = new();

    private static string Save(Netns ns, string backend, string family = "iptables") => ns.Exec($"{family}-{backend}-save");

    private static async Task<ReconcileResult> Reconcile(Netns ns, Exemptions? exemptions, CountingRunner? counter = null) =>
        await new HostFirewall(counter ?? (ICommandRunner)ns.Runner).ReconcileAsync(exemptions, Defaults, null, dryRun: false, CancellationToken.None);

    [SkippableTheory]
    [InlineData("legacy")]
    [InlineData("nft")]
    public async Task Applying_twice_writes_once_and_the_second_pass_only_reads(string backend)
    {
        Privileges.RequireNetns();
        using var ns = new Netns();
        using var tailscaled = new TailscaledEmulator(ns.Name, backend);
        tailscaled.Run("start", "nodivert");

        var first = await Reconcile(ns, Seed);
        var counter = new CountingRunner(ns.Runner, TimeSpan.FromMinutes(2));
        var second = await Reconcile(ns, Seed, counter);

        Assert.True(first.Wrote);
        Assert.Equal(backend == "nft" ? IptablesBackend.Nft : IptablesBackend.Legacy, first.Plan.Backend.Backend);
        Assert.False(second.Wrote, second.Plan.Describe());
        Assert.True(second.Plan.IsEmpty);
        Assert.DoesNotContain(counter.Programs, p => p.EndsWith("-restore", StringComparison.Ordinal) || p == "ipset restore");
        // Our chains hold a copy of tailscaled's rules and never reference its chains (tailscaled could not delete them).
        Assert.Contains(CopiedDrop, Save(ns, backend), StringComparison.Ordinal);
        Assert.DoesNotContain("-j ts-", Save(ns, backend), StringComparison.Ordinal);
        Assert.Contains("-A TSCGNAT-INPUT -i tailscale0 -j ACCEPT", Save(ns, backend, "ip6tables"), StringComparison.Ordinal);
        Assert.DoesNotContain("-j ts-", Save(ns, backend, "ip6tables"), StringComparison.Ordinal);
    }

    /// <summary>tailscaled's CGNAT drop as copied into our input chain.</summary>
    internal const string CopiedDrop = "-A TSCGNAT-INPUT -s 100.64.0.0/10 ! -i tailscale0 -j DROP";

    [SkippableTheory]
    [InlineData("legacy")]
    [InlineData("nft")]
    public async Task Cleanup_removes_all_of_ours_in_both_back_ends_and_families_and_keeps_tailscales_chains(string backend)
    {
        Privileges.RequireNetns();
        using var ns = new Netns();
        using var tailscaled = new TailscaledEmulator(ns.Name, backend);
        tailscaled.Run("start", "nodivert");
        var before = Save(ns, backend);
        await Reconcile(ns, Seed);
        // Leftovers of ours in the other back end too, as after a back-end switch that was interrupted.
        var other = backend == "nft" ? "legacy" : "nft";
        ns.Exec($"iptables-{other}", "-w", "-N", "TSCGNAT-INPUT");
        ns.Exec($"iptables-{other}", "-w", "-I", "INPUT", "1", "-m", "comment", "--comment", "ts-cgnat hook", "-j", "TSCGNAT-INPUT");
        ns.Exec("ipset", "create", "TSCGNAT-SRC4-NEXT", "hash:net");

        var cleanup = await Reconcile(ns, null);
        var again = await Reconcile(ns, null);

        Assert.True(cleanup.Wrote);
        Assert.False(again.Wrote);
        foreach (var tool in new[] { "iptables-legacy-save", "iptables-nft-save", "ip6tables-legacy-save", "ip6tables-nft-save" })
        {
            Assert.DoesNotContain("TSCGNAT", ns.Exec(tool), StringComparison.OrdinalIgnoreCase);
            Assert.DoesNotContain("ts-cgnat", ns.Exec(tool), StringComparison.Ordinal);
        }

        Assert.Equal("", ns.Exec("ipset", "list", "-n").Trim());
        Assert.Equal(Rules(before, "ts-"), Rules(Save(ns, backend), "ts-"));
    }

    [SkippableTheory]
    [InlineData("legacy")]
    [InlineData("nft")]
    public async Task Our_chains_and_hooks_appear_only_once_tailscaled_has_made_its_chains(string backend)
    {
        Privileges.RequireNetns();
        using var ns = new Netns();
        using var tailscaled = new TailscaledEmulator(ns.Name, backend);
        ns.Exec($"iptables-{backend}", "-w", "-A", "OUTPUT", "-o", "lo", "-j", "ACCEPT"); // so detection has something to go on

        var early = await Reconcile(ns, Seed);
        var rulesEarly = Save(ns, backend);
        tailscaled.Run("start", "nodivert");
        var late = await Reconcile(ns, Seed);

        Assert.True(early.Wrote); // the sets
        Assert.DoesNotContain("TSCGNAT", rulesEarly, StringComparison.Ordinal);
        Assert.DoesNotContain(":ts-input", rulesEarly, StringComparison.Ordinal);
        Assert.True(late.Wrote);
        Assert.Null(late.Plan.IpsetUpdate); // only the chains changed: the CIDRs did not
        Assert.Contains(CopiedDrop, Save(ns, backend), StringComparison.Ordinal);
    }

    [SkippableTheory]
    [InlineData("legacy")]
    [InlineData("nft")]
    public async Task A_policy_change_touches_only_the_sets(string backend)
    {
        Privileges.RequireNetns();
        using var ns = new Netns();
        using var tailscaled = new TailscaledEmulator(ns.Name, backend);
        tailscaled.Run("start", "nodivert");
        await Reconcile(ns, Seed);

        var changed = Seed with { Sources = [.. Seed.Sources, new SourceExemption(IPNetwork.Parse("100.100.100.200/32"), [])] };
        var result = await Reconcile(ns, changed);

        Assert.True(result.Wrote);
        Assert.Empty(result.Plan.Restores);
        Assert.Contains("100.100.100.200", ns.Exec("ipset", "list", "TSCGNAT-SRC4"), StringComparison.Ordinal);
        Assert.DoesNotContain("NEXT", ns.Exec("ipset", "list", "-n"), StringComparison.Ordinal);
    }

    [SkippableTheory]
    [InlineData("legacy")]
    [InlineData("nft")]
    public async Task Our_chain_flushed_by_someone_else_is_rewritten_and_a_deleted_hook_reinserted(string backend)
    {
        Privileges.RequireNetns();
        using var ns = new Netns();
        using var tailscaled = new TailscaledEmulator(ns.Name, backend);
        tailscaled.Run("start", "nodivert");
        await Reconcile(ns, Seed);
        var good = Save(ns, backend);

        ns.Exec($"iptables-{backend}", "-w", "-F", "TSCGNAT-INPUT");
        ns.Exec($"iptables-{backend}", "-w", "-D", "FORWARD", "-m", "comment", "--comment", "ts-cgnat hook", "-j", "TSCGNAT-FORWARD");
        var repair = await Reconcile(ns, Seed);

        Assert.True(repair.Wrote);
        Assert.Equal(Rules(good, "TSCGNAT"), Rules(Save(ns, backend), "TSCGNAT"));
    }

    [SkippableFact]
    public async Task When_tailscaled_moves_to_the_other_back_end_our_rules_follow_it()
    {
        Privileges.RequireNetns();
        using var ns = new Netns();
        using var legacy = new TailscaledEmulator(ns.Name, "legacy");
        using var nft = new TailscaledEmulator(ns.Name, "nft");
        legacy.Run("start", "nodivert");
        await Reconcile(ns, Seed);

        legacy.Run("stop"); // nothing of ours references its chains, so they go; our copy in legacy is stale
        nft.Run("start", "nodivert");
        var moved = await Reconcile(ns, Seed);

        Assert.Equal(IptablesBackend.Nft, moved.Plan.Backend.Backend);
        Assert.DoesNotContain("ts-input", Save(ns, "legacy"), StringComparison.Ordinal);
        Assert.DoesNotContain("TSCGNAT", Save(ns, "legacy"), StringComparison.Ordinal);
        Assert.Contains(CopiedDrop, Save(ns, "nft"), StringComparison.Ordinal);
    }

    [SkippableTheory]
    [InlineData("legacy")]
    [InlineData("nft")]
    public async Task Stateful_filtering_is_read_from_ts_forward(string backend)
    {
        Privileges.RequireNetns();
        using var ns = new Netns();
        using var tailscaled = new TailscaledEmulator(ns.Name, backend);
        tailscaled.Run(new Dictionary<string, string> { ["STATEFUL"] = "1" }, "start", "nodivert");

        var result = await Reconcile(ns, Seed);

        Assert.True(result.Plan.Stateful);
        Assert.Contains("--match-set TSCGNAT-FWD4 src -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", Save(ns, backend), StringComparison.Ordinal);
        Assert.False((await Reconcile(ns, Seed)).Wrote);
    }

    private static List<string> Rules(string save, string containing) =>
        [.. save.Split('\n').Where(l => (l.StartsWith("-A ", StringComparison.Ordinal) || l.StartsWith(':')) && l.Contains(containing, StringComparison.Ordinal)).Select(l => l.Split(" [", 2)[0])];
}

[CollectionDefinition("netns", DisableParallelization = true)]
public class NetnsSerial;

/// <summary>One engine instance across passes, as <c>ts-cgnat-agent run</c> keeps it.</summary>
[Collection("netns")]
public class SettledResyncTests
{
    private static readonly Exemptions Seed = new([new SourceExemption(IPNetwork.Parse("100.64.0.0/24"), [])], [IPNetwork.Parse("100.64.0.0/24")]);

    [SkippableFact]
    public async Task A_settled_resync_reads_only_the_chosen_back_end_and_still_follows_tailscaled_to_the_other()
    {
        Privileges.RequireNetns();
        using var ns = new Netns();
        using var legacy = new TailscaledEmulator(ns.Name, "legacy");
        using var nft = new TailscaledEmulator(ns.Name, "nft");
        legacy.Run("start", "nodivert");
        var counter = new CountingRunner(ns.Runner, TimeSpan.FromMinutes(2));
        var firewall = new HostFirewall(counter) { FullReadEvery = 3 };
        async Task<(ReconcileResult Result, List<string> Reads)> Pass()
        {
            counter.Reset();
            var result = await firewall.ReconcileAsync(Seed, new FirewallSettings(), null, dryRun: false, CancellationToken.None);
            return (result, counter.Programs.Where(p => p.EndsWith("-save", StringComparison.Ordinal) || p == "ipset save").ToList());
        }

        var first = await Pass();
        var second = await Pass();
        var third = await Pass();
        var fourth = await Pass();

        Assert.True(first.Result.Wrote);
        Assert.Equal(5, first.Reads.Count);
        Assert.False(second.Result.Wrote);
        Assert.Equal(["ip6tables-legacy-save", "ipset save", "iptables-legacy-save"], second.Reads.Order(StringComparer.Ordinal));
        Assert.Equal(3, third.Reads.Count);
        Assert.Equal(5, fourth.Reads.Count); // every FullReadEvery passes, both back ends again
        Assert.False(fourth.Result.Wrote);

        // tailscaled moves to iptables-nft; its legacy chains go (nothing of ours references them).
        legacy.Run("stop");
        nft.Run("start", "nodivert");
        var moved = await Pass();

        Assert.True(moved.Result.Wrote);
        Assert.Equal(IptablesBackend.Nft, moved.Result.Plan.Backend.Backend);
        Assert.Contains("iptables-nft-save", moved.Reads);
        Assert.DoesNotContain("TSCGNAT", ns.Exec("iptables-legacy-save"), StringComparison.Ordinal);
        Assert.Contains(HostFirewallTests.CopiedDrop, ns.Exec("iptables-nft-save"), StringComparison.Ordinal);
        Assert.False((await Pass()).Result.Wrote);
    }
}
