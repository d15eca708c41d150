using System.Net;

namespace TsCgnat.NodeAgent.Doctor;

/// <summary>Which built-in chain (iptables) or filter hook (nft) a probe packet meets.</summary>
public enum PacketPath
{
    /// <summary>To this host: filter INPUT, hook input.</summary>
    Input,

    /// <summary>Through this host: filter FORWARD, hook forward.</summary>
    Forward,
}

/// <summary>The conntrack state the probe packet carries.</summary>
public enum ConnectionState
{
    /// <summary>The first packet of a connection (an ICMP echo request).</summary>
    New,

    /// <summary>A reply within a connection the other side opened (an ICMP echo reply).</summary>
    Established,
}

/// <summary>
/// One imagined ICMP packet: the first address of an allowed prefix, arriving on an interface, to this
/// host (input) or out of the tailnet interface (forward). Its fwmark starts at 0: the walk models the
/// filter table only, and nothing before it (mangle, raw) is assumed to have marked the packet.
/// </summary>
/// <param name="OutInterface">The interface the packet leaves by; empty on the input path, as the kernel has it.</param>
public sealed record Probe(IPAddress Source, string InInterface, string OutInterface, PacketPath Path, ConnectionState State)
{
    /// <summary>The chain the kernel starts with in table filter.</summary>
    public string BuiltInChain => Path == PacketPath.Input ? "INPUT" : "FORWARD";

    /// <summary>The nft hook of the base chains the packet meets.</summary>
    public string Hook => Path == PacketPath.Input ? "input" : "forward";

    public override string ToString() => Path == PacketPath.Input
        ? $"{Source} arriving on {InInterface}, to this host, {StateName}"
        : $"{Source} from {InInterface} out of {OutInterface}, {StateName}";

    private string StateName => State == ConnectionState.New ? "new connection" : "reply";
}

/// <summary>What a walk concluded.</summary>
public enum Outcome
{
    /// <summary>The packet reaches ACCEPT, or the chain policy accepts it.</summary>
    Allowed,

    /// <summary>A DROP or REJECT rule, or a drop policy, stops it.</summary>
    Dropped,

    /// <summary>A rule the walker does not model decides; see <see cref="Verdict.Reason"/>.</summary>
    Unknown,
}

/// <summary>Where and why one walk ended.</summary>
/// <param name="Where">The ruleset walked: iptables-legacy, iptables-nft or nftables.</param>
/// <param name="Chain">The chain whose rule or policy decided, or null when no chain was there to walk.</param>
/// <param name="Rule">1-based rule number in <paramref name="Chain"/>; null when the chain policy decided.</param>
/// <param name="RuleText">The deciding rule as the tool prints it, or the policy ("policy ACCEPT").</param>
/// <param name="Trace">Every rule that matched on the way, in order ("ts-input rule 1: ...").</param>
/// <param name="Assumptions">Rules the walker could not fully evaluate and assumed not to match.</param>
public sealed record Verdict(
    Outcome Outcome,
    string Where,
    string? Chain,
    int? Rule,
    string? RuleText,
    string Reason,
    IReadOnlyList<string> Trace,
    IReadOnlyList<string> Assumptions);

/// <summary>Mutable state of one walk: the packet's mark (MARK rules change it) and what was seen.</summary>
internal sealed class WalkState(Probe probe)
{
    public Probe Probe { get; } = probe;

    public uint Mark { get; set; }

    public List<string> Trace { get; } = [];

    public List<string> Assumptions { get; } = [];
}

/// <summary>Three-valued result of a match: the walker knows it matches, knows it does not, or cannot tell.</summary>
internal readonly record struct Match(bool? Value, string? Why)
{
    public static readonly Match Yes = new(true, null);
    public static readonly Match No = new(false, null);

    public static Match Unknown(string why) => new(null, why);

    public static Match Of(bool value, bool negate = false) => value != negate ? Yes : No;

    /// <summary>All of <paramref name="parts"/>: one known mismatch decides, whatever the unknown ones say.</summary>
    public static Match All(IEnumerable<Match> parts)
    {
        Match? unknown = null;
        foreach (var part in parts)
        {
            if (part.Value == false)
            {
                return No;
            }

            if (part.Value is null)
            {
                unknown ??= part;
            }
        }

        return unknown ?? Yes;
    }
}

/// <summary>Address and interface tests shared by the iptables and nft walkers.</summary>
internal static class Addresses
{
    /// <summary>"100.64.0.0/10", "100.64.0.1" or "100.64.0.1-100.64.0.9" (a /32 suffix allowed on each end).</summary>
    public static bool? Contains(string text, IPAddress address)
    {
        var dash = text.IndexOf('-', StringComparison.Ordinal);
        if (dash > 0)
        {
            return IPAddress.TryParse(text[..dash].Replace("/32", "", StringComparison.Ordinal), out var first)
                && IPAddress.TryParse(text[(dash + 1)..].Replace("/32", "", StringComparison.Ordinal), out var last)
                ? Compare(first, address) <= 0 && Compare(address, last) <= 0
                : null;
        }

        if (IPNetwork.TryParse(text, out var network))
        {
            return network.Contains(address);
        }

        return IPAddress.TryParse(text, out var single) ? single.Equals(address) : null;
    }

    /// <summary>An interface pattern: iptables' "eth+" and nft's "eth*" are prefix matches, anything else is exact.</summary>
    public static bool Interface(string pattern, string name) =>
        pattern.EndsWith('+') || pattern.EndsWith('*')
            ? name.StartsWith(pattern[..^1], StringComparison.Ordinal)
            : pattern == name;

    private static int Compare(IPAddress a, IPAddress b)
    {
        var x = a.GetAddressBytes();
        var y = b.GetAddressBytes();
        if (x.Length != y.Length)
        {
            return x.Length.CompareTo(y.Length);
        }

        for (var i = 0; i < x.Length; i++)
        {
            if (x[i] != y[i])
            {
                return x[i].CompareTo(y[i]);
            }
        }

        return 0;
    }
}
