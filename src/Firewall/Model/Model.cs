using System.Net;
using TsCgnat.Api;

namespace TsCgnat.Firewall.Model;

public enum IpFamily
{
    V4,
    V6,
}

/// <summary>Which iptables the host's rules live in. Rules only combine within one back end.</summary>
public enum IptablesBackend
{
    Legacy,
    Nft,
}

/// <summary>How our exemptions are wired to Tailscale's chains (design section 4).</summary>
public enum Strategy
{
    /// <summary>Our chains, hooked from the built-ins, call Tailscale's chains (tailscaled in nodivert).</summary>
    Indirect,
}

/// <summary>The union of every applied policy's exemptions: what the host's sets must hold.</summary>
public sealed record Exemptions(IReadOnlyList<SourceExemption> Sources, IReadOnlyList<IPNetwork> RoutedSubnets)
{
    public static readonly Exemptions None = new([], []);

    public static Exemptions From(IEnumerable<ValidatedPolicy> policies)
    {
        var sources = new List<SourceExemption>();
        var subnets = new List<IPNetwork>();
        foreach (var policy in policies)
        {
            sources.AddRange(policy.AllowedSources);
            subnets.AddRange(policy.RoutedSubnets);
        }

        return new Exemptions(sources, subnets);
    }

    /// <summary>Members of the any-interface source set, e.g. "100.100.0.0/16".</summary>
    public SortedSet<string> AnyInterfaceSources() =>
        new(Sources.Where(s => s.Interfaces.Count == 0).Select(s => s.Cidr.ToString()), StringComparer.Ordinal);

    /// <summary>Members of the per-interface source set, e.g. "100.100.0.0/16,eth0".</summary>
    public SortedSet<string> InterfaceSources() =>
        new(Sources.SelectMany(s => s.Interfaces.Select(i => $"{s.Cidr},{i}")), StringComparer.Ordinal);

    public SortedSet<string> Subnets() => new(RoutedSubnets.Select(s => s.ToString()), StringComparer.Ordinal);
}

/// <summary>What Tailscale has in one family of one back end, as read from the firewall.</summary>
/// <param name="Input">filter/ts-input exists.</param>
/// <param name="Forward">filter/ts-forward exists.</param>
/// <param name="Postrouting">nat/ts-postrouting exists.</param>
/// <param name="PlainJumps">tailscaled's own plain <c>-j ts-*</c> jumps are in the built-ins: mode <c>on</c>.</param>
/// <param name="Stateful">ts-forward holds the stateful-filtering drop; null while ts-forward is empty (being rebuilt).</param>
/// <param name="InputRules">number of rules in ts-input.</param>
public sealed record TailscaleChains(bool Input, bool Forward, bool Postrouting, bool PlainJumps, bool? Stateful, int InputRules)
{
    public static readonly TailscaleChains Absent = new(false, false, false, false, null, 0);

    public bool Any => Input || Forward || Postrouting;

    public string Mode => !Any ? "off" : PlainJumps ? "on" : "nodivert";
}
