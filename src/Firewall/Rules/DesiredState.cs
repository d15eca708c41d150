using TsCgnat.Firewall.Model;

namespace TsCgnat.Firewall.Rules;

/// <summary>An ipset set we want, with exactly these members.</summary>
public sealed record DesiredSet(string Name, string Type, SortedSet<string> Members);

/// <summary>A rule we insert at the top of a built-in chain to jump into one of ours.</summary>
public sealed record Hook(string Chain, string Target)
{
    public string Rule => Names.HookRule(Target);
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
