using TsCgnat.Firewall;
using TsCgnat.Firewall.Model;

namespace TsCgnat.NodeAgent.Reconciling;

/// <summary>
/// How much of ours the host holds after a pass that succeeded (one of <c>Reconciler</c>'s, or its restore of the cache): our rules (chains' rules, hooks and
/// exemptions in Tailscale's chains, in every family), under the strategy in force, and the members of each of
/// our sets. What the <c>tscgnat.rules</c> and <c>tscgnat.set.members</c> gauges report.
/// </summary>
/// <param name="Strategy">The strategy the rules follow (<c>Indirect</c> or <c>InChain</c>).</param>
public sealed record AppliedSize(string Strategy, long Rules, IReadOnlyDictionary<string, long> SetMembers)
{
    /// <summary>The size of what <paramref name="plan"/> made the host hold, as the engine counted it when it planned.</summary>
    public static AppliedSize Of(FirewallPlan plan)
    {
        ArgumentNullException.ThrowIfNull(plan);
        return new AppliedSize((plan.Strategy?.Strategy ?? Firewall.Model.Strategy.Indirect).ToString(), plan.Ours.Rules, plan.Ours.SetMembers);
    }
}
