using System.Text.Json.Nodes;
using k8s;
using k8s.Models;

namespace TsCgnat.TestApiServer.Tests;

/// <summary>The status subresource keeps spec and status writers apart; generation follows spec only.</summary>
public sealed class StatusAndGenerationTests : ServerTest
{
    private static JsonObject WithStatus(JsonObject obj, string observed)
    {
        var copy = obj.DeepClone().AsObject();
        copy["status"] = new JsonObject { ["observedGeneration"] = 1, ["note"] = observed };
        return copy;
    }

    [Fact]
    public async Task Generation_is_1_on_create_and_bumps_only_when_spec_changes()
    {
        var created = await CreateAsync(Policies, Policy("p1"));

        var labelled = created.DeepClone().AsObject();
        labelled["metadata"]!["labels"] = new JsonObject { ["a"] = "b" };
        var afterLabels = await ReplaceAsync(Policies, labelled);
        var afterStatus = await ReplaceStatusAsync(Policies, WithStatus(afterLabels, "seen"));
        var afterStatusPatch = await MergePatchStatusAsync(Policies, "p1", new JsonObject { ["status"] = new JsonObject { ["note"] = "patched" } });
        var afterSpec = await MergePatchAsync(Policies, "p1", new JsonObject { ["spec"] = new JsonObject { ["allowBroadRanges"] = true } });
        var afterSameSpec = await MergePatchAsync(Policies, "p1", new JsonObject { ["spec"] = new JsonObject { ["allowBroadRanges"] = true } });

        Assert.Equal(
            [1, 1, 1, 1, 2, 2],
            new[] { created, afterLabels, afterStatus, afterStatusPatch, afterSpec, afterSameSpec }.Select(Generation));
        Assert.True(Rv(afterStatusPatch) > Rv(afterStatus));
    }

    [Fact]
    public async Task Status_written_on_create_is_dropped_for_custom_resources_and_kept_for_nodes()
    {
        var policy = await CreateAsync(Policies, WithStatus(Policy("p1"), "from create"));
        var node = Node("n1");
        node.Status = new V1NodeStatus { Phase = "Running" };
        var createdNode = await Client.CoreV1.CreateNodeAsync(node, cancellationToken: Guard);

        Assert.Null(policy["status"]);
        Assert.Equal("Running", createdNode.Status.Phase);
    }

    [Fact]
    public async Task A_status_write_changes_only_status()
    {
        var created = await CreateAsync(Policies, Policy("p1"));
        var body = WithStatus(created, "written");
        body["spec"] = new JsonObject { ["allowBroadRanges"] = true };
        body["metadata"]!["labels"] = new JsonObject { ["sneaked"] = "in" };

        var written = await ReplaceStatusAsync(Policies, body);

        Assert.Equal("written", (string?)written["status"]!["note"]);
        Assert.True(JsonNode.DeepEquals(created["spec"], written["spec"]));
        Assert.Null(written["metadata"]!["labels"]);
        Assert.Equal(1, Generation(written));
    }

    [Fact]
    public async Task A_spec_write_leaves_status_as_stored()
    {
        var created = await CreateAsync(Policies, Policy("p1"));
        var withStatus = await ReplaceStatusAsync(Policies, WithStatus(created, "by the operator"));
        var body = WithStatus(withStatus, "overwritten by a user");
        body["spec"]!["allowBroadRanges"] = true;

        var written = await ReplaceAsync(Policies, body);
        var patched = await MergePatchAsync(Policies, "p1", new JsonObject { ["status"] = new JsonObject { ["note"] = "patched by a user" } });

        Assert.Equal("by the operator", (string?)written["status"]!["note"]);
        Assert.Equal(true, (bool?)written["spec"]!["allowBroadRanges"]);
        Assert.Equal("by the operator", (string?)patched["status"]!["note"]);
        Assert.Equal(Rv(written), Rv(patched));
    }

    [Fact]
    public async Task A_status_write_with_a_stale_resourceVersion_is_409_Conflict()
    {
        var created = await CreateAsync(Policies, Policy("p1"));
        await ReplaceStatusAsync(Policies, WithStatus(created, "first"));

        var status = await FailsWith(409, () => ReplaceStatusAsync(Policies, WithStatus(created, "second")));

        Assert.Equal("Conflict", status.Reason);
        Assert.Equal("Operation cannot be fulfilled on cgnatallowpolicies.tscgnat.io \"p1\": the object has been modified; please apply your changes to the latest version and try again", status.Message);
    }

    [Fact]
    public async Task A_status_write_that_changes_nothing_writes_nothing()
    {
        var created = await CreateAsync(Policies, Policy("p1"));
        var first = await ReplaceStatusAsync(Policies, WithStatus(created, "same"));

        var second = await ReplaceStatusAsync(Policies, WithStatus(first, "same"));

        Assert.Equal(Rv(first), Rv(second));
        Assert.Equal(Rv(first), Server.ResourceVersion);
    }

    [Fact]
    public async Task Node_status_is_written_through_the_status_subresource_only()
    {
        var node = await Client.CoreV1.CreateNodeAsync(Node("n1"), cancellationToken: Guard);
        node.Status = new V1NodeStatus { Phase = "Ignored" };
        var replaced = await Client.CoreV1.ReplaceNodeAsync(node, "n1", cancellationToken: Guard);
        var phaseAfterReplace = replaced.Status?.Phase;
        replaced.Status = new V1NodeStatus { Phase = "Running" };
        var status = await Client.CoreV1.ReplaceNodeStatusAsync(replaced, "n1", cancellationToken: Guard);

        Assert.Null(phaseAfterReplace);
        Assert.Equal("Running", status.Status.Phase);
    }
}
