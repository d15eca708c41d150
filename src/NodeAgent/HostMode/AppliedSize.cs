using TsCgnat.Firewall;
using TsCgnat.Firewall.Model;
using TsCgnat.Firewall.Rules;

namespace TsCgnat.NodeAgent.HostMode;

/// <summary>
/// How much of ours the host holds after a pass that succeeded: our rules (chains' rules, hooks and
/// exemptions in Tailscale's chains, in every family), under the strategy in force, and the members of each of
/// our sets. What the <c>tscgnat.rules</c> and <c>tscgnat.set.members</c> gauges report.
/// </summary>
/// <param name="Strategy">The strategy the rules follow (<c>Indirect</c> or <c>InChain</c>).</param>
public sealed record AppliedSize(string Strategy, long Rules, IReadOnlyDictionary<string, long> SetMembers)
{
    /// <summary>
    /// The size of what <paramref name="plan"/> made the host hold. The engine's result carries the plan (the
    /// difference it wrote), not the desired state, so the layout is built again here with the engine's own
    /// public layouts from what the plan says (strategy, Tailscale's chains, stateful filtering). The rules do
    /// not depend on the sets' members, so no set is rendered for them.
    /// </summary>
    /// <param name="sets">Our sets as <see cref="IndirectLayout.Sets"/> renders them for the applied exemptions.</param>
    public static AppliedSize Of(FirewallPlan plan, FirewallSettings settings, IReadOnlyList<DesiredSet> sets)
    {
        ArgumentNullException.ThrowIfNull(plan);
        ArgumentNullException.ThrowIfNull(settings);
        ArgumentNullException.ThrowIfNull(sets);
        var strategy = (plan.Strategy?.Strategy ?? Firewall.Model.Strategy.Indirect).ToString();
        var tun = settings.TailscaleInterface;
        var v4 = plan.Tailscale.GetValueOrDefault(IpFamily.V4) ?? TailscaleChains.Absent;

        // The same choice as HostFirewall.Plan: tailscaled's nftables runner gets nft rules and nft sets (nft
        // leaves out a prefix inside another one of the same set), unless --backend forced iptables.
        if (plan.Runner?.Runner == TailscaleRunner.Nftables && settings.Backend is null)
        {
            var nftRules = NftLayout.Rules(tun, plan.Stateful).Count(r => r.Chain == Names.TsInput ? v4.Input : v4.Forward);
            return new AppliedSize(strategy, nftRules, Members(NftLayout.Sets(sets)));
        }

        // Tailscale's chains are used only once its iptables runner is known to have made them (HostFirewall.Plan).
        var confirmed = plan.Runner?.Runner is TailscaleRunner.IptablesLegacy or TailscaleRunner.IptablesNft || settings.Backend is not null;
        var tailscale = confirmed ? plan.Tailscale : plan.Tailscale.ToDictionary(t => t.Key, _ => TailscaleChains.Absent);
        var desired = plan.Strategy?.Strategy == Firewall.Model.Strategy.InChain
            ? InChainLayout.Build([], tun, tailscale, plan.Stateful)
            : IndirectLayout.Build([], tun, tailscale, plan.Stateful);
        var rules = desired.Families.Values
            .SelectMany(tables => tables)
            .Sum(table => (long)table.Chains.Values.Sum(chain => chain.Count) + table.Hooks.Count);
        return new AppliedSize(strategy, rules, Members(sets));
    }

    private static Dictionary<string, long> Members(IEnumerable<DesiredSet> sets) =>
        sets.ToDictionary(s => s.Name, s => (long)s.Members.Count, StringComparer.Ordinal);
}
