namespace TsCgnat.Chart.Tests;

/// <summary>The template reader ValuesTests relies on: the problems it reports and the values paths it reads.</summary>
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
    public void Values_paths_are_read_from_actions_but_not_from_comments_or_text()
    {
        var template = GoTemplate.Parse(
            "{{/* .Values.inComment */}}\n# .Values.inText\na: {{ .Values.a.b | quote }}\nb: {{ include \"x\" (dict \"ctx\" $ \"v\" $.Values.c) }}\nc: {{ .ctx.Values.d.e }}\n");

        Assert.Equal(["a.b", "c", "d.e"], template.ValuesPaths().Order(StringComparer.Ordinal));
    }
}
