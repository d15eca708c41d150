using System.Text.Json.Nodes;
using k8s;
using k8s.Autorest;
using k8s.Models;

namespace TsCgnat.TestApiServer.Tests;

/// <summary>List-then-watch as a watch-backed cache uses it: resume, bookmarks, 410, selectors, dropped streams.</summary>
public sealed class WatchTests : ServerTest
{
    private WatchRecording<V1Node> WatchNodes(string? resourceVersion = null, bool bookmarks = false, string? labelSelector = null, string? fieldSelector = null, int? timeoutSeconds = null) =>
        Record<V1Node>((onError, ct) => Client.CoreV1.WatchListNodeAsync(
            allowWatchBookmarks: bookmarks, resourceVersion: resourceVersion, labelSelector: labelSelector, fieldSelector: fieldSelector,
            timeoutSeconds: timeoutSeconds, onError: onError, cancellationToken: ct));

    private static string Describe((WatchEventType Type, V1Node Node) e) => $"{e.Type} {e.Node.Metadata.Name} {e.Node.Metadata.ResourceVersion}";

    private async Task<V1Node> Label(string name, string key, string? value)
    {
        var patch = new JsonObject { ["metadata"] = new JsonObject { ["labels"] = new JsonObject { [key] = value } } };
        return await Client.CoreV1.PatchNodeAsync(new V1Patch(patch.ToJsonString(), V1Patch.PatchType.MergePatch), name, cancellationToken: Guard);
    }

    [Fact]
    public async Task Without_a_resourceVersion_a_watch_starts_with_ADDED_for_every_current_object_then_sends_changes()
    {
        await Client.CoreV1.CreateNodeAsync(Node("n1"), cancellationToken: Guard);
        await Client.CoreV1.CreateNodeAsync(Node("n2"), cancellationToken: Guard);
        await using var watch = WatchNodes();

        var initial = await watch.TakeAsync(2);
        var changed = await Label("n1", "a", "b");

        Assert.Equal(["Added n1", "Added n2"], initial.Select(e => $"{e.Type} {e.Object.Metadata.Name}"));
        var next = await watch.NextAsync();
        Assert.Equal(Describe((WatchEventType.Modified, changed)), Describe(next));
    }

    [Fact]
    public async Task A_watch_from_a_list_resourceVersion_sends_only_later_changes()
    {
        await Client.CoreV1.CreateNodeAsync(Node("n1"), cancellationToken: Guard);
        var list = await Client.CoreV1.ListNodeAsync(cancellationToken: Guard);
        await using var watch = WatchNodes(list.Metadata.ResourceVersion);

        var created = await Client.CoreV1.CreateNodeAsync(Node("n2"), cancellationToken: Guard);

        Assert.Equal(Describe((WatchEventType.Added, created)), Describe(await watch.NextAsync()));
    }

    [Fact]
    public async Task A_watch_resumed_from_the_last_seen_resourceVersion_misses_and_repeats_nothing()
    {
        var list = await Client.CoreV1.ListNodeAsync(cancellationToken: Guard);
        var expected = new List<string>();
        var seen = new List<string>();
        string lastSeen;
        await using (var first = WatchNodes(list.Metadata.ResourceVersion))
        {
            var n1 = await Client.CoreV1.CreateNodeAsync(Node("n1"), cancellationToken: Guard);
            var n1b = await Label("n1", "a", "1");
            expected.AddRange([Describe((WatchEventType.Added, n1)), Describe((WatchEventType.Modified, n1b))]);
            seen.AddRange((await first.TakeAsync(2)).Select(Describe));
            lastSeen = n1b.Metadata.ResourceVersion;
        }

        // Changes while no watch is open.
        var n2 = await Client.CoreV1.CreateNodeAsync(Node("n2"), cancellationToken: Guard);
        var n1c = await Label("n1", "a", "2");
        await Client.CoreV1.DeleteNodeAsync("n2", cancellationToken: Guard);
        var n2Deleted = Server.ResourceVersion;
        expected.AddRange([Describe((WatchEventType.Added, n2)), Describe((WatchEventType.Modified, n1c)), $"Deleted n2 {n2Deleted}"]);

        await using var resumed = WatchNodes(lastSeen);
        var n3 = await Client.CoreV1.CreateNodeAsync(Node("n3"), cancellationToken: Guard);
        expected.Add(Describe((WatchEventType.Added, n3)));
        seen.AddRange((await resumed.TakeAsync(4)).Select(Describe));

        Assert.Equal(expected, seen);
        Assert.Empty(resumed.Pending());
    }

    [Fact]
    public async Task Bookmarks_arrive_periodically_with_the_current_resourceVersion()
    {
        Server.BookmarkInterval = TimeSpan.FromMilliseconds(100);
        var node = await Client.CoreV1.CreateNodeAsync(Node("n1"), cancellationToken: Guard);
        await using var watch = WatchNodes(node.Metadata.ResourceVersion, bookmarks: true);

        var first = await watch.NextAsync();
        await Client.CoordinationV1.CreateNamespacedLeaseAsync(new V1Lease { Metadata = new V1ObjectMeta { Name = "other-kind" } }, "default", cancellationToken: Guard);
        var later = await watch.NextAsync();
        while (later.Object.Metadata.ResourceVersion == first.Object.Metadata.ResourceVersion)
        {
            later = await watch.NextAsync();
        }

        Assert.Equal(WatchEventType.Bookmark, first.Type);
        Assert.Equal(node.Metadata.ResourceVersion, first.Object.Metadata.ResourceVersion);
        Assert.Equal(WatchEventType.Bookmark, later.Type);
        Assert.Equal(Server.ResourceVersion.ToString(System.Globalization.CultureInfo.InvariantCulture), later.Object.Metadata.ResourceVersion);
    }

    [Fact]
    public async Task Without_allowWatchBookmarks_no_bookmark_is_sent()
    {
        Server.BookmarkInterval = TimeSpan.FromMilliseconds(50);
        var from = Server.ResourceVersion.ToString(System.Globalization.CultureInfo.InvariantCulture);
        await using var watch = WatchNodes(from, bookmarks: false, timeoutSeconds: 1);
        var node = await Client.CoreV1.CreateNodeAsync(Node("n1"), cancellationToken: Guard);

        await watch.Completion;

        Assert.Equal([Describe((WatchEventType.Added, node))], watch.Pending().Select(Describe));
    }

    [Fact]
    public async Task At_timeoutSeconds_the_stream_ends_cleanly_after_a_last_bookmark()
    {
        Server.BookmarkInterval = TimeSpan.FromMinutes(5);
        var node = await Client.CoreV1.CreateNodeAsync(Node("n1"), cancellationToken: Guard);
        await using var watch = WatchNodes(node.Metadata.ResourceVersion, bookmarks: true, timeoutSeconds: 1);

        await watch.Completion;

        var events = watch.Pending();
        var last = Assert.Single(events);
        Assert.Equal(WatchEventType.Bookmark, last.Type);
        Assert.Equal(node.Metadata.ResourceVersion, last.Object.Metadata.ResourceVersion);
    }

    [Fact]
    public async Task After_CompactHistory_a_watch_from_an_older_resourceVersion_gets_an_ERROR_event_410_Expired()
    {
        var old = await Client.CoreV1.CreateNodeAsync(Node("n1"), cancellationToken: Guard);
        await Label("n1", "a", "b");
        Server.CompactHistory();

        // The client reports the ERROR event's Status to onError, then the server ends the stream.
        var watch = WatchNodes(old.Metadata.ResourceVersion);
        await watch.Completion;

        var error = Assert.IsType<KubernetesException>(Assert.Single(watch.Errors));
        Assert.Equal(410, error.Status.Code);
        Assert.Equal("Expired", error.Status.Reason);
        Assert.Equal($"too old resource version: {old.Metadata.ResourceVersion} ({Server.ResourceVersion})", error.Status.Message);
        await watch.DisposeAsync();
    }

    [Fact]
    public async Task After_CompactHistory_a_watch_from_the_current_resourceVersion_still_works()
    {
        await Client.CoreV1.CreateNodeAsync(Node("n1"), cancellationToken: Guard);
        Server.CompactHistory();
        var list = await Client.CoreV1.ListNodeAsync(cancellationToken: Guard);
        await using var watch = WatchNodes(list.Metadata.ResourceVersion);

        var created = await Client.CoreV1.CreateNodeAsync(Node("n2"), cancellationToken: Guard);

        Assert.Equal(Describe((WatchEventType.Added, created)), Describe(await watch.NextAsync()));
        Assert.Empty(watch.Errors);
    }

    [Fact]
    public async Task After_CompactHistory_an_exact_list_at_an_older_resourceVersion_is_410_Expired()
    {
        var old = await Client.CoreV1.CreateNodeAsync(Node("n1"), cancellationToken: Guard);
        await Label("n1", "a", "b");
        Server.CompactHistory();

        var status = await FailsWith(410, () => Client.CoreV1.ListNodeAsync(resourceVersion: old.Metadata.ResourceVersion, resourceVersionMatch: "Exact", cancellationToken: Guard));

        Assert.Equal("Expired", status.Reason);
    }

    [Fact]
    public async Task DropWatches_ends_every_open_stream_abruptly()
    {
        await using var nodes = WatchNodes(bookmarks: true);
        await using var policies = Record<object>((onError, ct) => Client.CustomObjects.WatchListClusterCustomObjectAsync(Group, Version, Policies, onError: onError, cancellationToken: ct));
        await Client.CoreV1.CreateNodeAsync(Node("n1"), cancellationToken: Guard);
        await CreateAsync(Policies, Policy("p1"));
        await nodes.NextChangeAsync();
        await policies.NextAsync();

        Server.DropWatches();

        await Assert.ThrowsAnyAsync<Exception>(() => nodes.Completion);
        await Assert.ThrowsAnyAsync<Exception>(() => policies.Completion);
    }

    [Fact]
    public async Task An_object_that_stops_matching_the_label_selector_is_sent_as_DELETED_and_one_that_starts_as_ADDED()
    {
        await Client.CoreV1.CreateNodeAsync(Node("n1", ("role", "router")), cancellationToken: Guard);
        await using var watch = WatchNodes(labelSelector: "role=router");
        Assert.Equal(WatchEventType.Added, (await watch.NextAsync()).Type);

        var left = await Label("n1", "role", "worker");
        var returned = await Label("n1", "role", "router");
        var modified = await Label("n1", "zone", "a");
        await Client.CoreV1.CreateNodeAsync(Node("n2", ("role", "worker")), cancellationToken: Guard);
        var n3 = await Client.CoreV1.CreateNodeAsync(Node("n3", ("role", "router")), cancellationToken: Guard);

        var events = (await watch.TakeAsync(4)).Select(Describe);
        Assert.Equal(
            [
                $"Deleted n1 {left.Metadata.ResourceVersion}",
                Describe((WatchEventType.Added, returned)),
                Describe((WatchEventType.Modified, modified)),
                Describe((WatchEventType.Added, n3)),
            ],
            events);
    }

    [Fact]
    public async Task A_field_selector_on_metadata_name_watches_one_object()
    {
        await using var watch = WatchNodes(fieldSelector: "metadata.name=mine");

        await Client.CoreV1.CreateNodeAsync(Node("other"), cancellationToken: Guard);
        var mine = await Client.CoreV1.CreateNodeAsync(Node("mine"), cancellationToken: Guard);

        Assert.Equal(Describe((WatchEventType.Added, mine)), Describe(await watch.NextAsync()));
    }

    [Fact]
    public async Task A_deleted_object_arrives_as_DELETED_with_the_resourceVersion_of_the_deletion()
    {
        var node = await Client.CoreV1.CreateNodeAsync(Node("n1"), cancellationToken: Guard);
        await using var watch = WatchNodes(node.Metadata.ResourceVersion);

        await Client.CoreV1.DeleteNodeAsync("n1", cancellationToken: Guard);

        var deleted = await watch.NextAsync();
        Assert.Equal(WatchEventType.Deleted, deleted.Type);
        Assert.Equal(Server.ResourceVersion, Rv(deleted.Object));
    }

    [Fact]
    public async Task Custom_resources_are_watched_through_the_custom_objects_API()
    {
        await using var watch = Record<object>((onError, ct) => Client.CustomObjects.WatchListClusterCustomObjectAsync(Group, Version, NodeStates, onError: onError, cancellationToken: ct));
        var node = await Client.CoreV1.CreateNodeAsync(Node("n1"), cancellationToken: Guard);

        var created = await CreateAsync(NodeStates, NodeState("n1", node));

        var (type, obj) = await watch.NextAsync();
        Assert.Equal(WatchEventType.Added, type);
        Assert.Equal(Rv(created), Rv(Json(obj)));
        Assert.Equal("CgnatNodeState", (string?)Json(obj)["kind"]);
    }

    [Fact]
    public async Task A_watch_of_namespaced_leases_sees_only_its_namespace()
    {
        await using var watch = Record<V1Lease>((onError, ct) => Client.CoordinationV1.WatchListNamespacedLeaseAsync("ts-cgnat", onError: onError, cancellationToken: ct));

        await Client.CoordinationV1.CreateNamespacedLeaseAsync(new V1Lease { Metadata = new V1ObjectMeta { Name = "elsewhere" } }, "default", cancellationToken: Guard);
        var mine = await Client.CoordinationV1.CreateNamespacedLeaseAsync(new V1Lease { Metadata = new V1ObjectMeta { Name = "operator" } }, "ts-cgnat", cancellationToken: Guard);

        var (type, lease) = await watch.NextAsync();
        Assert.Equal(WatchEventType.Added, type);
        Assert.Equal(mine.Metadata.Uid, lease.Metadata.Uid);
    }

    [Fact]
    public async Task With_sendInitialEvents_the_initial_ADDED_events_end_with_an_annotated_bookmark()
    {
        Server.BookmarkInterval = TimeSpan.FromMinutes(5);
        await Client.CoreV1.CreateNodeAsync(Node("n1"), cancellationToken: Guard);
        await using var watch = Record<V1Node>((onError, ct) => Client.CoreV1.WatchListNodeAsync(
            allowWatchBookmarks: true, sendInitialEvents: true, resourceVersionMatch: "NotOlderThan", onError: onError, cancellationToken: ct));

        var (addedType, added) = await watch.NextAsync();
        var (endType, end) = await watch.NextAsync();

        Assert.Equal((WatchEventType.Added, "n1"), (addedType, added.Metadata.Name));
        Assert.Equal(WatchEventType.Bookmark, endType);
        Assert.Equal("true", end.Metadata.Annotations["k8s.io/initial-events-end"]);
        Assert.Equal(Server.ResourceVersion, Rv(end));
    }

    [Fact]
    public async Task Watch_is_also_accepted_as_watch_1()
    {
        var node = await Client.CoreV1.CreateNodeAsync(Node("n1"), cancellationToken: Guard);
        using var http = new HttpClient { BaseAddress = Server.BaseAddress };
        using var response = await http.GetAsync($"api/v1/nodes?watch=1&timeoutSeconds=1&resourceVersion=1", HttpCompletionOption.ResponseHeadersRead, Guard);

        var body = await response.Content.ReadAsStringAsync(Guard);

        var line = Assert.Single(body.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("{\"type\":\"ADDED\",\"object\":{", line, StringComparison.Ordinal);
        Assert.Contains(node.Metadata.Uid, line, StringComparison.Ordinal);
        Assert.Equal("watch", Server.Requests[^1].Verb);
    }

    [Fact]
    public async Task Beyond_HistoryLimit_the_oldest_changes_are_forgotten_and_a_watch_from_them_gets_410()
    {
        Server.HistoryLimit = 4;
        var first = await Client.CoreV1.CreateNodeAsync(Node("n0"), cancellationToken: Guard);
        for (var i = 1; i < 10; i++)
        {
            await Client.CoreV1.CreateNodeAsync(Node($"n{i}"), cancellationToken: Guard);
        }

        var watch = WatchNodes(first.Metadata.ResourceVersion);
        await watch.Completion;

        Assert.Equal(410, Assert.IsType<KubernetesException>(Assert.Single(watch.Errors)).Status.Code);
        await watch.DisposeAsync();
    }

    [Fact]
    public async Task A_failed_watch_request_is_an_HTTP_error_before_any_event()
    {
        Server.FailNext(r => r.Watch, 503);

        var watch = WatchNodes();

        var e = await Assert.ThrowsAsync<HttpOperationException>(() => watch.Completion);
        Assert.Equal(503, (int)e.Response.StatusCode);
        await watch.DisposeAsync();
    }
}
