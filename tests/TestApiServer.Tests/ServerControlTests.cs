using System.Net.Sockets;
using k8s;
using k8s.Autorest;
using k8s.Models;

namespace TsCgnat.TestApiServer.Tests;

/// <summary>What tests do to the server itself: stop and restart it, inject failures, count requests, hand out a kubeconfig.</summary>
public sealed class ServerControlTests : ServerTest
{
    [Fact]
    public async Task Stopped_the_server_refuses_connections_and_restarted_it_serves_the_same_state_on_the_same_port()
    {
        var node = await Client.CoreV1.CreateNodeAsync(Node("n1"), cancellationToken: Guard);
        var address = Server.BaseAddress;

        await Server.StopAsync();
        var refused = await Assert.ThrowsAsync<HttpRequestException>(() => Client.CoreV1.ReadNodeAsync("n1", cancellationToken: Guard));
        await Server.StartAgainAsync();
        var read = await Client.CoreV1.ReadNodeAsync("n1", cancellationToken: Guard);
        var next = await Client.CoreV1.CreateNodeAsync(Node("n2"), cancellationToken: Guard);

        Assert.Equal(SocketError.ConnectionRefused, Assert.IsType<SocketException>(refused.InnerException).SocketErrorCode);
        Assert.Equal(address, Server.BaseAddress);
        Assert.Equal(node.Metadata.Uid, read.Metadata.Uid);
        Assert.Equal(Rv(node) + 1, Rv(next));
    }

    [Fact]
    public async Task StopAsync_drops_open_watches_and_a_watch_resumes_after_StartAgainAsync()
    {
        var node = await Client.CoreV1.CreateNodeAsync(Node("n1"), cancellationToken: Guard);
        var watch = Record<V1Node>((onError, ct) => Client.CoreV1.WatchListNodeAsync(resourceVersion: node.Metadata.ResourceVersion, onError: onError, cancellationToken: ct));
        var n2 = await Client.CoreV1.CreateNodeAsync(Node("n2"), cancellationToken: Guard);
        Assert.Equal(n2.Metadata.Uid, (await watch.NextAsync()).Object.Metadata.Uid);

        await Server.StopAsync();
        await Assert.ThrowsAnyAsync<Exception>(() => watch.Completion);
        await watch.DisposeAsync();
        Server.Put("nodes", new System.Text.Json.Nodes.JsonObject { ["metadata"] = new System.Text.Json.Nodes.JsonObject { ["name"] = "while-down" } });
        await Server.StartAgainAsync();
        await using var resumed = Record<V1Node>((onError, ct) => Client.CoreV1.WatchListNodeAsync(resourceVersion: n2.Metadata.ResourceVersion, onError: onError, cancellationToken: ct));

        var (type, obj) = await resumed.NextAsync();
        Assert.Equal((WatchEventType.Added, "while-down"), (type, obj.Metadata.Name));
    }

    [Fact]
    public async Task FailNext_fails_the_matching_requests_the_given_number_of_times_with_a_Status()
    {
        await Client.CoreV1.CreateNodeAsync(Node("n1"), cancellationToken: Guard);
        Server.FailNext(r => r.Verb == "get" && r.Path.EndsWith("/nodes/n1", StringComparison.Ordinal), 500, count: 2);

        var list = await Client.CoreV1.ListNodeAsync(cancellationToken: Guard);
        var first = await FailsWith(500, () => Client.CoreV1.ReadNodeAsync("n1", cancellationToken: Guard));
        var second = await FailsWith(500, () => Client.CoreV1.ReadNodeAsync("n1", cancellationToken: Guard));
        var third = await Client.CoreV1.ReadNodeAsync("n1", cancellationToken: Guard);

        Assert.Single(list.Items);
        Assert.Equal("InternalError", first.Reason);
        Assert.Equal("injected failure: 500 for get /api/v1/nodes/n1", second.Message);
        Assert.Equal("n1", third.Metadata.Name);
    }

    [Fact]
    public async Task An_injected_conflict_looks_like_a_real_one_and_changes_nothing()
    {
        var created = await CreateAsync(Policies, Policy("p1"));
        Server.FailNext(r => r.Verb == "update" && r.Path.EndsWith("/status", StringComparison.Ordinal), 409);

        var status = await FailsWith(409, () => ReplaceStatusAsync(Policies, created));

        Assert.Equal("Conflict", status.Reason);
        Assert.Equal(Rv(created), Server.ResourceVersion);
    }

    [Fact]
    public async Task Every_request_is_recorded_in_order_with_its_verb_path_and_query()
    {
        await Client.CoreV1.CreateNodeAsync(Node("n1"), cancellationToken: Guard);
        await Client.CoreV1.ReadNodeAsync("n1", cancellationToken: Guard);
        await Client.CoreV1.ListNodeAsync(labelSelector: "a=b", cancellationToken: Guard);
        await Client.CoreV1.PatchNodeAsync(new V1Patch("{}", V1Patch.PatchType.MergePatch), "n1", cancellationToken: Guard);
        await Client.CoreV1.DeleteNodeAsync("n1", cancellationToken: Guard);
        await using (var watch = Record<V1Node>((onError, ct) => Client.CoreV1.WatchListNodeAsync(timeoutSeconds: 1, onError: onError, cancellationToken: ct)))
        {
            await Client.CoreV1.CreateNodeAsync(Node("n2"), cancellationToken: Guard);
            await watch.NextAsync();
        }

        Assert.Equal(
            ["create /api/v1/nodes", "get /api/v1/nodes/n1", "list /api/v1/nodes", "patch /api/v1/nodes/n1", "delete /api/v1/nodes/n1"],
            Server.Requests.Take(5).Select(r => $"{r.Verb} {r.Path}"));
        Assert.Contains("labelSelector=a=b", Server.Requests[2].Query.Split('&'));
        var watchRequest = Assert.Single(Server.Requests, r => r.Watch);
        Assert.Equal("watch", watchRequest.Verb);
        Assert.Equal(2, Server.Count("create"));
        Assert.Equal(1, Server.Count("get", "/nodes/n1"));
        Assert.Equal(3, Server.Count(pathContains: "/nodes/n1"));
        Assert.Equal(Server.Requests.Count, Server.Count());
    }

    [Fact]
    public async Task The_kubeconfig_it_writes_connects_a_client_to_it()
    {
        var path = Server.WriteKubeconfig(Path.Combine(Path.GetTempPath(), $"fake-kubeconfig-{Guid.NewGuid():N}"));
        try
        {
            using var client = new Kubernetes(KubernetesClientConfiguration.BuildConfigFromConfigFile(path));
            await client.CoreV1.CreateNodeAsync(Node("via-kubeconfig"), cancellationToken: Guard);

            Assert.NotNull(Server.Get("nodes", "via-kubeconfig"));
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public async Task An_invalid_policy_stored_directly_is_served_and_watched_like_any_other()
    {
        await using var watch = Record<object>((onError, ct) => Client.CustomObjects.WatchListClusterCustomObjectAsync(Group, Version, Policies, onError: onError, cancellationToken: ct));

        var stored = Server.Put("cgnatallowpolicies", Policy("invalid", cidr: "10.0.0.0/8"));

        var (type, obj) = await watch.NextAsync();
        Assert.Equal(WatchEventType.Added, type);
        Assert.Equal("10.0.0.0/8", (string?)Json(obj)["spec"]!["allowedSources"]![0]!["cidr"]);
        Assert.Equal(Rv(stored), Rv(Json(obj)));
    }

    [Fact]
    public async Task Direct_access_names_an_unknown_resource_in_its_error()
    {
        var e = Assert.Throws<ArgumentException>(() => Server.Get("pods", "p"));

        Assert.StartsWith("unknown resource \"pods\"; served: nodes, events, leases, cgnatallowpolicies, cgnatnodestates", e.Message, StringComparison.Ordinal);
        await Task.CompletedTask;
    }

    [Fact]
    public async Task A_client_error_surfaces_as_HttpOperationException_with_the_Status_body()
    {
        var e = await Assert.ThrowsAsync<HttpOperationException>(() => Client.CoreV1.ReadNodeAsync("ghost", cancellationToken: Guard));

        Assert.Contains("\"reason\":\"NotFound\"", e.Response.Content, StringComparison.Ordinal);
    }
}
