using k8s.Models;
using TsCgnat.Api;

namespace TsCgnat.Operator.Tests;

/// <summary>LabelSelection.Matches (src/Api) evaluates a LabelSelector as the API server does.</summary>
public class LabelSelectionTests
{
    private static readonly Dictionary<string, string> Hangzhou = new() { ["region"] = "cn-hangzhou", ["tier"] = "edge" };

    private static V1LabelSelector Expression(string key, string op, params string[] values) =>
        new() { MatchExpressions = [new V1LabelSelectorRequirement { Key = key, OperatorProperty = op, Values = values.Length == 0 ? null : values }] };

    [Fact]
    public void No_selector_selects_every_node() => Assert.True(LabelSelection.Matches(null, Hangzhou));

    [Fact]
    public void An_empty_selector_selects_every_node() => Assert.True(LabelSelection.Matches(new V1LabelSelector(), null));

    [Theory]
    [InlineData("cn-hangzhou", true)]
    [InlineData("cn-shanghai", false)]
    public void MatchLabels_needs_an_equal_value(string region, bool selected) =>
        Assert.Equal(selected, LabelSelection.Matches(new V1LabelSelector { MatchLabels = new Dictionary<string, string> { ["region"] = region } }, Hangzhou));

    [Fact]
    public void MatchLabels_needs_every_pair() =>
        Assert.False(LabelSelection.Matches(new V1LabelSelector { MatchLabels = new Dictionary<string, string> { ["region"] = "cn-hangzhou", ["gpu"] = "yes" } }, Hangzhou));

    [Theory]
    [InlineData("In", "region", new[] { "cn-shanghai", "cn-hangzhou" }, true)]
    [InlineData("In", "region", new[] { "cn-shanghai" }, false)]
    [InlineData("In", "zone", new[] { "a" }, false)]
    [InlineData("NotIn", "region", new[] { "cn-shanghai" }, true)]
    [InlineData("NotIn", "region", new[] { "cn-hangzhou" }, false)]
    [InlineData("NotIn", "zone", new[] { "a" }, true)]
    [InlineData("Exists", "tier", new string[0], true)]
    [InlineData("Exists", "zone", new string[0], false)]
    [InlineData("DoesNotExist", "zone", new string[0], true)]
    [InlineData("DoesNotExist", "tier", new string[0], false)]
    public void MatchExpressions_follow_the_operator(string op, string key, string[] values, bool selected) =>
        Assert.Equal(selected, LabelSelection.Matches(Expression(key, op, values), Hangzhou));

    [Fact]
    public void An_unknown_operator_selects_nothing() =>
        Assert.False(LabelSelection.Matches(Expression("region", "Foo", "cn-hangzhou"), Hangzhou));

    [Fact]
    public void MatchLabels_and_matchExpressions_must_both_hold()
    {
        var selector = Expression("tier", "In", "core");
        selector.MatchLabels = new Dictionary<string, string> { ["region"] = "cn-hangzhou" };

        Assert.False(LabelSelection.Matches(selector, Hangzhou));
    }
}
