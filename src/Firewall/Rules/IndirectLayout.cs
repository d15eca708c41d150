using TsCgnat.Firewall.Model;

namespace TsCgnat.Firewall.Rules;

/// <summary>
/// The <see cref="Strategy.Indirect"/> layout of design section 4: our chains, hooked at the top of
/// the built-ins, exempt the allowed sources and then call Tailscale's chains.
/// </summary>
/// <remarks>
/// tailscaled's start-up cleanup deletes only an exact plain <c>-j ts-input</c> (issue #12185), so a
/// commented hook into our chain survives it, and our reference keeps <c>ts-*</c> alive (emptied)
/// across restarts for tailscaled to refill. The CIDRs live in sets, so a policy change touches no chain.
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
        var input = new List<string>();
        var forward = new List<string>();
        var postrouting = new List<string>();
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

        // Hook ts-* only once tailscaled has made them: before that there is no drop to cancel, and a
        // pre-created ts-* chain would break tailscaled if it later starts with its nftables runner.
        if (ts.Input)
        {
            input.Add($"-j {Names.TsInput}");
        }

        if (ts.Forward)
        {
            forward.Add($"-j {Names.TsForward}");
        }

        if (ts.Postrouting)
        {
            postrouting.Add($"-j {Names.TsPostrouting}");
        }

        return
        [
            new DesiredTable(
                "filter",
                new Dictionary<string, IReadOnlyList<string>> { [Names.InputChain] = input, [Names.ForwardChain] = forward },
                [Hook.Jump("INPUT", Names.InputChain), Hook.Jump("FORWARD", Names.ForwardChain)]),
            new DesiredTable(
                "nat",
                new Dictionary<string, IReadOnlyList<string>> { [Names.PostroutingChain] = postrouting },
                [Hook.Jump("POSTROUTING", Names.PostroutingChain)]),
        ];
    }
}
