using k8s.Models;
using TsCgnat.Api;
using TsCgnat.Telemetry;

namespace TsCgnat.Operator.Tests;

/// <summary>What the operator's gauges count, as pure functions of its caches (the alert rules in deploy/prometheus read them).</summary>
public sealed class ClusterGaugesTests
{
    private static readonly V1Node[] ThreeNodes = [Objects.Node("hz-1"), Objects.Node("hz-2"), Objects.Node("sh-1", region: "sh")];

    [Fact]
    public void A_node_a_policy_selects_by_its_labels_but_without_an_agent_is_missing()
    {
        var counts = ClusterGauges.Nodes([Objects.State("hz-1")], ThreeNodes, [Objects.Policy(selector: Objects.Region("hz"))]);

        Assert.Equal(1, counts[NodeGaugeStates.Applied]);
        Assert.Equal(1, counts[NodeGaugeStates.Missing]);
        Assert.Equal(0, counts[NodeGaugeStates.Pending]);
        Assert.Equal(0, counts[NodeGaugeStates.Failed]);
    }

    [Fact]
    public void An_empty_selector_means_every_node_with_an_agent_so_a_node_without_one_is_not_missing()
    {
        var counts = ClusterGauges.Nodes([Objects.State("hz-1")], ThreeNodes, [Objects.Policy(), Objects.Policy("empty", selector: new V1LabelSelector())]);

        Assert.Equal(0, counts[NodeGaugeStates.Missing]);
    }

    [Fact]
    public void A_policy_being_deleted_no_longer_makes_a_node_missing()
    {
        var deleting = Objects.Policy(selector: Objects.Region("hz"));
        deleting.Metadata.DeletionTimestamp = Objects.T0.UtcDateTime;

        var counts = ClusterGauges.Nodes([], ThreeNodes, [deleting]);

        Assert.Equal(0, counts[NodeGaugeStates.Missing]);
    }

    [Fact]
    public void States_are_counted_failed_before_applied_and_a_state_without_its_Node_is_not_counted()
    {
        var failed = Objects.State("hz-2", ready: true, policies: Objects.Entry("aliyun", 1, PolicyPhase.Failed));

        var counts = ClusterGauges.Nodes([Objects.State("hz-1", ready: false), failed, Objects.State("gone")], ThreeNodes, []);

        Assert.Equal(
            new Dictionary<string, long> { ["applied"] = 0, ["failed"] = 1, ["pending"] = 1, ["missing"] = 0 },
            counts);
    }

    [Fact]
    public void Node_conditions_count_each_type_and_status_over_the_states_of_existing_nodes()
    {
        var states = new[]
        {
            Objects.State("hz-1"),
            Objects.State("hz-2", ready: false, compatible: false),
            Objects.State("sh-1", compatible: null),
            Objects.State("gone", compatible: false),
        };

        var counts = ClusterGauges.NodeConditions(states, name => name != "gone");

        Assert.Equal(
            [new ConditionCount("Ready", "False", 1), new("Ready", "True", 2), new("TailscaleCompatible", "False", 1), new("TailscaleCompatible", "True", 1)],
            counts);
    }

    [Fact]
    public void Each_policy_reports_its_target_applied_and_failed_nodes_and_one_without_a_status_nothing()
    {
        var written = Objects.Policy("b-written");
        written.Status = new CgnatAllowPolicyStatus { TargetNodes = 3, AppliedNodes = 2, FailedNodes = 1 };

        var counts = ClusterGauges.PolicyNodes([written, Objects.Policy("a-new")]);

        Assert.Equal([new PolicyNodeCount("b-written", "target", 3), new("b-written", "applied", 2), new("b-written", "failed", 1)], counts);
    }
}
