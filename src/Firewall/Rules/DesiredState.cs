using TsCgnat.Firewall.Model;

namespace TsCgnat.Firewall.Rules;

/// <summary>An ipset set we want, with exactly these members.</summary>
public sealed record DesiredSet(string Name, string Type, SortedSet<string> Members);

/// <summary>
/// A rule of ours (tagged with our comment) in a chain we do not own: a hook at the top of a built-in
/// chain, or an exemption at the top of one of Tailscale's chains.
/// </summary>
/// <param name="Rule">The rule in iptables-save form, without <c>-A chain</c>.</param>
/// <param name="AheadOfDrops">It only works above the chain's first DROP (an exemption); once it has sunk
/// below one, it is moved back to the top. Hooks are never moved (see <see cref="Planner.Table"/>).</param>
public sealed record Hook(string Chain, string Rule, bool AheadOfDrops = false)
{
    /// <summary>A jump from a built-in chain into one of ours.</summary>
    public static Hook Jump(string chain, string target) => new(chain, Names.HookRule(target));
}

/// <summary>Our chains in one table (rule bodies in iptables-save form) and the hooks into them.</summary>
public sealed record DesiredTable(string Name, IReadOnlyDictionary<string, IReadOnlyList<string>> Chains, IReadOnlyList<Hook> Hooks);

/// <summary>Everything we want on the host: sets, and per family the tables of the chosen back end.</summary>
public sealed record DesiredState(IReadOnlyList<DesiredSet> Sets, IReadOnlyDictionary<IpFamily, IReadOnlyList<DesiredTable>> Families)
{
    /// <summary>Nothing of ours anywhere: what <c>cleanup</c> converges to.</summary>
    public static readonly DesiredState Nothing = new([], new Dictionary<IpFamily, IReadOnlyList<DesiredTable>>());

    public IReadOnlyList<DesiredTable> Tables(IpFamily family) => Families.TryGetValue(family, out var tables) ? tables : [];
}
