using k8s.Models;
using TsCgnat.Api;
using TsCgnat.NodeAgent.Cluster;

namespace TsCgnat.NodeAgent.Tests;

/// <summary>Which policies a node applies in cluster mode: selected by labels, valid, not being deleted.</summary>
public sealed class ClusterSelectionTests
{
    private static readonly Dictionary<string, string> Hangzhou = new() { ["topology.kubernetes.io/region"] = "cn-hangzhou", ["role"] = "router" };

    [Fact]
    public void A_policy_whose_matchLabels_match_the_node_is_applied()
    {
        var selection = PolicySelection.Select([Policy("aliyun", "100.100.0.0/16", MatchLabels("topology.kubernetes.io/region", "cn-hangzhou"))], Hangzhou);

        var only = Assert.Single(selection.Policies);
        Assert.True(only.Selected);
        Assert.True(only.Applies);
        Assert.Equal("aliyun", Assert.Single(selection.ToApply()).Name);
    }

    [Fact]
    public void A_policy_whose_matchLabels_differ_is_neither_applied_nor_validated()
    {
        var validated = 0;
        var selection = PolicySelection.Select(
            [Policy("beijing", "100.100.0.0/16", MatchLabels("topology.kubernetes.io/region", "cn-beijing"))], Hangzhou,
            p => { validated++; return PolicySelection.Validate(p); });

        var only = Assert.Single(selection.Policies);
        Assert.False(only.Selected);
        Assert.False(only.Applies);
        Assert.Empty(selection.ToApply());
        Assert.Equal(0, validated);
    }

    [Theory]
    [InlineData("In", "router,gateway", true)]
    [InlineData("In", "gateway", false)]
    [InlineData("NotIn", "gateway", true)]
    [InlineData("NotIn", "router", false)]
    [InlineData("Exists", "", true)]
    [InlineData("DoesNotExist", "", false)]
    public void MatchExpressions_on_the_role_label(string op, string values, bool applied)
    {
        var selector = new V1LabelSelector
        {
            MatchExpressions = [new V1LabelSelectorRequirement { Key = "role", OperatorProperty = op, Values = values.Length == 0 ? null : values.Split(',') }],
        };

        var selection = PolicySelection.Select([Policy("p", "100.100.0.0/16", selector)], Hangzhou);

        Assert.Equal(applied, Assert.Single(selection.Policies).Applies);
    }

    [Fact]
    public void An_empty_selector_selects_every_node_even_one_without_labels()
    {
        var selection = PolicySelection.Select([Policy("everywhere", "100.100.0.0/16", new V1LabelSelector()), Policy("absent", "100.64.0.0/24", null)], null);

        Assert.Equal(["absent", "everywhere"], selection.ToApply().Select(p => p.Name));
    }

    [Fact]
    public void An_invalid_policy_that_selects_the_node_is_not_applied_and_says_the_validators_message()
    {
        var selection = PolicySelection.Select([Policy("bad", "10.0.0.0/8", null)], Hangzhou);

        var only = Assert.Single(selection.Policies);
        Assert.True(only.Selected);
        Assert.False(only.Applies);
        Assert.Empty(selection.ToApply());
        Assert.StartsWith("invalid policy, not applied: spec.allowedSources[0].cidr: \"10.0.0.0/8\"", only.Problem, StringComparison.Ordinal);
        Assert.Contains("outside 100.64.0.0/10", only.Problem, StringComparison.Ordinal);
    }

    [Fact]
    public void A_policy_being_deleted_is_not_applied_even_when_it_selects_the_node()
    {
        var deleting = Policy("going", "100.100.0.0/16", null);
        deleting.Metadata.DeletionTimestamp = new DateTime(2025, 1, 1, 0, 0, 0, DateTimeKind.Utc);

        var selection = PolicySelection.Select([deleting, Policy("staying", "100.64.0.0/24", null)], Hangzhou);

        Assert.Equal(["staying"], selection.ToApply().Select(p => p.Name));
        var going = selection.Policies.Single(p => p.Name == "going");
        Assert.True(going.Deleting);
        Assert.True(going.Selected);
        Assert.Null(going.Problem);
    }

    [Fact]
    public void Policies_come_out_in_name_order_whatever_order_the_cache_lists_them_in()
    {
        var selection = PolicySelection.Select([Policy("b", "100.64.1.0/24", null), Policy("c", "100.64.2.0/24", null), Policy("a", "100.64.0.0/24", null)], null);

        Assert.Equal(["a", "b", "c"], selection.Policies.Select(p => p.Name));
    }

    internal static CgnatAllowPolicy Policy(string name, string cidr, V1LabelSelector? selector, long generation = 1) => new()
    {
        Metadata = new V1ObjectMeta { Name = name, Uid = "uid-" + name, Generation = generation, ResourceVersion = "1" },
        Spec = new CgnatAllowPolicySpec
        {
            NodeSelector = selector,
            AllowedSources = [new AllowedSource { Cidr = cidr }],
        },
    };

    private static V1LabelSelector MatchLabels(string key, string value) => new() { MatchLabels = new Dictionary<string, string> { [key] = value } };
}
