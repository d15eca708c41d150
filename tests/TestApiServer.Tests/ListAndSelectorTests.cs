using k8s;
using k8s.Models;

namespace TsCgnat.TestApiServer.Tests;

/// <summary>Lists: their resourceVersion, label and field selectors, paging.</summary>
public sealed class ListAndSelectorTests : ServerTest
{
    private async Task CreateNodesAsync()
    {
        await Client.CoreV1.CreateNodeAsync(Node("edge-1", ("tier", "edge"), ("zone", "a")), cancellationToken: Guard);
        await Client.CoreV1.CreateNodeAsync(Node("edge-2", ("tier", "edge"), ("zone", "b")), cancellationToken: Guard);
        await Client.CoreV1.CreateNodeAsync(Node("core-1", ("tier", "core")), cancellationToken: Guard);
        await Client.CoreV1.CreateNodeAsync(Node("bare"), cancellationToken: Guard);
    }

    [Fact]
    public async Task A_list_carries_the_current_resourceVersion_and_every_object()
    {
        await CreateNodesAsync();

        var list = await Client.CoreV1.ListNodeAsync(cancellationToken: Guard);

        Assert.Equal(Server.ResourceVersion.ToString(System.Globalization.CultureInfo.InvariantCulture), list.Metadata.ResourceVersion);
        Assert.Equal(["bare", "core-1", "edge-1", "edge-2"], list.Items.Select(n => n.Metadata.Name));
    }

    [Theory]
    [InlineData("tier=edge", "edge-1,edge-2")]
    [InlineData("tier==edge", "edge-1,edge-2")]
    [InlineData("tier!=edge", "bare,core-1")]
    [InlineData("tier in (edge,core)", "core-1,edge-1,edge-2")]
    [InlineData("tier notin (edge)", "bare,core-1")]
    [InlineData("tier", "core-1,edge-1,edge-2")]
    [InlineData("!tier", "bare")]
    [InlineData("tier=edge,zone=b", "edge-2")]
    [InlineData("tier in (edge), zone notin (a)", "edge-2")]
    [InlineData("", "bare,core-1,edge-1,edge-2")]
    public async Task Label_selectors_select_as_on_a_real_server(string selector, string expected)
    {
        await CreateNodesAsync();

        var list = await Client.CoreV1.ListNodeAsync(labelSelector: selector, cancellationToken: Guard);

        Assert.Equal(expected, string.Join(",", list.Items.Select(n => n.Metadata.Name)));
    }

    [Theory]
    [InlineData("tier=edge=x", "unable to parse requirement: \"tier=edge=x\": invalid label value: \"edge=x\"")]
    [InlineData("tier>1", "unable to parse requirement: \"tier>1\": found no operator this server understands (=, ==, !=, in, notin, exists, !key)")]
    [InlineData("tier in edge", "unable to parse requirement: \"tier in edge\": found no operator this server understands (=, ==, !=, in, notin, exists, !key)")]
    public async Task A_label_selector_that_does_not_parse_is_400_BadRequest(string selector, string message)
    {
        var status = await FailsWith(400, () => Client.CoreV1.ListNodeAsync(labelSelector: selector, cancellationToken: Guard));

        Assert.Equal("BadRequest", status.Reason);
        Assert.Equal(message, status.Message);
    }

    [Fact]
    public async Task Field_selectors_select_by_name_and_namespace()
    {
        await CreateNodesAsync();
        await Client.CoordinationV1.CreateNamespacedLeaseAsync(new V1Lease { Metadata = new V1ObjectMeta { Name = "l" } }, "a", cancellationToken: Guard);
        await Client.CoordinationV1.CreateNamespacedLeaseAsync(new V1Lease { Metadata = new V1ObjectMeta { Name = "l" } }, "b", cancellationToken: Guard);

        var byName = await Client.CoreV1.ListNodeAsync(fieldSelector: "metadata.name=edge-2", cancellationToken: Guard);
        var notName = await Client.CoreV1.ListNodeAsync(fieldSelector: "metadata.name!=edge-2", cancellationToken: Guard);
        var byNamespace = await Client.CoordinationV1.ListLeaseForAllNamespacesAsync(fieldSelector: "metadata.namespace=b", cancellationToken: Guard);

        Assert.Equal(["edge-2"], byName.Items.Select(n => n.Metadata.Name));
        Assert.Equal(3, notName.Items.Count);
        Assert.Equal(["b"], byNamespace.Items.Select(l => l.Metadata.NamespaceProperty));
    }

    [Fact]
    public async Task Events_are_selected_by_their_involved_object()
    {
        foreach (var (name, kind, target) in new[] { ("e1", "Node", "n1"), ("e2", "CgnatAllowPolicy", "p1"), ("e3", "Node", "n2") })
        {
            await Client.CoreV1.CreateNamespacedEventAsync(
                new Corev1Event { Metadata = new V1ObjectMeta { Name = name }, InvolvedObject = new V1ObjectReference { Kind = kind, Name = target } },
                "default", cancellationToken: Guard);
        }

        var nodes = await Client.CoreV1.ListNamespacedEventAsync("default", fieldSelector: "involvedObject.kind=Node", cancellationToken: Guard);
        var n2 = await Client.CoreV1.ListNamespacedEventAsync("default", fieldSelector: "involvedObject.kind=Node,involvedObject.name=n2", cancellationToken: Guard);

        Assert.Equal(["e1", "e3"], nodes.Items.Select(e => e.Metadata.Name));
        Assert.Equal(["e3"], n2.Items.Select(e => e.Metadata.Name));
    }

    [Fact]
    public async Task A_field_the_kind_does_not_support_is_400_BadRequest()
    {
        var status = await FailsWith(400, () => Client.CoreV1.ListNodeAsync(fieldSelector: "spec.podCIDR=10.0.0.0/24", cancellationToken: Guard));

        Assert.Equal("field label not supported: spec.podCIDR", status.Message);
    }

    [Fact]
    public async Task Custom_resources_are_listed_with_selectors_through_the_custom_objects_API()
    {
        var labelled = Policy("labelled");
        labelled["metadata"]!["labels"] = new System.Text.Json.Nodes.JsonObject { ["team"] = "net" };
        await CreateAsync(Policies, labelled);
        await CreateAsync(Policies, Policy("plain"));

        var all = await ListAsync(Policies);
        var byLabel = await ListAsync(Policies, labelSelector: "team=net");
        var byName = await ListAsync(Policies, fieldSelector: "metadata.name=plain");

        Assert.Equal("CgnatAllowPolicyList", (string?)all["kind"]);
        Assert.Equal(Server.ResourceVersion, long.Parse((string)all["metadata"]!["resourceVersion"]!, System.Globalization.CultureInfo.InvariantCulture));
        Assert.Equal(2, all["items"]!.AsArray().Count);
        Assert.Equal("labelled", Name(byLabel["items"]![0]!.AsObject()));
        Assert.Equal("plain", Name(Assert.Single(byName["items"]!.AsArray())!.AsObject()));
    }

    [Fact]
    public async Task Paged_lists_return_every_object_once_as_of_the_first_page()
    {
        for (var i = 0; i < 7; i++)
        {
            await Client.CoreV1.CreateNodeAsync(Node($"n{i}"), cancellationToken: Guard);
        }

        var first = await Client.CoreV1.ListNodeAsync(limit: 3, cancellationToken: Guard);
        // Changes between pages do not show: the pages are one snapshot, as on a real server.
        await Client.CoreV1.DeleteNodeAsync("n5", cancellationToken: Guard);
        await Client.CoreV1.CreateNodeAsync(Node("n9"), cancellationToken: Guard);
        var second = await Client.CoreV1.ListNodeAsync(limit: 3, continueParameter: first.Metadata.ContinueProperty, cancellationToken: Guard);
        var third = await Client.CoreV1.ListNodeAsync(limit: 3, continueParameter: second.Metadata.ContinueProperty, cancellationToken: Guard);

        Assert.Equal(4, first.Metadata.RemainingItemCount);
        Assert.Equal(
            ["n0", "n1", "n2", "n3", "n4", "n5", "n6"],
            first.Items.Concat(second.Items).Concat(third.Items).Select(n => n.Metadata.Name));
        Assert.Equal([first.Metadata.ResourceVersion, first.Metadata.ResourceVersion], [second.Metadata.ResourceVersion, third.Metadata.ResourceVersion]);
        Assert.Null(third.Metadata.ContinueProperty);
    }

    [Fact]
    public async Task A_continue_token_older_than_the_kept_history_is_410_Expired()
    {
        for (var i = 0; i < 3; i++)
        {
            await Client.CoreV1.CreateNodeAsync(Node($"n{i}"), cancellationToken: Guard);
        }

        var first = await Client.CoreV1.ListNodeAsync(limit: 1, cancellationToken: Guard);
        await Client.CoreV1.CreateNodeAsync(Node("n9"), cancellationToken: Guard);
        Server.CompactHistory();

        var status = await FailsWith(410, () => Client.CoreV1.ListNodeAsync(limit: 1, continueParameter: first.Metadata.ContinueProperty, cancellationToken: Guard));

        Assert.Equal("Expired", status.Reason);
    }

    [Fact]
    public async Task An_exact_list_at_an_older_resourceVersion_shows_the_state_of_then()
    {
        await Client.CoreV1.CreateNodeAsync(Node("n1", ("v", "1")), cancellationToken: Guard);
        var then = Server.ResourceVersion.ToString(System.Globalization.CultureInfo.InvariantCulture);
        var node = await Client.CoreV1.ReadNodeAsync("n1", cancellationToken: Guard);
        node.Metadata.Labels["v"] = "2";
        await Client.CoreV1.ReplaceNodeAsync(node, "n1", cancellationToken: Guard);
        await Client.CoreV1.CreateNodeAsync(Node("n2"), cancellationToken: Guard);

        var list = await Client.CoreV1.ListNodeAsync(resourceVersion: then, resourceVersionMatch: "Exact", cancellationToken: Guard);

        Assert.Equal(then, list.Metadata.ResourceVersion);
        Assert.Equal("1", Assert.Single(list.Items).Metadata.Labels["v"]);
    }

    [Fact]
    public async Task A_list_of_5000_node_states_returns_every_item()
    {
        var owner = await Client.CoreV1.CreateNodeAsync(Node("owner"), cancellationToken: Guard);
        for (var i = 0; i < 5000; i++)
        {
            Server.Put("cgnatnodestates", NodeState($"node-{i:D4}", owner));
        }

        var list = await ListAsync(NodeStates);

        var items = list["items"]!.AsArray();
        Assert.Equal(5000, items.Count);
        Assert.Equal("node-4999", Name(items[^1]!.AsObject()));
    }
}
