using static TsCgnat.Api.Tests.PolicyText;

namespace TsCgnat.Api.Tests;

/// <summary>
/// The object around the lists: apiVersion, kind, metadata, spec. Unknown fields and wrong types are
/// refused as a structural schema with strict field validation would, so a typo never silently
/// drops an exemption.
/// </summary>
public class PolicyObjectTests
{
    [Fact]
    public void Wrong_apiVersion_is_refused()
    {
        var problem = SingleProblem(EmptySpec().Replace("tscgnat.io/v1alpha1", "tscgnat.io/v1", StringComparison.Ordinal));

        AssertAt(problem, document: 1, line: 1, "apiVersion");
        AssertSays(problem, "\"tscgnat.io/v1\" is not tscgnat.io/v1alpha1");
    }

    [Fact]
    public void Wrong_kind_is_refused()
    {
        var problem = SingleProblem(EmptySpec().Replace("kind: CgnatAllowPolicy", "kind: CgnatNodeState", StringComparison.Ordinal));

        AssertAt(problem, document: 1, line: 2, "kind");
        AssertSays(problem, "\"CgnatNodeState\" is not CgnatAllowPolicy");
    }

    [Fact]
    public void Missing_metadata_name_is_refused()
    {
        var problem = SingleProblem("apiVersion: tscgnat.io/v1alpha1\nkind: CgnatAllowPolicy\nmetadata: {}\nspec: {}\n");

        AssertAt(problem, document: 1, line: 3, "metadata.name");
        AssertSays(problem, "is required");
    }

    [Fact]
    public void Missing_metadata_is_refused()
    {
        var problem = SingleProblem("apiVersion: tscgnat.io/v1alpha1\nkind: CgnatAllowPolicy\nspec: {}\n");

        AssertAt(problem, document: 1, line: 1, "metadata");
        AssertSays(problem, "is required");
    }

    [Theory]
    [InlineData("kind: CgnatAllowPolicy\nmetadata:\n  name: lab\nspec: {}\n", "apiVersion")]
    [InlineData("apiVersion: tscgnat.io/v1alpha1\nmetadata:\n  name: lab\nspec: {}\n", "kind")]
    public void Missing_apiVersion_or_kind_is_refused_not_defaulted(string yaml, string field)
    {
        var problem = SingleProblem(yaml);

        AssertAt(problem, document: 1, line: 1, field);
        AssertSays(problem, "is required");
    }

    [Theory]
    [InlineData("Lab")]
    [InlineData("lab_1")]
    [InlineData("-lab")]
    [InlineData("lab.")]
    [InlineData("'lab one'")]
    public void Invalid_metadata_name_is_refused(string yamlName)
    {
        var problem = SingleProblem(EmptySpec(yamlName));

        AssertAt(problem, document: 1, line: 4, "metadata.name");
        AssertSays(problem, $"\"{yamlName.Trim('\'')}\" is not a valid name", "lowercase letters, digits, '-' and '.'");
    }

    [Fact]
    public void Metadata_name_longer_than_253_characters_is_refused()
    {
        var name = new string('a', 254);

        var problem = SingleProblem(EmptySpec(name));

        AssertAt(problem, document: 1, line: 4, "metadata.name");
        AssertSays(problem, "is not a valid name", "at most 253 characters");
    }

    [Fact]
    public void Metadata_name_ending_in_a_newline_is_refused()
    {
        var problem = SingleProblem(EmptySpec("\"lab\\n\""));

        AssertAt(problem, document: 1, line: 4, "metadata.name");
        AssertSays(problem, "is not a valid name");
    }

    [Fact]
    public void Dotted_metadata_name_is_accepted()
    {
        var policy = SinglePolicy(EmptySpec("aliyun-internal.cn-hangzhou"));

        Assert.Equal("aliyun-internal.cn-hangzhou", policy.Valid.Name);
    }

    [Fact]
    public void Metadata_namespace_is_refused_because_the_kind_is_cluster_scoped()
    {
        var problem = SingleProblem(Header() + "  namespace: default\nspec: {}\n");

        AssertAt(problem, document: 1, line: 5, "metadata.namespace");
        AssertSays(problem, "\"default\"", "cluster-scoped", "remove metadata.namespace");
    }

    [Fact]
    public void Metadata_generation_becomes_the_validated_generation()
    {
        var policy = SinglePolicy(Header() + "  generation: 7\nspec: {}\n");

        Assert.Equal(7, policy.Valid.Generation);
    }

    [Fact]
    public void Null_spec_is_refused()
    {
        var problem = SingleProblem(Header() + "spec:\n");

        AssertAt(problem, document: 1, line: 5, "spec");
        AssertSays(problem, "is required");
    }

    /// <summary>
    /// A file cut off after its metadata must not turn into a policy with no exemptions; the validator
    /// already says "spec is required" for "spec:" with no value, and an absent spec is the same input.
    /// </summary>
    [Fact]
    public void Missing_spec_is_refused()
    {
        var problem = SingleProblem(Header());

        Assert.Equal(1, problem.Document);
        Assert.Equal("spec", problem.Path);
        AssertSays(problem, "is required");
    }

    [Fact]
    public void Empty_spec_is_a_policy_with_no_exemptions()
    {
        var policy = SinglePolicy(EmptySpec());

        Assert.Empty(policy.Valid.AllowedSources);
        Assert.Empty(policy.Valid.RoutedSubnets);
    }

    [Fact]
    public void Unknown_top_level_field_is_refused_and_named()
    {
        var problem = SingleProblem(Header() + "specs: {}\nspec: {}\n");

        AssertAt(problem, document: 1, line: 5, "specs");
        AssertSays(problem, "unknown field \"specs\"", "CgnatAllowPolicy schema");
    }

    [Fact]
    public void Unknown_spec_field_is_refused_and_named()
    {
        var problem = SingleProblem(WithSpec(
            "allowedSource:",              // line 6
            "  - cidr: 100.64.0.0/24"));   // line 7

        AssertAt(problem, document: 1, line: 7, "spec.allowedSource"); // the line of its value, the list
        AssertSays(problem, "unknown field \"allowedSource\"");
    }

    [Fact]
    public void Unknown_spec_field_with_a_value_on_the_same_line_is_reported_on_that_line()
    {
        var problem = SingleProblem(WithSpec("allowBroadRange: true"));

        AssertAt(problem, document: 1, line: 6, "spec.allowBroadRange");
        AssertSays(problem, "unknown field \"allowBroadRange\"");
    }

    [Fact]
    public void Unknown_field_in_an_allowed_source_is_refused_and_named()
    {
        var problem = SingleProblem(WithSpec("allowedSources:", "  - cidr: 100.64.0.0/24", "    interface: [eth0]"));

        AssertAt(problem, document: 1, line: 8, "spec.allowedSources[0].interface");
        AssertSays(problem, "unknown field \"interface\"");
    }

    [Fact]
    public void Unknown_field_in_a_routed_subnet_is_refused_and_named()
    {
        var problem = SingleProblem(WithSpec("routedSubnets:", "  - cidr: 100.64.0.0/24", "    interfaces: [eth0]"));

        AssertAt(problem, document: 1, line: 8, "spec.routedSubnets[0].interfaces");
        AssertSays(problem, "unknown field \"interfaces\"");
    }

    [Fact]
    public void Unknown_metadata_field_is_refused_and_named()
    {
        var problem = SingleProblem(Header() + "  nmae: other\nspec: {}\n");

        AssertAt(problem, document: 1, line: 5, "metadata.nmae");
        AssertSays(problem, "unknown field \"nmae\"");
    }

    [Fact]
    public void Allowed_sources_as_a_string_is_the_wrong_type()
    {
        var problem = SingleProblem(WithSpec("allowedSources: \"x\""));

        AssertAt(problem, document: 1, line: 6, "spec.allowedSources");
        AssertSays(problem, "has the wrong type", "expected a list");
    }

    [Theory]
    [InlineData("\"yes\"")]
    [InlineData("yes")] // YAML 1.2: a plain "yes" is a string, not a boolean
    [InlineData("\"true\"")] // quoted, so a string
    [InlineData("1")]
    public void Allow_broad_ranges_that_is_not_a_boolean_is_the_wrong_type(string yamlValue)
    {
        var problem = SingleProblem(WithSpec($"allowBroadRanges: {yamlValue}"));

        AssertAt(problem, document: 1, line: 6, "spec.allowBroadRanges");
        AssertSays(problem, "has the wrong type", "expected true or false");
    }

    [Fact]
    public void Spec_as_a_list_is_the_wrong_type()
    {
        var problem = SingleProblem(Header() + "spec: []\n");

        AssertAt(problem, document: 1, line: 5, "spec");
        AssertSays(problem, "has the wrong type", "expected an object");
    }

    [Fact]
    public void Cidr_as_a_number_is_the_wrong_type()
    {
        var problem = SingleProblem(WithAllowedSource("5"));

        AssertAt(problem, document: 1, line: 7, "spec.allowedSources[0].cidr");
        AssertSays(problem, "has the wrong type", "expected a string");
    }

    [Fact]
    public void Description_longer_than_256_characters_is_refused()
    {
        var problem = SingleProblem(WithSpec("allowedSources:", "  - cidr: 100.64.0.0/24", "    description: " + new string('x', 257)));

        AssertAt(problem, document: 1, line: 8, "spec.allowedSources[0].description");
        AssertSays(problem, "has 257 characters", "at most 256");
    }

    [Fact]
    public void Every_problem_in_a_document_is_reported_not_only_the_first()
    {
        var (policies, problems) = Parse(
            "apiVersion: tscgnat.io/v1\n"        // line 1
            + "kind: CgnatAllowPolicy\n"         // line 2
            + "metadata:\n"                      // line 3
            + "  name: Lab\n"                    // line 4
            + "spec:\n"                          // line 5
            + "  allowedSources:\n"              // line 6
            + "    - cidr: 10.0.0.0/8\n"         // line 7
            + "  routedSubnets:\n"               // line 8
            + "    - cidr: 100.64.0.1/24\n");    // line 9

        Assert.Empty(policies);
        Assert.Collection(
            problems,
            p => AssertAt(p, document: 1, line: 1, "apiVersion"),
            p => AssertAt(p, document: 1, line: 4, "metadata.name"),
            p => AssertAt(p, document: 1, line: 7, "spec.allowedSources[0].cidr"),
            p => AssertAt(p, document: 1, line: 9, "spec.routedSubnets[0].cidr"));
    }
}
