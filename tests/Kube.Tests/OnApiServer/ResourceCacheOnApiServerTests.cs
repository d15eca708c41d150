using System.Collections.Concurrent;
using k8s;
using k8s.Models;
using TsCgnat.Api;

namespace TsCgnat.Kube.Tests.OnApiServer;

/// <summary>The informer against the test API server through the real KubernetesClient.</summary>
public sealed class ResourceCacheOnApiServerTests : ApiServerTest
{
    private static readonly ResourceCacheOptions Fast = new()
    {
        Backoff = new BackoffPolicy(TimeSpan.FromMilliseconds(100), TimeSpan.FromSeconds(1)),
    };

    private async Task<ResourceCache<T>> StartAsync<T>(IListWatch<T> source)
        where T : class, IKubernetesObject<V1ObjectMeta>
    {
        var cache = new ResourceCache<T>(source, Fast);
        Running.Add(cache.RunAsync(Stop.Token));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await cache.WaitForSyncAsync(timeout.Token);
        return cache;
    }

    [Fact]
    public async Task Syncs_and_sees_nodes_created_updated_and_deleted()
    {
        Server.Put("nodes", NodeJson("n1"));
        var client = Client();
        var cache = await StartAsync(ListWatch.Nodes(client));
        var changed = new ConcurrentQueue<string>();
        cache.Subscribe(changed.Enqueue);
        Assert.Equal(["n1"], cache.List().Select(n => n.Metadata.Name));

        await client.CoreV1.CreateNodeAsync(Node("n2"));
        await client.CoreV1.PatchNodeAsync(new V1Patch("""{"metadata":{"labels":{"role":"router"}}}""", V1Patch.PatchType.MergePatch), "n1");
        await client.CoreV1.DeleteNodeAsync("n2");

        await Eventually.TrueAsync(() => changed.Count(k => k == "n2") == 2 && cache.Get("n1")?.Metadata.Labels?["role"] == "router", "create, update and delete seen");
        Assert.Null(cache.Get("n2"));
        Assert.Equal(1, Server.Count("list", "/api/v1/nodes"));
    }

    [Fact]
    public async Task Custom_objects_are_read_as_our_type()
    {
        Server.Put("cgnatallowpolicies", PolicyJson("lab"));

        var cache = await StartAsync(ListWatch.ClusterCustom<CgnatAllowPolicy>(Client()));
        Server.Put("cgnatallowpolicies", PolicyJson("edge"));

        await Eventually.TrueAsync(() => cache.Get("edge") is not null, "edge seen through the watch");
        Assert.Equal("100.64.0.0/24", cache.Get("lab")!.Spec.RoutedSubnets![0].Cidr);
        Assert.Equal(1, cache.Get("edge")!.Metadata.Generation);
        Assert.Equal(1, Server.Count("list", "/apis/tscgnat.io/v1alpha1/cgnatallowpolicies"));
    }

    [Fact]
    public async Task Dropped_watches_resume_without_relisting_and_without_losing_events()
    {
        var cache = await StartAsync(ListWatch.Nodes(Client()));

        Server.Put("nodes", NodeJson("first"));
        await Eventually.TrueAsync(() => cache.Get("first") is not null, "the first watch is open");

        for (var i = 0; i < 5; i++)
        {
            // Each node is written while the watch that must report it is down; it can only reach the cache
            // through the resumed watch, which is then open for the next drop.
            Server.DropWatches();
            Server.Put("nodes", NodeJson($"n{i}"));
            await Eventually.TrueAsync(() => cache.Get($"n{i}") is not null, $"n{i} through the resumed watch");
        }

        Server.DropWatches();
        Server.Remove("nodes", "n0");
        await Eventually.TrueAsync(() => cache.List().Count == 5 && cache.Get("n0") is null, "first, n1..n4 cached and n0 gone");
        Assert.Equal(1, Server.Count("list", "/api/v1/nodes"));
        Assert.Equal(7, Server.Count("watch", "/api/v1/nodes"));
    }

    [Fact]
    public async Task Relists_when_its_resourceVersion_was_compacted_away()
    {
        Server.Put("nodes", NodeJson("kept"));
        Server.Put("nodes", NodeJson("removed"));
        var cache = await StartAsync(ListWatch.Nodes(Client()));
        var changed = new ConcurrentQueue<string>();
        cache.Subscribe(changed.Enqueue);

        await Server.StopAsync();
        Server.Put("nodes", NodeJson("added"));
        Server.Remove("nodes", "removed");
        Server.CompactHistory();
        await Server.StartAgainAsync();

        await Eventually.TrueAsync(() => Server.Count("list", "/api/v1/nodes") == 2, "a relist");
        await Eventually.TrueAsync(() => cache.Get("added") is not null && cache.Get("removed") is null, "the relisted state");
        Assert.Contains("removed", changed);
        Assert.Contains("added", changed);
    }

    [Fact]
    public async Task Survives_a_stopped_API_server_with_backoff_and_no_busy_loop()
    {
        var counter = new CountingHandler();
        var cache = await StartAsync(ListWatch.Nodes(Client(counter)));

        await Server.StopAsync();
        var before = counter.Sent;
        await Task.Delay(TimeSpan.FromSeconds(3));
        var attemptsWhileDown = counter.Sent - before;
        await Server.StartAgainAsync();
        Server.Put("nodes", NodeJson("after-restart"));

        await Eventually.TrueAsync(() => cache.Get("after-restart") is not null, "the node added after the restart");
        // 100 ms doubling to a 1 s cap: about 6 attempts in 3 s; a loop without backoff makes thousands.
        Assert.InRange(attemptsWhileDown, 1, 15);
        Assert.Equal(1, Server.Count("list", "/api/v1/nodes"));
    }

    [Fact]
    public async Task A_field_selector_keeps_only_the_agents_own_node()
    {
        Server.Put("nodes", NodeJson("n1"));
        Server.Put("nodes", NodeJson("n2"));

        var cache = await StartAsync(ListWatch.Nodes(Client(), new ListSelectors(FieldSelector: "metadata.name=n1")));
        Server.Put("nodes", NodeJson("n2", new() { ["role"] = "router" }));
        Server.Put("nodes", NodeJson("n1", new() { ["role"] = "edge" }));

        await Eventually.TrueAsync(() => cache.Get("n1")?.Metadata.Labels?["role"] == "edge", "n1's label change");
        Assert.Equal(["n1"], cache.List().Select(n => n.Metadata.Name));
        Assert.Contains("fieldSelector=metadata.name=n1", Server.Requests.First(r => r.Watch).Query, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_label_selector_sees_nodes_enter_and_leave_it()
    {
        Server.Put("nodes", NodeJson("n1", new() { ["role"] = "router" }));
        var cache = await StartAsync(ListWatch.Nodes(Client(), new ListSelectors(LabelSelector: "role=router")));

        Server.Put("nodes", NodeJson("n1"));
        Server.Put("nodes", NodeJson("n2", new() { ["role"] = "router" }));

        await Eventually.TrueAsync(() => cache.Get("n2") is not null && cache.Get("n1") is null, "n1 left and n2 entered the selection");
    }

    [Fact]
    public async Task Leases_are_cached_by_namespace_and_name()
    {
        var client = Client();
        var cache = await StartAsync(ListWatch.Leases(client, "kube-system"));

        await client.CoordinationV1.CreateNamespacedLeaseAsync(
            new V1Lease { Metadata = new V1ObjectMeta { Name = "ts-cgnat-operator", NamespaceProperty = "kube-system" }, Spec = new V1LeaseSpec { HolderIdentity = "a" } },
            "kube-system");

        await Eventually.TrueAsync(() => cache.Get("ts-cgnat-operator", "kube-system") is not null, "the lease");
        Assert.Equal(["kube-system/ts-cgnat-operator"], cache.Keys());
    }
}
