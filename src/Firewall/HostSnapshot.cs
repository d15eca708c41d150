using TsCgnat.Firewall.Detection;
using TsCgnat.Firewall.Formats;
using TsCgnat.Firewall.Model;

namespace TsCgnat.Firewall;

/// <summary>What was read from the host in one pass: the back ends and families read, and our sets.</summary>
/// <param name="Nft">The whole nft ruleset (<c>nft -j list ruleset</c>), or null when it was not read.</param>
/// <param name="NftUnreadableByIptables">iptables-nft-save failed while nft could read the ruleset: native nft rules are in it.</param>
/// <param name="Settled">Set when only the back end chosen before was read (see <see cref="HostFirewall.FullReadEvery"/>).</param>
public sealed record HostSnapshot(
    IReadOnlyDictionary<(IptablesBackend Backend, IpFamily Family), SavedRuleset> Rulesets,
    IReadOnlyDictionary<string, SavedSet> Sets,
    IReadOnlyList<string> Notes,
    BackendChoice? Settled = null,
    NftRuleset? Nft = null,
    bool NftUnreadableByIptables = false);
