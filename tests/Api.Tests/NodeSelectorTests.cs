using static TsCgnat.Api.Tests.PolicyText;

namespace TsCgnat.Api.Tests;

/// <summary>spec.nodeSelector is a metav1.LabelSelector and is checked the way the API server checks one.</summary>
public class NodeSelectorTests
{
    private static string WithExpression(params string[] lines) =>
        WithSpec(["nodeSelector:", "  matchExpressions:", .. lines.Select(l => "    " + l)]);

    [Fact]
    public void Unknown_operator_is_refused_listing_the_valid_ones()
    {
        var problem = SingleProblem(WithExpression(
            "- key: topology.kubernetes.io/zone", // line 8
            "  operator: Foo"));                 // line 9

        AssertAt(problem, document: 1, line: 9, "spec.nodeSelector.matchExpressions[0].operator");
        AssertSays(problem, "\"Foo\"", "is not one of In, NotIn, Exists, DoesNotExist");
    }

    [Fact]
    public void Missing_operator_is_refused()
    {
        var problem = SingleProblem(WithExpression("- key: topology.kubernetes.io/zone"));

        AssertAt(problem, document: 1, line: 8, "spec.nodeSelector.matchExpressions[0].operator");
        AssertSays(problem, "is not one of In, NotIn, Exists, DoesNotExist");
    }

    [Theory]
    [InlineData("In")]
    [InlineData("NotIn")]
    public void Set_operator_without_values_is_refused(string op)
    {
        var problem = SingleProblem(WithExpression("- key: topology.kubernetes.io/zone", $"  operator: {op}"));

        AssertAt(problem, document: 1, line: 8, "spec.nodeSelector.matchExpressions[0].values");
        AssertSays(problem, "must be non-empty", $"operator is {op}");
    }

    [Theory]
    [InlineData("Exists")]
    [InlineData("DoesNotExist")]
    public void Existence_operator_with_values_is_refused(string op)
    {
        var problem = SingleProblem(WithExpression(
            "- key: topology.kubernetes.io/zone", // line 8
            $"  operator: {op}",                  // line 9
            "  values: [a]"));                    // line 10

        AssertAt(problem, document: 1, line: 10, "spec.nodeSelector.matchExpressions[0].values");
        AssertSays(problem, "must be empty", $"operator is {op}");
    }

    [Fact]
    public void Invalid_label_key_in_an_expression_is_refused()
    {
        var problem = SingleProblem(WithExpression("- key: 'bad key'", "  operator: Exists"));

        AssertAt(problem, document: 1, line: 8, "spec.nodeSelector.matchExpressions[0].key");
        AssertSays(problem, "\"bad key\"", "is not a valid label key");
    }

    [Theory]
    [InlineData("'bad key!'", "\"bad key!\"")]
    [InlineData("'-region'", "\"-region\"")]
    [InlineData("'Example.com/region'", "\"Example.com/region\"")] // the prefix is a DNS subdomain: lower case
    [InlineData("'example.com/'", "\"example.com/\"")]
    public void Invalid_label_key_in_matchLabels_is_refused(string yamlKey, string quotedInMessage)
    {
        var problem = SingleProblem(WithSpec(
            "nodeSelector:",            // line 6
            "  matchLabels:",           // line 7
            $"    {yamlKey}: x"));      // line 8

        AssertAt(problem, document: 1, line: 8, "spec.nodeSelector.matchLabels");
        AssertSays(problem, quotedInMessage, "is not a valid label key");
    }

    [Fact]
    public void Invalid_label_value_is_refused_at_its_key()
    {
        var problem = SingleProblem(WithSpec("nodeSelector:", "  matchLabels:", "    region: 'cn hangzhou'"));

        AssertAt(problem, document: 1, line: 8, "spec.nodeSelector.matchLabels[region]");
        AssertSays(problem, "\"cn hangzhou\"", "is not a valid label value");
    }

    [Fact]
    public void Label_value_that_YAML_reads_as_a_boolean_is_the_wrong_type()
    {
        var problem = SingleProblem(WithSpec("nodeSelector:", "  matchLabels:", "    gpu: true"));

        AssertAt(problem, document: 1, line: 8, "spec.nodeSelector.matchLabels.gpu");
        AssertSays(problem, "has the wrong type", "expected a string");
    }

    [Fact]
    public void Label_key_ending_in_a_newline_is_refused()
    {
        var problem = SingleProblem(WithSpec("nodeSelector:", "  matchLabels:", "    \"region\\n\": x"));

        AssertAt(problem, document: 1, line: 8, "spec.nodeSelector.matchLabels");
        AssertSays(problem, "is not a valid label key");
    }

    [Fact]
    public void Valid_selector_with_labels_and_expressions_is_kept_in_the_validated_policy()
    {
        var policy = SinglePolicy(WithSpec(
            "nodeSelector:",
            "  matchLabels: { kubernetes.io/os: linux, tier: edge }",
            "  matchExpressions:",
            "    - { key: topology.kubernetes.io/zone, operator: In, values: [a, b] }",
            "    - { key: node-role.kubernetes.io/control-plane, operator: DoesNotExist }"));

        var selector = policy.Valid.NodeSelector;
        Assert.NotNull(selector);
        Assert.Equal("linux", selector.MatchLabels["kubernetes.io/os"]);
        Assert.Equal("edge", selector.MatchLabels["tier"]);
        Assert.Collection(
            selector.MatchExpressions,
            e =>
            {
                Assert.Equal("topology.kubernetes.io/zone", e.Key);
                Assert.Equal("In", e.OperatorProperty);
                Assert.Equal(["a", "b"], e.Values);
            },
            e => Assert.Equal("DoesNotExist", e.OperatorProperty));
    }

    [Fact]
    public void Absent_selector_selects_every_node()
    {
        var policy = SinglePolicy(WithAllowedSource("100.100.0.0/16"));

        Assert.Null(policy.Valid.NodeSelector);
    }
}
