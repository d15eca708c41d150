using System.Net;
using TsCgnat.Api;
using TsCgnat.Firewall.Formats;
using TsCgnat.Firewall.Model;
using TsCgnat.Firewall.Rules;

namespace TsCgnat.Firewall.Tests;

/// <summary>The planner is pure: these cases need no root.</summary>
public class PlannerTests
{
    private static readonly Exemptions Seed = new(
        [new SourceExemption(IPNetwork.Parse("100.64.0.0/24"), []), new SourceExemption(IPNetwork.Parse("100.100.0.0/16"), ["eth0"])],
        [IPNetwork.Parse("100.64.0.0/24")]);

    private static readonly TailscaleChains NodivertV4 = TsCgnat.Firewall.Detection.TailscaleChainsReader.FromIptables(SavedRuleset.Parse(NodivertSave), "tailscale0");

    /// <summary>tailscaled's ts-input in nodivert, as the real v1.82.0 daemon orders it.</summary>
    private static readonly string[] TsInput =
    [
        "-s 100.101.102.103/32 -i lo -j ACCEPT",
        "-s 100.115.92.0/23 ! -i tailscale0 -j RETURN",
        "-s 100.64.0.0/10 ! -i tailscale0 -j DROP",
        "-i tailscale0 -j ACCEPT",
        "-p udp -m udp --dport 41641 -j ACCEPT",
    ];

    private static readonly string[] TsForward =
    [
        "-i tailscale0 -j MARK --set-xmark 0x40000/0xff0000",
        "-m mark --mark 0x40000/0xff0000 -j ACCEPT",
        "-s 100.64.0.0/10 -o tailscale0 -j DROP",
        "-o tailscale0 -j ACCEPT",
    ];

    private static DesiredState Layout(TailscaleChains v4, bool stateful = false) =>
        IndirectLayout.Build(Seed, "tailscale0", new Dictionary<IpFamily, TailscaleChains> { [IpFamily.V4] = v4, [IpFamily.V6] = v4 }, stateful);

    [Fact]
    public void Indirect_layout_exempts_sources_then_runs_a_copy_of_tailscaleds_rules()
    {
        var filter = Layout(NodivertV4).Tables(IpFamily.V4).Single(t => t.Name == "filter");

        Assert.Equal(
            [
                "! -i tailscale0 -m set --match-set TSCGNAT-SRC4 src -j RETURN",
                "! -i tailscale0 -m set --match-set TSCGNAT-SRCIF4 src,src -j RETURN",
                .. TsInput,
            ],
            filter.Chains[Names.InputChain]);
        Assert.Equal(["-o tailscale0 -m set --match-set TSCGNAT-FWD4 src -j ACCEPT", .. TsForward], filter.Chains[Names.ForwardChain]);
        var nat = Layout(NodivertV4).Tables(IpFamily.V4).Single(t => t.Name == "nat");
        Assert.Equal(["-m mark --mark 0x40000/0xff0000 -j MASQUERADE"], nat.Chains[Names.PostroutingChain]);
    }

    [Fact]
    public void Indirect_layout_never_references_a_ts_chain()
    {
        // tailscaled cannot delete a chain that is still referenced: its down, stop and clean-up would stop half-way.
        var rules = Layout(NodivertV4).Families.Values.SelectMany(tables => tables).SelectMany(t => t.Chains.Values.SelectMany(c => c).Concat(t.Hooks.Select(h => h.Rule)));

        Assert.DoesNotContain(rules, r => r.Contains("-j ts-", StringComparison.Ordinal) || r.Contains("-g ts-", StringComparison.Ordinal));
    }

    [Fact]
    public void Our_rules_in_ts_input_are_not_copied()
    {
        var withOurs = NodivertSave.Replace(
            "-A ts-input -s 100.101.102.103/32 -i lo -j ACCEPT",
            "-A ts-input ! -i tailscale0 -m comment --comment \"ts-cgnat exemption\" -m set --match-set TSCGNAT-SRC4 src -j RETURN\n-A ts-input -s 100.101.102.103/32 -i lo -j ACCEPT",
            StringComparison.Ordinal);
        var chains = TsCgnat.Firewall.Detection.TailscaleChainsReader.FromIptables(SavedRuleset.Parse(withOurs), "tailscale0");

        Assert.Equal(TsInput, chains.Rules.Input);
        Assert.True(chains.InputDrop);
        Assert.True(chains.ForwardDrop);
    }

    [Fact]
    public void Stateful_filtering_limits_the_forward_exemption_to_replies()
    {
        var filter = Layout(NodivertV4, stateful: true).Tables(IpFamily.V4).Single(t => t.Name == "filter");

        Assert.Equal(
            "-o tailscale0 -m set --match-set TSCGNAT-FWD4 src -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT",
            filter.Chains[Names.ForwardChain][0]);
    }

    [Fact]
    public void Without_tailscaleds_chains_there_is_nothing_to_hook()
    {
        var state = Layout(TailscaleChains.Absent);

        Assert.Empty(state.Tables(IpFamily.V4));
        Assert.Empty(state.Tables(IpFamily.V6));
        Assert.Equal(3, state.Sets.Count);
    }

    [Fact]
    public void IPv6_gets_the_copy_without_exemptions()
    {
        var filter6 = Layout(NodivertV4).Tables(IpFamily.V6).Single(t => t.Name == "filter");

        Assert.Equal(TsInput, filter6.Chains[Names.InputChain]);
        Assert.Equal(TsForward, filter6.Chains[Names.ForwardChain]);
    }

    [Fact]
    public void Sets_hold_the_cidrs_by_interface_restriction()
    {
        var sets = Layout(NodivertV4).Sets.ToDictionary(s => s.Name);

        Assert.Equal(["100.64.0.0/24"], sets[Names.SourceSet].Members);
        Assert.Equal(["100.100.0.0/16,eth0"], sets[Names.InterfaceSourceSet].Members);
        Assert.Equal("hash:net,iface", sets[Names.InterfaceSourceSet].Type);
        Assert.Equal(["100.64.0.0/24"], sets[Names.SubnetSet].Members);
    }

    [Fact]
    public void From_nothing_the_plan_creates_chains_and_inserts_hooks_at_the_top()
    {
        var input = Planner.Iptables(Layout(NodivertV4).Tables(IpFamily.V4), SavedRuleset.Parse(NodivertSave));

        Assert.NotNull(input);
        var lines = input.Split('\n');
        Assert.Contains(":TSCGNAT-INPUT - [0:0]", lines);
        Assert.Contains("-I INPUT 1 -m comment --comment \"ts-cgnat hook\" -j TSCGNAT-INPUT", lines);
        Assert.Contains("-A TSCGNAT-INPUT -s 100.64.0.0/10 ! -i tailscale0 -j DROP", lines);
        Assert.Contains("*nat", lines);
        // Chains are declared before anything refers to them, in one table transaction each.
        Assert.True(Array.IndexOf(lines, ":TSCGNAT-INPUT - [0:0]") < Array.IndexOf(lines, "-I INPUT 1 -m comment --comment \"ts-cgnat hook\" -j TSCGNAT-INPUT"));
        Assert.Equal(2, lines.Count(l => l == "COMMIT"));
    }

    [Fact]
    public void In_sync_means_no_plan()
    {
        var desired = Layout(NodivertV4).Tables(IpFamily.V4);
        var applied = SavedRuleset.Parse(NodivertSave + Applied);

        Assert.Null(Planner.Iptables(desired, applied));
    }

    [Fact]
    public void A_hook_lower_in_the_chain_is_left_where_it_is()
    {
        var moved = Applied.Replace(
            "-A INPUT -m comment --comment \"ts-cgnat hook\" -j TSCGNAT-INPUT",
            "-A INPUT -i lo -j ACCEPT\n-A INPUT -m comment --comment \"ts-cgnat hook\" -j TSCGNAT-INPUT",
            StringComparison.Ordinal);

        Assert.Null(Planner.Iptables(Layout(NodivertV4).Tables(IpFamily.V4), SavedRuleset.Parse(NodivertSave + moved)));
    }

    [Fact]
    public void A_duplicate_hook_is_deleted()
    {
        var doubled = Applied.Replace(
            "-A INPUT -m comment --comment \"ts-cgnat hook\" -j TSCGNAT-INPUT",
            "-A INPUT -m comment --comment \"ts-cgnat hook\" -j TSCGNAT-INPUT\n-A INPUT -m comment --comment \"ts-cgnat hook\" -j TSCGNAT-INPUT",
            StringComparison.Ordinal);

        var input = Planner.Iptables(Layout(NodivertV4).Tables(IpFamily.V4), SavedRuleset.Parse(NodivertSave + doubled));

        Assert.Equal("*filter\n-D INPUT -m comment --comment \"ts-cgnat hook\" -j TSCGNAT-INPUT\nCOMMIT\n", input);
    }

    [Fact]
    public void A_changed_chain_is_rewritten_whole_and_nothing_else_is_touched()
    {
        var tampered = Applied.Replace("-A TSCGNAT-INPUT -p udp -m udp --dport 41641 -j ACCEPT\n", "", StringComparison.Ordinal);

        var input = Planner.Iptables(Layout(NodivertV4).Tables(IpFamily.V4), SavedRuleset.Parse(NodivertSave + tampered));

        Assert.Equal(
            "*filter\n:TSCGNAT-INPUT - [0:0]\n"
            + "-A TSCGNAT-INPUT ! -i tailscale0 -m set --match-set TSCGNAT-SRC4 src -j RETURN\n"
            + "-A TSCGNAT-INPUT ! -i tailscale0 -m set --match-set TSCGNAT-SRCIF4 src,src -j RETURN\n"
            + string.Concat(TsInput.Select(r => $"-A TSCGNAT-INPUT {r}\n")) + "COMMIT\n",
            input);
    }

    [Fact]
    public void Removing_everything_deletes_hooks_then_flushes_and_deletes_our_chains_only()
    {
        var input = Planner.Iptables([], SavedRuleset.Parse(NodivertSave + Applied));

        Assert.NotNull(input);
        var lines = input.Split('\n');
        Assert.Contains("-D INPUT -m comment --comment \"ts-cgnat hook\" -j TSCGNAT-INPUT", lines);
        Assert.Contains("-X TSCGNAT-INPUT", lines);
        Assert.Contains("-X TSCGNAT-POSTROUTING", lines);
        Assert.DoesNotContain(lines, l => l.Contains("ts-input", StringComparison.Ordinal) && !l.Contains("TSCGNAT", StringComparison.Ordinal));
        Assert.True(Array.IndexOf(lines, "-D INPUT -m comment --comment \"ts-cgnat hook\" -j TSCGNAT-INPUT") < Array.IndexOf(lines, "-X TSCGNAT-INPUT"));
    }

    [Fact]
    public void A_set_whose_members_differ_is_rebuilt_and_swapped_in()
    {
        var desired = Layout(NodivertV4).Sets;
        var actual = IpsetSave.Parse(
            "create TSCGNAT-SRC4 hash:net family inet hashsize 1024 maxelem 65536\nadd TSCGNAT-SRC4 100.64.7.0/24\n"
            + "create TSCGNAT-SRCIF4 hash:net,iface family inet hashsize 1024 maxelem 65536\nadd TSCGNAT-SRCIF4 100.100.0.0/16,eth0\n"
            + "create TSCGNAT-FWD4 hash:net family inet hashsize 1024 maxelem 65536\nadd TSCGNAT-FWD4 100.64.0.0/24\n");

        var input = Planner.IpsetUpdate(desired, actual);

        Assert.Equal(
            "create TSCGNAT-SRC4-NEXT hash:net family inet hashsize 1024 maxelem 65536\nadd TSCGNAT-SRC4-NEXT 100.64.0.0/24\n"
            + "swap TSCGNAT-SRC4-NEXT TSCGNAT-SRC4\ndestroy TSCGNAT-SRC4-NEXT\n",
            input);
    }

    [Theory]
    [InlineData(0, 1024)]
    [InlineData(1024, 1024)]
    [InlineData(1025, 2048)]
    [InlineData(10_000, 16384)]
    [InlineData(65_536, 65536)]
    [InlineData(200_000, 65536)]
    public void A_set_is_created_with_a_hash_size_that_holds_its_members_without_rehashing(int members, int hashSize) =>
        Assert.Equal(hashSize, Planner.HashSize(members));

    [Fact]
    public void Ipset_prints_host_entries_without_prefix_and_they_still_compare_equal()
    {
        var sets = IpsetSave.Parse("create TSCGNAT-SRC4 hash:net family inet\nadd TSCGNAT-SRC4 100.64.0.9\n");

        Assert.Equal(["100.64.0.9/32"], sets["TSCGNAT-SRC4"].Members);
    }

    [Fact]
    public void Ipset_parsing_keeps_only_our_sets_and_drops_member_options()
    {
        var sets = IpsetSave.Parse(
            "create KUBE-LOOP-BACK hash:ip,port,ip family inet hashsize 1024 maxelem 65536\n"
            + "add KUBE-LOOP-BACK 10.0.0.1,tcp:80,10.0.0.1\n"
            + "create TSCGNAT-SRC4 hash:net family inet hashsize 1024 maxelem 65536\n"
            + "add TSCGNAT-SRC4 100.64.0.0/24\nadd TSCGNAT-SRC4 100.64.1.7 timeout 0\n"
            + "create TSCGNAT-SRCIF4 hash:net,iface family inet hashsize 1024 maxelem 65536\n"
            + "add TSCGNAT-SRCIF4 100.100.0.0/16,eth0\n",
            Names.SetPrefix);

        Assert.Equal(["TSCGNAT-SRC4", "TSCGNAT-SRCIF4"], sets.Keys.Order(StringComparer.Ordinal));
        Assert.Equal(["100.64.0.0/24", "100.64.1.7/32"], sets["TSCGNAT-SRC4"].Members);
        Assert.Equal(["100.100.0.0/16,eth0"], sets["TSCGNAT-SRCIF4"].Members);
        Assert.Equal("hash:net,iface", sets["TSCGNAT-SRCIF4"].Type);
    }

    [Fact]
    public void Staging_sets_left_by_a_crash_go_first_and_stale_sets_go_last()
    {
        var actual = IpsetSave.Parse("create TSCGNAT-SRC4-NEXT hash:net family inet\ncreate TSCGNAT-OLD hash:net family inet\ncreate KUBE-X hash:net family inet\n");
        var desired = Layout(NodivertV4).Sets;

        Assert.Equal("destroy TSCGNAT-SRC4-NEXT\n", Planner.IpsetDestroy(desired, actual, staging: true));
        Assert.Equal("destroy TSCGNAT-OLD\n", Planner.IpsetDestroy(desired, actual, staging: false));
    }

    [Fact]
    public void Someone_elses_set_with_our_name_and_another_type_is_refused_with_the_way_out()
    {
        var actual = IpsetSave.Parse("create TSCGNAT-SRC4 hash:ip family inet\n");

        var error = Assert.Throws<InvalidOperationException>(() => Planner.IpsetUpdate(Layout(NodivertV4).Sets, actual));
        Assert.Contains("cleanup", error.Message, StringComparison.Ordinal);
    }

    internal const string NodivertSave = """
        *filter
        :INPUT ACCEPT [0:0]
        :FORWARD ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        :ts-forward - [0:0]
        :ts-input - [0:0]
        -A ts-forward -i tailscale0 -j MARK --set-xmark 0x40000/0xff0000
        -A ts-forward -m mark --mark 0x40000/0xff0000 -j ACCEPT
        -A ts-forward -s 100.64.0.0/10 -o tailscale0 -j DROP
        -A ts-forward -o tailscale0 -j ACCEPT
        -A ts-input -s 100.101.102.103/32 -i lo -j ACCEPT
        -A ts-input -s 100.115.92.0/23 ! -i tailscale0 -j RETURN
        -A ts-input -s 100.64.0.0/10 ! -i tailscale0 -j DROP
        -A ts-input -i tailscale0 -j ACCEPT
        -A ts-input -p udp -m udp --dport 41641 -j ACCEPT
        COMMIT
        *nat
        :PREROUTING ACCEPT [0:0]
        :INPUT ACCEPT [0:0]
        :OUTPUT ACCEPT [0:0]
        :POSTROUTING ACCEPT [0:0]
        :ts-postrouting - [0:0]
        -A ts-postrouting -m mark --mark 0x40000/0xff0000 -j MASQUERADE
        COMMIT

        """;

    /// <summary>What iptables-save prints after our apply (the same lines, merged per table, parse the same).</summary>
    internal const string Applied = """
        *filter
        :TSCGNAT-FORWARD - [0:0]
        :TSCGNAT-INPUT - [0:0]
        -A INPUT -m comment --comment "ts-cgnat hook" -j TSCGNAT-INPUT
        -A FORWARD -m comment --comment "ts-cgnat hook" -j TSCGNAT-FORWARD
        -A TSCGNAT-FORWARD -o tailscale0 -m set --match-set TSCGNAT-FWD4 src -j ACCEPT
        -A TSCGNAT-FORWARD -i tailscale0 -j MARK --set-xmark 0x40000/0xff0000
        -A TSCGNAT-FORWARD -m mark --mark 0x40000/0xff0000 -j ACCEPT
        -A TSCGNAT-FORWARD -s 100.64.0.0/10 -o tailscale0 -j DROP
        -A TSCGNAT-FORWARD -o tailscale0 -j ACCEPT
        -A TSCGNAT-INPUT ! -i tailscale0 -m set --match-set TSCGNAT-SRC4 src -j RETURN
        -A TSCGNAT-INPUT ! -i tailscale0 -m set --match-set TSCGNAT-SRCIF4 src,src -j RETURN
        -A TSCGNAT-INPUT -s 100.101.102.103/32 -i lo -j ACCEPT
        -A TSCGNAT-INPUT -s 100.115.92.0/23 ! -i tailscale0 -j RETURN
        -A TSCGNAT-INPUT -s 100.64.0.0/10 ! -i tailscale0 -j DROP
        -A TSCGNAT-INPUT -i tailscale0 -j ACCEPT
        -A TSCGNAT-INPUT -p udp -m udp --dport 41641 -j ACCEPT
        COMMIT
        *nat
        :TSCGNAT-POSTROUTING - [0:0]
        -A POSTROUTING -m comment --comment "ts-cgnat hook" -j TSCGNAT-POSTROUTING
        -A TSCGNAT-POSTROUTING -m mark --mark 0x40000/0xff0000 -j MASQUERADE
        COMMIT

        """;
}
