using TsCgnat.Firewall.Detection;
using TsCgnat.Firewall.Formats;
using TsCgnat.Firewall.Model;

namespace TsCgnat.Firewall.Tests;

/// <summary>Which back end we write with, in the order of design section 4, and what we say about it.</summary>
public class BackendDetectorTests
{
    private const string Empty = "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\nCOMMIT\n";
    private const string WithTailscale = "*filter\n:INPUT ACCEPT [0:0]\n:ts-input - [0:0]\n-A ts-input -i tailscale0 -j ACCEPT\n-A ts-input -s 100.64.0.0/10 ! -i tailscale0 -j DROP\nCOMMIT\n";
    private const string EmptyTsInput = "*filter\n:INPUT ACCEPT [0:0]\n:ts-input - [0:0]\n:TSCGNAT-INPUT - [0:0]\n-A TSCGNAT-INPUT -j ts-input\nCOMMIT\n";
    private const string Ours = "*filter\n:INPUT ACCEPT [0:0]\n:TSCGNAT-INPUT - [0:0]\n-A INPUT -m comment --comment \"ts-cgnat hook\" -j TSCGNAT-INPUT\nCOMMIT\n";
    private const string KubeletHint = "*mangle\n:PREROUTING ACCEPT [0:0]\n:KUBE-IPTABLES-HINT - [0:0]\nCOMMIT\n";
    private const string TwoRules = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -i lo -j ACCEPT\n-A INPUT -p tcp --dport 22 -j ACCEPT\nCOMMIT\n";
    private const string OneRule = "*filter\n:INPUT ACCEPT [0:0]\n-A INPUT -i lo -j ACCEPT\nCOMMIT\n";

    private static BackendChoice Detect(string legacy, string nft, IptablesBackend? systemDefault = null) =>
        BackendDetector.Detect(
            new Dictionary<IptablesBackend, SavedRuleset> { [IptablesBackend.Legacy] = SavedRuleset.Parse(legacy), [IptablesBackend.Nft] = SavedRuleset.Parse(nft) },
            () => systemDefault);

    [Fact]
    public void Tailscales_chains_decide_first()
    {
        var choice = Detect(WithTailscale, KubeletHint + TwoRules);

        Assert.Equal(IptablesBackend.Legacy, choice.Backend);
        Assert.Equal("tailscaled's ts-* chains are in iptables-legacy", choice.Reason);
    }

    [Fact]
    public void With_ts_chains_in_both_the_one_whose_ts_input_has_rules_is_live()
    {
        var choice = Detect(EmptyTsInput, WithTailscale);

        Assert.Equal(IptablesBackend.Nft, choice.Backend);
        Assert.Contains("most rules in ts-input", choice.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Before_tailscaled_is_up_we_stay_where_we_wrote()
    {
        var choice = Detect(Ours, KubeletHint + TwoRules);

        Assert.Equal(IptablesBackend.Legacy, choice.Backend);
        Assert.Contains("our own chains are in iptables-legacy", choice.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Then_the_kubelets_hint_chain()
    {
        var choice = Detect(TwoRules, KubeletHint);

        Assert.Equal(IptablesBackend.Nft, choice.Backend);
        Assert.Contains("kubelet's hint chain is in iptables-nft", choice.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Then_whichever_holds_more_rules()
    {
        var choice = Detect(TwoRules, OneRule);

        Assert.Equal(IptablesBackend.Legacy, choice.Backend);
        Assert.Contains("iptables-legacy holds more rules (2 vs 1)", choice.Reason, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(IptablesBackend.Legacy)]
    [InlineData(IptablesBackend.Nft)]
    public void On_a_tie_what_plain_iptables_is(IptablesBackend systemDefault)
    {
        var choice = Detect(Empty, Empty, systemDefault);

        Assert.Equal(systemDefault, choice.Backend);
        Assert.Contains("plain iptables on this host is", choice.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Only_one_usable_back_end_is_used_and_said_so()
    {
        var choice = BackendDetector.Detect(
            new Dictionary<IptablesBackend, SavedRuleset> { [IptablesBackend.Nft] = SavedRuleset.Parse(Empty) }, () => null);

        Assert.Equal(IptablesBackend.Nft, choice.Backend);
        Assert.Equal("only iptables-nft is usable on this host", choice.Reason);
    }

    [Fact]
    public void Tailscales_mode_and_stateful_filtering_are_read_from_its_chains()
    {
        var on = SavedRuleset.Parse(
            "*filter\n:INPUT ACCEPT [0:0]\n:ts-forward - [0:0]\n:ts-input - [0:0]\n-A INPUT -j ts-input\n"
            + "-A ts-forward -o tailscale0 -m conntrack ! --ctstate RELATED,ESTABLISHED -j DROP\n-A ts-forward -o tailscale0 -j ACCEPT\n"
            + "-A ts-input -s 100.64.0.0/10 ! -i tailscale0 -j DROP\nCOMMIT\n");
        var rebuilding = SavedRuleset.Parse("*filter\n:INPUT ACCEPT [0:0]\n:ts-forward - [0:0]\n:ts-input - [0:0]\nCOMMIT\n");

        var ts = TailscaleChainsReader.FromIptables(on, "tailscale0");
        var empty = TailscaleChainsReader.FromIptables(rebuilding, "tailscale0");

        Assert.Equal("on", ts.Mode);
        Assert.True(ts.Stateful);
        Assert.Equal("nodivert", empty.Mode);
        Assert.Null(empty.Stateful); // unknown while ts-forward is empty: the last known value is kept
        Assert.Equal("off", TailscaleChainsReader.FromIptables(SavedRuleset.Parse(Empty), "tailscale0").Mode);
    }
}
