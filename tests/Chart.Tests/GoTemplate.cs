using System.Text;
using System.Text.RegularExpressions;

namespace TsCgnat.Chart.Tests;

/// <summary>What an action does to the output, which is all the checks need to know of it.</summary>
internal enum ActionKind
{
    /// <summary><c>{{/* … */}}</c>.</summary>
    Comment,

    /// <summary><c>if</c>, <c>range</c>, <c>with</c>, <c>define</c>, <c>block</c>: closed by <c>end</c>.</summary>
    Open,

    /// <summary><c>else</c>, <c>else if</c>, <c>else with</c>.</summary>
    Else,

    /// <summary><c>end</c>.</summary>
    End,

    /// <summary>Prints nothing when it succeeds: a variable assignment or <c>fail</c>.</summary>
    Silent,

    /// <summary>Prints its pipeline's value.</summary>
    Output,
}

/// <summary>One <c>{{ … }}</c> action, with its trim markers and the line it starts on.</summary>
internal sealed record TemplateAction(int Start, int Length, int Line, string Body, bool TrimLeft, bool TrimRight, ActionKind Kind, string Keyword);

/// <summary>
/// Just enough of Go's text/template to read what a template asks of values.yaml: split a template into
/// text and actions, check that actions and blocks are balanced, and list the <c>.Values</c> paths the
/// actions read (ValuesTests holds them against values.yaml and its schema, which helm itself does not
/// check). Rendering is real helm's (<see cref="HelmTemplate"/>). Hand-written because no served package
/// reads Go templates.
/// </summary>
internal sealed partial class GoTemplate
{
    private GoTemplate(IReadOnlyList<TemplateAction> actions, IReadOnlyList<string> problems)
    {
        Actions = actions;
        Problems = problems;
    }

    public IReadOnlyList<TemplateAction> Actions { get; }

    /// <summary>Unclosed or stray delimiters and unbalanced blocks, each with its line; empty when balanced.</summary>
    public IReadOnlyList<string> Problems { get; }

    public static GoTemplate Parse(string text)
    {
        var actions = new List<TemplateAction>();
        var problems = new List<string>();
        var at = 0;
        while (true)
        {
            var open = text.IndexOf("{{", at, StringComparison.Ordinal);
            var segmentEnd = open < 0 ? text.Length : open;
            for (var stray = text.IndexOf("}}", at, StringComparison.Ordinal); stray >= 0 && stray < segmentEnd; stray = text.IndexOf("}}", stray + 2, StringComparison.Ordinal))
            {
                problems.Add($"line {LineOf(text, stray)}: '}}}}' without an opening '{{{{'");
            }

            if (open < 0)
            {
                break;
            }

            var close = FindClose(text, open + 2);
            if (close < 0)
            {
                problems.Add($"line {LineOf(text, open)}: '{{{{' without a closing '}}}}'");
                break;
            }

            actions.Add(MakeAction(text, open, close + 2));
            at = close + 2;
        }

        CheckBlocks(actions, problems);
        return new GoTemplate(actions, problems);
    }

    /// <summary>
    /// Every <c>.Values.a.b</c> path an action reads (comments excluded). Paths reached through a
    /// variable or <c>with</c> (<c>.image.tag</c>) are not seen.
    /// </summary>
    public IReadOnlySet<string> ValuesPaths() =>
        Actions.Where(a => a.Kind != ActionKind.Comment)
            .SelectMany(a => ValuesPathPattern().Matches(a.Body).Select(m => m.Groups[1].Value[1..]))
            .ToHashSet(StringComparer.Ordinal);

    private static void CheckBlocks(List<TemplateAction> actions, List<string> problems)
    {
        var open = new Stack<TemplateAction>();
        foreach (var action in actions)
        {
            switch (action.Kind)
            {
                case ActionKind.Open:
                    open.Push(action);
                    break;
                case ActionKind.Else when open.Count == 0 || open.Peek().Keyword is "define" or "block":
                    problems.Add($"line {action.Line}: 'else' outside an if, range or with");
                    break;
                case ActionKind.End when open.Count == 0:
                    problems.Add($"line {action.Line}: 'end' without an open block");
                    break;
                case ActionKind.End:
                    open.Pop();
                    break;
                default:
                    break;
            }
        }

        foreach (var unclosed in open.Reverse())
        {
            problems.Add($"line {unclosed.Line}: '{unclosed.Keyword}' is never closed with 'end'");
        }
    }

    private static TemplateAction MakeAction(string text, int start, int end)
    {
        var inner = text[(start + 2)..(end - 2)];
        var trimLeft = inner.Length >= 2 && inner[0] == '-' && char.IsWhiteSpace(inner[1]);
        var trimRight = inner.Length >= 2 && inner[^1] == '-' && char.IsWhiteSpace(inner[^2]);
        var body = inner[(trimLeft ? 1 : 0)..(inner.Length - (trimRight ? 1 : 0))].Trim();
        var keyword = KeywordPattern().Match(body).Value;
        var kind = body.StartsWith("/*", StringComparison.Ordinal) ? ActionKind.Comment
            : keyword switch
            {
                "if" or "range" or "with" or "define" or "block" => ActionKind.Open,
                "else" => ActionKind.Else,
                "end" => ActionKind.End,
                "fail" => ActionKind.Silent,
                _ when AssignmentPattern().IsMatch(body) => ActionKind.Silent,
                _ => ActionKind.Output,
            };
        return new TemplateAction(start, end - start, LineOf(text, start), body, trimLeft, trimRight, kind, keyword);
    }

    /// <summary>Index of the <c>}}</c> that closes the action whose body starts at <paramref name="from"/>, skipping string literals and comments.</summary>
    private static int FindClose(string text, int from)
    {
        var i = from;
        if (i < text.Length && text[i] == '-')
        {
            i++;
        }

        while (i < text.Length && char.IsWhiteSpace(text[i]))
        {
            i++;
        }

        if (text.AsSpan(i).StartsWith("/*"))
        {
            var commentEnd = text.IndexOf("*/", i + 2, StringComparison.Ordinal);
            return commentEnd < 0 ? -1 : text.IndexOf("}}", commentEnd + 2, StringComparison.Ordinal);
        }

        for (; i < text.Length - 1; i++)
        {
            if (text[i] == '}' && text[i + 1] == '}')
            {
                return i;
            }

            if (text[i] is '"' or '`' or '\'')
            {
                i = SkipLiteral(text, i);
                if (i < 0)
                {
                    return -1;
                }
            }
        }

        return -1;
    }

    private static int SkipLiteral(string text, int start)
    {
        var quote = text[start];
        for (var i = start + 1; i < text.Length; i++)
        {
            if (text[i] == '\\' && quote != '`')
            {
                i++;
            }
            else if (text[i] == quote)
            {
                return i;
            }
        }

        return -1;
    }

    private static int LineOf(string text, int index) => 1 + text.AsSpan(0, index).Count('\n');

    [GeneratedRegex(@"\.Values((?:\.[A-Za-z_][A-Za-z0-9_]*)+)")]
    private static partial Regex ValuesPathPattern();

    [GeneratedRegex(@"^[A-Za-z]+")]
    private static partial Regex KeywordPattern();

    [GeneratedRegex(@"^\$[A-Za-z0-9_]*\s*:?=")]
    private static partial Regex AssignmentPattern();
}
