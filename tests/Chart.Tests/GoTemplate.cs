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
/// Just enough of Go's text/template to check a Helm chart without helm (which cannot be installed
/// here): split a template into text and actions, check that actions and blocks are balanced, and
/// render a stub in which every action is replaced by a placeholder scalar, so that the YAML around
/// the actions can be parsed. Hand-written because no served package reads Go templates.
/// </summary>
internal sealed partial class GoTemplate
{
    /// <summary>The placeholder an action that prints something becomes.</summary>
    public const string Placeholder = "stub";

    private const string LineMarker = "\u0001TPL\u0001";

    private readonly string text;

    private GoTemplate(string text, IReadOnlyList<TemplateAction> actions, IReadOnlyList<string> problems)
    {
        this.text = text;
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
        return new GoTemplate(text, actions, problems);
    }

    /// <summary>
    /// Every <c>.Values.a.b</c> path an action reads (comments excluded). Paths reached through a
    /// variable or <c>with</c> (<c>.image.tag</c>) are not seen.
    /// </summary>
    public IReadOnlySet<string> ValuesPaths() =>
        Actions.Where(a => a.Kind != ActionKind.Comment)
            .SelectMany(a => ValuesPathPattern().Matches(a.Body).Select(m => m.Groups[1].Value[1..]))
            .ToHashSet(StringComparer.Ordinal);

    /// <summary>
    /// The template with each action rendered as helm would shape it, but with placeholder values:
    /// trim markers applied, control actions printing nothing, the first branch of every
    /// if/else kept (so keys are not doubled), range and with bodies rendered once, define bodies
    /// dropped. An action piped into <c>nindent N</c> (a block of YAML) becomes one placeholder
    /// entry at indentation N: a sequence item among sequence items, otherwise a mapping entry.
    /// </summary>
    public string Stub()
    {
        if (Problems.Count > 0)
        {
            throw new InvalidOperationException("cannot stub an unbalanced template: " + string.Join("; ", Problems));
        }

        var output = new StringBuilder();
        var skipping = new Stack<bool>(); // per open block: are we inside a branch that is not rendered?
        var trimNext = false;
        var at = 0;
        foreach (var action in Actions)
        {
            var isSkipping = skipping.Count > 0 && skipping.Peek();
            var before = text[at..action.Start];
            if (trimNext)
            {
                before = before.TrimStart();
            }

            if (!isSkipping)
            {
                output.Append(before);
                if (action.TrimLeft)
                {
                    TrimEnd(output);
                }
            }

            switch (action.Kind)
            {
                case ActionKind.Open:
                    skipping.Push(isSkipping || action.Keyword == "define");
                    break;
                case ActionKind.Else:
                    skipping.Pop();
                    skipping.Push(true);
                    break;
                case ActionKind.End:
                    skipping.Pop();
                    break;
                case ActionKind.Output when !isSkipping:
                    output.Append(Render(action));
                    break;
                default:
                    break;
            }

            trimNext = action.TrimRight;
            at = action.Start + action.Length;
        }

        var rest = text[at..];
        output.Append(trimNext ? rest.TrimStart() : rest);
        return ShapeBlockPlaceholders(output.ToString());
    }

    private static string Render(TemplateAction action)
    {
        var nindent = NindentPattern().Match(action.Body);
        if (nindent.Success)
        {
            return "\n" + new string(' ', int.Parse(nindent.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)) + LineMarker;
        }

        var indent = IndentPattern().Match(action.Body);
        return indent.Success
            ? new string(' ', int.Parse(indent.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture)) + LineMarker
            : Placeholder;
    }

    private static string ShapeBlockPlaceholders(string rendered)
    {
        var lines = rendered.Split('\n');
        var entry = 0;
        for (var i = 0; i < lines.Length; i++)
        {
            var trimmed = lines[i].TrimStart(' ');
            if (trimmed != LineMarker)
            {
                continue;
            }

            var indent = lines[i].Length - trimmed.Length;
            var pad = new string(' ', indent);
            lines[i] = IsSequenceItemAt(lines, i, indent)
                ? $"{pad}- {Placeholder}"
                : $"{pad}__{Placeholder}{entry++}__: {Placeholder}";
        }

        return string.Join('\n', lines);
    }

    /// <summary>Whether the nearest sibling at the same indentation, after or before, is a sequence item.</summary>
    private static bool IsSequenceItemAt(string[] lines, int index, int indent)
    {
        foreach (var step in new[] { 1, -1 })
        {
            for (var j = index + step; j >= 0 && j < lines.Length; j += step)
            {
                var trimmed = lines[j].TrimStart(' ');
                if (trimmed.Length == 0 || trimmed == LineMarker || trimmed.StartsWith('#'))
                {
                    continue;
                }

                var lineIndent = lines[j].Length - trimmed.Length;
                if (lineIndent > indent)
                {
                    continue; // inside a sibling entry
                }

                if (lineIndent == indent && (trimmed == "-" || trimmed.StartsWith("- ", StringComparison.Ordinal)))
                {
                    return true;
                }

                break;
            }
        }

        return false;
    }

    private static void TrimEnd(StringBuilder builder)
    {
        var end = builder.Length;
        while (end > 0 && char.IsWhiteSpace(builder[end - 1]))
        {
            end--;
        }

        builder.Length = end;
    }

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

    [GeneratedRegex(@"\|\s*nindent\s+(\d+)\s*$")]
    private static partial Regex NindentPattern();

    [GeneratedRegex(@"\|\s*indent\s+(\d+)\s*$")]
    private static partial Regex IndentPattern();

    [GeneratedRegex(@"^[A-Za-z]+")]
    private static partial Regex KeywordPattern();

    [GeneratedRegex(@"^\$[A-Za-z0-9_]*\s*:?=")]
    private static partial Regex AssignmentPattern();
}
