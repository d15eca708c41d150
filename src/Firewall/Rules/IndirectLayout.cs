using TsCgnat.Firewall.Model;

namespace TsCgnat.Firewall.Rules;

/// <summary>
/// The <see cref="Strategy.Indirect"/> layout (tailscaled's iptables runner in mode nodivert): our chains, hooked at the
/// top of the built-ins, exempt the allowed sources and then hold a copy of tailscaled's own rules, which nothing else
/// calls in nodivert.
/// </summary>
/// <remarks>
/// A copy, not a jump into ts-*: tailscaled deletes its chains on down, stop and clean-up, and a chain that another chain
/// still references cannot be deleted ("Too many links" on legacy, "Device or resource busy" on iptables-nft). tailscaled
/// then logs the failure and stops deleting, leaving its later chains flushed but present (seen on the real v1.82.0
/// daemon and v1.90.4 router, docs/tailscale.md section 2.4). The copy follows tailscaled's chains as drift does: when
/// they change the next pass rewrites it, and when they are gone so are our hooks and chains. tailscaled's start-up
/// clean-up deletes only an exact plain <c>-j ts-input</c>, so the commented hooks survive it. The CIDRs live in sets,
/// so a policy change touches no chain.
/// </remarks>
public static class IndirectLayout
{
    public static DesiredState Build(
        Exemptions exemptions, string tailscaleInterface, IReadOnlyDictionary<IpFamily, TailscaleChains> tailscale, bool stateful) =>
        Build(Sets(exemptions), tailscaleInterface, tailscale, stateful);

    /// <summary>The sets holding <paramref name="exemptions"/>; the costly part with many CIDRs, so callers may keep it.</summary>
    public static IReadOnlyList<DesiredSet> Sets(Exemptions exemptions) =>
    [
        new(Names.SourceSet, "hash:net", exemptions.AnyInterfaceSources()),
        new(Names.InterfaceSourceSet, "hash:net,iface", exemptions.InterfaceSources()),
        new(Names.SubnetSet, "hash:net", exemptions.Subnets()),
    ];

    public static DesiredState Build(
        IReadOnlyList<DesiredSet> sets, string tailscaleInterface, IReadOnlyDictionary<IpFamily, TailscaleChains> tailscale, bool stateful)
    {
        var families = new Dictionary<IpFamily, IReadOnlyList<DesiredTable>>();
        foreach (var (family, ts) in tailscale)
        {
            families[family] = Tables(family, tailscaleInterface, ts, stateful);
        }

        return new DesiredState(sets, families);
    }

    private static List<DesiredTable> Tables(IpFamily family, string tun, TailscaleChains ts, bool stateful)
    {
        // Nothing of tailscaled's to cancel or to call: no hooks of ours either (and never a ts-* chain made by us, which
        // would break tailscaled if it later starts with its nftables runner).
        if (!ts.Any)
        {
            return [];
        }

        var input = new List<string>();
        var forward = new List<string>();
        if (family == IpFamily.V4)
        {
            // Same "! -i tun" condition as the drop it cancels: traffic on the tailnet is never ours to judge.
            input.Add($"! -i {tun} -m set --match-set {Names.SourceSet} src -j RETURN");
            input.Add($"! -i {tun} -m set --match-set {Names.InterfaceSourceSet} src,src -j RETURN");

            // What ts-forward itself does for a non-CGNAT source, and with stateful filtering on, only
            // for replies, so the exemption never widens what Tailscale allows.
            forward.Add(stateful
                ? $"-o {tun} -m set --match-set {Names.SubnetSet} src -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT"
                : $"-o {tun} -m set --match-set {Names.SubnetSet} src -j ACCEPT");
        }

        // A verdict means the same in our chain as in tailscaled's: each is called from the top of its built-in, and
        // RETURN goes back to it.
        input.AddRange(ts.Rules.Input);
        forward.AddRange(ts.Rules.Forward);
        return
        [
            new DesiredTable(
                "filter",
                new Dictionary<string, IReadOnlyList<string>> { [Names.InputChain] = input, [Names.ForwardChain] = forward },
                [Hook.Jump("INPUT", Names.InputChain), Hook.Jump("FORWARD", Names.ForwardChain)]),
            new DesiredTable(
                "nat",
                new Dictionary<string, IReadOnlyList<string>> { [Names.PostroutingChain] = [.. ts.Rules.Postrouting] },
                [Hook.Jump("POSTROUTING", Names.PostroutingChain)]),
        ];
    }
}
