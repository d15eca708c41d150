using System.Net;
using TsCgnat.Api;
using TsCgnat.Firewall.Detection;
using TsCgnat.Firewall.Formats;
using TsCgnat.Firewall.Model;
using TsCgnat.Firewall.Rules;

namespace TsCgnat.Firewall.Tests;

/// <summary>
/// How the strategy follows tailscaled through the moments when mode on looks like nodivert (its chains without its
/// jumps, at every start and stop), and when InChain writes into its chains. Pure: no root.
/// </summary>
public class StrategyTests
{
    private static readonly RunnerChoice IptablesNft = new(TailscaleRunner.IptablesNft, "test");

    /// <summary>tailscaled's chains, full, without its jumps: nodivert, or mode on part-way through a stop.</summary>
    private static readonly TailscaleChains Unhooked = new(true, true, true, false, false, 5) { InputDrop = true, ForwardDrop = true };

    private static readonly TailscaleChains Hooked = Unhooked with { PlainJumps = true };

    [Fact]
    public void Jumps_prove_mode_on_whatever_came_before()
    {
        var choice = RunnerDetector.Choose(StrategyRequest.Auto, IptablesNft, Hooked, null, Strategy.Indirect);

        Assert.Equal(Strategy.InChain, choice.Strategy);
        Assert.Null(choice.LookAgainIn);
    }

    [Fact]
    public void Losing_the_jumps_keeps_InChain_and_asks_to_look_again_until_the_settle_time_has_passed()
    {
        var early = RunnerDetector.Choose(StrategyRequest.Auto, IptablesNft, Unhooked, null, Strategy.InChain, TimeSpan.FromMilliseconds(500));
        var settled = RunnerDetector.Choose(StrategyRequest.Auto, IptablesNft, Unhooked, null, Strategy.InChain, RunnerDetector.UnhookedSettle);

        Assert.Equal(Strategy.InChain, early.Strategy);
        Assert.Equal(RunnerDetector.UnhookedSettle - TimeSpan.FromMilliseconds(500), early.LookAgainIn);
        Assert.Equal(Strategy.Indirect, settled.Strategy);
        Assert.Null(settled.LookAgainIn);
    }

    [Fact]
    public void The_LocalAPIs_nodivert_is_taken_at_once()
    {
        var hint = new TailscaleHint(NetfilterMode.NoDivert, "", false, Running: true);

        var choice = RunnerDetector.Choose(StrategyRequest.Auto, IptablesNft, Unhooked, hint, Strategy.InChain, TimeSpan.Zero);

        Assert.Equal(Strategy.Indirect, choice.Strategy);
    }

    [Fact]
    public void Empty_unhooked_chains_after_InChain_are_a_rebuild_not_a_switch()
    {
        var empty = new TailscaleChains(true, true, true, false, null, 0);

        Assert.Equal(Strategy.InChain, RunnerDetector.Choose(StrategyRequest.Auto, IptablesNft, empty, null, Strategy.InChain).Strategy);
    }

    [Fact]
    public void Without_a_strategy_before_unhooked_full_chains_are_nodivert()
    {
        Assert.Equal(Strategy.Indirect, RunnerDetector.Choose(StrategyRequest.Auto, IptablesNft, Unhooked, null, null).Strategy);
    }

    [Fact]
    public void InChain_writes_into_a_chain_only_once_tailscaled_will_not_flush_it_again()
    {
        var sets = IndirectLayout.Sets(new Exemptions([new SourceExemption(IPNetwork.Parse("100.64.0.0/24"), [])], [IPNetwork.Parse("100.64.0.0/24")]));
        int Rules(TailscaleChains v4) =>
            InChainLayout.Build(sets, "tailscale0", new Dictionary<IpFamily, TailscaleChains> { [IpFamily.V4] = v4 }, stateful: false).Tables(IpFamily.V4).Single().Hooks.Count;

        // Made, not hooked, not filled: tailscaled flushes them before it adds its jumps.
        Assert.Equal(0, Rules(Unhooked with { InputDrop = false, ForwardDrop = false }));
        // Hooked: the flush is behind it, so the exemptions go in before the drop does (no moment of the drop alone).
        Assert.Equal(3, Rules(Hooked with { InputDrop = false, ForwardDrop = false }));
        // Unhooked with the drops (nodivert, or a stop part-way): they stay until the chain is flushed.
        Assert.Equal(3, Rules(Unhooked));
        Assert.Equal(2, Rules(Unhooked with { ForwardDrop = false }));
    }

    [Fact]
    public void The_drop_is_read_from_tailscaleds_rules_not_from_ours()
    {
        var save = SavedRuleset.Parse(
            "*filter\n:INPUT ACCEPT [0:0]\n:ts-input - [0:0]\n:ts-forward - [0:0]\n-A INPUT -j ts-input\n"
            + "-A ts-input -s 100.64.0.1/32 -i lo -j ACCEPT\n-A ts-input -i tailscale0 -j ACCEPT\n"
            + "-A ts-forward -s 100.64.0.0/10 -o tailscale0 -j DROP\nCOMMIT\n");

        var chains = TailscaleChainsReader.FromIptables(save, "tailscale0");

        Assert.False(chains.InputDrop); // AddBase has not appended the CGNAT pair yet
        Assert.True(chains.ForwardDrop);
        Assert.True(chains.PlainJumps);
    }
}
