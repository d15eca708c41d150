using k8s.Models;
using TsCgnat.Api;
using TsCgnat.Firewall;
using TsCgnat.Firewall.Detection;
using TsCgnat.Firewall.Model;
using TsCgnat.Kube;
using TsCgnat.NodeAgent.Cluster;
using TsCgnat.NodeAgent.HostMode;
using TsCgnat.NodeAgent.Reconciling;
using TsCgnat.NodeAgent.Tailscale;
using ReconcileResult = TsCgnat.Firewall.ReconcileResult;

namespace TsCgnat.NodeAgent.Tests;

/// <summary>What the agent writes into its CgnatNodeState after a pass (pure; no API server).</summary>
public sealed class ClusterNodeStatusTests
{
    private static readonly V1Node Node = new() { Metadata = new V1ObjectMeta { Name = "n1", Uid = "node-uid" } };
    private static readonly TailscaleView NoLocalApi = TailscaleView.Unreachable("no socket");
    private readonly StepClock _clock = new(new DateTimeOffset(2025, 6, 1, 12, 0, 0, 500, TimeSpan.Zero));

    [Fact]
    public void A_successful_pass_reports_each_selected_policy_Applied_with_its_generation_and_Ready_True()
    {
        var selection = Select(ClusterSelectionTests.Policy("lan", "100.64.0.0/24", null, generation: 3));

        var status = Compute(null, selection, Passed(selection, wrote: true));

        var entry = Assert.Single(status.Policies!);
        Assert.Equal(("lan", "uid-lan", 3L, PolicyPhase.Applied), (entry.Name, entry.Uid, entry.Generation ?? 0, entry.Phase!.Value));
        Assert.Equal(ConditionStatus.True, Conditions.Find(status.Conditions, ConditionTypes.Ready)!.Status);
        Assert.Equal(NodeReasons.RulesApplied, Conditions.Find(status.Conditions, ConditionTypes.Ready)!.Reason);
        Assert.Equal((1, 0), (status.Exemptions!.AllowedSources!.Value, status.Exemptions.RoutedSubnets!.Value));
        Assert.Equal(FirewallBackend.IptablesLegacy, status.Backend);
        Assert.Equal("tailscaled's ts-* chains are in iptables-legacy", status.BackendReason);
        Assert.Equal(ExemptionStrategy.Indirect, status.Strategy);
        Assert.Equal(new DateTime(2025, 6, 1, 12, 0, 0, DateTimeKind.Utc), status.LastApplyTime);
        Assert.Equal(7, status.DriftRepairs);
    }

    [Fact]
    public void An_idle_resync_computes_the_same_status_so_nothing_is_written()
    {
        var selection = Select(ClusterSelectionTests.Policy("lan", "100.64.0.0/24", null));
        var first = Compute(null, selection, Passed(selection, wrote: true));
        _clock.Advance(TimeSpan.FromMinutes(5));

        var second = Compute(first, selection, Passed(selection, wrote: false));

        Assert.True(StatusWriter.SameStatus(first, second));
    }

    [Fact]
    public void LastApplyTime_moves_only_when_rules_were_written()
    {
        var selection = Select(ClusterSelectionTests.Policy("lan", "100.64.0.0/24", null));
        var first = Compute(null, selection, Passed(selection, wrote: true));
        _clock.Advance(TimeSpan.FromMinutes(5));

        var repaired = Compute(first, selection, Passed(selection, wrote: true));

        Assert.Equal(first.LastApplyTime!.Value.AddMinutes(5), repaired.LastApplyTime);
    }

    [Fact]
    public void A_failed_pass_reports_the_selected_policies_Failed_with_the_error_and_Ready_False_keeping_what_was_known()
    {
        var selection = Select(ClusterSelectionTests.Policy("lan", "100.64.0.0/24", null));
        var good = Compute(null, selection, Passed(selection, wrote: true));

        var failed = Compute(good, selection, Failed("iptables-restore: line 3 failed"));

        var entry = Assert.Single(failed.Policies!);
        Assert.Equal(PolicyPhase.Failed, entry.Phase);
        Assert.Equal("iptables-restore: line 3 failed", entry.Message);
        var ready = Conditions.Find(failed.Conditions, ConditionTypes.Ready)!;
        Assert.Equal((ConditionStatus.False, NodeReasons.ApplyFailed, "iptables-restore: line 3 failed"), (ready.Status, ready.Reason, ready.Message));
        Assert.Equal(good.Backend, failed.Backend);
        Assert.Equal(good.RulesDigest, failed.RulesDigest);
    }

    [Fact]
    public void An_invalid_policy_is_Failed_with_the_validators_message_while_the_valid_ones_are_Applied()
    {
        var selection = Select(ClusterSelectionTests.Policy("bad", "10.0.0.0/8", null), ClusterSelectionTests.Policy("good", "100.64.0.0/24", null));

        var status = Compute(null, selection, Passed(selection, wrote: true));

        Assert.Equal([("bad", PolicyPhase.Failed), ("good", PolicyPhase.Applied)], status.Policies!.Select(p => (p.Name!, p.Phase!.Value)));
        Assert.Contains("outside 100.64.0.0/10", status.Policies![0].Message, StringComparison.Ordinal);
        Assert.Equal(ConditionStatus.True, Conditions.Find(status.Conditions, ConditionTypes.Ready)!.Status);
    }

    [Fact]
    public void A_policy_being_deleted_says_Removed_after_a_successful_pass_and_its_entry_goes_with_the_policy()
    {
        var policy = ClusterSelectionTests.Policy("lan", "100.64.0.0/24", null);
        var applied = Compute(null, Select(policy), Passed(Select(policy), wrote: true));
        policy.Metadata.DeletionTimestamp = DateTime.UtcNow;
        var deleting = Select(policy);

        var removed = Compute(applied, deleting, Passed(deleting, wrote: true));
        var gone = Compute(removed, PolicySelection.Empty, Passed(PolicySelection.Empty, wrote: false));

        Assert.Equal(PolicyPhase.Removed, Assert.Single(removed.Policies!).Phase);
        Assert.Empty(gone.Policies!);
    }

    [Fact]
    public void A_policy_that_no_longer_selects_the_node_says_Removed_and_one_that_never_did_has_no_entry()
    {
        var policy = ClusterSelectionTests.Policy("lan", "100.64.0.0/24", new V1LabelSelector { MatchLabels = new Dictionary<string, string> { ["lan"] = "yes" } });
        var labelled = PolicySelection.Select([policy], new Dictionary<string, string> { ["lan"] = "yes" });
        var applied = Compute(null, labelled, Passed(labelled, wrote: true));
        var unlabelled = PolicySelection.Select([policy], null);

        var relabelled = Compute(applied, unlabelled, Passed(unlabelled, wrote: true));
        var never = Compute(null, unlabelled, Passed(unlabelled, wrote: false));

        var entry = Assert.Single(relabelled.Policies!);
        Assert.Equal((PolicyPhase.Removed, "the node selector no longer selects this node"), (entry.Phase!.Value, entry.Message));
        Assert.Empty(never.Policies!);
    }

    [Fact]
    public void A_deleted_policy_whose_rules_could_not_be_removed_says_Failed()
    {
        var policy = ClusterSelectionTests.Policy("lan", "100.64.0.0/24", null);
        var applied = Compute(null, Select(policy), Passed(Select(policy), wrote: true));
        policy.Metadata.DeletionTimestamp = DateTime.UtcNow;

        var status = Compute(applied, Select(policy), Failed("ipset: locked"));

        var entry = Assert.Single(status.Policies!);
        Assert.Equal((PolicyPhase.Failed, "its exemptions could not be removed: ipset: locked"), (entry.Phase!.Value, entry.Message));
    }

    [Fact]
    public void Netfilter_mode_off_from_the_LocalAPI_makes_TailscaleCompatible_False()
    {
        var selection = Select(ClusterSelectionTests.Policy("lan", "100.64.0.0/24", null));
        var off = new TailscaleView(true, null, BackendState.Running, "1.90.1", new TailscalePrefs { NetfilterMode = NetfilterMode.Off });

        var status = Compute(null, selection, Passed(selection, wrote: true, tailscale: off, chains: TailscaleChains.Absent));

        var compatible = Conditions.Find(status.Conditions, ConditionTypes.TailscaleCompatible)!;
        Assert.Equal((ConditionStatus.False, NodeReasons.NetfilterModeOff), (compatible.Status, compatible.Reason));
        Assert.Equal((TailscaleNetfilterMode.Off, TailscaleEvidence.LocalApi, "1.90.1", "Running"),
            (status.Tailscale!.NetfilterMode!.Value, status.Tailscale.LearnedFrom!.Value, status.Tailscale.Version, status.Tailscale.BackendState));
    }

    [Fact]
    public void Without_the_LocalAPI_the_mode_is_read_from_the_chains()
    {
        var selection = Select(ClusterSelectionTests.Policy("lan", "100.64.0.0/24", null));
        var on = new TailscaleChains(true, true, true, PlainJumps: true, Stateful: false, InputRules: 4);

        var status = Compute(null, selection, Passed(selection, wrote: true, chains: on, strategy: Strategy.InChain));

        Assert.Equal((TailscaleNetfilterMode.On, TailscaleEvidence.Firewall, TailscaleFirewallRunner.IptablesLegacy, true),
            (status.Tailscale!.NetfilterMode!.Value, status.Tailscale.LearnedFrom!.Value, status.Tailscale.Runner!.Value, status.Tailscale.Detected!.Value));
        Assert.Equal(ConditionStatus.True, Conditions.Find(status.Conditions, ConditionTypes.TailscaleCompatible)!.Status);
        Assert.Equal(ExemptionStrategy.InChain, status.Strategy);
    }

    [Fact]
    public void Indirect_forced_under_mode_on_makes_TailscaleCompatible_False()
    {
        var selection = Select(ClusterSelectionTests.Policy("lan", "100.64.0.0/24", null));
        var on = new TailscaleChains(true, true, true, PlainJumps: true, Stateful: false, InputRules: 4);

        var status = Compute(null, selection, Passed(selection, wrote: true, chains: on, strategy: Strategy.Indirect));

        Assert.Equal(NodeReasons.StrategyImpossible, Conditions.Find(status.Conditions, ConditionTypes.TailscaleCompatible)!.Reason);
    }

    [Fact]
    public void A_strategy_the_engine_refuses_makes_TailscaleCompatible_False_with_its_words()
    {
        var selection = Select(ClusterSelectionTests.Policy("lan", "100.64.0.0/24", null));

        var status = Compute(null, selection, new PassOutcome("start", null, null, new InvalidOperationException("--strategy indirect cannot work with tailscaled's nftables runner"), false, NoLocalApi));

        var compatible = Conditions.Find(status.Conditions, ConditionTypes.TailscaleCompatible)!;
        Assert.Equal((ConditionStatus.False, NodeReasons.StrategyImpossible, "--strategy indirect cannot work with tailscaled's nftables runner"),
            (compatible.Status, compatible.Reason, compatible.Message));
    }

    [Fact]
    public void No_LocalAPI_and_no_chains_leave_TailscaleCompatible_Unknown()
    {
        var selection = Select(ClusterSelectionTests.Policy("lan", "100.64.0.0/24", null));

        var status = Compute(null, selection, Passed(selection, wrote: true, chains: TailscaleChains.Absent));

        Assert.Equal((ConditionStatus.Unknown, NodeReasons.TailscaleNotDetected),
            (Conditions.Find(status.Conditions, ConditionTypes.TailscaleCompatible)!.Status, Conditions.Find(status.Conditions, ConditionTypes.TailscaleCompatible)!.Reason));
        Assert.Equal((false, TailscaleNetfilterMode.Unknown), (status.Tailscale!.Detected!.Value, status.Tailscale.NetfilterMode!.Value));
    }

    [Fact]
    public void The_rules_digest_depends_on_the_exemptions_not_on_the_order_of_the_policies()
    {
        var a = ClusterSelectionTests.Policy("a", "100.64.0.0/24", null);
        var b = ClusterSelectionTests.Policy("b", "100.100.0.0/16", null);
        var ab = Exemptions.From(PolicySelection.Select([a, b], null).ToApply());
        var ba = Exemptions.From(PolicySelection.Select([b, a], null).ToApply().Reverse());
        var onlyA = Exemptions.From(PolicySelection.Select([a], null).ToApply());

        Assert.Equal(NodeStatus.Digest(ab), NodeStatus.Digest(ba));
        Assert.NotEqual(NodeStatus.Digest(ab), NodeStatus.Digest(onlyA));
        Assert.Matches("^[0-9a-f]{64}$", NodeStatus.Digest(ab));
    }

    private static PolicySelection Select(params CgnatAllowPolicy[] policies) => PolicySelection.Select(policies, null);

    private CgnatNodeStateStatus Compute(CgnatNodeStateStatus? previous, PolicySelection selection, PassOutcome outcome) =>
        NodeStatus.Compute(previous, new NodeReport(Node, selection, outcome, DriftRepairs: 7), observedGeneration: 1, _clock);

    private static PassOutcome Passed(
        PolicySelection selection, bool wrote, TailscaleView? tailscale = null, TailscaleChains? chains = null, Strategy strategy = Strategy.Indirect)
    {
        var plan = new FirewallPlan(
            new BackendChoice(IptablesBackend.Legacy, "tailscaled's ts-* chains are in iptables-legacy"),
            new Dictionary<IpFamily, TailscaleChains> { [IpFamily.V4] = chains ?? new TailscaleChains(true, true, true, false, false, 4) },
            false, null, null, [], null, [],
            new RunnerChoice(TailscaleRunner.IptablesLegacy, "tailscaled's ts-* chains are in iptables-legacy"),
            new StrategyChoice(strategy, "chosen for the test"));
        return new PassOutcome("start", selection.ToApply(), new ReconcileResult(plan, wrote, TimeSpan.FromMilliseconds(3)), null, false, tailscale ?? NoLocalApi);
    }

    private static PassOutcome Failed(string error) =>
        new("start", null, null, new FirewallToolException(error), false, NoLocalApi);

    /// <summary>A clock that moves only when told.</summary>
    private sealed class StepClock(DateTimeOffset start) : TimeProvider
    {
        private DateTimeOffset _now = start;

        public override DateTimeOffset GetUtcNow() => _now;

        public void Advance(TimeSpan by) => _now += by;
    }
}
