using System.Text;
using TsCgnat.TestSupport;
using static TsCgnat.Api.Tests.PolicyText;

namespace TsCgnat.Api.Tests;

/// <summary>
/// Policy YAML written to hurt the reader (issue 10): each is refused with one problem that names the
/// document, the line and the limit, and nothing of the text is used. Speed and memory are judged by
/// running the agent on the same files (docs/limits.md); these tests say what is refused, and how.
/// </summary>
public class HostileYamlTests
{
    private static string Fixture(string name) => File.ReadAllText(Path.Combine(Repo.Root, "tests", "fixtures", "hostile", name));

    [Theory]
    [InlineData("alias-bomb.yaml", 8, "the YAML anchor &a0 is refused: policy files may not use anchors and aliases")]
    [InlineData("nested-flow.yaml", 5, "nested more than 32 lists or maps deep")]
    [InlineData("nested-flow-mapping.yaml", 5, "nested more than 32 lists or maps deep")]
    [InlineData("nested-block.yaml", 37, "nested more than 32 lists or maps deep")]
    public void Hostile_file_is_refused_at_its_line_with_the_limit(string file, int line, string message)
    {
        var problem = SingleProblem(Fixture(file));

        Assert.Equal(1, problem.Document);
        Assert.Equal(line, problem.Line);
        Assert.Contains(message, problem.Message, StringComparison.Ordinal);
        Assert.StartsWith($"policy.yaml: document 1 (line {line}): ", problem.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void Alias_is_refused_even_without_an_anchor_that_defines_it()
    {
        var problem = SingleProblem(WithSpec("allowedSources: *sources")); // line 6

        Assert.Equal(6, problem.Line);
        Assert.Contains("the YAML alias *sources is refused", problem.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Merge_key_is_refused_as_the_alias_it_needs()
    {
        var problem = SingleProblem(WithSpec("<<: *base"));

        Assert.Contains("the YAML alias *base is refused", problem.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void An_anchor_alone_is_refused_too()
    {
        var problem = SingleProblem(WithSpec("allowedSources: &sources", "  - cidr: 100.64.0.0/24"));

        Assert.Equal(6, problem.Line);
        Assert.Contains("the YAML anchor &sources is refused", problem.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Nesting_up_to_the_limit_is_read_and_one_more_level_is_refused()
    {
        // The root mapping is level 1 and spec's value level 2, so 30 more lists reach the limit of 32.
        static string Nested(int lists) => Header() + "spec: {x: " + new string('[', lists) + new string(']', lists) + "}\n";

        var atLimit = SingleProblem(Nested(30)); // read; then refused as an unknown field, not for its depth
        Assert.Contains("unknown field \"x\"", atLimit.Message, StringComparison.Ordinal);

        var over = SingleProblem(Nested(31));
        Assert.Equal(5, over.Line);
        Assert.Contains($"nested more than {PolicyDocuments.MaxDepth} lists or maps deep", over.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void More_documents_than_the_limit_are_refused_at_the_first_one_too_many()
    {
        var text = new StringBuilder();
        for (var i = 0; i <= PolicyDocuments.MaxDocuments; i++)
        {
            text.Append("---\n~\n"); // empty documents still count: they cost parsing all the same
        }

        var problem = SingleProblem(text.ToString());

        Assert.Equal(PolicyDocuments.MaxDocuments + 1, problem.Document);
        Assert.Equal((2 * PolicyDocuments.MaxDocuments) + 1, problem.Line);
        Assert.Contains($"more than {PolicyDocuments.MaxDocuments} YAML documents in one file", problem.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_value_longer_than_the_limit_is_refused_with_its_length()
    {
        var problem = SingleProblem(WithSpec($"x: {new string('a', PolicyDocuments.MaxScalarLength + 1)}"));

        Assert.Equal(6, problem.Line);
        Assert.Contains($"a value of {PolicyDocuments.MaxScalarLength + 1} characters; a policy file's values have at most {PolicyDocuments.MaxScalarLength}", problem.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_list_longer_than_the_limit_is_refused_where_the_item_too_many_is()
    {
        var problem = SingleProblem(WithSpec("x: [" + string.Join(',', Enumerable.Repeat("1", PolicyDocuments.MaxCollectionItems + 1)) + "]"));

        Assert.Equal(6, problem.Line);
        Assert.Contains($"the list or map that starts on line 6 has more than {PolicyDocuments.MaxCollectionItems} items", problem.Message, StringComparison.Ordinal);
    }

    /// <summary>A Fact with its cases inline: test data with unpaired surrogates does not survive xunit's serialisation of theory data.</summary>
    [Fact]
    public void An_unpaired_surrogate_is_refused_at_its_line()
    {
        string[] values =
        [
            "\"\\ud800\"",    // an escape: YamlDotNet refuses it as a syntax error
            "\"\\U0000DC00\"",
            "\"a\uD800\"",     // the character itself, as a caller's string may hold it
            "a\uDC00b",
        ];
        foreach (var value in values)
        {
            var problem = SingleProblem(Header() + $"spec:\n  x: {value}\n");

            Assert.Equal(6, problem.Line);
            Assert.True(problem.Message.Contains("unpaired UTF-16 surrogate", StringComparison.Ordinal) || problem.Message.Contains("YAML syntax error", StringComparison.Ordinal), problem.Message);
        }

        Assert.Contains("unpaired UTF-16 surrogate", SingleProblem(Header() + "spec:\n  x: a\uDC00b\n").Message, StringComparison.Ordinal);
    }

    /// <summary>Found by fuzzing (tests/Fuzz, target policy-yaml): YamlDotNet threw ArgumentException for a verbatim tag that is no URI.</summary>
    [Theory]
    [InlineData("!<:> x\n", 1)]
    [InlineData("apiVersion: tscgnat.io/v1alpha1\nkind: CgnatAllowPolicy\nmetadata: {name: lab}\nspec: !<:> {}\n", 4)]
    public void A_tag_that_is_no_URI_is_a_YAML_syntax_error_not_an_exception(string text, int line)
    {
        var problem = SingleProblem(text);

        Assert.Equal(line, problem.Line);
        Assert.Contains("YAML syntax error: Global tags must be valid URIs", problem.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("1e999")]  // no finite double: read as a string
    [InlineData("-.5e-400")]
    [InlineData("99999999999999999999999")] // no long
    public void A_number_out_of_range_is_a_wrong_type_not_an_exception(string value)
    {
        var problem = SingleProblem(Header() + $"spec:\n  allowBroadRanges: {value}\n");

        Assert.Equal("spec.allowBroadRanges", problem.Path);
        Assert.Contains("has the wrong type (expected true or false)", problem.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// Every problem's line is found in one more reading of the text, whatever the number of bad documents:
    /// reading again up to each bad document would cost a 4 MiB file of 1024 bad documents minutes. Even
    /// documents fail binding (an unknown field), odd ones the validator (a CIDR outside the range).
    /// </summary>
    [Fact]
    public void Problems_in_many_documents_are_each_placed_at_their_own_line()
    {
        var text = new StringBuilder();
        for (var i = 0; i < PolicyDocuments.MaxDocuments; i++)
        {
            var entry = i % 2 == 0 ? "  - {cidr: 100.64.0.0/24, port: 1}" : "  - cidr: 10.0.0.0/8";
            text.Append("---\n").Append(Named($"p{i}", "allowedSources:", entry)); // 8 lines: the entry is the last
        }

        var (policies, problems) = Parse(text.ToString());

        Assert.Empty(policies);
        Assert.Equal(PolicyDocuments.MaxDocuments, problems.Count);
        for (var i = 0; i < PolicyDocuments.MaxDocuments; i++)
        {
            var expected = (i + 1, (8 * i) + 8, i % 2 == 0 ? "spec.allowedSources[0].port" : "spec.allowedSources[0].cidr");
            Assert.Equal(expected, (problems[i].Document!.Value, problems[i].Line!.Value, problems[i].Path));
        }
    }

    [Fact]
    public void Problem_found_after_reading_is_placed_at_its_field_in_a_later_document()
    {
        var text = EmptySpec("first") + "---\n" + Header("second") + "spec:\n  allowedSources:\n    - cidr: 10.0.0.0/8\n"; // line 13

        var (policies, problems) = Parse(text);

        Assert.Single(policies);
        var problem = Assert.Single(problems);
        Assert.Equal(2, problem.Document);
        Assert.Equal(13, problem.Line);
        Assert.Equal("spec.allowedSources[0].cidr", problem.Path);
    }
}
