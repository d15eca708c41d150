using TsCgnat.Firewall.Formats;
using TsCgnat.Firewall.Model;
using TsCgnat.Firewall.Rules;

namespace TsCgnat.Firewall.Detection;

/// <summary>
/// What tailscaled has made in one family, read from <c>iptables-save</c> (its iptables runner) or from nft's JSON (its
/// nftables runner): the one place that knows its chains (<c>ts-input</c>, <c>ts-forward</c>, nat <c>ts-postrouting</c>),
/// its plain jumps from INPUT and FORWARD (netfilter mode on), and how its stateful filtering shows in
/// <c>ts-forward</c> (tailscale/util/linuxfw, docs/tailscale.md).
/// </summary>
public static class TailscaleChainsReader
{
    /// <summary>The jumps tailscaled adds itself in netfilter mode on; in nodivert it leaves them to the admin.</summary>
    private static readonly (string From, string To)[] PlainJumps = [("INPUT", Names.TsInput), ("FORWARD", Names.TsForward)];

    /// <summary>Whether any of tailscaled's chains exists in this saved ruleset.</summary>
    public static bool Present(SavedRuleset ruleset) =>
        ruleset.Table("filter").HasChain(Names.TsInput) || ruleset.Table("filter").HasChain(Names.TsForward)
        || ruleset.Table("nat").HasChain(Names.TsPostrouting);

    /// <summary>tailscaled's iptables runner, from one family's saved ruleset.</summary>
    public static TailscaleChains FromIptables(SavedRuleset ruleset, string tun)
    {
        var filter = ruleset.Table("filter");
        var forward = filter.Rules(Names.TsForward);

        // Its ACCEPT of what leaves on the tun is there in both cases; with stateful filtering a conntrack DROP comes first.
        bool? stateful = forward.Contains($"-o {tun} -j ACCEPT", StringComparer.Ordinal)
            ? forward.Any(r => r.StartsWith($"-o {tun} ", StringComparison.Ordinal) && r.Contains("--ctstate", StringComparison.Ordinal) && r.EndsWith("-j DROP", StringComparison.Ordinal))
            : null;
        var input = Theirs(filter.Rules(Names.TsInput));
        var theirForward = Theirs(forward);
        return new TailscaleChains(
            filter.HasChain(Names.TsInput),
            filter.HasChain(Names.TsForward),
            ruleset.Table("nat").HasChain(Names.TsPostrouting),
            PlainJumps.Any(j => filter.Rules(j.From).Contains($"-j {j.To}", StringComparer.Ordinal)),
            stateful,
            input.Count)
        {
            InputDrop = input.Any(IsCgnatDrop),
            ForwardDrop = theirForward.Any(IsCgnatDrop),
            Rules = new TailscaleRules(input, theirForward, Theirs(ruleset.Table("nat").Rules(Names.TsPostrouting))),
        };
    }

    /// <summary>tailscaled's CGNAT drop as iptables-save prints it, in ts-input (<c>! -i tun</c>) and ts-forward (<c>-o tun</c>) alike.</summary>
    private static bool IsCgnatDrop(string rule) =>
        rule.StartsWith(CgnatSource, StringComparison.Ordinal) && rule.EndsWith("-j DROP", StringComparison.Ordinal);

    private const string CgnatSource = "-s 100.64.0.0/10 ";

    private static List<string> Theirs(IReadOnlyList<string> rules) => rules.Where(r => !Names.IsOurRule(r)).ToList();

    /// <summary>tailscaled's nftables runner's CGNAT drop: <c>ip saddr 100.64.0.0/10 ... drop</c>.</summary>
    private static bool IsCgnatDrop(NftRule rule) =>
        rule.Verdict() == "drop" && rule.SourceMatch() is ("==", "100.64.0.0/10");

    /// <summary>tailscaled's nftables runner, from the ruleset's JSON, in family <c>ip</c> or <c>ip6</c>; our own rules in its chains are not counted.</summary>
    public static TailscaleChains FromNft(NftRuleset nft, string family, string tun)
    {
        ArgumentNullException.ThrowIfNull(nft);
        var input = nft.Chain(family, "filter", Names.TsInput);
        var forward = nft.Chain(family, "filter", Names.TsForward);
        var theirs = forward?.Rules.Where(r => !Names.IsOurComment(r.Comment)).ToList() ?? [];
        bool? stateful = theirs.Count == 0 ? null
            : theirs.Any(r => r.Verdict() == "drop" && r.Expressions.GetRawText().Contains("\"ct\"", StringComparison.Ordinal));
        return new TailscaleChains(
            input is not null,
            forward is not null,
            nft.Chain(family, "nat", Names.TsPostrouting) is not null,
            PlainJumps.Any(j => nft.Chain(family, "filter", j.From)?.Rules.Any(r => !Names.IsOurComment(r.Comment) && r.Verdict() == $"jump {j.To}") == true),
            stateful,
            input?.Rules.Count(r => !Names.IsOurComment(r.Comment)) ?? 0)
        {
            InputDrop = input?.Rules.Any(r => !Names.IsOurComment(r.Comment) && IsCgnatDrop(r)) == true,
            ForwardDrop = theirs.Any(IsCgnatDrop),
        };
    }
}
