using System.Text.Json;

namespace TsCgnat.Firewall.Formats;

/// <summary>One rule as <c>nft -j list ruleset</c> shows it.</summary>
/// <param name="Expressions">The rule's <c>expr</c> array, kept as JSON: we read only the few shapes we need.</param>
public sealed record NftRule(long Handle, string? Comment, JsonElement Expressions)
{
    /// <summary>Interface matches of the rule: (key iifname/oifname, operator, value as nft prints it, e.g. "tailscale0*").</summary>
    public IEnumerable<(string Key, string Op, string Value)> InterfaceMatches()
    {
        foreach (var match in Matches())
        {
            if (match.TryGetProperty("left", out var left) && left.TryGetProperty("meta", out var meta)
                && meta.TryGetProperty("key", out var key) && String(key) is "iifname" or "oifname"
                && match.TryGetProperty("right", out var right) && right.ValueKind == JsonValueKind.String)
            {
                yield return (key.GetString()!, Operator(match), right.GetString()!);
            }
        }
    }

    /// <summary>The verdict: "accept", "drop", "return", "jump ts-input", or null for a rule without one.</summary>
    public string? Verdict()
    {
        foreach (var expression in Expressions.EnumerateArray().Where(e => e.ValueKind == JsonValueKind.Object))
        {
            foreach (var word in new[] { "accept", "drop", "return", "reject" })
            {
                if (expression.TryGetProperty(word, out _))
                {
                    return word;
                }
            }

            foreach (var word in new[] { "jump", "goto" })
            {
                if (expression.TryGetProperty(word, out var target) && target.TryGetProperty("target", out var name))
                {
                    return $"{word} {String(name)}";
                }
            }
        }

        return null;
    }

    /// <summary>The <c>ip saddr</c> match: (operator, prefix or "@set"), or null.</summary>
    public (string Op, string Value)? SourceMatch()
    {
        foreach (var match in Matches())
        {
            if (match.TryGetProperty("left", out var left) && left.TryGetProperty("payload", out var payload)
                && payload.TryGetProperty("field", out var field) && String(field) == "saddr"
                && match.TryGetProperty("right", out var right))
            {
                return (Operator(match), NftSet.Element(right));
            }
        }

        return null;
    }

    /// <summary>A string, or null for any other JSON value: nft's output is another program's text, read without trust (issue 10).</summary>
    internal static string? String(JsonElement value) => value.ValueKind == JsonValueKind.String ? value.GetString() : null;

    private static string Operator(JsonElement match) => match.TryGetProperty("op", out var op) ? String(op) ?? "==" : "==";

    private IEnumerable<JsonElement> Matches()
    {
        foreach (var expression in Expressions.EnumerateArray().Where(e => e.ValueKind == JsonValueKind.Object))
        {
            if (expression.TryGetProperty("match", out var match) && match.ValueKind == JsonValueKind.Object)
            {
                yield return match;
            }
        }
    }
}

/// <summary>A chain; <paramref name="Hook"/> is null for a regular chain.</summary>
public sealed record NftChain(string Family, string Table, string Name, string? Hook, IReadOnlyList<NftRule> Rules);

/// <summary>A named set; elements in our canonical form ("100.64.0.0/24", "100.64.0.0/24,eth0").</summary>
public sealed record NftSet(string Family, string Table, string Name, string Type, IReadOnlySet<string> Elements)
{
    /// <summary>One element or match value in canonical text: prefixes as a/len, single addresses as a/32, concatenations joined by commas.</summary>
    public static string Element(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.String => value.GetString() is { } s && s.Contains('.', StringComparison.Ordinal) && !s.Contains('/', StringComparison.Ordinal) && char.IsAsciiDigit(s[0]) ? s + "/32" : value.GetString()!,
        JsonValueKind.Number => value.GetRawText(),
        JsonValueKind.Object when value.TryGetProperty("prefix", out var prefix) && prefix.ValueKind == JsonValueKind.Object
            && prefix.TryGetProperty("addr", out var addr) && NftRule.String(addr) is { } address
            && prefix.TryGetProperty("len", out var len) && len.ValueKind == JsonValueKind.Number && len.TryGetInt32(out var length) =>
            $"{address}/{length}",
        JsonValueKind.Object when value.TryGetProperty("range", out var range) && range.ValueKind == JsonValueKind.Array && range.GetArrayLength() == 2 =>
            $"{Element(range[0])}-{Element(range[1])}",
        JsonValueKind.Object when value.TryGetProperty("concat", out var parts) && parts.ValueKind == JsonValueKind.Array =>
            string.Join(',', parts.EnumerateArray().Select(Element)),
        JsonValueKind.Object when value.TryGetProperty("elem", out var elem) && elem.ValueKind == JsonValueKind.Object && elem.TryGetProperty("val", out var val) => Element(val),
        JsonValueKind.Object when value.TryGetProperty("set", out var set) && set.ValueKind == JsonValueKind.String => "@" + set.GetString(),
        _ => value.GetRawText(),
    };
}

/// <summary>
/// The parsed output of <c>nft -j list ruleset</c>. Read with JSON rather than text because set elements
/// and expressions have one fixed shape there, whatever nft's pretty-printer does with line breaks.
/// </summary>
public sealed class NftRuleset
{
    public static readonly NftRuleset Empty = new([], []);

    public NftRuleset(IReadOnlyList<NftChain> chains, IReadOnlyList<NftSet> sets)
    {
        Chains = chains;
        Sets = sets;
    }

    public IReadOnlyList<NftChain> Chains { get; }

    public IReadOnlyList<NftSet> Sets { get; }

    public NftChain? Chain(string family, string table, string name) =>
        Chains.FirstOrDefault(c => c.Family == family && c.Table == table && c.Name == name);

    public NftSet? Set(string family, string table, string name) =>
        Sets.FirstOrDefault(s => s.Family == family && s.Table == table && s.Name == name);

    /// <summary>Reads <c>nft -j list ruleset</c>; throws <see cref="FormatException"/> for anything else, whatever its shape.</summary>
    public static NftRuleset Parse(string json)
    {
        if (string.IsNullOrWhiteSpace(json))
        {
            return Empty;
        }

        try
        {
            return Read(json);
        }
        catch (Exception e) when (e is JsonException or KeyNotFoundException or InvalidOperationException or FormatException or IndexOutOfRangeException)
        {
            // JsonElement's accessors throw these for a value of another shape than nft's: one refusal for all.
            throw new FormatException($"nft -j output not understood: {e.Message}", e);
        }
    }

    private static NftRuleset Read(string json)
    {
        using var document = JsonDocument.Parse(json);
        var chains = new List<(string Family, string Table, string Name, string? Hook)>();
        var rules = new Dictionary<(string, string, string), List<NftRule>>();
        var sets = new List<NftSet>();
        foreach (var item in document.RootElement.GetProperty("nftables").EnumerateArray())
        {
            if (item.TryGetProperty("chain", out var chain))
            {
                chains.Add((Text(chain, "family"), Text(chain, "table"), Text(chain, "name"),
                    chain.TryGetProperty("hook", out var hook) ? hook.GetString() : null));
            }
            else if (item.TryGetProperty("rule", out var rule))
            {
                var key = (Text(rule, "family"), Text(rule, "table"), Text(rule, "chain"));
                if (!rules.TryGetValue(key, out var list))
                {
                    rules[key] = list = [];
                }

                var expressions = rule.GetProperty("expr");
                if (expressions.ValueKind != JsonValueKind.Array)
                {
                    throw new FormatException($"a rule's expr is a JSON {expressions.ValueKind}, not an array");
                }

                list.Add(new NftRule(
                    rule.GetProperty("handle").GetInt64(),
                    rule.TryGetProperty("comment", out var comment) ? comment.GetString() : null,
                    expressions.Clone()));
            }
            else if (item.TryGetProperty("set", out var set))
            {
                var type = set.GetProperty("type");
                var elements = new HashSet<string>(StringComparer.Ordinal);
                if (set.TryGetProperty("elem", out var elem))
                {
                    foreach (var element in elem.EnumerateArray())
                    {
                        elements.Add(NftSet.Element(element));
                    }
                }

                sets.Add(new NftSet(Text(set, "family"), Text(set, "table"), Text(set, "name"),
                    type.ValueKind == JsonValueKind.Array ? string.Join(" . ", type.EnumerateArray().Select(t => t.GetString())) : type.GetString()!,
                    elements));
            }
        }

        return new NftRuleset(
            chains.Select(c => new NftChain(c.Family, c.Table, c.Name, c.Hook,
                rules.TryGetValue((c.Family, c.Table, c.Name), out var list) ? list : [])).ToList(),
            sets);
    }

    private static string Text(JsonElement element, string name) => element.GetProperty(name).GetString() ?? "";
}
