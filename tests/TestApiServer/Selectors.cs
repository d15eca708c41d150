using System.Text.RegularExpressions;

namespace TsCgnat.TestApiServer;

/// <summary>
/// A label selector in the API server's query syntax (<c>a=b,c!=d,e in (f,g),h notin (i),j,!k</c>).
/// Hand-written: KubernetesClient builds requests but has no selector parser or matcher.
/// </summary>
internal sealed partial class LabelSelector
{
    private readonly IReadOnlyList<Func<IReadOnlyDictionary<string, string>, bool>> requirements;

    private LabelSelector(IReadOnlyList<Func<IReadOnlyDictionary<string, string>, bool>> requirements) =>
        this.requirements = requirements;

    public static LabelSelector Everything { get; } = new([]);

    public bool Matches(IReadOnlyDictionary<string, string> labels) => requirements.All(r => r(labels));

    public static LabelSelector Parse(string? text)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            return Everything;
        }

        var parsed = new List<Func<IReadOnlyDictionary<string, string>, bool>>();
        foreach (var raw in SplitTopLevel(text))
        {
            var part = raw.Trim();
            Match m;
            if ((m = SetRequirement().Match(part)).Success)
            {
                var key = m.Groups["key"].Value;
                var values = m.Groups["values"].Value.Split(',', StringSplitOptions.TrimEntries).ToHashSet(StringComparer.Ordinal);
                if (values.Any(v => !IsValue(v)))
                {
                    throw Unparsable(part, "invalid value in set");
                }

                parsed.Add(m.Groups["op"].Value == "in"
                    ? labels => labels.TryGetValue(key, out var v) && values.Contains(v)
                    : labels => !labels.TryGetValue(key, out var v) || !values.Contains(v));
            }
            else if ((m = EqualityRequirement().Match(part)).Success)
            {
                var key = m.Groups["key"].Value;
                var value = m.Groups["value"].Value;
                if (!IsValue(value))
                {
                    throw Unparsable(part, $"invalid label value: \"{value}\"");
                }

                parsed.Add(m.Groups["op"].Value == "!="
                    ? labels => !labels.TryGetValue(key, out var v) || v != value
                    : labels => labels.TryGetValue(key, out var v) && v == value);
            }
            else if ((m = ExistenceRequirement().Match(part)).Success)
            {
                var key = m.Groups["key"].Value;
                var negated = m.Groups["not"].Success;
                parsed.Add(labels => labels.ContainsKey(key) != negated);
            }
            else
            {
                throw Unparsable(part, "found no operator this server understands (=, ==, !=, in, notin, exists, !key)");
            }
        }

        return new LabelSelector(parsed);
    }

    private static ApiError Unparsable(string part, string why) =>
        ApiError.BadRequest($"unable to parse requirement: \"{part}\": {why}");

    private static bool IsValue(string value) => value.Length <= 63 && LabelValue().IsMatch(value);

    /// <summary>Commas inside <c>( )</c> separate set values, not requirements.</summary>
    private static IEnumerable<string> SplitTopLevel(string text)
    {
        var depth = 0;
        var start = 0;
        for (var i = 0; i < text.Length; i++)
        {
            switch (text[i])
            {
                case '(':
                    depth++;
                    break;
                case ')':
                    depth--;
                    break;
                case ',' when depth == 0:
                    yield return text[start..i];
                    start = i + 1;
                    break;
            }
        }

        yield return text[start..];
    }

    [GeneratedRegex(@"^(?<key>[A-Za-z0-9][-A-Za-z0-9_./]*)\s+(?<op>in|notin)\s*\((?<values>[^()]*)\)$")]
    private static partial Regex SetRequirement();

    [GeneratedRegex(@"^(?<key>[A-Za-z0-9][-A-Za-z0-9_./]*)\s*(?<op>==|!=|=)\s*(?<value>[^\s]*)$")]
    private static partial Regex EqualityRequirement();

    [GeneratedRegex(@"^(?<not>!)?\s*(?<key>[A-Za-z0-9][-A-Za-z0-9_./]*)$")]
    private static partial Regex ExistenceRequirement();

    [GeneratedRegex(@"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")]
    private static partial Regex LabelValue();
}

/// <summary>
/// A field selector (<c>metadata.name=x,involvedObject.kind!=Pod</c>) over the fields each kind supports;
/// an unsupported field is refused with the server's "field label not supported" message.
/// </summary>
internal sealed class FieldSelector
{
    private readonly IReadOnlyList<(string Field, string Value, bool Equal)> terms;

    private FieldSelector(IReadOnlyList<(string, string, bool)> terms) => this.terms = terms;

    public static FieldSelector Everything { get; } = new([]);

    public bool Matches(IReadOnlyDictionary<string, string> fields) =>
        terms.All(t => (fields.TryGetValue(t.Field, out var v) ? v : "") == t.Value == t.Equal);

    public static FieldSelector Parse(string? text, ResourceType type)
    {
        if (string.IsNullOrWhiteSpace(text))
        {
            return Everything;
        }

        var parsed = new List<(string, string, bool)>();
        foreach (var raw in text.Split(','))
        {
            var part = raw.Trim();
            var (op, at) = part.IndexOf("!=", StringComparison.Ordinal) is var ne and >= 0 ? ("!=", ne)
                : part.IndexOf("==", StringComparison.Ordinal) is var ee and >= 0 ? ("==", ee)
                : ("=", part.IndexOf('=', StringComparison.Ordinal));
            if (at <= 0)
            {
                throw ApiError.BadRequest($"invalid selector: '{text}'; can't understand '{part}'");
            }

            var field = ObjectFields.Canonical(part[..at].Trim(), type);
            if (!ObjectFields.Supported(type).Contains(field))
            {
                throw ApiError.BadRequest($"field label not supported: {part[..at].Trim()}");
            }

            parsed.Add((field, part[(at + op.Length)..].Trim(), op != "!="));
        }

        return new FieldSelector(parsed);
    }
}
