using System.Net;
using static TsCgnat.Api.Tests.PolicyText;

namespace TsCgnat.Api.Tests;

/// <summary>
/// PolicyDocuments.Parse reads what a user would kubectl apply: one or more YAML documents, each a
/// CgnatAllowPolicy, and reports each problem with the file, document number and line.
/// </summary>
public class PolicyDocumentsTests
{
    /// <summary>The sample of design section 3, comments and all.</summary>
    private const string DesignSample = """
        apiVersion: tscgnat.io/v1alpha1
        kind: CgnatAllowPolicy
        metadata: { name: aliyun-internal }
        spec:
          nodeSelector: { matchLabels: { topology.kubernetes.io/region: cn-hangzhou } }  # LabelSelector; empty = every node with an agent
          allowedSources:                 # traffic TO this node FROM these sources (input path)
            - cidr: 100.100.0.0/16
              interfaces: [eth0]          # optional: only packets that arrive on these interfaces
              description: Alibaba Cloud DNS, mirrors, metadata
          routedSubnets:                  # subnets this node routes INTO the tailnet (forward path)
            - cidr: 100.64.0.0/24
              description: lab LAN behind this subnet router

        """;

    [Fact]
    public void Design_sample_policy_parses_into_its_prefixes_interfaces_and_selector()
    {
        var document = SinglePolicy(DesignSample);

        Assert.Equal(Source, document.Source);
        Assert.Equal(1, document.Document);
        var valid = document.Valid;
        Assert.Equal("aliyun-internal", valid.Name);
        Assert.Equal(0, valid.Generation);
        Assert.NotNull(valid.NodeSelector);
        Assert.Equal("cn-hangzhou", Assert.Single(valid.NodeSelector.MatchLabels, l => l.Key == "topology.kubernetes.io/region").Value);
        var source = Assert.Single(valid.AllowedSources);
        Assert.Equal(IPNetwork.Parse("100.100.0.0/16"), source.Cidr);
        Assert.Equal(["eth0"], source.Interfaces);
        Assert.Equal(IPNetwork.Parse("100.64.0.0/24"), Assert.Single(valid.RoutedSubnets));
    }

    [Fact]
    public void Design_sample_policy_keeps_its_descriptions_in_the_parsed_object()
    {
        var spec = SinglePolicy(DesignSample).Policy.Spec;

        Assert.Equal("Alibaba Cloud DNS, mirrors, metadata", Assert.Single(spec.AllowedSources!).Description);
        Assert.Equal("lab LAN behind this subnet router", Assert.Single(spec.RoutedSubnets!).Description);
    }

    [Fact]
    public void Parsed_policy_serialises_back_to_JSON_that_parses_to_the_same_policy()
    {
        var first = SinglePolicy(DesignSample);

        var again = SinglePolicy(PolicyDocuments.ToJson(first.Policy)); // JSON is YAML

        Assert.Equal(first.Valid.Name, again.Valid.Name);
        Assert.Equal(first.Valid.AllowedSources.Select(s => s.Cidr), again.Valid.AllowedSources.Select(s => s.Cidr));
        Assert.Equal(first.Valid.AllowedSources.SelectMany(s => s.Interfaces), again.Valid.AllowedSources.SelectMany(s => s.Interfaces));
        Assert.Equal(first.Valid.RoutedSubnets, again.Valid.RoutedSubnets);
    }

    [Fact]
    public void Two_policies_and_a_trailing_separator_give_two_policies_numbered_1_and_2()
    {
        var text = Named("first", "allowedSources:", "  - cidr: 100.100.0.0/16")
            + "---\n"
            + Named("second", "routedSubnets:", "  - cidr: 100.64.0.0/24")
            + "---\n";

        var (policies, problems) = Parse(text);

        Assert.Empty(problems);
        Assert.Collection(
            policies,
            p =>
            {
                Assert.Equal(1, p.Document);
                Assert.Equal("first", p.Valid.Name);
                Assert.Equal(IPNetwork.Parse("100.100.0.0/16"), Assert.Single(p.Valid.AllowedSources).Cidr);
            },
            p =>
            {
                Assert.Equal(2, p.Document);
                Assert.Equal("second", p.Valid.Name);
                Assert.Equal(IPNetwork.Parse("100.64.0.0/24"), Assert.Single(p.Valid.RoutedSubnets));
            });
    }

    [Fact]
    public void Leading_separator_does_not_shift_the_document_number()
    {
        var policy = SinglePolicy("---\n" + WithAllowedSource("100.100.0.0/16"));

        Assert.Equal(1, policy.Document);
    }

    [Fact]
    public void Error_in_document_2_is_reported_as_document_2_while_document_1_still_parses()
    {
        var text = Named("first", "allowedSources:", "  - cidr: 100.100.0.0/16") // lines 1-7
            + "---\n"                                                             // line 8
            + Named("second", "allowedSources:", "  - cidr: 10.0.0.0/8");         // lines 9-15

        var (policies, problems) = Parse(text);

        var policy = Assert.Single(policies);
        Assert.Equal(1, policy.Document);
        Assert.Equal("first", policy.Valid.Name);
        var problem = Assert.Single(problems);
        AssertAt(problem, document: 2, line: 15, "spec.allowedSources[0].cidr");
        AssertSays(problem, "Tailscale does not drop it");
        Assert.StartsWith("policy.yaml: document 2 (line 15): spec.allowedSources[0].cidr: \"10.0.0.0/8\"", problem.ToString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("100.64.0.0/24")]
    [InlineData("\"100.64.0.0/24\"")]
    [InlineData("'100.64.0.0/24'")]
    public void Quoted_and_unquoted_cidr_mean_the_same_prefix(string yamlValue)
    {
        var policy = SinglePolicy(WithAllowedSource(yamlValue));

        Assert.Equal(IPNetwork.Parse("100.64.0.0/24"), Assert.Single(policy.Valid.AllowedSources).Cidr);
    }

    [Theory]
    [InlineData("lab")]
    [InlineData("\"lab\"")]
    [InlineData("'lab'")]
    public void Quoted_and_unquoted_name_mean_the_same_name(string yamlValue)
    {
        var policy = SinglePolicy(EmptySpec(yamlValue));

        Assert.Equal("lab", policy.Valid.Name);
    }

    [Theory]
    [InlineData("true")]
    [InlineData("True")]
    [InlineData("TRUE")]
    public void Plain_true_in_any_YAML_1_2_spelling_is_a_boolean(string yamlValue)
    {
        var policy = SinglePolicy(WithSpec($"allowBroadRanges: {yamlValue}", "allowedSources:", "  - cidr: 100.64.0.0/12"));

        Assert.Equal(true, policy.Policy.Spec.AllowBroadRanges);
        Assert.Equal(12, Assert.Single(policy.Valid.AllowedSources).Cidr.PrefixLength);
    }

    [Fact]
    public void Quoted_number_is_a_string_and_plain_number_is_not()
    {
        var quoted = SinglePolicy(WithSpec("allowedSources:", "  - cidr: 100.64.0.0/24", "    description: \"123\""));
        var plain = SingleProblem(WithSpec("allowedSources:", "  - cidr: 100.64.0.0/24", "    description: 123"));

        Assert.Equal("123", Assert.Single(quoted.Policy.Spec.AllowedSources!).Description);
        AssertAt(plain, document: 1, line: 8, "spec.allowedSources[0].description");
        AssertSays(plain, "has the wrong type", "expected a string");
    }

    [Fact]
    public void Windows_line_endings_parse_with_the_same_line_numbers()
    {
        var problem = SingleProblem(WithAllowedSource("10.0.0.0/8").Replace("\n", "\r\n", StringComparison.Ordinal));

        AssertAt(problem, document: 1, line: 7, "spec.allowedSources[0].cidr");
    }

    [Fact]
    public void YAML_syntax_error_is_reported_with_its_line_and_column()
    {
        var problem = SingleProblem(Header() + "   bad: indentation\nspec: {}\n"); // line 5

        AssertAt(problem, document: null, line: 5, path: null);
        AssertSays(problem, "YAML syntax error at column 7");
        Assert.StartsWith("policy.yaml (line 5): YAML syntax error", problem.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Tab_indentation_is_a_YAML_syntax_error()
    {
        var problem = SingleProblem("apiVersion: tscgnat.io/v1alpha1\nkind: CgnatAllowPolicy\nmetadata:\n\tname: lab\nspec: {}\n");

        Assert.Null(problem.Path);
        Assert.NotNull(problem.Line);
        AssertSays(problem, "YAML syntax error", "tab");
    }

    [Fact]
    public void YAML_syntax_error_in_document_2_refuses_the_whole_text()
    {
        var text = EmptySpec("first")   // lines 1-5
            + "---\n"                     // line 6
            + Header("second")            // lines 7-10
            + "spec: [\n";                // line 11

        var (policies, problems) = Parse(text);

        Assert.Empty(policies);
        var problem = Assert.Single(problems);
        Assert.Equal(12, problem.Line); // the end of the text, where YAML noticed the list never closed
        AssertSays(problem, "YAML syntax error");
    }

    /// <summary>
    /// YamlDotNet throws InvalidOperationException, not YamlException, for a flow collection left open
    /// at the very end of the text; that must still come back as a problem, never as an exception.
    /// </summary>
    [Theory]
    [InlineData("apiVersion: tscgnat.io/v1alpha1\nkind: CgnatAllowPolicy\nmetadata:\n  name: [lab\nspec: {}\n")]
    [InlineData("apiVersion: tscgnat.io/v1alpha1\nkind: CgnatAllowPolicy\nmetadata: {name: lab\nspec: {}\n")]
    public void Unclosed_flow_collection_is_a_YAML_syntax_problem_not_an_exception(string text)
    {
        var (policies, problems) = Parse(text);

        Assert.Empty(policies);
        var problem = Assert.Single(problems);
        Assert.Null(problem.Path);
        AssertSays(problem, "YAML syntax error");
    }

    [Fact]
    public void Duplicate_YAML_key_is_refused_at_the_second_key()
    {
        var problem = SingleProblem(Header() + "  name: other\nspec: {}\n"); // the second name is line 5

        Assert.Equal(5, problem.Line);
        AssertSays(problem, "Duplicate key");
    }

    [Fact]
    public void Duplicate_spec_key_is_refused_so_that_one_list_cannot_hide_another()
    {
        var problem = SingleProblem(WithSpec(
            "allowedSources:",             // line 6
            "  - cidr: 100.64.0.0/24",     // line 7
            "allowedSources:",             // line 8
            "  - cidr: 100.100.0.0/16"));  // line 9

        Assert.Equal(8, problem.Line);
        AssertSays(problem, "Duplicate key");
    }

    [Fact]
    public void Document_that_is_a_list_is_refused()
    {
        var problem = SingleProblem("- apiVersion: tscgnat.io/v1alpha1\n- kind: CgnatAllowPolicy\n");

        AssertAt(problem, document: 1, line: 1, path: null);
        AssertSays(problem, "is a YAML list, not a CgnatAllowPolicy object");
    }

    [Fact]
    public void Document_that_is_a_plain_value_is_refused()
    {
        var problem = SingleProblem("CgnatAllowPolicy\n");

        AssertAt(problem, document: 1, line: 1, path: null);
        AssertSays(problem, "is a YAML plain value, not a CgnatAllowPolicy object");
        Assert.Equal("policy.yaml: document 1 (line 1): is a YAML plain value, not a CgnatAllowPolicy object", problem.ToString());
    }

    [Fact]
    public void List_document_after_a_good_one_is_refused_as_document_2()
    {
        var (policies, problems) = Parse(EmptySpec("first") + "---\n- a\n"); // "- a" is line 7

        Assert.Equal("first", Assert.Single(policies).Valid.Name);
        var problem = Assert.Single(problems);
        AssertAt(problem, document: 2, line: 7, path: null);
        AssertSays(problem, "is a YAML list");
    }

    [Theory]
    [InlineData("")]
    [InlineData("\n\n")]
    [InlineData("# only a comment\n")]
    public void Text_with_no_documents_is_refused(string text)
    {
        var problem = SingleProblem(text);

        AssertAt(problem, document: null, line: null, path: null);
        AssertSays(problem, "holds no CgnatAllowPolicy document", "truncated write never removes exemptions");
        Assert.StartsWith("policy.yaml: holds no CgnatAllowPolicy document", problem.ToString(), StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("---\n")]
    [InlineData("---\n---\n---\n")]
    [InlineData("---\n~\n---\nnull\n")]
    public void Text_of_only_separators_and_empty_documents_is_refused(string text)
    {
        var problem = SingleProblem(text);

        AssertAt(problem, document: null, line: null, path: null);
        AssertSays(problem, "holds no CgnatAllowPolicy document");
    }

    [Fact]
    public void Non_string_mapping_key_is_refused()
    {
        var problem = SingleProblem(Header() + "spec: {}\n? [a]\n: b\n");

        Assert.Equal(1, problem.Document);
        AssertSays(problem, "a mapping key must be a plain string", "line 6");
    }

    [Fact]
    public void Source_name_is_used_as_given_in_every_problem()
    {
        var (_, problems) = PolicyDocuments.Parse(WithAllowedSource("10.0.0.0/8"), "/etc/ts-cgnat/policies/lab.yaml");

        var problem = Assert.Single(problems);
        Assert.Equal("/etc/ts-cgnat/policies/lab.yaml", problem.Source);
        Assert.StartsWith("/etc/ts-cgnat/policies/lab.yaml: document 1 (line 7): ", problem.ToString(), StringComparison.Ordinal);
    }
}
