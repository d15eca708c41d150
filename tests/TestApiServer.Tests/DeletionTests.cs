using System.Text.Json.Nodes;
using k8s;
using k8s.Models;

namespace TsCgnat.TestApiServer.Tests;

/// <summary>Deletion: at once, or held by finalizers; and the garbage collection of a Node's dependents.</summary>
public sealed class DeletionTests : ServerTest
{
    private const string Finalizer = "tscgnat.io/agents";

    private sealed class FixedClock(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now;
    }

    private static JsonObject WithFinalizer(JsonObject obj)
    {
        obj["metadata"]!["finalizers"] = new JsonArray(Finalizer);
        return obj;
    }

    private WatchRecording<object> WatchPolicies(long from) =>
        Record<object>((onError, ct) => Client.CustomObjects.WatchListClusterCustomObjectAsync(
            Group, Version, Policies, resourceVersion: from.ToString(System.Globalization.CultureInfo.InvariantCulture), onError: onError, cancellationToken: ct));

    [Fact]
    public async Task Without_finalizers_an_object_goes_at_once()
    {
        var created = await CreateAsync(Policies, Policy("p1"));
        await using var watch = WatchPolicies(Rv(created));

        var answer = await DeleteAsync(Policies, "p1");

        await FailsWith(404, () => ReadAsync(Policies, "p1"));
        var (type, obj) = await watch.NextAsync();
        Assert.Equal(WatchEventType.Deleted, type);
        Assert.Equal(Server.ResourceVersion, Rv(Json(obj)));
        Assert.Equal("p1", Name(answer));
    }

    [Fact]
    public async Task A_deleted_node_is_answered_with_a_success_Status()
    {
        var node = await Client.CoreV1.CreateNodeAsync(Node("n1"), cancellationToken: Guard);

        var status = await Client.CoreV1.DeleteNodeAsync("n1", cancellationToken: Guard);

        Assert.Equal("Success", status.Status);
        Assert.Equal(node.Metadata.Uid, status.Details.Uid);
    }

    [Fact]
    public async Task With_finalizers_delete_sets_deletionTimestamp_once_and_keeps_the_object()
    {
        Server.Time = new FixedClock(new DateTimeOffset(2030, 1, 2, 3, 4, 5, TimeSpan.Zero));
        var created = await CreateAsync(Policies, WithFinalizer(Policy("p1")));
        await using var watch = WatchPolicies(Rv(created));

        var first = await DeleteAsync(Policies, "p1");
        Server.Time = new FixedClock(new DateTimeOffset(2030, 1, 2, 3, 9, 9, TimeSpan.Zero));
        var second = await DeleteAsync(Policies, "p1");

        Assert.Equal("2030-01-02T03:04:05Z", (string?)first["metadata"]!["deletionTimestamp"]);
        Assert.Equal("2030-01-02T03:04:05Z", (string?)second["metadata"]!["deletionTimestamp"]);
        Assert.Equal(Rv(first), Rv(second));
        Assert.Equal(Rv(first), Rv(await ReadAsync(Policies, "p1")));
        var (type, obj) = await watch.NextAsync();
        Assert.Equal(WatchEventType.Modified, type);
        Assert.Equal(Rv(first), Rv(Json(obj)));
        Assert.Empty(watch.Pending());
    }

    [Fact]
    public async Task Removing_the_last_finalizer_of_a_deleted_object_removes_the_object()
    {
        await CreateAsync(Policies, WithFinalizer(Policy("p1")));
        var deleting = await DeleteAsync(Policies, "p1");
        await using var watch = WatchPolicies(Rv(deleting));

        deleting["metadata"]!["finalizers"] = new JsonArray();
        await ReplaceAsync(Policies, deleting);

        await FailsWith(404, () => ReadAsync(Policies, "p1"));
        Assert.Equal(WatchEventType.Deleted, (await watch.NextAsync()).Type);
    }

    [Fact]
    public async Task Removing_the_last_finalizer_by_json_patch_removes_the_object()
    {
        await CreateAsync(Policies, WithFinalizer(Policy("p1")));
        await DeleteAsync(Policies, "p1");

        await Client.CustomObjects.PatchClusterCustomObjectAsync(
            new V1Patch("""[{"op":"test","path":"/metadata/finalizers/0","value":"tscgnat.io/agents"},{"op":"remove","path":"/metadata/finalizers/0"}]""", V1Patch.PatchType.JsonPatch),
            Group, Version, Policies, "p1", cancellationToken: Guard);

        Assert.Null(Server.Get("cgnatallowpolicies", "p1"));
    }

    [Fact]
    public async Task No_finalizer_can_be_added_to_an_object_being_deleted()
    {
        await CreateAsync(Policies, WithFinalizer(Policy("p1")));
        var deleting = await DeleteAsync(Policies, "p1");

        deleting["metadata"]!["finalizers"]!.AsArray().Add("someone/else");
        var status = await FailsWith(422, () => ReplaceAsync(Policies, deleting));

        Assert.Equal(
            "CgnatAllowPolicy.tscgnat.io \"p1\" is invalid: metadata.finalizers: Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{\"someone/else\"}",
            status.Message);
    }

    [Fact]
    public async Task A_delete_whose_uid_precondition_does_not_match_is_409_Conflict()
    {
        await Client.CoreV1.CreateNodeAsync(Node("n1"), cancellationToken: Guard);

        var status = await FailsWith(409, () => Client.CoreV1.DeleteNodeAsync(
            "n1", new V1DeleteOptions { Preconditions = new V1Preconditions { Uid = "not-this-one" } }, cancellationToken: Guard));

        Assert.StartsWith("Operation cannot be fulfilled on nodes \"n1\": Precondition failed: UID in precondition: not-this-one", status.Message, StringComparison.Ordinal);
        Assert.NotNull(Server.Get("nodes", "n1"));
    }

    [Fact]
    public async Task Delete_of_a_missing_object_is_404_NotFound()
    {
        var status = await FailsWith(404, () => Client.CoreV1.DeleteNodeAsync("ghost", cancellationToken: Guard));

        Assert.Equal("nodes \"ghost\" not found", status.Message);
    }

    [Fact]
    public async Task Deleting_a_Node_deletes_the_node_states_it_owns()
    {
        var n1 = await Client.CoreV1.CreateNodeAsync(Node("n1"), cancellationToken: Guard);
        var n2 = await Client.CoreV1.CreateNodeAsync(Node("n2"), cancellationToken: Guard);
        await CreateAsync(NodeStates, NodeState("n1", n1));
        var kept = await CreateAsync(NodeStates, NodeState("n2", n2));
        await using var watch = Record<object>((onError, ct) => Client.CustomObjects.WatchListClusterCustomObjectAsync(
            Group, Version, NodeStates, resourceVersion: kept["metadata"]!["resourceVersion"]!.ToString(), onError: onError, cancellationToken: ct));

        await Client.CoreV1.DeleteNodeAsync("n1", cancellationToken: Guard);

        var (type, obj) = await watch.NextAsync();
        Assert.Equal((WatchEventType.Deleted, "n1"), (type, Name(Json(obj))));
        Assert.Null(Server.Get("cgnatnodestates", "n1"));
        Assert.NotNull(Server.Get("cgnatnodestates", "n2"));
    }

    [Fact]
    public async Task A_dependent_with_a_finalizer_is_marked_for_deletion_when_its_Node_goes()
    {
        var n1 = await Client.CoreV1.CreateNodeAsync(Node("n1"), cancellationToken: Guard);
        await CreateAsync(NodeStates, WithFinalizer(NodeState("n1", n1)));

        await Client.CoreV1.DeleteNodeAsync("n1", cancellationToken: Guard);

        Assert.NotNull(Server.Get("cgnatnodestates", "n1")!["metadata"]!["deletionTimestamp"]);
    }
}
