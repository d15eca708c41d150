using System.Text.Json.Nodes;
using k8s;
using k8s.Models;

namespace TsCgnat.TestApiServer.Tests;

/// <summary>Merge patch (RFC 7386), JSON patch (RFC 6902), strategic merge as merge, apply refused.</summary>
public sealed class PatchTests : ServerTest
{
    private Task<V1Node> PatchNode(string patch, string type) =>
        Client.CoreV1.PatchNodeAsync(new V1Patch(patch, Enum.Parse<V1Patch.PatchType>(type)), "n1", cancellationToken: Guard);

    [Fact]
    public async Task A_merge_patch_sets_and_with_null_removes_fields()
    {
        await Client.CoreV1.CreateNodeAsync(Node("n1", ("keep", "1"), ("drop", "2")), cancellationToken: Guard);

        var patched = await PatchNode("""{"metadata":{"labels":{"drop":null,"add":"3"}}}""", "MergePatch");

        Assert.Equal(new Dictionary<string, string> { ["keep"] = "1", ["add"] = "3" }, patched.Metadata.Labels);
    }

    [Fact]
    public async Task A_strategic_merge_patch_is_applied_as_a_merge_patch()
    {
        await Client.CoreV1.CreateNodeAsync(Node("n1", ("keep", "1")), cancellationToken: Guard);

        var patched = await PatchNode("""{"metadata":{"labels":{"add":"3"}}}""", "StrategicMergePatch");

        Assert.Equal(new Dictionary<string, string> { ["keep"] = "1", ["add"] = "3" }, patched.Metadata.Labels);
    }

    [Fact]
    public async Task A_json_patch_applies_add_replace_remove_and_test_in_order()
    {
        await Client.CoreV1.CreateNodeAsync(Node("n1", ("a", "1"), ("b", "2")), cancellationToken: Guard);

        var patched = await PatchNode(
            """
            [
              {"op":"test","path":"/metadata/labels/a","value":"1"},
              {"op":"replace","path":"/metadata/labels/a","value":"10"},
              {"op":"remove","path":"/metadata/labels/b"},
              {"op":"add","path":"/metadata/labels/c~1d","value":"3"},
              {"op":"add","path":"/metadata/finalizers","value":[]},
              {"op":"add","path":"/metadata/finalizers/-","value":"tscgnat.io/cleanup"}
            ]
            """,
            "JsonPatch");

        Assert.Equal(new Dictionary<string, string> { ["a"] = "10", ["c/d"] = "3" }, patched.Metadata.Labels);
        Assert.Equal(["tscgnat.io/cleanup"], patched.Metadata.Finalizers);
    }

    [Fact]
    public async Task A_json_patch_whose_test_fails_is_422_and_changes_nothing()
    {
        var node = await Client.CoreV1.CreateNodeAsync(Node("n1", ("a", "1")), cancellationToken: Guard);

        var status = await FailsWith(422, () => PatchNode(
            """[{"op":"replace","path":"/metadata/labels/a","value":"2"},{"op":"test","path":"/metadata/labels/a","value":"1"}]""", "JsonPatch"));

        Assert.Equal("Invalid", status.Reason);
        Assert.Equal("Node \"n1\" is invalid: patch: testing value /metadata/labels/a failed", status.Message);
        Assert.Equal(node.Metadata.ResourceVersion, (await Client.CoreV1.ReadNodeAsync("n1", cancellationToken: Guard)).Metadata.ResourceVersion);
    }

    [Fact]
    public async Task A_json_patch_on_a_missing_path_is_422()
    {
        await Client.CoreV1.CreateNodeAsync(Node("n1"), cancellationToken: Guard);

        var status = await FailsWith(422, () => PatchNode("""[{"op":"remove","path":"/metadata/labels/none"}]""", "JsonPatch"));

        Assert.Equal("Node \"n1\" is invalid: patch: path /metadata/labels/none does not exist", status.Message);
    }

    [Fact]
    public async Task An_apply_patch_is_415_UnsupportedMediaType()
    {
        await Client.CoreV1.CreateNodeAsync(Node("n1"), cancellationToken: Guard);

        var status = await FailsWith(415, () => Client.CoreV1.PatchNodeAsync(
            new V1Patch("""{"apiVersion":"v1","kind":"Node","metadata":{"name":"n1"}}""", V1Patch.PatchType.ApplyPatch), "n1", fieldManager: "test", cancellationToken: Guard));

        Assert.Equal("UnsupportedMediaType", status.Reason);
    }

    [Fact]
    public async Task A_patch_that_names_a_stale_resourceVersion_is_409_Conflict()
    {
        var node = await Client.CoreV1.CreateNodeAsync(Node("n1"), cancellationToken: Guard);
        await PatchNode("""{"metadata":{"labels":{"a":"1"}}}""", "MergePatch");

        var status = await FailsWith(409, () => PatchNode(
            new JsonObject { ["metadata"] = new JsonObject { ["resourceVersion"] = node.Metadata.ResourceVersion, ["labels"] = new JsonObject { ["a"] = "2" } } }.ToJsonString(),
            "MergePatch"));

        Assert.Equal("Conflict", status.Reason);
    }

    [Fact]
    public async Task A_patch_of_a_missing_object_is_404_NotFound()
    {
        var status = await FailsWith(404, () => MergePatchAsync(Policies, "ghost", new JsonObject { ["spec"] = new JsonObject() }));

        Assert.Equal("cgnatallowpolicies.tscgnat.io \"ghost\" not found", status.Message);
    }
}
