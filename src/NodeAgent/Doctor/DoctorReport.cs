using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Serialization;

namespace TsCgnat.NodeAgent.Doctor;

/// <summary>What <c>ts-cgnat-agent doctor</c> found; <c>--json</c> prints exactly this (fields in docs/doctor.md).</summary>
/// <param name="Healthy">Every probe met its expectation, our rules match the policy, and nothing failed: exit code 0.</param>
public sealed record DoctorReport(
    bool Healthy,
    FirewallFinding Firewall,
    TailscaleFinding Tailscale,
    StrategyFinding Strategy,
    RulesFinding Rules,
    IReadOnlyList<PacketFinding> Packets,
    IReadOnlyList<string> NotModelled,
    IReadOnlyList<string> Warnings,
    IReadOnlyList<string> Recommendations);

/// <param name="Backend">Where the rules live: iptables-legacy, iptables-nft or nftables.</param>
/// <param name="Error">Why no plan could be made (no back end readable, a strategy that cannot work here), or null.</param>
public sealed record FirewallFinding(string Backend, string Reason, string? Error);

/// <param name="Runner">iptables-legacy, iptables-nft, nftables, or unknown.</param>
/// <param name="RunnerLearnedFrom">firewall, or localApi when the chains could not tell.</param>
/// <param name="Mode">on, nodivert or off.</param>
/// <param name="ModeLearnedFrom">localApi (its prefs) when reachable, otherwise firewall.</param>
/// <param name="NetfilterMode">What the chains show: on (plain jumps), nodivert (chains without jumps), off (no chains).</param>
/// <param name="StatefulFilteringLearnedFrom">firewall (ts-forward's rules), localApi, or default (off) when neither says.</param>
public sealed record TailscaleFinding(
    string Interface,
    string Runner,
    string RunnerReason,
    string RunnerLearnedFrom,
    string Mode,
    string ModeLearnedFrom,
    string NetfilterMode,
    bool StatefulFiltering,
    string StatefulFilteringLearnedFrom,
    LocalApiFinding LocalApi);

/// <param name="BackendState">tailscaled's state by name (Running, Stopped, ...).</param>
/// <param name="NetfilterMode">Prefs NetfilterMode as on, nodivert or off.</param>
/// <param name="NetfilterKind">Prefs NetfilterKind: "" (tailscaled decides), iptables or nftables.</param>
public sealed record LocalApiFinding(
    string Socket, bool Reachable, string? Problem, string? BackendState, string? Version, string? NetfilterMode, string? NetfilterKind);

/// <param name="Requested">--strategy: auto, indirect or in-chain.</param>
/// <param name="InUse">What the agent would use with that request (indirect or in-chain), null when it cannot work here.</param>
/// <param name="Auto">What auto picks here, and <paramref name="AutoReason"/> why.</param>
public sealed record StrategyFinding(string Requested, string? InUse, string? Reason, string Auto, string AutoReason);

/// <param name="MatchPolicy">The plan is empty: nothing to write. Null without --policy-file (nothing to compare with).</param>
/// <param name="Present">Our chains, sets and tagged rules found on the host.</param>
/// <param name="Missing">What applying the policy would add, from the plan.</param>
/// <param name="Stale">What applying the policy would remove or rebuild, from the plan.</param>
public sealed record RulesFinding(
    bool PolicyGiven, IReadOnlyList<string> Policies, bool? MatchPolicy, IReadOnlyList<string> Present, IReadOnlyList<string> Missing, IReadOnlyList<string> Stale);

/// <summary>One probe packet and its fate.</summary>
/// <param name="Kind">allowedSource or routedSubnet.</param>
/// <param name="Path">input or forward.</param>
/// <param name="ConnectionState">new or established (a reply).</param>
/// <param name="Verdict">allowed, dropped or unknown.</param>
/// <param name="Expected">allowed; dropped for a new connection out of a routed subnet under stateful filtering (Tailscale's design, which the exemption keeps).</param>
/// <param name="Where">The ruleset whose rule or policy decided: iptables-legacy, iptables-nft or nftables.</param>
/// <param name="Rule">1-based rule number in <paramref name="Chain"/>; null when the chain policy decided.</param>
public sealed record PacketFinding(
    string Kind,
    string Cidr,
    string Address,
    string Path,
    string InInterface,
    string? OutInterface,
    string ConnectionState,
    string Verdict,
    string Expected,
    bool Ok,
    string? Where,
    string? Chain,
    int? Rule,
    string? RuleText,
    string Reason,
    IReadOnlyList<string> Trace,
    IReadOnlyList<string> Assumptions);

/// <summary>Source-generated (the agent is published with NativeAOT); camelCase, like Kubernetes.</summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true)]
[JsonSerializable(typeof(DoctorReport))]
internal sealed partial class DoctorJsonContext : JsonSerializerContext
{
    /// <summary>
    /// Rule texts are full of quotes and apostrophes; the default encoder would print them as \u0022 and
    /// \u0027 (an HTML safety measure). This output goes to a terminal or a program, never into a page.
    /// </summary>
    private static readonly DoctorJsonContext Readable = new(new JsonSerializerOptions
    {
        PropertyNamingPolicy = JsonNamingPolicy.CamelCase,
        WriteIndented = true,
        Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping,
    });

    public static string Serialize(DoctorReport report) => JsonSerializer.Serialize(report, Readable.DoctorReport);
}
