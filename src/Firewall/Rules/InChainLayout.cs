using TsCgnat.Firewall.Model;

namespace TsCgnat.Firewall.Rules;

/// <summary>
/// The <see cref="Strategy.InChain"/> layout for tailscaled's iptables runner (mode <c>on</c>): our
/// tagged exemption rules at the top of <c>ts-input</c> and <c>ts-forward</c>, matching our ipset sets.
/// </summary>
/// <remarks>
/// In mode <c>on</c> tailscaled re-inserts its own jump at position 1 of INPUT on every start and
/// down/up (facts section 7), so nothing in INPUT can run before ts-input: the exemption must live
/// inside it. tailscaled wipes it at every flush; the agent's repair loop puts it back. Two input rules,
/// not one, because a set type cannot mix "any interface" and "these interfaces" members.
/// IPv6 gets nothing: Tailscale has no IPv6 CGNAT drop.
/// </remarks>
public static class InChainLayout
{
    public static DesiredState Build(
        IReadOnlyList<DesiredSet> sets, string tailscaleInterface, IReadOnlyDictionary<IpFamily, TailscaleChains> tailscale, bool stateful)
    {
        var families = new Dictionary<IpFamily, IReadOnlyList<DesiredTable>>();
        foreach (var (family, ts) in tailscale)
        {
            families[family] = family == IpFamily.V4 ? [Filter(tailscaleInterface, ts, stateful)] : [];
        }

        return new DesiredState(sets, families);
    }

    /// <summary>The exemption rules, in iptables-save form (the order iptables-save prints the matches in).</summary>
    public static IReadOnlyList<Hook> Rules(string tun, bool stateful) =>
    [
        new(Names.TsInput, $"! -i {tun} {Comment} -m set --match-set {Names.SourceSet} src -j RETURN", AheadOfDrops: true),
        new(Names.TsInput, $"! -i {tun} {Comment} -m set --match-set {Names.InterfaceSourceSet} src,src -j RETURN", AheadOfDrops: true),
        new(Names.TsForward, stateful
            ? $"-o {tun} {Comment} -m set --match-set {Names.SubnetSet} src -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
            : $"-o {tun} {Comment} -m set --match-set {Names.SubnetSet} src -j ACCEPT", AheadOfDrops: true),
    ];

    private static string Comment => $"-m comment --comment \"{Names.ExemptionComment}\"";

    private static DesiredTable Filter(string tun, TailscaleChains ts, bool stateful) =>
        new(
            "filter",
            new Dictionary<string, IReadOnlyList<string>>(),
            // Only into a chain that tailscaled will not flush again in this rebuild: it flushes its chains before it adds
            // its jumps (mode on: make the chains, flush them, jump to them, fill them), so once its jumps are there, or
            // its drop is (a stop part-way: jumps deleted first), a rule at the top stays, and it is there before the drop
            // is: one write per rebuild and no moment of the drop without the exemption. Earlier, a rule would be flushed
            // and written again. And never a ts-* chain made by us, which would break tailscaled's nftables runner.
            Rules(tun, stateful).Where(r => Settled(ts, r.Chain)).ToList());

    /// <summary>Whether our rules in <paramref name="chain"/> would stay there: see <see cref="Filter"/>.</summary>
    public static bool Settled(TailscaleChains ts, string chain) =>
        chain == Names.TsInput ? ts.Input && (ts.PlainJumps || ts.InputDrop) : ts.Forward && (ts.PlainJumps || ts.ForwardDrop);
}
