namespace TsCgnat.Chart.Tests;

/// <summary>The stub renderer the chart checks rely on: what it reports and how it shapes YAML.</summary>
public sealed class GoTemplateTests
{
    [Theory]
    [InlineData("action never closed", "a: 1\nb: {{ .Values.b\n", "line 2: '{{' without a closing '}}'")]
    [InlineData("closing braces without an action", "a: 1\nb: x }}\n", "line 2: '}}' without an opening '{{'")]
    [InlineData("comment never closed", "{{/* note\na: 1\n", "line 1: '{{' without a closing '}}'")]
    [InlineData("end without a block", "a: 1\n{{- end }}\n", "line 2: 'end' without an open block")]
    [InlineData("if never closed", "{{- if .Values.a }}\na: 1\n", "line 1: 'if' is never closed with 'end'")]
    [InlineData("range never closed", "a:\n{{- range .Values.list }}\n  - x\n", "line 2: 'range' is never closed with 'end'")]
    [InlineData("define never closed", "{{- define \"x\" -}}\nx\n", "line 1: 'define' is never closed with 'end'")]
    [InlineData("else outside a block", "a: 1\n{{- else }}\n", "line 2: 'else' outside an if, range or with")]
    public void An_unbalanced_template_is_reported_with_its_line(string name, string template, string expected)
    {
        _ = name; // the case's name in the test report
        Assert.Equal([expected], GoTemplate.Parse(template).Problems);
    }

    [Fact]
    public void Braces_inside_a_string_literal_do_not_close_an_action()
    {
        var template = GoTemplate.Parse("a: {{ printf \"}}%s\" .Values.a }}\n");

        Assert.Empty(template.Problems);
        Assert.Equal("a: stub\n", template.Stub());
    }

    [Fact]
    public void Trim_markers_remove_the_whitespace_beside_an_action()
    {
        var stub = GoTemplate.Parse("a: 1\n{{- if .Values.b }}\nb: 2\n{{- end }}\nc: 3\n").Stub();

        Assert.Equal("a: 1\nb: 2\nc: 3\n", stub);
    }

    [Fact]
    public void Only_the_first_branch_of_an_if_is_rendered_so_keys_are_not_doubled()
    {
        var stub = GoTemplate.Parse("{{- if .Values.a }}\nkey: a\n{{- else if .Values.b }}\nkey: b\n{{- else }}\nkey: c\n{{- end }}\n").Stub();

        Assert.Equal("\nkey: a\n", stub);
    }

    [Fact]
    public void A_define_body_is_not_rendered()
    {
        var stub = GoTemplate.Parse("{{- define \"x\" }}\nhidden: 1\n{{- end }}\nshown: 1\n").Stub();

        Assert.Equal("\nshown: 1\n", stub);
    }

    [Fact]
    public void Assignments_and_fail_print_nothing()
    {
        var stub = GoTemplate.Parse("{{- $x := .Values.a }}\n{{- if not .Values.b }}{{ fail \"b is required\" }}{{ end }}\na: 1\n").Stub();

        Assert.Equal("\na: 1\n", stub);
    }

    [Fact]
    public void A_block_of_yaml_among_mapping_entries_becomes_one_mapping_entry()
    {
        var stub = GoTemplate.Parse("labels:\n  {{- include \"labels\" . | nindent 2 }}\n  component: agent\n").Stub();

        Assert.Equal("labels:\n  __stub0__: stub\n  component: agent\n", stub);
    }

    [Fact]
    public void A_block_of_yaml_among_sequence_items_becomes_one_sequence_item()
    {
        var stub = GoTemplate.Parse("env:\n  {{- include \"env\" . | nindent 2 }}\n  - name: A\n    value: b\n").Stub();

        Assert.Equal("env:\n  - stub\n  - name: A\n    value: b\n", stub);
    }

    [Fact]
    public void An_inline_action_becomes_a_scalar()
    {
        var stub = GoTemplate.Parse("name: {{ include \"fullname\" . }}-agent\nport: {{ .Values.port }}\n").Stub();

        Assert.Equal("name: stub-agent\nport: stub\n", stub);
    }

    [Fact]
    public void Values_paths_are_read_from_actions_but_not_from_comments_or_text()
    {
        var template = GoTemplate.Parse(
            "{{/* .Values.inComment */}}\n# .Values.inText\na: {{ .Values.a.b | quote }}\nb: {{ include \"x\" (dict \"ctx\" $ \"v\" $.Values.c) }}\nc: {{ .ctx.Values.d.e }}\n");

        Assert.Equal(["a.b", "c", "d.e"], template.ValuesPaths().Order(StringComparer.Ordinal));
    }
}
