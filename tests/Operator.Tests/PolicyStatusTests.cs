using k8s;
using TsCgnat.Api;

namespace TsCgnat.Operator.Tests;

/// <summary>The operator against the fake API server: Accepted, the finalizer, and the status it aggregates from node states.</summary>
public class PolicyStatusTests : OnApiServer
{
    [Fact]
    public async Task An_invalid_policy_stored_directly_is_not_Accepted_and_carries_the_validators_message()
    {
        PutPolicy("outside", cidr: "8.8.8.0/24");
        Start();

        await PolicyStatus("outside", p => Has(p, ConditionTypes.Accepted, ConditionStatus.False, PolicyReasons.InvalidSpec), "Accepted=False InvalidSpec");

        var accepted = Conditions.Find(Policy("outside")!.Status!.Conditions, ConditionTypes.Accepted)!;
        Assert.StartsWith("spec.allowedSources[0].cidr: ", accepted.Message, StringComparison.Ordinal);
        Assert.Contains("8.8.8.0/24", accepted.Message, StringComparison.Ordinal);
        Assert.Contains("Tailscale does not drop", accepted.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_valid_policy_gets_the_finalizer_and_is_Accepted()
    {
        PutPolicy("aliyun");
        Start();

        await PolicyStatus("aliyun", p => Has(p, ConditionTypes.Accepted, ConditionStatus.True, PolicyReasons.Valid), "Accepted=True");

        Assert.Contains(PolicyReconciler.Finalizer, Policy("aliyun")!.Metadata.Finalizers!);
    }

    [Fact]
    public async Task Two_nodes_that_applied_it_make_the_policy_Ready_2_of_2()
    {
        PutNode("n1");
        PutNode("n2");
        PutState("n1", policies: Applied("aliyun"));
        PutState("n2", policies: Applied("aliyun"));
        PutPolicy("aliyun");
        Start();

        await PolicyStatus("aliyun", p => p.Status?.Nodes == "2/2" && Has(p, ConditionTypes.Ready, ConditionStatus.True, PolicyReasons.AllNodesApplied), "Ready 2/2");
    }

    [Fact]
    public async Task A_node_that_reports_a_failure_makes_the_policy_Degraded_with_a_node_issue()
    {
        PutNode("n1");
        PutNode("n2");
        PutState("n1", policies: Applied("aliyun"));
        PutState("n2", policies: Applied("aliyun"));
        PutPolicy("aliyun");
        Start();
        await PolicyStatus("aliyun", p => p.Status?.Nodes == "2/2", "2/2");

        PutState("n2", ready: false, policies: Objects.Entry("aliyun", 1, PolicyPhase.Failed, "ipset: set is full"));

        await PolicyStatus("aliyun", p => Has(p, ConditionTypes.Degraded, ConditionStatus.True, PolicyReasons.ApplyFailed), "Degraded=True ApplyFailed");
        var status = Policy("aliyun")!.Status!;
        Assert.Equal(("1/2", 1), (status.Nodes, status.FailedNodes));
        var issue = Assert.Single(status.NodeIssues!);
        Assert.Equal(("n2", PolicyReasons.ApplyFailed, "ipset: set is full"), (issue.Node, issue.Reason, issue.Message));
        Assert.True(Has(Policy("aliyun")!, ConditionTypes.Ready, ConditionStatus.False, PolicyReasons.ApplyFailed));
    }

    [Fact]
    public async Task Relabelling_a_node_out_of_the_selector_drops_the_target_count()
    {
        PutNode("n1", "hz");
        PutNode("n2", "hz");
        PutState("n1", policies: Applied("aliyun"));
        PutState("n2", policies: Applied("aliyun"));
        PutPolicy("aliyun", region: "hz");
        Start();
        await PolicyStatus("aliyun", p => p.Status?.Nodes == "2/2", "2/2");

        PutNode("n2", "sh");

        await PolicyStatus("aliyun", p => p.Status?.Nodes == "1/1", "1/1 after the relabel");
    }

    [Fact]
    public async Task Nothing_changed_means_no_status_write_even_after_unrelated_changes_and_a_restart()
    {
        PutNode("n1");
        PutState("n1", policies: Applied("aliyun"));
        PutPolicy("aliyun");
        var op = Start();
        await PolicyStatus("aliyun", p => p.Status?.Nodes == "1/1" && Has(p, ConditionTypes.Ready, ConditionStatus.True), "Ready 1/1");
        await Eventually(() => op.Policies.Get("aliyun")?.Status?.Nodes == "1/1", "the operator's cache saw its own write");
        var writes = StatusWrites("aliyun");

        await AfterReconcile(op, () => PutState("n1", driftRepairs: 7, policies: Applied("aliyun")));
        await StopAsync(op);
        var again = Start();
        await Eventually(() => again.PolicyReconciler.Reconciles > 0, "a reconcile after the restart");

        Assert.Equal(writes, StatusWrites("aliyun"));
        Assert.Equal(0L, again.PolicyReconciler.StatusWrites);
    }

    [Fact]
    public async Task LastTransitionTime_moves_only_for_the_condition_that_flips()
    {
        var time = new MovableTime();
        PutNode("n1");
        PutNode("n2");
        PutState("n1", policies: Applied("aliyun"));
        PutPolicy("aliyun");
        Start(time: time);
        await PolicyStatus("aliyun", p => p.Status?.Nodes == "1/1", "1/1");
        var first = Policy("aliyun")!.Status!.Conditions!.ToDictionary(c => c.Type, c => c.LastTransitionTime);

        time.Advance(TimeSpan.FromHours(1));
        PutState("n2");   // n2's agent has not applied it yet: 1/2, Ready flips to False
        await PolicyStatus("aliyun", p => p.Status?.Nodes == "1/2", "1/2");

        var second = Policy("aliyun")!.Status!.Conditions!.ToDictionary(c => c.Type, c => c.LastTransitionTime);
        Assert.Equal(first[ConditionTypes.Ready].AddHours(1), second[ConditionTypes.Ready], TimeSpan.FromSeconds(5));
        Assert.Equal(first[ConditionTypes.Accepted], second[ConditionTypes.Accepted]);
        Assert.Equal(first[ConditionTypes.Degraded], second[ConditionTypes.Degraded]);
    }

    [Fact]
    public async Task A_burst_of_200_node_state_changes_is_written_in_far_fewer_status_writes()
    {
        const int nodes = 200;
        for (var i = 0; i < nodes; i++)
        {
            PutNode($"n{i}");
            PutState($"n{i}", policies: Applied("aliyun"));
        }

        PutPolicy("aliyun");
        Start(FastOptions with { StatusWriteInterval = TimeSpan.FromSeconds(1) });
        await PolicyStatus("aliyun", p => p.Status?.Nodes == $"{nodes}/{nodes}", "all applied");
        var before = StatusWrites("aliyun");

        using var client = Client();
        var resource = Kube.ApiResource.Of<CgnatAllowPolicy>();
        await client.CustomObjects.PatchClusterCustomObjectAsync(
            new k8s.Models.V1Patch("""{"spec":{"allowedSources":[{"cidr":"100.100.0.0/16"},{"cidr":"100.64.0.0/24"}]}}""", k8s.Models.V1Patch.PatchType.MergePatch),
            resource.Group, resource.Version, resource.Plural, "aliyun");
        for (var i = 0; i < nodes; i++)
        {
            PutState($"n{i}", policies: Applied("aliyun", generation: 2));
        }

        await PolicyStatus("aliyun", p => p.Status?.ObservedGeneration == 2 && p.Status?.Nodes == $"{nodes}/{nodes}" && Has(p, ConditionTypes.Ready, ConditionStatus.True), "generation 2 applied everywhere");
        var writes = StatusWrites("aliyun") - before;
        Assert.InRange(writes, 1, nodes / 10);
    }

    /// <summary>The system clock moved forward on demand, so two transitions get distinct times without waiting; timers stay real.</summary>
    private sealed class MovableTime : TimeProvider
    {
        private TimeSpan offset;

        public void Advance(TimeSpan by) => offset += by;

        public override DateTimeOffset GetUtcNow() => System.GetUtcNow() + offset;
    }
}
