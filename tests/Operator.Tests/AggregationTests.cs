using k8s.Models;
using TsCgnat.Api;
using static TsCgnat.Operator.Tests.Objects;

namespace TsCgnat.Operator.Tests;

/// <summary>PolicyStatus = f(policy, nodes, node states, now): who is a target, who counts as applied, and what the conditions say.</summary>
public class AggregationTests
{
    private static readonly V1Node[] TwoNodes = [Node("n1"), Node("n2")];

    private static CgnatAllowPolicyStatus Compute(CgnatAllowPolicy policy, IEnumerable<V1Node> nodes, params CgnatNodeState[] states) =>
        PolicyAggregation.Compute(policy, nodes, Lookup(states), T0);

    [Fact]
    public void Two_ready_nodes_that_applied_this_generation_make_the_policy_Ready_2_of_2()
    {
        var status = Compute(Policy(generation: 3), TwoNodes,
            State("n1", policies: Entry("aliyun", 3, PolicyPhase.Applied)),
            State("n2", policies: Entry("aliyun", 3, PolicyPhase.Applied)));

        Assert.Equal((2, 2, 0), (status.TargetNodes, status.AppliedNodes, status.FailedNodes));
        Assert.Equal("2/2", status.Nodes);
        Assert.Equal(3, status.ObservedGeneration);
        var ready = Condition(status, ConditionTypes.Ready);
        Assert.Equal((ConditionStatus.True, PolicyReasons.AllNodesApplied, 3L), (ready.Status, ready.Reason, ready.ObservedGeneration!.Value));
        Assert.Equal((ConditionStatus.True, PolicyReasons.Valid), (Condition(status, ConditionTypes.Accepted).Status, Condition(status, ConditionTypes.Accepted).Reason));
        Assert.Equal((ConditionStatus.False, PolicyReasons.NoIssues), (Condition(status, ConditionTypes.Degraded).Status, Condition(status, ConditionTypes.Degraded).Reason));
        Assert.Null(status.NodeIssues);
    }

    [Fact]
    public void A_node_that_failed_makes_the_policy_Degraded_with_a_node_issue_carrying_its_message()
    {
        var status = Compute(Policy(), TwoNodes,
            State("n1", policies: Entry("aliyun", 1, PolicyPhase.Applied)),
            State("n2", ready: false, policies: Entry("aliyun", 1, PolicyPhase.Failed, "iptables-restore: line 3 failed")));

        Assert.Equal((2, 1, 1), (status.TargetNodes, status.AppliedNodes, status.FailedNodes));
        Assert.Equal((ConditionStatus.False, PolicyReasons.ApplyFailed), (Condition(status, ConditionTypes.Ready).Status, Condition(status, ConditionTypes.Ready).Reason));
        var degraded = Condition(status, ConditionTypes.Degraded);
        Assert.Equal((ConditionStatus.True, PolicyReasons.ApplyFailed), (degraded.Status, degraded.Reason));
        var issue = Assert.Single(status.NodeIssues!);
        Assert.Equal(("n2", PolicyReasons.ApplyFailed, "iptables-restore: line 3 failed"), (issue.Node, issue.Reason, issue.Message));
    }

    [Fact]
    public void A_node_whose_Tailscale_set_up_is_incompatible_makes_the_policy_Degraded_but_still_counts_as_applied()
    {
        var status = Compute(Policy(), TwoNodes,
            State("n1", policies: Entry("aliyun", 1, PolicyPhase.Applied)),
            State("n2", compatible: false, compatibleMessage: "tailscaled runs with netfilter mode off", policies: Entry("aliyun", 1, PolicyPhase.Applied)));

        Assert.Equal((2, 2, 0), (status.TargetNodes, status.AppliedNodes, status.FailedNodes));
        var degraded = Condition(status, ConditionTypes.Degraded);
        Assert.Equal((ConditionStatus.True, PolicyReasons.TailscaleIncompatible), (degraded.Status, degraded.Reason));
        var issue = Assert.Single(status.NodeIssues!);
        Assert.Equal(("n2", PolicyReasons.TailscaleIncompatible, "tailscaled runs with netfilter mode off"), (issue.Node, issue.Reason, issue.Message));
    }

    [Fact]
    public void A_node_the_selector_no_longer_selects_is_not_a_target()
    {
        var policy = Policy(selector: Region("hz"));

        var status = Compute(policy, [Node("n1", "hz"), Node("n2", "sh")],
            State("n1", policies: Entry("aliyun", 1, PolicyPhase.Applied)),
            State("n2", policies: Entry("aliyun", 1, PolicyPhase.Applied)));

        Assert.Equal("1/1", status.Nodes);
    }

    [Fact]
    public void A_node_without_an_agent_is_not_a_target()
    {
        var status = Compute(Policy(), TwoNodes, State("n1", policies: Entry("aliyun", 1, PolicyPhase.Applied)));

        Assert.Equal("1/1", status.Nodes);
    }

    [Fact]
    public void A_node_that_applied_an_older_generation_is_not_counted_as_applied()
    {
        var status = Compute(Policy(generation: 2), TwoNodes,
            State("n1", policies: Entry("aliyun", 2, PolicyPhase.Applied)),
            State("n2", policies: Entry("aliyun", 1, PolicyPhase.Applied)));

        Assert.Equal("1/2", status.Nodes);
        var ready = Condition(status, ConditionTypes.Ready);
        Assert.Equal((ConditionStatus.False, PolicyReasons.Applying), (ready.Status, ready.Reason));
        Assert.Equal(ConditionStatus.False, Condition(status, ConditionTypes.Degraded).Status);
    }

    [Fact]
    public void A_node_whose_Ready_is_False_is_not_counted_as_applied()
    {
        var status = Compute(Policy(), TwoNodes,
            State("n1", policies: Entry("aliyun", 1, PolicyPhase.Applied)),
            State("n2", ready: false, policies: Entry("aliyun", 1, PolicyPhase.Applied)));

        Assert.Equal("1/2", status.Nodes);
    }

    [Fact]
    public void An_entry_with_another_uid_belongs_to_an_earlier_policy_of_the_same_name()
    {
        var status = Compute(Policy(uid: "new"), TwoNodes,
            State("n1", policies: Entry("aliyun", 1, PolicyPhase.Applied, uid: "new")),
            State("n2", policies: Entry("aliyun", 1, PolicyPhase.Applied, uid: "old")));

        Assert.Equal("1/2", status.Nodes);
    }

    [Fact]
    public void No_target_node_is_Ready_with_reason_NoTargetNodes()
    {
        var status = Compute(Policy(selector: Region("nowhere")), TwoNodes, State("n1"), State("n2"));

        Assert.Equal("0/0", status.Nodes);
        var ready = Condition(status, ConditionTypes.Ready);
        Assert.Equal((ConditionStatus.True, PolicyReasons.NoTargetNodes), (ready.Status, ready.Reason));
    }

    [Fact]
    public void An_invalid_policy_is_not_Accepted_and_says_the_validators_message()
    {
        var status = Compute(Policy(cidr: "8.8.8.0/24"), TwoNodes, State("n1"), State("n2"));

        var accepted = Condition(status, ConditionTypes.Accepted);
        Assert.Equal((ConditionStatus.False, PolicyReasons.InvalidSpec), (accepted.Status, accepted.Reason));
        Assert.StartsWith("spec.allowedSources[0].cidr: ", accepted.Message, StringComparison.Ordinal);
        Assert.Contains("8.8.8.0/24", accepted.Message, StringComparison.Ordinal);
        Assert.Equal((ConditionStatus.False, PolicyReasons.InvalidSpec), (Condition(status, ConditionTypes.Ready).Status, Condition(status, ConditionTypes.Ready).Reason));
        Assert.Equal(ConditionStatus.False, Condition(status, ConditionTypes.Degraded).Status);
        Assert.Equal("0/2", status.Nodes);
    }

    [Fact]
    public void Node_issues_stop_at_20_sorted_by_node()
    {
        var nodes = Enumerable.Range(0, 30).Select(i => Node($"n{i:00}")).ToArray();
        var states = nodes.Select(n => State(n.Metadata.Name, ready: false, policies: Entry("aliyun", 1, PolicyPhase.Failed, "boom"))).ToArray();

        var status = Compute(Policy(), nodes, states);

        Assert.Equal(30, status.FailedNodes);
        Assert.Equal(CgnatAllowPolicyStatus.MaxNodeIssues, status.NodeIssues!.Count);
        Assert.Equal(Enumerable.Range(0, 20).Select(i => $"n{i:00}"), status.NodeIssues.Select(i => i.Node));
    }

    [Fact]
    public void LastTransitionTime_is_kept_when_nothing_flips_and_moves_when_Ready_flips()
    {
        var policy = Policy();
        var halfway = new[] { State("n1", policies: Entry("aliyun", 1, PolicyPhase.Applied)), State("n2") };
        policy.Status = PolicyAggregation.Compute(policy, TwoNodes, Lookup(halfway), T0);

        var later = PolicyAggregation.Compute(policy, TwoNodes, Lookup(halfway), T0.AddMinutes(5));
        Assert.Equal(T0.UtcDateTime, Condition(later, ConditionTypes.Ready).LastTransitionTime);
        Assert.Equal(T0.UtcDateTime, Condition(later, ConditionTypes.Accepted).LastTransitionTime);

        var done = PolicyAggregation.Compute(policy, TwoNodes,
            Lookup(State("n1", policies: Entry("aliyun", 1, PolicyPhase.Applied)), State("n2", policies: Entry("aliyun", 1, PolicyPhase.Applied))), T0.AddMinutes(5));
        Assert.Equal(T0.AddMinutes(5).UtcDateTime, Condition(done, ConditionTypes.Ready).LastTransitionTime);
        Assert.Equal(T0.UtcDateTime, Condition(done, ConditionTypes.Degraded).LastTransitionTime);
    }

    [Fact]
    public void Computing_a_status_leaves_the_policys_own_conditions_untouched()
    {
        var policy = Policy();
        policy.Status = Compute(policy, TwoNodes);
        var before = policy.Status.Conditions!.Select(c => (c.Type, c.Status, c.Reason)).ToList();

        _ = Compute(policy, TwoNodes, State("n1", policies: Entry("aliyun", 1, PolicyPhase.Applied)));

        Assert.Equal(before, policy.Status.Conditions!.Select(c => (c.Type, c.Status, c.Reason)));
    }
}

/// <summary>Who a policy being deleted still waits for.</summary>
public class AwaitingRemovalTests
{
    private static IReadOnlyList<string> Awaiting(CgnatAllowPolicy policy, Func<string, bool> nodeExists, params CgnatNodeState[] states) =>
        PolicyAggregation.AwaitingRemoval(policy, states, nodeExists);

    [Fact]
    public void A_node_that_still_lists_the_policy_Applied_is_waited_for()
    {
        Assert.Equal(["n1"], Awaiting(Policy(), _ => true, State("n1", policies: Entry("aliyun", 1, PolicyPhase.Applied))));
    }

    [Fact]
    public void A_node_whose_removal_failed_is_waited_for()
    {
        Assert.Equal(["n1"], Awaiting(Policy(), _ => true, State("n1", policies: Entry("aliyun", 1, PolicyPhase.Failed))));
    }

    [Fact]
    public void A_node_that_reports_Removed_is_not_waited_for()
    {
        Assert.Empty(Awaiting(Policy(), _ => true, State("n1", policies: Entry("aliyun", 1, PolicyPhase.Removed))));
    }

    [Fact]
    public void A_node_that_no_longer_lists_the_policy_is_not_waited_for()
    {
        Assert.Empty(Awaiting(Policy(), _ => true, State("n1", policies: Entry("other", 1, PolicyPhase.Applied))));
    }

    [Fact]
    public void A_node_that_is_gone_is_not_waited_for()
    {
        Assert.Empty(Awaiting(Policy(), node => node != "n1", State("n1", policies: Entry("aliyun", 1, PolicyPhase.Applied))));
    }

    [Fact]
    public void Waiting_nodes_are_listed_in_name_order()
    {
        Assert.Equal(["a", "b"], Awaiting(Policy(), _ => true,
            State("b", policies: Entry("aliyun", 1, PolicyPhase.Applied)),
            State("a", policies: Entry("aliyun", 1, PolicyPhase.Applied))));
    }
}
