using System.Net;
using System.Text.Json;
using TsCgnat.Api;
using TsCgnat.Firewall;
using TsCgnat.Firewall.Formats;
using TsCgnat.Firewall.Model;
using TsCgnat.Firewall.Rules;
using TsCgnat.NodeAgent.Doctor;
using TsCgnat.NodeAgent.Tailscale;
using TsCgnat.TestSupport;

namespace TsCgnat.NodeAgent.Tests;

/// <summary>
/// The doctor's walk over listings as the tools print them (facts 1.5 and 1.6, with and without our
/// rules): which rule decides each probe, and what the report says. No root needed.
/// </summary>
public sealed class DoctorWalkTests
{
    private const string Socket = "/nonexistent/tailscaled.sock";

    /// <summary>Facts 1.5, table filter: tailscaled's iptables runner in mode on (v1.100+), as iptables-legacy-save prints it.</summary>
    private const string ModeOn = """
        *filter
        :INPUT ACCEPT [0:0]
        :FORWARD ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        :ts-forward - [0:0]
        :ts-input - [0:0]
        -A INPUT -j ts-input
        -A FORWARD -j ts-forward
        -A ts-forward -i tailscale0 -j MARK --set-xmark 0x40000/0xff0000
        -A ts-forward -m mark --mark 0x40000/0xff0000 -j ACCEPT
        -A ts-forward -s 100.64.0.0/10 -o tailscale0 -j DROP
        -A ts-forward -o tailscale0 -j ACCEPT
        -A ts-input -s 100.101.102.103/32 -i lo -j ACCEPT
        -A ts-input -i tailscale0 -j ACCEPT
        -A ts-input -p udp -m udp --dport 41641 -j ACCEPT
        -A ts-input -s 100.115.92.0/23 ! -i tailscale0 -j RETURN
        -A ts-input -s 100.64.0.0/10 ! -i tailscale0 -j DROP
        COMMIT

        """;

    /// <summary>Mode on with the InChain exemptions at the top of ts-input and ts-forward, as iptables-legacy-save prints them.</summary>
    private const string ModeOnInChain = """
        *filter
        :INPUT ACCEPT [0:0]
        :FORWARD ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        :ts-forward - [0:0]
        :ts-input - [0:0]
        -A INPUT -j ts-input
        -A FORWARD -j ts-forward
        -A ts-forward -o tailscale0 -m comment --comment "ts-cgnat exemption" -m set --match-set TSCGNAT-FWD4 src -j ACCEPT
        -A ts-forward -i tailscale0 -j MARK --set-xmark 0x40000/0xff0000
        -A ts-forward -m mark --mark 0x40000/0xff0000 -j ACCEPT
        -A ts-forward -s 100.64.0.0/10 -o tailscale0 -j DROP
        -A ts-forward -o tailscale0 -j ACCEPT
        -A ts-input ! -i tailscale0 -m comment --comment "ts-cgnat exemption" -m set --match-set TSCGNAT-SRC4 src -j RETURN
        -A ts-input ! -i tailscale0 -m comment --comment "ts-cgnat exemption" -m set --match-set TSCGNAT-SRCIF4 src,src -j RETURN
        -A ts-input -s 100.101.102.103/32 -i lo -j ACCEPT
        -A ts-input -i tailscale0 -j ACCEPT
        -A ts-input -p udp -m udp --dport 41641 -j ACCEPT
        -A ts-input -s 100.115.92.0/23 ! -i tailscale0 -j RETURN
        -A ts-input -s 100.64.0.0/10 ! -i tailscale0 -j DROP
        COMMIT

        """;

    /// <summary>Nodivert (no jumps) with the Indirect layout of design section 4.</summary>
    private const string NodivertIndirect = """
        *nat
        :PREROUTING ACCEPT [0:0]
        :INPUT ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        :POSTROUTING ACCEPT [0:0]
        :TSCGNAT-POSTROUTING - [0:0]
        :ts-postrouting - [0:0]
        -A POSTROUTING -m comment --comment "ts-cgnat hook" -j TSCGNAT-POSTROUTING
        -A TSCGNAT-POSTROUTING -j ts-postrouting
        -A ts-postrouting -m mark --mark 0x40000/0xff0000 -j MASQUERADE
        COMMIT
        *filter
        :INPUT ACCEPT [0:0]
        :FORWARD ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        :TSCGNAT-FORWARD - [0:0]
        :TSCGNAT-INPUT - [0:0]
        :ts-forward - [0:0]
        :ts-input - [0:0]
        -A INPUT -m comment --comment "ts-cgnat hook" -j TSCGNAT-INPUT
        -A FORWARD -m comment --comment "ts-cgnat hook" -j TSCGNAT-FORWARD
        -A TSCGNAT-FORWARD -o tailscale0 -m set --match-set TSCGNAT-FWD4 src -j ACCEPT
        -A TSCGNAT-FORWARD -j ts-forward
        -A TSCGNAT-INPUT ! -i tailscale0 -m set --match-set TSCGNAT-SRC4 src -j RETURN
        -A TSCGNAT-INPUT ! -i tailscale0 -m set --match-set TSCGNAT-SRCIF4 src,src -j RETURN
        -A TSCGNAT-INPUT -j ts-input
        -A ts-forward -i tailscale0 -j MARK --set-xmark 0x40000/0xff0000
        -A ts-forward -m mark --mark 0x40000/0xff0000 -j ACCEPT
        -A ts-forward -s 100.64.0.0/10 -o tailscale0 -j DROP
        -A ts-forward -o tailscale0 -j ACCEPT
        -A ts-input -s 100.101.102.103/32 -i lo -j ACCEPT
        -A ts-input -i tailscale0 -j ACCEPT
        -A ts-input -p udp -m udp --dport 41641 -j ACCEPT
        -A ts-input -s 100.115.92.0/23 ! -i tailscale0 -j RETURN
        -A ts-input -s 100.64.0.0/10 ! -i tailscale0 -j DROP
        COMMIT

        """;

    /// <summary>Our sets as ipset save prints them.</summary>
    private const string Ipsets = """
        create TSCGNAT-SRC4 hash:net family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0x4bb25053
        add TSCGNAT-SRC4 100.64.0.0/24
        add TSCGNAT-SRC4 100.100.0.0/16
        create TSCGNAT-SRCIF4 hash:net,iface family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0xe8168f0a
        add TSCGNAT-SRCIF4 100.64.5.0/24,eth1
        create TSCGNAT-FWD4 hash:net family inet hashsize 1024 maxelem 65536 bucketsize 12 initval 0xc28ff0e8
        add TSCGNAT-FWD4 100.64.0.0/24

        """;

    /// <summary>Facts 1.6: <c>nft -j list table ip filter</c> under tailscaled's nftables runner, mode on, stateful filtering off.</summary>
    private const string NftModeOn = """
        {"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "ip", "name": "filter", "handle": 1}}, {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}}, {"chain": {"family": "ip", "table": "filter", "name": "INPUT", "handle": 2, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}}, {"chain": {"family": "ip", "table": "filter", "name": "ts-forward", "handle": 3}}, {"chain": {"family": "ip", "table": "filter", "name": "ts-input", "handle": 4}}, {"rule": {"family": "ip", "table": "filter", "chain": "FORWARD", "handle": 6, "expr": [{"counter": {"packets": 0, "bytes": 0}}, {"jump": {"target": "ts-forward"}}]}}, {"rule": {"family": "ip", "table": "filter", "chain": "INPUT", "handle": 5, "expr": [{"counter": {"packets": 0, "bytes": 0}}, {"jump": {"target": "ts-input"}}]}}, {"rule": {"family": "ip", "table": "filter", "chain": "ts-forward", "handle": 8, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "tailscale0*"}}, {"counter": {"packets": 0, "bytes": 0}}, {"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"|": [{"&": [{"meta": {"key": "mark"}}, 4278517759]}, 262144]}}}]}}, {"rule": {"family": "ip", "table": "filter", "chain": "ts-forward", "handle": 9, "expr": [{"match": {"op": "==", "left": {"&": [{"meta": {"key": "mark"}}, 16711680]}, "right": 262144}}, {"counter": {"packets": 0, "bytes": 0}}, {"accept": null}]}}, {"rule": {"family": "ip", "table": "filter", "chain": "ts-forward", "handle": 10, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "tailscale0*"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "100.64.0.0", "len": 10}}}}, {"counter": {"packets": 0, "bytes": 0}}, {"drop": null}]}}, {"rule": {"family": "ip", "table": "filter", "chain": "ts-forward", "handle": 11, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "tailscale0*"}}, {"counter": {"packets": 0, "bytes": 0}}, {"accept": null}]}}, {"rule": {"family": "ip", "table": "filter", "chain": "ts-input", "handle": 14, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "lo*"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "100.101.102.103"}}, {"counter": {"packets": 0, "bytes": 0}}, {"accept": null}]}}, {"rule": {"family": "ip", "table": "filter", "chain": "ts-input", "handle": 7, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "tailscale0*"}}, {"counter": {"packets": 0, "bytes": 0}}, {"accept": null}]}}, {"rule": {"family": "ip", "table": "filter", "chain": "ts-input", "handle": 12, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 41641}}, {"counter": {"packets": 0, "bytes": 0}}, {"accept": null}]}}, {"rule": {"family": "ip", "table": "filter", "chain": "ts-input", "handle": 15, "expr": [{"match": {"op": "!=", "left": {"meta": {"key": "iifname"}}, "right": "tailscale0*"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "100.115.92.0", "len": 23}}}}, {"counter": {"packets": 0, "bytes": 0}}, {"return": null}]}}, {"rule": {"family": "ip", "table": "filter", "chain": "ts-input", "handle": 16, "expr": [{"match": {"op": "!=", "left": {"meta": {"key": "iifname"}}, "right": "tailscale0*"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "100.64.0.0", "len": 10}}}}, {"counter": {"packets": 0, "bytes": 0}}, {"drop": null}]}}]}
        """;

    /// <summary>The same with stateful filtering on and the InChain exemptions (named sets, tagged rules) in place.</summary>
    private const string NftModeOnStatefulInChain = """
        {"nftables": [{"metainfo": {"version": "1.0.6", "release_name": "Lester Gooch #5", "json_schema_version": 1}}, {"table": {"family": "ip", "name": "filter", "handle": 1}}, {"set": {"family": "ip", "name": "TSCGNAT-SRC4", "table": "filter", "type": "ipv4_addr", "handle": 19, "flags": ["interval"], "elem": [{"prefix": {"addr": "100.64.0.0", "len": 24}}, {"prefix": {"addr": "100.100.0.0", "len": 16}}]}}, {"set": {"family": "ip", "name": "TSCGNAT-SRCIF4", "table": "filter", "type": ["ipv4_addr", "ifname"], "handle": 20, "flags": ["interval"], "elem": [{"concat": [{"prefix": {"addr": "100.64.5.0", "len": 24}}, "eth1"]}]}}, {"set": {"family": "ip", "name": "TSCGNAT-FWD4", "table": "filter", "type": "ipv4_addr", "handle": 21, "flags": ["interval"], "elem": [{"prefix": {"addr": "100.64.0.0", "len": 24}}]}}, {"chain": {"family": "ip", "table": "filter", "name": "FORWARD", "handle": 1, "type": "filter", "hook": "forward", "prio": 0, "policy": "accept"}}, {"chain": {"family": "ip", "table": "filter", "name": "INPUT", "handle": 2, "type": "filter", "hook": "input", "prio": 0, "policy": "accept"}}, {"chain": {"family": "ip", "table": "filter", "name": "ts-forward", "handle": 3}}, {"chain": {"family": "ip", "table": "filter", "name": "ts-input", "handle": 4}}, {"rule": {"family": "ip", "table": "filter", "chain": "FORWARD", "handle": 6, "expr": [{"counter": {"packets": 0, "bytes": 0}}, {"jump": {"target": "ts-forward"}}]}}, {"rule": {"family": "ip", "table": "filter", "chain": "INPUT", "handle": 5, "expr": [{"counter": {"packets": 0, "bytes": 0}}, {"jump": {"target": "ts-input"}}]}}, {"rule": {"family": "ip", "table": "filter", "chain": "ts-forward", "handle": 22, "comment": "ts-cgnat exemption 630de8aca154", "expr": [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "tailscale0*"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "@TSCGNAT-FWD4"}}, {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["established", "related"]}}, {"counter": {"packets": 0, "bytes": 0}}, {"accept": null}]}}, {"rule": {"family": "ip", "table": "filter", "chain": "ts-forward", "handle": 8, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "tailscale0*"}}, {"counter": {"packets": 0, "bytes": 0}}, {"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"|": [{"&": [{"meta": {"key": "mark"}}, 4278517759]}, 262144]}}}]}}, {"rule": {"family": "ip", "table": "filter", "chain": "ts-forward", "handle": 9, "expr": [{"match": {"op": "==", "left": {"&": [{"meta": {"key": "mark"}}, 16711680]}, "right": 262144}}, {"counter": {"packets": 0, "bytes": 0}}, {"accept": null}]}}, {"rule": {"family": "ip", "table": "filter", "chain": "ts-forward", "handle": 10, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "tailscale0*"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "100.64.0.0", "len": 10}}}}, {"counter": {"packets": 0, "bytes": 0}}, {"drop": null}]}}, {"rule": {"family": "ip", "table": "filter", "chain": "ts-forward", "handle": 16, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "tailscale0*"}}, {"match": {"op": "in", "left": {"ct": {"key": "state"}}, "right": ["invalid", "new", 16, 32, 128, 256, 512, 1024, 2048, 4096, 8192, 16384, 32768, 65536, 131072, 262144, 524288, 1048576, 2097152, 4194304, 8388608, 16777216, 33554432, 67108864, 134217728, 268435456, 536870912, 1073741824, 2147483648]}}, {"counter": {"packets": 0, "bytes": 0}}, {"drop": null}]}}, {"rule": {"family": "ip", "table": "filter", "chain": "ts-forward", "handle": 11, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "oifname"}}, "right": "tailscale0*"}}, {"counter": {"packets": 0, "bytes": 0}}, {"accept": null}]}}, {"rule": {"family": "ip", "table": "filter", "chain": "ts-input", "handle": 24, "comment": "ts-cgnat exemption 34c3b3454329", "expr": [{"match": {"op": "!=", "left": {"meta": {"key": "iifname"}}, "right": "tailscale0*"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "@TSCGNAT-SRC4"}}, {"counter": {"packets": 0, "bytes": 0}}, {"return": null}]}}, {"rule": {"family": "ip", "table": "filter", "chain": "ts-input", "handle": 23, "comment": "ts-cgnat exemption 5d19c285d79a", "expr": [{"match": {"op": "!=", "left": {"meta": {"key": "iifname"}}, "right": "tailscale0*"}}, {"match": {"op": "==", "left": {"concat": [{"payload": {"protocol": "ip", "field": "saddr"}}, {"meta": {"key": "iifname"}}]}, "right": "@TSCGNAT-SRCIF4"}}, {"counter": {"packets": 0, "bytes": 0}}, {"return": null}]}}, {"rule": {"family": "ip", "table": "filter", "chain": "ts-input", "handle": 14, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "lo*"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": "100.101.102.103"}}, {"counter": {"packets": 0, "bytes": 0}}, {"accept": null}]}}, {"rule": {"family": "ip", "table": "filter", "chain": "ts-input", "handle": 7, "expr": [{"match": {"op": "==", "left": {"meta": {"key": "iifname"}}, "right": "tailscale0*"}}, {"counter": {"packets": 0, "bytes": 0}}, {"accept": null}]}}, {"rule": {"family": "ip", "table": "filter", "chain": "ts-input", "handle": 12, "expr": [{"match": {"op": "==", "left": {"payload": {"protocol": "udp", "field": "dport"}}, "right": 41641}}, {"counter": {"packets": 0, "bytes": 0}}, {"accept": null}]}}, {"rule": {"family": "ip", "table": "filter", "chain": "ts-input", "handle": 17, "expr": [{"match": {"op": "!=", "left": {"meta": {"key": "iifname"}}, "right": "tailscale0*"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "100.115.92.0", "len": 23}}}}, {"counter": {"packets": 0, "bytes": 0}}, {"return": null}]}}, {"rule": {"family": "ip", "table": "filter", "chain": "ts-input", "handle": 18, "expr": [{"match": {"op": "!=", "left": {"meta": {"key": "iifname"}}, "right": "tailscale0*"}}, {"match": {"op": "==", "left": {"payload": {"protocol": "ip", "field": "saddr"}}, "right": {"prefix": {"addr": "100.64.0.0", "len": 10}}}}, {"counter": {"packets": 0, "bytes": 0}}, {"drop": null}]}}]}
        """;

    /// <summary>What the fixtures' sets hold: a source on any interface, one only on eth1, a routed subnet.</summary>
    private static readonly ValidatedPolicy Lab = new(
        "lab",
        1,
        null,
        [
            new SourceExemption(IPNetwork.Parse("100.64.0.0/24"), []),
            new SourceExemption(IPNetwork.Parse("100.100.0.0/16"), []),
            new SourceExemption(IPNetwork.Parse("100.64.5.0/24"), ["eth1"]),
        ],
        [IPNetwork.Parse("100.64.0.0/24")]);

    private static DoctorReport Examine(
        string? legacy = null, string? nftJson = null, string ipsets = "", IReadOnlyList<ValidatedPolicy>? policies = null, TailscaleView? localApi = null)
    {
        var rulesets = new Dictionary<(IptablesBackend, IpFamily), SavedRuleset>();
        if (legacy is not null)
        {
            rulesets[(IptablesBackend.Legacy, IpFamily.V4)] = SavedRuleset.Parse(legacy);
        }

        var snapshot = new HostSnapshot(rulesets, IpsetSave.Parse(ipsets, Names.SetPrefix), [], Nft: nftJson is null ? null : NftRuleset.Parse(nftJson));
        return HostDiagnosis.Examine(
            snapshot, new HostListing(legacy, null, ipsets, nftJson), policies, new FirewallSettings(), Socket,
            localApi ?? TailscaleView.Unreachable("no socket"));
    }

    private static PacketFinding Packet(DoctorReport report, string cidr, string path = "input", string state = "new", string inInterface = "eth0") =>
        Assert.Single(report.Packets, p => p.Cidr == cidr && p.Path == path && p.ConnectionState == state && p.InInterface == inInterface);

    [Fact]
    public void Mode_on_without_the_agent_drops_an_allowed_source_at_tailscales_cgnat_drop()
    {
        var report = Examine(ModeOn, policies: [Lab]);

        var packet = Packet(report, "100.64.0.0/24");
        Assert.Equal(("dropped", "iptables-legacy", "ts-input", 5), (packet.Verdict, packet.Where, packet.Chain, packet.Rule));
        Assert.Equal("-s 100.64.0.0/10 ! -i tailscale0 -j DROP", packet.RuleText);
        Assert.Equal(["INPUT rule 1: -j ts-input", "ts-input rule 5: -s 100.64.0.0/10 ! -i tailscale0 -j DROP"], packet.Trace);
        var forward = Packet(report, "100.64.0.0/24", "forward");
        Assert.Equal(("dropped", "ts-forward", 3), (forward.Verdict, forward.Chain, forward.Rule));
        Assert.Equal(("iptables-legacy", "on", "firewall", "in-chain"), (report.Tailscale.Runner, report.Tailscale.Mode, report.Tailscale.ModeLearnedFrom, report.Strategy.Auto));
        Assert.False(report.Rules.MatchPolicy);
        Assert.False(report.Healthy);
        Assert.Contains(report.Recommendations, r => r.Contains("is dropped by iptables-legacy ts-input rule 5", StringComparison.Ordinal)
            && r.Contains("run the agent", StringComparison.Ordinal));
    }

    [Fact]
    public void Mode_on_with_in_chain_exemptions_lets_every_allowed_source_and_the_routed_subnet_through()
    {
        var report = Examine(ModeOnInChain, ipsets: Ipsets, policies: [Lab]);

        Assert.All(report.Packets, p => Assert.Equal("allowed", p.Verdict));
        var packet = Packet(report, "100.64.0.0/24");
        Assert.Equal(("INPUT", (int?)null, "policy ACCEPT"), (packet.Chain, packet.Rule, packet.RuleText));
        Assert.Contains("ts-input rule 1: ! -i tailscale0 -m comment --comment \"ts-cgnat exemption\" -m set --match-set TSCGNAT-SRC4 src -j RETURN", packet.Trace);
        Assert.Equal(("ts-forward", 1), (Packet(report, "100.64.0.0/24", "forward").Chain, Packet(report, "100.64.0.0/24", "forward").Rule));
        Assert.Equal("in-chain", report.Strategy.InUse);
        Assert.True(report.Rules.MatchPolicy);
        Assert.True(report.Healthy);
        Assert.Equal("all allowed sources pass; healthy", report.Recommendations[^1]);
    }

    [Fact]
    public void A_source_allowed_only_on_eth1_passes_on_eth1_and_is_probed_on_no_other_interface()
    {
        var report = Examine(ModeOnInChain, ipsets: Ipsets, policies: [Lab]);

        var packet = Packet(report, "100.64.5.0/24", inInterface: "eth1");
        Assert.Equal("allowed", packet.Verdict);
        Assert.Contains(packet.Trace, t => t.StartsWith("ts-input rule 2:", StringComparison.Ordinal));
        Assert.DoesNotContain(report.Packets, p => p.Cidr == "100.64.5.0/24" && p.InInterface != "eth1");
    }

    [Fact]
    public void Nodivert_without_the_agent_drops_nothing_because_nothing_jumps_to_ts_input()
    {
        var nodivert = ModeOn.Replace("-A INPUT -j ts-input\n", "", StringComparison.Ordinal).Replace("-A FORWARD -j ts-forward\n", "", StringComparison.Ordinal);

        var report = Examine(nodivert, policies: [Lab]);

        Assert.All(report.Packets, p => Assert.Equal("allowed", p.Verdict));
        Assert.Equal(("nodivert", "indirect"), (report.Tailscale.Mode, report.Strategy.Auto));
        Assert.False(report.Rules.MatchPolicy);
        Assert.False(report.Healthy);
    }

    [Fact]
    public void Nodivert_with_indirect_chains_exempts_allowed_sources_and_keeps_dropping_the_rest()
    {
        var unlisted = new ValidatedPolicy("unlisted", 1, null, [new SourceExemption(IPNetwork.Parse("100.64.9.0/24"), [])], []);

        var report = Examine(NodivertIndirect, ipsets: Ipsets, policies: [Lab, unlisted]);

        var packet = Packet(report, "100.64.0.0/24");
        Assert.Equal(("allowed", "INPUT"), (packet.Verdict, packet.Chain));
        Assert.Equal("TSCGNAT-INPUT rule 1: ! -i tailscale0 -m set --match-set TSCGNAT-SRC4 src -j RETURN", packet.Trace[1]);
        Assert.Equal(("allowed", "TSCGNAT-FORWARD", 1), (Packet(report, "100.64.0.0/24", "forward").Verdict, Packet(report, "100.64.0.0/24", "forward").Chain, Packet(report, "100.64.0.0/24", "forward").Rule));
        var dropped = Packet(report, "100.64.9.0/24");
        Assert.Equal(("dropped", "ts-input", 5), (dropped.Verdict, dropped.Chain, dropped.Rule));
        Assert.Equal("indirect", report.Strategy.InUse);
    }

    [Fact]
    public void A_ufw_like_drop_in_INPUT_is_reported_as_the_dropping_rule_even_with_the_exemption_in_place()
    {
        var ufw = ModeOnInChain.Replace("-A INPUT -j ts-input\n", "-A INPUT -j ts-input\n-A INPUT -s 100.64.0.0/16 -m comment --comment \"ufw deny\" -j DROP\n", StringComparison.Ordinal);

        var report = Examine(ufw, ipsets: Ipsets, policies: [Lab]);

        var packet = Packet(report, "100.64.0.0/24");
        Assert.Equal(("dropped", "INPUT", 2), (packet.Verdict, packet.Chain, packet.Rule));
        Assert.Equal("-s 100.64.0.0/16 -m comment --comment \"ufw deny\" -j DROP", packet.RuleText);
        Assert.Equal("allowed", Packet(report, "100.100.0.0/16").Verdict);
        Assert.Contains(report.Recommendations, r => r.Contains("which is not Tailscale's drop", StringComparison.Ordinal));
        Assert.False(report.Healthy);
    }

    [Fact]
    public void A_drop_policy_on_INPUT_decides_when_no_rule_accepts()
    {
        var report = Examine(ModeOnInChain.Replace(":INPUT ACCEPT", ":INPUT DROP", StringComparison.Ordinal), ipsets: Ipsets, policies: [Lab]);

        var packet = Packet(report, "100.64.0.0/24");
        Assert.Equal(("dropped", "INPUT", (int?)null, "policy DROP"), (packet.Verdict, packet.Chain, packet.Rule, packet.RuleText));
    }

    [Fact]
    public void A_deciding_rule_beyond_the_model_gives_unknown_and_names_the_match()
    {
        var addrtype = ModeOnInChain.Replace("-A INPUT -j ts-input\n", "-A INPUT -m addrtype --dst-type LOCAL -j DROP\n-A INPUT -j ts-input\n", StringComparison.Ordinal);

        var report = Examine(addrtype, ipsets: Ipsets, policies: [Lab]);

        var packet = Packet(report, "100.64.0.0/24");
        Assert.Equal(("unknown", "INPUT", 1), (packet.Verdict, packet.Chain, packet.Rule));
        Assert.Equal("unknown match -m addrtype --dst-type, in a rule that would decide (-j DROP)", packet.Reason);
        Assert.False(report.Healthy);
        Assert.Contains(report.Recommendations, r => r.Contains("could not be decided", StringComparison.Ordinal));
    }

    [Fact]
    public void A_log_rule_beyond_the_model_is_assumed_not_to_match_and_said_so()
    {
        var log = ModeOn.Replace("-A INPUT -j ts-input\n", "-A INPUT -m limit --limit 5/min -j LOG\n-A INPUT -j ts-input\n", StringComparison.Ordinal);

        var report = Examine(log, policies: [Lab]);

        var packet = Packet(report, "100.64.0.0/24");
        Assert.Equal(("dropped", "ts-input", 5), (packet.Verdict, packet.Chain, packet.Rule));
        Assert.Equal(["INPUT rule 1: -m limit --limit 5/min -j LOG: unknown match -m limit --limit: assumed not to match"], packet.Assumptions);
    }

    [Fact]
    public void A_source_in_an_ipset_no_one_listed_makes_the_rule_unknown()
    {
        var report = Examine(ModeOnInChain, ipsets: "", policies: [Lab]);

        var packet = Packet(report, "100.64.0.0/24");
        Assert.Equal(("unknown", "ts-input", 1), (packet.Verdict, packet.Chain, packet.Rule));
        Assert.StartsWith("ipset TSCGNAT-SRC4 was not listed by ipset save", packet.Reason, StringComparison.Ordinal);
    }

    [Fact]
    public void Native_nft_mode_on_without_the_agent_drops_at_ts_input_rule_5()
    {
        var report = Examine(nftJson: NftModeOn, policies: [Lab]);

        var packet = Packet(report, "100.64.0.0/24");
        Assert.Equal(("dropped", "nftables", "ts-input", 5), (packet.Verdict, packet.Where, packet.Chain, packet.Rule));
        Assert.Equal("iifname != \"tailscale0*\" ip saddr 100.64.0.0/10 counter drop", packet.RuleText);
        Assert.Equal(("dropped", "ts-forward", 3), (Packet(report, "100.64.0.0/24", "forward").Verdict, Packet(report, "100.64.0.0/24", "forward").Chain, Packet(report, "100.64.0.0/24", "forward").Rule));
        Assert.Equal(("nftables", "nftables", "on", "in-chain"), (report.Firewall.Backend, report.Tailscale.Runner, report.Tailscale.Mode, report.Strategy.Auto));
        Assert.False(report.Rules.MatchPolicy);
    }

    [Fact]
    public void Native_nft_with_exemptions_and_stateful_filtering_passes_replies_and_still_drops_new_connections_into_the_tailnet()
    {
        var report = Examine(nftJson: NftModeOnStatefulInChain, policies: [Lab]);

        Assert.True(report.Tailscale.StatefulFiltering);
        Assert.Equal("firewall", report.Tailscale.StatefulFilteringLearnedFrom);
        Assert.Equal(("allowed", "INPUT"), (Packet(report, "100.64.0.0/24").Verdict, Packet(report, "100.64.0.0/24").Chain));
        Assert.Equal("allowed", Packet(report, "100.64.5.0/24", inInterface: "eth1").Verdict);
        var reply = Packet(report, "100.64.0.0/24", "forward", "established");
        Assert.Equal(("allowed", "allowed", "ts-forward", 1), (reply.Verdict, reply.Expected, reply.Chain, reply.Rule));
        var newConnection = Packet(report, "100.64.0.0/24", "forward", "new");
        Assert.Equal(("dropped", "dropped", true, "ts-forward", 4), (newConnection.Verdict, newConnection.Expected, newConnection.Ok, newConnection.Chain, newConnection.Rule));
        Assert.True(report.Rules.MatchPolicy);
        Assert.True(report.Healthy);
    }

    [Fact]
    public void Without_a_policy_the_members_of_the_hosts_own_sets_are_probed_and_nothing_is_compared()
    {
        var report = Examine(ModeOnInChain, ipsets: Ipsets);

        Assert.Equal(
            ["100.100.0.0/16 input eth0", "100.64.0.0/24 forward eth0", "100.64.0.0/24 input eth0", "100.64.5.0/24 input eth1"],
            report.Packets.Select(p => $"{p.Cidr} {p.Path} {p.InInterface}").Order(StringComparer.Ordinal));
        Assert.Null(report.Rules.MatchPolicy);
        Assert.Contains("ipset TSCGNAT-SRC4 (hash:net, 2 members)", report.Rules.Present);
        Assert.True(report.Healthy);
    }

    [Fact]
    public void The_LocalAPI_view_is_reported_and_its_mode_is_preferred_with_a_warning_when_the_firewall_disagrees()
    {
        var view = new TailscaleView(true, null, BackendState.Running, "1.100.0", new TailscalePrefs { NetfilterMode = NetfilterMode.NoDivert, NetfilterKind = "iptables" });

        var report = Examine(ModeOn, policies: [Lab], localApi: view);

        Assert.Equal(("nodivert", "localApi", "on"), (report.Tailscale.Mode, report.Tailscale.ModeLearnedFrom, report.Tailscale.NetfilterMode));
        Assert.Equal(new LocalApiFinding(Socket, true, null, "Running", "1.100.0", "nodivert", "iptables"), report.Tailscale.LocalApi);
        Assert.Contains(report.Warnings, w => w.StartsWith("the LocalAPI says netfilter mode nodivert but the firewall shows on", StringComparison.Ordinal));
    }

    [Fact]
    public void Before_tailscaled_builds_its_chains_the_runner_comes_from_the_LocalAPI()
    {
        var view = new TailscaleView(true, null, BackendState.Starting, "1.100.0", new TailscalePrefs { NetfilterMode = NetfilterMode.On, NetfilterKind = "nftables" });

        var report = Examine("*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\nCOMMIT\n", nftJson: """{"nftables": []}""", policies: [Lab], localApi: view);

        Assert.Equal(("nftables", "localApi"), (report.Tailscale.Runner, report.Tailscale.RunnerLearnedFrom));
        Assert.Equal("off", report.Tailscale.NetfilterMode);
    }

    [Fact]
    public void The_json_report_uses_camel_case_names_lowercase_values_and_unescaped_rule_text()
    {
        var report = Examine(ModeOn, policies: [Lab]);

        var text = DoctorJsonContext.Serialize(report);
        using var json = JsonDocument.Parse(text);

        var root = json.RootElement;
        Assert.False(root.GetProperty("healthy").GetBoolean());
        Assert.Equal("on", root.GetProperty("tailscale").GetProperty("mode").GetString());
        Assert.False(root.GetProperty("tailscale").GetProperty("localApi").GetProperty("reachable").GetBoolean());
        var packet = root.GetProperty("packets")[0];
        Assert.Equal(("allowedSource", "dropped", 5), (packet.GetProperty("kind").GetString(), packet.GetProperty("verdict").GetString(), packet.GetProperty("rule").GetInt32()));
        Assert.Contains("run the agent (or 'ts-cgnat-agent apply')", text, StringComparison.Ordinal);
    }

    [Fact]
    public void The_text_report_names_the_dropping_rule_and_ends_with_the_recommendation()
    {
        var text = DoctorText.Render(Examine(ModeOn, policies: [Lab]));

        Assert.Contains("FAIL allowed source 100.64.0.0/24: 100.64.0.0 on eth0 to this host, new: dropped (expected allowed) by iptables-legacy ts-input rule 5: -s 100.64.0.0/10 ! -i tailscale0 -j DROP", text, StringComparison.Ordinal);
        Assert.Contains("LocalAPI (/nonexistent/tailscaled.sock): not reachable (no socket); working from the firewall alone", text, StringComparison.Ordinal);
        Assert.Contains("\nrecommendation:\n  tailscaled is in mode on with its iptables runner over iptables-legacy: the agent uses in-chain\n", text, StringComparison.Ordinal);
    }
}

/// <summary>
/// <c>doctor --json</c> of the real agent on the seed lab, with tailscaled emulated under each runner and
/// mode, before and after <c>apply</c>; what it says is checked against what the kernel does (ping).
/// </summary>
[Collection("netns")]
public sealed class DoctorLabTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private string PolicyFile => _dir.File("seed.yaml", Policies.Seed);

    /// <summary>Runs <c>doctor --json</c> against u2 (no tailscaled socket: the firewall alone speaks).</summary>
    private (int ExitCode, JsonElement Report) Doctor(Lab lab)
    {
        var output = Agent.Run("doctor", "--json", "--netns", lab.Ns("u2"), "--policy-file", PolicyFile, "--tailscale-socket", Path.Combine(_dir.Path, "no.sock"));
        Assert.True(output.ExitCode is 0 or 1, $"doctor exited {output.ExitCode}:\n{output.StdOut}\n{output.StdErr}");
        using var json = JsonDocument.Parse(output.StdOut);
        return (output.ExitCode, json.RootElement.Clone());
    }

    private void Apply(Lab lab) =>
        Agent.Ok("apply", "--netns", lab.Ns("u2"), "--state-dir", _dir.Sub("state"), "--policy-file", PolicyFile);

    private static JsonElement Packet(JsonElement report, string path, string state = "new") =>
        report.GetProperty("packets").EnumerateArray().Single(p => p.GetProperty("path").GetString() == path && p.GetProperty("connectionState").GetString() == state);

    private static string? Text(JsonElement element, params string[] path) =>
        path.Aggregate(element, (e, name) => e.GetProperty(name)).GetString();

    private static (string? Verdict, string? Chain, int? Rule) Fate(JsonElement packet) =>
        (Text(packet, "verdict"), Text(packet, "chain"), packet.GetProperty("rule").ValueKind == JsonValueKind.Null ? null : packet.GetProperty("rule").GetInt32());

    [SkippableTheory]
    [InlineData("legacy", "iptables-legacy")]
    [InlineData("nft", "iptables-nft")]
    public void Mode_on_names_tailscales_drop_before_apply_and_a_clean_bill_after(string backend, string runner)
    {
        Privileges.RequireNetns();
        using var lab = new Lab();
        using var tailscaled = new TailscaledEmulator(lab.Ns("u2"), backend);
        tailscaled.Run("start", "on");

        var (before, report) = Doctor(lab);

        Assert.Equal(1, before);
        Assert.Equal((runner, "on", "firewall", "in-chain"), (Text(report, "tailscale", "runner"), Text(report, "tailscale", "mode"), Text(report, "tailscale", "modeLearnedFrom"), Text(report, "strategy", "auto")));
        Assert.False(report.GetProperty("tailscale").GetProperty("localApi").GetProperty("reachable").GetBoolean());
        Assert.Equal(("dropped", "ts-input", 3), Fate(Packet(report, "input"))); // tailscaled's order: loopback, RETURN, DROP
        Assert.Equal(("dropped", "ts-forward", 3), Fate(Packet(report, "forward")));
        Assert.False(lab.Reaches("u2", Lab.U3)); // the kernel agrees

        Apply(lab);
        var (after, fixedReport) = Doctor(lab);

        Assert.Equal(0, after);
        Assert.True(fixedReport.GetProperty("rules").GetProperty("matchPolicy").GetBoolean());
        Assert.Equal(("allowed", "INPUT", null), Fate(Packet(fixedReport, "input")));
        Assert.Equal(("allowed", "ts-forward", 1), Fate(Packet(fixedReport, "forward")));
        Assert.True(lab.Reaches("u2", Lab.U3));
    }

    [SkippableTheory]
    [InlineData("legacy", "iptables-legacy")]
    [InlineData("nft", "iptables-nft")]
    public void Nodivert_drops_nothing_but_reports_missing_rules_until_apply(string backend, string runner)
    {
        Privileges.RequireNetns();
        using var lab = new Lab();
        using var tailscaled = new TailscaledEmulator(lab.Ns("u2"), backend);
        tailscaled.Run("start", "nodivert");

        var (before, report) = Doctor(lab);

        Assert.Equal(1, before);
        Assert.Equal((runner, "nodivert", "indirect"), (Text(report, "tailscale", "runner"), Text(report, "tailscale", "mode"), Text(report, "strategy", "auto")));
        Assert.Equal(("allowed", "INPUT", null), Fate(Packet(report, "input")));
        Assert.False(report.GetProperty("rules").GetProperty("matchPolicy").GetBoolean());
        Assert.NotEmpty(report.GetProperty("rules").GetProperty("missing").EnumerateArray());

        Apply(lab);
        var (after, fixedReport) = Doctor(lab);

        Assert.Equal(0, after);
        Assert.Equal(("allowed", "INPUT", null), Fate(Packet(fixedReport, "input")));
        Assert.Equal(("allowed", "TSCGNAT-FORWARD", 1), Fate(Packet(fixedReport, "forward")));
        Assert.Contains("TSCGNAT-INPUT rule 1:", Packet(fixedReport, "input").GetProperty("trace")[1].GetString(), StringComparison.Ordinal);
        Assert.True(lab.Reaches("u4", Lab.U3));
    }

    [SkippableFact]
    public void Native_nftables_runner_names_its_drop_before_apply_and_a_clean_bill_after()
    {
        Privileges.RequireNetns();
        using var lab = new Lab();
        using var tailscaled = new TailscaledEmulator(lab.Ns("u2"), "nftables");
        tailscaled.Run("start", "on");

        var (before, report) = Doctor(lab);

        Assert.Equal(1, before);
        Assert.Equal(("nftables", "nftables", "on", "in-chain"), (Text(report, "firewall", "backend"), Text(report, "tailscale", "runner"), Text(report, "tailscale", "mode"), Text(report, "strategy", "auto")));
        Assert.Equal(("dropped", "ts-input", 3), Fate(Packet(report, "input"))); // tailscaled's order: loopback, RETURN, DROP
        Assert.Equal("nftables", Text(Packet(report, "input"), "where"));
        Assert.False(lab.Reaches("u2", Lab.U3));

        Apply(lab);
        var (after, fixedReport) = Doctor(lab);

        Assert.Equal(0, after);
        Assert.Equal(("allowed", "INPUT", null), Fate(Packet(fixedReport, "input")));
        Assert.Equal(("allowed", "ts-forward", 1), Fate(Packet(fixedReport, "forward")));
        Assert.True(lab.Reaches("u2", Lab.U3));
    }

    [Fact]
    public void A_bad_policy_file_is_invalid_input_and_nothing_is_read()
    {
        var bad = _dir.File("bad.yaml", "apiVersion: tscgnat.io/v1alpha1\nkind: CgnatAllowPolicy\nmetadata:\n  name: bad\nspec:\n  allowedSources:\n    - cidr: 10.0.0.0/8\n");

        var output = Agent.Run("doctor", "--policy-file", bad);

        Assert.Equal(2, output.ExitCode);
        Assert.Contains("\"10.0.0.0/8\" is outside 100.64.0.0/10", output.StdErr, StringComparison.Ordinal);
    }
}
