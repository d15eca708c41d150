using System.Net;
using k8s;
using k8s.Autorest;
using k8s.Models;
using TsCgnat.Api;
using TsCgnat.TestApiServer;

namespace TsCgnat.Kube.Tests.OnApiServer;

/// <summary>Status writes and finalizers against the test API server: only on change, and through 409s.</summary>
public sealed class WritersOnApiServerTests : ApiServerTest
{
    private const string Finalizer = "tscgnat.io/node-cleanup";
    private static readonly DateTime T0 = new(2026, 1, 1, 12, 0, 0, DateTimeKind.Utc);

    private static CgnatAllowPolicyStatus Status(int applied, IList<NodeIssue>? issues = null) => new()
    {
        ObservedGeneration = 1,
        TargetNodes = 2,
        AppliedNodes = applied,
        FailedNodes = 2 - applied,
        Conditions = [new V1Condition { Type = "Ready", Status = applied == 2 ? "True" : "False", Reason = "Applied", Message = "", LastTransitionTime = T0, ObservedGeneration = 1 }],
        NodeIssues = issues,
    };

    private static Task<CgnatAllowPolicy> ReadAsync(Kubernetes client, string name) =>
        client.CustomObjects.GetClusterCustomObjectAsync<CgnatAllowPolicy>("tscgnat.io", "v1alpha1", "cgnatallowpolicies", name);

    private int StatusPatches => Server.Count("patch", "/cgnatallowpolicies/lab/status");

    private static bool IsStatusPatch(RequestRecord r) => r.Verb == "patch" && r.Path.EndsWith("/status", StringComparison.Ordinal);

    [Fact]
    public async Task Writes_a_changed_status_and_skips_an_unchanged_one()
    {
        Server.Put("cgnatallowpolicies", PolicyJson("lab"));
        var client = Client();
        var writer = new StatusWriter(client);

        var first = await writer.WriteAsync(await ReadAsync(client, "lab"), Status(applied: 1), CancellationToken.None);
        var again = await writer.WriteAsync(first.Current, Status(applied: 1), CancellationToken.None);
        var reread = await writer.WriteAsync(await ReadAsync(client, "lab"), Status(applied: 1), CancellationToken.None);

        Assert.True(first.Written);
        Assert.False(again.Written);
        Assert.False(reread.Written);
        Assert.Equal(1, StatusPatches);
        Assert.Equal(1, (int)Server.Get("cgnatallowpolicies", "lab")!["status"]!["appliedNodes"]!);
    }

    [Fact]
    public async Task A_status_write_does_not_touch_the_spec_or_the_generation()
    {
        Server.Put("cgnatallowpolicies", PolicyJson("lab"));
        var client = Client();

        var outcome = await new StatusWriter(client).WriteAsync(await ReadAsync(client, "lab"), Status(applied: 2), CancellationToken.None);

        Assert.Equal(1, outcome.Current.Metadata.Generation);
        Assert.Equal("100.64.0.0/24", outcome.Current.Spec.RoutedSubnets![0].Cidr);
        Assert.Equal(2, outcome.Current.Status!.AppliedNodes);
    }

    [Fact]
    public async Task Fields_dropped_from_the_status_are_removed_on_the_server()
    {
        Server.Put("cgnatallowpolicies", PolicyJson("lab"));
        var client = Client();
        var writer = new StatusWriter(client);
        var withIssue = await writer.WriteAsync(await ReadAsync(client, "lab"), Status(1, [new NodeIssue { Node = "n2", Reason = "ApplyFailed", Message = "exit 4" }]), CancellationToken.None);

        await writer.WriteAsync(withIssue.Current, Status(applied: 2), CancellationToken.None);

        Assert.Null(Server.Get("cgnatallowpolicies", "lab")!["status"]!["nodeIssues"]);
    }

    [Fact]
    public async Task An_injected_409_is_survived_by_reading_again()
    {
        Server.Put("cgnatallowpolicies", PolicyJson("lab"));
        var client = Client();
        var policy = await ReadAsync(client, "lab");
        Server.FailNext(IsStatusPatch, 409);

        var outcome = await new StatusWriter(client).WriteAsync(policy, Status(applied: 2), CancellationToken.None);

        Assert.True(outcome.Written);
        Assert.Equal(1, outcome.Conflicts);
        Assert.Equal(2, StatusPatches);
        Assert.Equal(2, Server.Count("get", "/cgnatallowpolicies/lab"));
        Assert.Equal(2, (int)Server.Get("cgnatallowpolicies", "lab")!["status"]!["appliedNodes"]!);
    }

    [Fact]
    public async Task A_stale_object_gets_a_real_409_and_the_write_is_recomputed_on_the_fresh_one()
    {
        Server.Put("cgnatallowpolicies", PolicyJson("lab"));
        var client = Client();
        var stale = await ReadAsync(client, "lab");
        var edited = PolicyJson("lab");
        edited["spec"]!["allowBroadRanges"] = true;
        Server.Put("cgnatallowpolicies", edited);

        var outcome = await new StatusWriter(client).WriteAsync(stale, Status(applied: 2), CancellationToken.None);

        Assert.Equal(1, outcome.Conflicts);
        Assert.True(outcome.Current.Spec.AllowBroadRanges);
        Assert.Equal(2, outcome.Current.Status!.AppliedNodes);
    }

    [Fact]
    public async Task After_a_bounded_number_of_conflicts_the_409_is_thrown_for_the_caller_to_retry()
    {
        Server.Put("cgnatallowpolicies", PolicyJson("lab"));
        var client = Client();
        Server.FailNext(IsStatusPatch, 409, count: 100);

        var error = await Assert.ThrowsAsync<HttpOperationException>(
            () => new StatusWriter(client, maxConflicts: 3).WriteAsync(ReadAsync(client, "lab").Result, Status(applied: 2), CancellationToken.None));

        Assert.Equal(HttpStatusCode.Conflict, error.Response.StatusCode);
        Assert.Equal(4, StatusPatches);
    }

    [Fact]
    public async Task Finalizer_is_added_once_and_removed()
    {
        Server.Put("cgnatallowpolicies", PolicyJson("lab", "someone.else/keep"));
        var client = Client();
        var finalizers = new Finalizers(client);

        var added = await finalizers.AddAsync(await ReadAsync(client, "lab"), Finalizer, CancellationToken.None);
        var addedAgain = await finalizers.AddAsync(added.Current, Finalizer, CancellationToken.None);
        Assert.Equal(["someone.else/keep", Finalizer], Server.Get("cgnatallowpolicies", "lab")!["metadata"]!["finalizers"]!.AsArray().Select(f => (string)f!));

        var removed = await finalizers.RemoveAsync(addedAgain.Current, Finalizer, CancellationToken.None);

        Assert.True(added.Written);
        Assert.False(addedAgain.Written);
        Assert.True(removed.Written);
        Assert.Equal(2, Server.Count("patch", "/cgnatallowpolicies/lab"));
        Assert.Equal(["someone.else/keep"], Server.Get("cgnatallowpolicies", "lab")!["metadata"]!["finalizers"]!.AsArray().Select(f => (string)f!));
    }

    [Fact]
    public async Task Finalizer_change_survives_a_409()
    {
        Server.Put("cgnatallowpolicies", PolicyJson("lab"));
        var client = Client();
        Server.FailNext(r => r.Verb == "patch", 409);

        var added = await new Finalizers(client).AddAsync(await ReadAsync(client, "lab"), Finalizer, CancellationToken.None);

        Assert.Equal(1, added.Conflicts);
        Assert.True(Finalizers.Has(added.Current, Finalizer));
    }

    [Fact]
    public async Task A_stale_finalizer_list_never_drops_a_finalizer_added_meanwhile()
    {
        Server.Put("cgnatallowpolicies", PolicyJson("lab"));
        var client = Client();
        var stale = await ReadAsync(client, "lab");
        Server.Put("cgnatallowpolicies", PolicyJson("lab", "someone.else/keep"));

        await new Finalizers(client).AddAsync(stale, Finalizer, CancellationToken.None);

        Assert.Equal(["someone.else/keep", Finalizer], Server.Get("cgnatallowpolicies", "lab")!["metadata"]!["finalizers"]!.AsArray().Select(f => (string)f!));
    }

    [Fact]
    public async Task Removing_the_last_finalizer_of_a_deleted_object_lets_it_go()
    {
        Server.Put("cgnatallowpolicies", PolicyJson("lab", Finalizer));
        var client = Client();
        await client.CustomObjects.DeleteClusterCustomObjectAsync("tscgnat.io", "v1alpha1", "cgnatallowpolicies", "lab");
        var deleting = await ReadAsync(client, "lab");
        Assert.NotNull(deleting.Metadata.DeletionTimestamp);

        var finalizers = new Finalizers(client);
        var addWhileDeleting = await finalizers.AddAsync(deleting, "late/one", CancellationToken.None);
        var removed = await finalizers.RemoveAsync(deleting, Finalizer, CancellationToken.None);
        var removedAgain = await finalizers.RemoveAsync(deleting, Finalizer, CancellationToken.None);

        Assert.False(addWhileDeleting.Written);
        Assert.True(removed.Written);
        Assert.False(removedAgain.Written);
        Assert.Null(Server.Get("cgnatallowpolicies", "lab"));
    }
}
