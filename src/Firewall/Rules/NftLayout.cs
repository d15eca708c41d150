using System.Net;
using System.Security.Cryptography;
using System.Text;
using TsCgnat.Firewall.Formats;

namespace TsCgnat.Firewall.Rules;

/// <summary>One exemption rule for tailscaled's nftables runner, in nft syntax, identified by its comment.</summary>
public sealed record NftExemption(string Chain, string Body)
{
    /// <summary>Our comment plus a hash of the body, so the comment alone tells whether a rule on the host is the one we want (Felix's rule identity by comment).</summary>
    public string Comment => $"{Names.ExemptionComment} {Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(Body)))[..12]}";
}

/// <summary>
/// <see cref="Model.Strategy.InChain"/> for tailscaled's native nftables runner: named sets and tagged
/// rules in <c>table ip filter</c>, where tailscaled keeps ts-input and ts-forward (nft cannot jump
/// between tables, so they must be in the same table). Written as one <c>nft -f</c> transaction.
/// </summary>
public static class NftLayout
{
    public const string Family = "ip";
    public const string Table = "filter";

    /// <summary>The nft sets for the ipset sets of <see cref="IndirectLayout.Sets"/>: same names and members.</summary>
    /// <remarks>An nft interval set refuses overlapping elements, which ipset allows (two policies may list
    /// 100.100.0.0/16 and 100.100.2.0/24), so a prefix inside another one of the same set is left out.</remarks>
    public static IReadOnlyList<DesiredSet> Sets(IReadOnlyList<DesiredSet> ipsetSets) =>
        ipsetSets.Select(s => new DesiredSet(s.Name, s.Type == "hash:net,iface" ? "ipv4_addr . ifname" : "ipv4_addr", WithoutContained(s.Members))).ToList();

    /// <summary>The exemption rules; tailscaled's nft runner matches the tun name as a prefix ("tailscale0*"), and so do we, to cancel exactly its drop.</summary>
    public static IReadOnlyList<NftExemption> Rules(string tun, bool stateful) =>
    [
        new("ts-input", $"iifname != \"{tun}*\" ip saddr @{Names.SourceSet} counter return"),
        new("ts-input", $"iifname != \"{tun}*\" ip saddr . iifname @{Names.InterfaceSourceSet} counter return"),
        new("ts-forward", stateful
            ? $"oifname \"{tun}*\" ip saddr @{Names.SubnetSet} ct state established,related counter accept"
            : $"oifname \"{tun}*\" ip saddr @{Names.SubnetSet} counter accept"),
    ];

    /// <summary>
    /// The <c>nft -f</c> script that turns <paramref name="actual"/> into what we want, or null when in sync.
    /// </summary>
    /// <param name="sets">Our nft sets; null to remove every set of ours.</param>
    /// <param name="rules">Our exemption rules; only those whose chain exists in <c>ip filter</c> are written.</param>
    /// <param name="ownAll">Our rules and chains in nft are ours to write: tailscaled uses its nftables runner,
    /// and iptables-nft cannot read its tables, so hooks and chains iptables-nft wrote for us earlier go
    /// here too. False: only our nft sets are handled (those no rule uses any more are removed), and
    /// rules are left to iptables-nft-restore.</param>
    public static string? Plan(IReadOnlyList<DesiredSet>? sets, IReadOnlyList<NftExemption> rules, NftRuleset actual, bool ownAll)
    {
        var deletes = new List<string>();
        var chainDeletes = new List<string>();
        var setWrites = new List<string>();
        var inserts = new List<string>();
        var setDeletes = new List<string>();

        var wanted = rules.Where(r => actual.Chain(Family, Table, r.Chain) is not null).ToList();
        foreach (var chain in actual.Chains.Where(c => ownAll && !Names.IsOurs(c.Name)))
        {
            var mine = chain.Family == Family && chain.Table == Table ? wanted.Where(r => r.Chain == chain.Name).ToList() : [];
            var kept = new HashSet<string>(StringComparer.Ordinal);
            var firstDrop = chain.Rules.ToList().FindIndex(r => !Names.IsOurComment(r.Comment) && r.Verdict() is "drop" or "reject");
            for (var i = 0; i < chain.Rules.Count; i++)
            {
                var rule = chain.Rules[i];
                if (!Names.IsOurComment(rule.Comment))
                {
                    continue;
                }

                var want = mine.Any(r => r.Comment == rule.Comment);
                if (!want || (firstDrop >= 0 && i > firstDrop) || !kept.Add(rule.Comment!))
                {
                    deletes.Add($"delete rule {chain.Family} {chain.Table} {chain.Name} handle {rule.Handle}");
                }
            }

            // Inserted in reverse so that they end up at the top in the order listed.
            foreach (var rule in Enumerable.Reverse(mine).Where(r => !kept.Contains(r.Comment)))
            {
                inserts.Add($"insert rule {Family} {Table} {chain.Name} {rule.Body} comment \"{rule.Comment}\"");
            }
        }

        if (ownAll)
        {
            foreach (var chain in actual.Chains.Where(c => Names.IsOurs(c.Name)))
            {
                // One transaction: a chain of ours that still holds rules cannot be deleted, so flush it first.
                chainDeletes.Add($"flush chain {chain.Family} {chain.Table} {chain.Name}");
                chainDeletes.Add($"delete chain {chain.Family} {chain.Table} {chain.Name}");
            }
        }

        var wantedSets = (sets ?? []).ToDictionary(s => s.Name, StringComparer.Ordinal);
        if (wantedSets.Count > 0 && actual.Chains.All(c => c.Family != Family || c.Table != Table) && actual.Sets.All(s => s.Family != Family || s.Table != Table))
        {
            setWrites.Add($"add table {Family} {Table}");
        }

        foreach (var set in wantedSets.Values)
        {
            var have = actual.Set(Family, Table, set.Name);
            if (have is not null && have.Type != set.Type)
            {
                throw new InvalidOperationException(
                    $"nft set {Family} {Table} {set.Name} exists with type {have.Type}, not {set.Type}; run 'ts-cgnat-agent cleanup' and apply again");
            }

            if (have is not null && have.Elements.SetEquals(set.Members))
            {
                continue;
            }

            if (have is null)
            {
                setWrites.Add($"add set {Family} {Table} {set.Name} {{ type {set.Type}; flags interval; }}");
            }
            else
            {
                setWrites.Add($"flush set {Family} {Table} {set.Name}");
            }

            if (set.Members.Count > 0)
            {
                setWrites.Add($"add element {Family} {Table} {set.Name} {{ {string.Join(", ", set.Members.Select(Element))} }}");
            }
        }

        foreach (var set in actual.Sets.Where(s => Names.IsOurs(s.Name) && !(s.Family == Family && s.Table == Table && wantedSets.ContainsKey(s.Name))
            && (ownAll || !actual.Chains.Any(c => c.Rules.Any(r => r.Expressions.GetRawText().Contains($"\"@{s.Name}\"", StringComparison.Ordinal))))))
        {
            setDeletes.Add($"delete set {set.Family} {set.Table} {set.Name}");
        }

        var lines = deletes.Concat(chainDeletes).Concat(setWrites).Concat(inserts).Concat(setDeletes).ToList();
        return lines.Count == 0 ? null : string.Concat(lines.Select(l => l + "\n"));
    }

    /// <summary>"100.64.0.0/24,eth0" as an nft element: 100.64.0.0/24 . "eth0".</summary>
    private static string Element(string member) =>
        member.Split(',') is [var cidr, var iface] ? $"{cidr} . \"{iface}\"" : member;

    private static SortedSet<string> WithoutContained(SortedSet<string> members)
    {
        var present = members.ToHashSet(StringComparer.Ordinal);
        var result = new SortedSet<string>(StringComparer.Ordinal);
        foreach (var member in members)
        {
            var parts = member.Split(',');
            var cidr = IPNetwork.Parse(parts[0]);
            var suffix = parts.Length > 1 ? "," + parts[1] : "";

            // Every shorter prefix that would contain this one: at most 22 lookups (a /32 down to /10).
            var contained = false;
            for (var length = cidr.PrefixLength - 1; length >= 10 && !contained; length--)
            {
                contained = present.Contains(new IPNetwork(Mask(cidr.BaseAddress, length), length) + suffix);
            }

            if (!contained)
            {
                result.Add(member);
            }
        }

        return result;
    }

    private static IPAddress Mask(IPAddress address, int length)
    {
        var bytes = address.GetAddressBytes();
        var value = ((uint)bytes[0] << 24) | ((uint)bytes[1] << 16) | ((uint)bytes[2] << 8) | bytes[3];
        value &= length == 0 ? 0 : uint.MaxValue << (32 - length);
        return new IPAddress([(byte)(value >> 24), (byte)(value >> 16), (byte)(value >> 8), (byte)value]);
    }
}
