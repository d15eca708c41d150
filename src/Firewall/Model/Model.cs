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
    /// <summary>
    /// tailscaled's iptables runner in nodivert: our chains, hooked from the built-ins, hold the exemptions and then a copy
    /// of tailscaled's rules. They never reference a ts-* chain: tailscaled cannot delete a chain that is still referenced,
    /// and its down, stop and clean-up then stop half-way with errors (docs/tailscale.md, "What this means for the agent").
    /// </summary>
    Indirect,

    /// <summary>Our tagged exemption rules at the top of ts-input and ts-forward (mode on, or tailscaled's nftables runner).</summary>
    InChain,
}

/// <summary>What the user asked for with <c>--strategy</c>.</summary>
public enum StrategyRequest
{
    /// <summary>Pick from what tailscaled is doing (design section 4).</summary>
    Auto,
    Indirect,
    InChain,
}

/// <summary>How tailscaled writes its firewall rules (docs/tailscale.md section 3).</summary>
public enum TailscaleRunner
{
    /// <summary>Not known yet: no ts-* chains, or chains still empty, and nothing learned from the LocalAPI.</summary>
    Unknown,

    /// <summary>The iptables runner over iptables-legacy.</summary>
    IptablesLegacy,

    /// <summary>The iptables runner over iptables-nft.</summary>
    IptablesNft,

    /// <summary>The native nftables runner: any reference to a ts-* chain breaks its start (facts section 1.6).</summary>
    Nftables,
}

/// <summary>
/// tailscaled's <c>--netfilter-mode</c>, the one enum of it in the engine and the agent. In the LocalAPI's prefs and
/// notifications it is a JSON number (0 off, 1 nodivert, 2 on), the values here; the names exist only in the CLI and
/// the config file (facts 5.2). The CRD's status says it as <c>Api.TailscaleNetfilterMode</c>, the API's vocabulary
/// (lowercase names, and <c>unknown</c> for a node where neither the LocalAPI nor the firewall told), converted in
/// one place (<c>NodeStatus</c>).
/// </summary>
public enum NetfilterMode
{
    /// <summary>No chains at all: no CGNAT drop, but no subnet-routing MARK/MASQUERADE either.</summary>
    Off = 0,

    /// <summary>tailscaled fills its <c>ts-*</c> chains but hooks nothing: the <c>Indirect</c> strategy's mode.</summary>
    NoDivert = 1,

    /// <summary>The default: plain jumps from the built-in chains into <c>ts-*</c>.</summary>
    On = 2,
}

/// <summary>What the LocalAPI told us about tailscaled, when it was reachable; every field may be unknown.</summary>
/// <param name="Mode">Prefs <c>NetfilterMode</c>.</param>
/// <param name="Kind">Prefs <c>NetfilterKind</c>: "", "iptables" or "nftables".</param>
/// <param name="Stateful">Stateful filtering on (prefs <c>NoStatefulFiltering</c> false).</param>
/// <param name="Running">BackendState is Running: the rules exist or are about to.</param>
public sealed record TailscaleHint(NetfilterMode? Mode, string? Kind, bool? Stateful, bool Running);

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

/// <summary>tailscaled's rules in ts-input, ts-forward and nat ts-postrouting, in order.</summary>
public sealed record TailscaleRules(IReadOnlyList<string> Input, IReadOnlyList<string> Forward, IReadOnlyList<string> Postrouting)
{
    public static readonly TailscaleRules None = new([], [], []);
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

    /// <summary>ts-input holds tailscaled's CGNAT drop (<c>-s 100.64.0.0/10 ! -i tun -j DROP</c>): the rule our exemption cancels.</summary>
    public bool InputDrop { get; init; }

    /// <summary>ts-forward holds tailscaled's CGNAT drop toward the tun (<c>-s 100.64.0.0/10 -o tun -j DROP</c>).</summary>
    public bool ForwardDrop { get; init; }

    /// <summary>
    /// tailscaled's own rules in its chains, in iptables-save form without the <c>-A chain</c> (ours left out); read for
    /// the iptables runner only, where <see cref="Strategy.Indirect"/> copies them into our chains.
    /// </summary>
    public TailscaleRules Rules { get; init; } = TailscaleRules.None;

    public bool Any => Input || Forward || Postrouting;

    public string Mode => !Any ? "off" : PlainJumps ? "on" : "nodivert";
}
