using System.Text.Json.Nodes;
using k8s;
using k8s.Models;

namespace TsCgnat.TestApiServer.Tests;

/// <summary>Create, read and replace: identity, resourceVersions and the errors controllers branch on.</summary>
public sealed class ObjectLifecycleTests : ServerTest
{
    [Fact]
    public async Task Create_assigns_uid_creationTimestamp_and_a_resourceVersion()
    {
        var before = DateTime.UtcNow.AddSeconds(-1);
        var node = await Client.CoreV1.CreateNodeAsync(Node("n1"), cancellationToken: Guard);

        Assert.True(Guid.TryParse(node.Metadata.Uid, out _), node.Metadata.Uid);
        Assert.InRange(node.Metadata.CreationTimestamp!.Value, before, DateTime.UtcNow.AddSeconds(1));
        Assert.Equal("Node", node.Kind);
        Assert.Equal("v1", node.ApiVersion);
        Assert.Equal(node.Metadata.ResourceVersion, (await Client.CoreV1.ReadNodeAsync("n1", cancellationToken: Guard)).Metadata.ResourceVersion);
    }

    [Fact]
    public async Task Every_write_of_any_kind_takes_the_next_value_of_one_counter()
    {
        var node = await Client.CoreV1.CreateNodeAsync(Node("n1"), cancellationToken: Guard);
        var lease = await Client.CoordinationV1.CreateNamespacedLeaseAsync(
            new V1Lease { Metadata = new V1ObjectMeta { Name = "l1" }, Spec = new V1LeaseSpec { HolderIdentity = "a" } }, "kube-system", cancellationToken: Guard);
        var policy = await CreateAsync(Policies, Policy("p1"));
        node.Metadata.Labels = new Dictionary<string, string> { ["a"] = "b" };
        var updated = await Client.CoreV1.ReplaceNodeAsync(node, "n1", cancellationToken: Guard);

        Assert.Equal([Rv(node) + 1, Rv(node) + 2, Rv(node) + 3], [Rv(lease), Rv(policy), Rv(updated)]);
        Assert.Equal(Rv(updated), Server.ResourceVersion);
    }

    [Fact]
    public async Task GenerateName_gets_a_unique_random_suffix()
    {
        var generated = new V1Node { Metadata = new V1ObjectMeta { GenerateName = "worker-" } };
        var first = await Client.CoreV1.CreateNodeAsync(generated, cancellationToken: Guard);
        var second = await Client.CoreV1.CreateNodeAsync(generated, cancellationToken: Guard);

        Assert.Matches("^worker-[a-z0-9]{5}$", first.Metadata.Name);
        Assert.NotEqual(first.Metadata.Name, second.Metadata.Name);
    }

    [Fact]
    public async Task Create_without_name_or_generateName_is_422_Invalid()
    {
        var status = await FailsWith(422, () => Client.CoreV1.CreateNodeAsync(new V1Node { Metadata = new V1ObjectMeta() }, cancellationToken: Guard));

        Assert.Equal("Invalid", status.Reason);
        Assert.Equal("Node \"\" is invalid: metadata.name: Required value: name or generateName is required", status.Message);
    }

    [Fact]
    public async Task Create_of_an_existing_name_is_409_AlreadyExists()
    {
        await CreateAsync(Policies, Policy("p1"));

        var status = await FailsWith(409, () => CreateAsync(Policies, Policy("p1")));

        Assert.Equal("AlreadyExists", status.Reason);
        Assert.Equal("cgnatallowpolicies.tscgnat.io \"p1\" already exists", status.Message);
        Assert.Equal("p1", status.Details.Name);
        Assert.Equal("tscgnat.io", status.Details.Group);
        Assert.Equal("cgnatallowpolicies", status.Details.Kind);
    }

    [Fact]
    public async Task Get_of_a_missing_object_is_404_NotFound()
    {
        var node = await FailsWith(404, () => Client.CoreV1.ReadNodeAsync("ghost", cancellationToken: Guard));
        var lease = await FailsWith(404, () => Client.CoordinationV1.ReadNamespacedLeaseAsync("ghost", "default", cancellationToken: Guard));
        var policy = await FailsWith(404, () => ReadAsync(Policies, "ghost"));

        Assert.Equal(["NotFound", "NotFound", "NotFound"], [node.Reason, lease.Reason, policy.Reason]);
        Assert.Equal("nodes \"ghost\" not found", node.Message);
        Assert.Equal("leases.coordination.k8s.io \"ghost\" not found", lease.Message);
        Assert.Equal("cgnatallowpolicies.tscgnat.io \"ghost\" not found", policy.Message);
    }

    [Fact]
    public async Task Update_with_a_stale_resourceVersion_is_409_Conflict()
    {
        var read = await Client.CoreV1.CreateNodeAsync(Node("n1"), cancellationToken: Guard);
        read.Metadata.Labels = new Dictionary<string, string> { ["first"] = "writer" };
        await Client.CoreV1.ReplaceNodeAsync(read, "n1", cancellationToken: Guard);

        read.Metadata.Labels = new Dictionary<string, string> { ["second"] = "writer" };
        var status = await FailsWith(409, () => Client.CoreV1.ReplaceNodeAsync(read, "n1", cancellationToken: Guard));

        Assert.Equal("Conflict", status.Reason);
        Assert.Equal("Operation cannot be fulfilled on nodes \"n1\": the object has been modified; please apply your changes to the latest version and try again", status.Message);
        Assert.Equal("writer", (await Client.CoreV1.ReadNodeAsync("n1", cancellationToken: Guard)).Metadata.Labels["first"]);
    }

    [Fact]
    public async Task Update_of_a_custom_resource_without_resourceVersion_is_422_Invalid()
    {
        await CreateAsync(Policies, Policy("p1"));

        var status = await FailsWith(422, () => ReplaceAsync(Policies, Policy("p1")));

        Assert.Equal("CgnatAllowPolicy.tscgnat.io \"p1\" is invalid: metadata.resourceVersion: Invalid value: 0x0: must be specified for an update", status.Message);
    }

    [Fact]
    public async Task Update_of_a_missing_object_is_404_NotFound()
    {
        var status = await FailsWith(404, () => Client.CoreV1.ReplaceNodeAsync(Node("ghost"), "ghost", cancellationToken: Guard));

        Assert.Equal("nodes \"ghost\" not found", status.Message);
    }

    [Fact]
    public async Task Update_whose_body_names_another_object_is_400_BadRequest()
    {
        var node = await Client.CoreV1.CreateNodeAsync(Node("n1"), cancellationToken: Guard);

        var status = await FailsWith(400, () => Client.CoreV1.ReplaceNodeAsync(node, "n2", cancellationToken: Guard));

        Assert.Equal("the name of the object (n1) does not match the name on the URL (n2)", status.Message);
    }

    [Fact]
    public async Task An_update_that_changes_nothing_writes_nothing()
    {
        var node = await Client.CoreV1.CreateNodeAsync(Node("n1", ("a", "b")), cancellationToken: Guard);

        var same = await Client.CoreV1.ReplaceNodeAsync(node, "n1", cancellationToken: Guard);

        Assert.Equal(node.Metadata.ResourceVersion, same.Metadata.ResourceVersion);
        Assert.Equal(Rv(node), Server.ResourceVersion);
    }

    [Fact]
    public async Task Identity_fields_in_an_update_body_are_ignored()
    {
        var node = await Client.CoreV1.CreateNodeAsync(Node("n1"), cancellationToken: Guard);
        var uid = node.Metadata.Uid;
        node.Metadata.Uid = Guid.NewGuid().ToString();
        node.Metadata.CreationTimestamp = new DateTime(2000, 1, 1, 0, 0, 0, DateTimeKind.Utc);
        node.Metadata.Labels = new Dictionary<string, string> { ["a"] = "b" };

        var updated = await Client.CoreV1.ReplaceNodeAsync(node, "n1", cancellationToken: Guard);

        Assert.Equal(uid, updated.Metadata.Uid);
        Assert.NotEqual(2000, updated.Metadata.CreationTimestamp!.Value.Year);
        Assert.Equal("b", updated.Metadata.Labels["a"]);
    }

    [Fact]
    public async Task An_unknown_resource_is_404_with_a_Status()
    {
        var status = await FailsWith(404, () => Client.CoreV1.ReadNamespacedPodAsync("p", "default", cancellationToken: Guard));

        Assert.Equal("the server could not find the requested resource", status.Message);
    }

    [Fact]
    public async Task Objects_written_through_the_client_are_readable_directly_and_the_reverse()
    {
        await Client.CoreV1.CreateNodeAsync(Node("n1", ("zone", "a")), cancellationToken: Guard);
        Server.Put("cgnatallowpolicies", new JsonObject
        {
            ["metadata"] = new JsonObject { ["name"] = "direct" },
            ["spec"] = new JsonObject { ["allowedSources"] = new JsonArray(new JsonObject { ["cidr"] = "8.8.8.8/32" }) },
        });

        Assert.Equal("a", (string?)Server.Get("nodes", "n1")!["metadata"]!["labels"]!["zone"]);
        var direct = await ReadAsync(Policies, "direct");
        Assert.Equal("8.8.8.8/32", (string?)direct["spec"]!["allowedSources"]![0]!["cidr"]);
        Assert.Equal("CgnatAllowPolicy", (string?)direct["kind"]);
        Assert.Equal(1, Generation(direct));
        Assert.Single(Server.List("cgnatallowpolicies"));

        Server.Remove("nodes", "n1");
        Assert.Null(Server.Get("nodes", "n1"));
        await FailsWith(404, () => Client.CoreV1.ReadNodeAsync("n1", cancellationToken: Guard));
    }
}
