using k8s;
using TsCgnat.Api;
using TsCgnat.Kube;

namespace TsCgnat.Operator.Tests;

/// <summary>A deleted policy is held by its finalizer until the agents confirm, the node goes, or the timeout passes.</summary>
public class DeletionTests : OnApiServer
{
    private async Task DeleteAsync(string name)
    {
        using var client = Client();
        var resource = ApiResource.Of<CgnatAllowPolicy>();
        await client.CustomObjects.DeleteClusterCustomObjectAsync(resource.Group, resource.Version, resource.Plural, name);
    }

    private IEnumerable<(string Type, string Reason, string Message)> Events(string policy) =>
        Server.List("events", EventRecorder.ClusterScopedNamespace)
            .Where(e => (string?)e["involvedObject"]?["name"] == policy)
            .Select(e => ((string)e["type"]!, (string)e["reason"]!, (string)e["message"]!));

    private async Task<CgnatOperator> AppliedOnTwoNodes(OperatorOptions? options = null)
    {
        PutNode("n1");
        PutNode("n2");
        PutState("n1", policies: Applied("aliyun"));
        PutState("n2", policies: Applied("aliyun"));
        PutPolicy("aliyun");
        var op = Start(options);
        await PolicyStatus("aliyun", p => p.Status?.Nodes == "2/2" && (p.Metadata.Finalizers?.Contains(PolicyReconciler.Finalizer) ?? false), "2/2 with the finalizer");
        return op;
    }

    [Fact]
    public async Task Deletion_waits_until_every_target_node_reports_Removed_or_drops_the_policy()
    {
        var op = await AppliedOnTwoNodes();

        await AfterReconcile(op, () => DeleteAsync("aliyun").GetAwaiter().GetResult());
        Assert.NotNull(Policy("aliyun")?.Metadata.DeletionTimestamp);

        await AfterReconcile(op, () => PutState("n1", policies: Objects.Entry("aliyun", 1, PolicyPhase.Removed)));
        Assert.NotNull(Policy("aliyun"));

        PutState("n2");   // n2's agent removed the rules and no longer lists the policy
        await Eventually(() => Policy("aliyun") is null, "the policy is gone");
        Assert.Contains((EventTypes.Normal, PolicyReasons.RemovedFromNodes, "every target node removed the policy's exemptions"), Events("aliyun"));
    }

    [Fact]
    public async Task A_target_node_that_is_gone_is_not_waited_for()
    {
        var op = await AppliedOnTwoNodes();
        PutState("n1", policies: Objects.Entry("aliyun", 1, PolicyPhase.Removed));

        await AfterReconcile(op, () => DeleteAsync("aliyun").GetAwaiter().GetResult());
        Assert.NotNull(Policy("aliyun"));

        Server.Remove("nodes", "n2");
        await Eventually(() => Policy("aliyun") is null, "the policy is gone once n2's Node is");
    }

    [Fact]
    public async Task Deletion_timeout_lets_go_with_a_Warning_event_naming_the_nodes_that_did_not_confirm()
    {
        await AppliedOnTwoNodes(FastOptions with { DeletionTimeout = TimeSpan.FromSeconds(2) });
        PutState("n1", policies: Objects.Entry("aliyun", 1, PolicyPhase.Removed));

        await DeleteAsync("aliyun");

        await Eventually(() => Policy("aliyun") is null, "the policy is gone after the timeout");
        var warning = Assert.Single(Events("aliyun"), e => e.Type == EventTypes.Warning);
        Assert.Equal(PolicyReasons.DeletionTimedOut, warning.Reason);
        Assert.Contains("1 node(s) confirmed", warning.Message, StringComparison.Ordinal);
        Assert.EndsWith(": n2; their rules may remain until their agents catch up", warning.Message, StringComparison.Ordinal);
    }
}

/// <summary>Node states whose Node is gone are deleted even without an owner reference.</summary>
public class NodeStateCleanupTests : OnApiServer
{
    [Fact]
    public async Task The_state_of_a_node_that_is_gone_is_deleted_and_the_others_stay()
    {
        PutNode("n1");
        PutNode("n2");
        PutState("n1");
        PutState("n2");
        var op = Start();
        await Eventually(() => op.HasSynced && op.IsLeader, "the operator runs");

        Server.Remove("nodes", "n2");

        // The server forgets the state before the operator's DELETE call returns and counts it: wait for both.
        await Eventually(() => Server.Get("cgnatnodestates", "n2") is null && op.Cleanup.Deleted == 1, "n2's state is deleted by the operator");
        Assert.NotNull(Server.Get("cgnatnodestates", "n1"));
        Assert.Equal(1L, op.Cleanup.Deleted);
    }

    [Fact]
    public async Task A_state_written_for_a_node_that_never_existed_is_deleted_at_start()
    {
        PutState("ghost");

        Start();

        await Eventually(() => Server.Get("cgnatnodestates", "ghost") is null, "the ghost's state is deleted");
    }
}

/// <summary>With --leader-elect, only the holder of the Lease reconciles.</summary>
public class LeaderElectionTests : OnApiServer
{
    private static OperatorOptions Elected(string identity) => FastOptions with
    {
        LeaderElect = true,
        Identity = identity,
        LeaseNamespace = "ts-cgnat",
        LeaseDuration = TimeSpan.FromSeconds(3),
        RenewDeadline = TimeSpan.FromSeconds(2),
        RetryPeriod = TimeSpan.FromMilliseconds(200),
    };

    [Fact]
    public async Task Of_two_operators_one_reconciles_and_the_other_takes_over_when_it_stops()
    {
        PutPolicy("first");
        var a = Start(Elected("a"));
        var b = Start(Elected("b"));
        await PolicyStatus("first", p => Has(p, ConditionTypes.Accepted, ConditionStatus.True), "Accepted by the leader");
        await Eventually(() => a.IsLeader || b.IsLeader, "someone leads");

        var (leader, standby) = a.IsLeader ? (a, b) : (b, a);
        Assert.False(standby.IsLeader);
        Assert.Equal(0L, standby.PolicyReconciler.Reconciles);
        Assert.True(leader.PolicyReconciler.Reconciles > 0);

        await StopAsync(leader);
        PutPolicy("second");

        await PolicyStatus("second", p => Has(p, ConditionTypes.Accepted, ConditionStatus.True), "Accepted by the new leader");
        Assert.True(standby.IsLeader);
        var lease = Server.Get("leases", "ts-cgnat-operator", "ts-cgnat");
        Assert.Equal(standby == a ? "a" : "b", (string?)lease?["spec"]?["holderIdentity"]);
    }
}
