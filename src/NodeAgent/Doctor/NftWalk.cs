using System.Globalization;
using System.Net;
using System.Text.Json;
using TsCgnat.Firewall.Formats;

namespace TsCgnat.NodeAgent.Doctor;

/// <summary>A base chain's hook, priority and policy, which <see cref="NftChain"/> does not keep.</summary>
public sealed record NftBaseChain(string Family, string Table, string Name, string Type, string Hook, int Priority, string Policy)
{
    /// <summary>The base chains of <c>nft -j list ruleset</c> output.</summary>
    public static IReadOnlyList<NftBaseChain> Parse(string json)
    {
        if (string.IsNullOrWhiteSpace(json))
        {
            return [];
        }

        using var document = JsonDocument.Parse(json);
        var result = new List<NftBaseChain>();
        foreach (var item in document.RootElement.GetProperty("nftables").EnumerateArray())
        {
            if (item.TryGetProperty("chain", out var chain) && chain.TryGetProperty("hook", out var hook))
            {
                result.Add(new(
                    Text(chain, "family"), Text(chain, "table"), Text(chain, "name"), Text(chain, "type"), hook.GetString() ?? "",
                    chain.TryGetProperty("prio", out var prio) && prio.TryGetInt32(out var p) ? p : 0,
                    chain.TryGetProperty("policy", out var policy) ? policy.GetString() ?? "accept" : "accept"));
            }
        }

        return result;
    }

    private static string Text(JsonElement element, string name) =>
        element.TryGetProperty(name, out var value) ? value.GetString() ?? "" : "";
}

/// <summary>
/// Walks a probe through the filter-hook base chains of nft <c>table ip filter</c> (where tailscaled's
/// nftables runner keeps its chains), in priority order, over the JSON expressions of each rule. As in
/// the kernel, an accept ends one base chain and the packet goes on to the next one at the same hook;
/// a drop ends everything. Other tables' base chains at the hook are not walked; the caller says so.
/// </summary>
public static class NftWalk
{
    public const string Family = "ip";
    public const string Table = "filter";
    private const string Where = "nftables";
    private const int MaxDepth = 32;

    private static readonly Dictionary<string, uint> CtStates = new(StringComparer.Ordinal)
    {
        ["invalid"] = 1,
        ["established"] = 2,
        ["related"] = 4,
        ["new"] = 8,
        ["untracked"] = 64,
    };

    public static Verdict Walk(NftRuleset nft, IReadOnlyList<NftBaseChain> baseChains, Probe probe)
    {
        var state = new WalkState(probe);
        var chains = baseChains
            .Where(c => c.Family == Family && c.Table == Table && c.Type == "filter" && c.Hook == probe.Hook)
            .OrderBy(c => c.Priority)
            .ToList();
        if (chains.Count == 0)
        {
            return new(Outcome.Allowed, Where, null, null, null, $"table {Family} {Table} has no base chain at hook {probe.Hook}", [], []);
        }

        Verdict? last = null;
        foreach (var chain in chains)
        {
            var end = WalkChain(nft, state, chain.Name, 0);
            if (end is null)
            {
                end = Result(state, chain.Policy == "accept" ? Outcome.Allowed : Outcome.Dropped, chain.Name, null, $"policy {chain.Policy}",
                    $"the policy of {chain.Name} ({chain.Policy}) decides");
            }

            if (end.Outcome != Outcome.Allowed)
            {
                return end;
            }

            last = end; // accept is final for this base chain only
        }

        return last!;
    }

    private static Verdict? WalkChain(NftRuleset nft, WalkState state, string chainName, int depth)
    {
        if (depth > MaxDepth)
        {
            return Result(state, Outcome.Unknown, chainName, null, null, $"jumps nest deeper than {MaxDepth} chains at {chainName}");
        }

        var chain = nft.Chain(Family, Table, chainName);
        if (chain is null)
        {
            return Result(state, Outcome.Unknown, chainName, null, null, $"chain {chainName} is not in table {Family} {Table}");
        }

        for (var i = 0; i < chain.Rules.Count; i++)
        {
            var rule = chain.Rules[i];
            var text = Describe(rule);
            var label = $"{chainName} rule {i + 1}: {text}";
            var verdict = rule.Verdict();
            var match = Match.All(rule.Expressions.EnumerateArray().Select(e => Condition(nft, state, e)));
            if (match.Value == false)
            {
                continue;
            }

            var unknownStatement = rule.Expressions.EnumerateArray().Select(Statement).FirstOrDefault(s => s is not null);
            if (match.Value is null || unknownStatement is not null)
            {
                var why = match.Why ?? unknownStatement!;
                if (verdict is null)
                {
                    state.Assumptions.Add($"{label}: {why}: assumed not to match");
                    continue;
                }

                return Result(state, Outcome.Unknown, chainName, i + 1, text, $"{why}, in a rule that would decide ({verdict})");
            }

            state.Trace.Add(label);
            if (Mangle(state, rule.Expressions) is { } problem)
            {
                return Result(state, Outcome.Unknown, chainName, i + 1, text, problem);
            }

            switch (verdict?.Split(' '))
            {
                case null or ["continue"]:
                    continue;
                case ["accept"]:
                    return Result(state, Outcome.Allowed, chainName, i + 1, text, $"accepted by {chainName} rule {i + 1}");
                case ["drop"] or ["reject"]:
                    return Result(state, Outcome.Dropped, chainName, i + 1, text, $"{(verdict == "drop" ? "dropped" : "rejected")} by {chainName} rule {i + 1}");
                case ["return"]:
                    return null;
                case ["jump" or "goto", var target]:
                    var inner = WalkChain(nft, state, target, depth + 1);
                    if (inner is not null || verdict.StartsWith("goto", StringComparison.Ordinal))
                    {
                        return inner;
                    }

                    continue;
                default:
                    return Result(state, Outcome.Unknown, chainName, i + 1, text, $"verdict {verdict} is not modelled");
            }
        }

        return null;
    }

    /// <summary>
    /// A rule in nft's own words, near enough to <c>nft list</c> for a reader to find it. Rendered from the
    /// JSON by hand: the nft CLI can only print whole chains, and its text form is what we avoid parsing.
    /// </summary>
    public static string Describe(NftRule rule)
    {
        var words = rule.Expressions.EnumerateArray().Select(Words).Where(w => w.Length > 0);
        return string.Join(' ', words) + (rule.Comment is null ? "" : $" comment \"{rule.Comment}\"");
    }

    private static string Words(JsonElement expression)
    {
        foreach (var property in expression.EnumerateObject())
        {
            var body = property.Value;
            return property.Name switch
            {
                "match" => $"{Operand(body.GetProperty("left"))} {(body.TryGetProperty("op", out var op) && op.GetString() is "!=" ? "!= " : "")}{Operand(body.GetProperty("right"))}",
                "counter" => "counter",
                "mangle" => $"{Operand(body.GetProperty("key"))} set {Operand(body.GetProperty("value"))}",
                "jump" or "goto" => $"{property.Name} {body.GetProperty("target").GetString()}",
                "accept" or "drop" or "reject" or "return" or "continue" or "log" => property.Name,
                var name => $"{name} {body.GetRawText()}",
            };
        }

        return "";
    }

    private static string Operand(JsonElement operand)
    {
        if (operand.ValueKind == JsonValueKind.String)
        {
            var text = operand.GetString() ?? "";
            return text.StartsWith('@') || IPAddress.TryParse(text, out _) || CtStates.ContainsKey(text) ? text : $"\"{text}\"";
        }

        if (operand.ValueKind == JsonValueKind.Number)
        {
            return operand.TryGetUInt32(out var n) && n > 255 ? $"0x{n:x8}" : operand.GetRawText();
        }

        if (operand.ValueKind == JsonValueKind.Array)
        {
            return string.Join(',', operand.EnumerateArray().Select(Operand));
        }

        if (operand.TryGetProperty("meta", out var meta))
        {
            var key = meta.GetProperty("key").GetString();
            return key is "iifname" or "oifname" ? key : $"meta {key}";
        }

        if (operand.TryGetProperty("payload", out var payload))
        {
            return $"{payload.GetProperty("protocol").GetString()} {payload.GetProperty("field").GetString()}";
        }

        if (operand.TryGetProperty("ct", out var ct))
        {
            return $"ct {ct.GetProperty("key").GetString()}";
        }

        if (operand.TryGetProperty("concat", out var parts))
        {
            return string.Join(" . ", parts.EnumerateArray().Select(Operand));
        }

        foreach (var op in new[] { "&", "|", "^" })
        {
            if (operand.TryGetProperty(op, out var operands) && operands.GetArrayLength() == 2)
            {
                return $"{Operand(operands[0])} {op} {Operand(operands[1])}";
            }
        }

        return operand.TryGetProperty("prefix", out _) || operand.TryGetProperty("range", out _) || operand.TryGetProperty("set", out _)
            ? NftSet.Element(operand)
            : operand.GetRawText();
    }

    /// <summary>A match expression's value; statements and verdicts count as matching (they are handled apart).</summary>
    private static Match Condition(NftRuleset nft, WalkState state, JsonElement expression)
    {
        if (!expression.TryGetProperty("match", out var match))
        {
            return Match.Yes;
        }

        var op = match.TryGetProperty("op", out var o) ? o.GetString() ?? "==" : "==";
        var left = match.GetProperty("left");
        var right = match.GetProperty("right");
        var value = Value(state, left);
        if (value is NoValue)
        {
            return Match.No; // e.g. "udp dport": nft's implicit l4proto dependency fails for ICMP
        }

        if (value is null)
        {
            return Match.Unknown($"unknown match {left.GetRawText()}");
        }

        bool? result = value switch
        {
            uint states when IsCtState(left) => (states & CtMask(right)) != 0 ? op != "!=" : op == "!=",
            _ => Compare(nft, value, right) is { } equal ? equal != (op == "!=") : null,
        };
        return result is { } known ? Match.Of(known) : Match.Unknown($"match {match.GetRawText()} not understood");
    }

    /// <summary>Statements the walker models (counter, log, meta mark set, verdicts), or why one is not.</summary>
    private static string? Statement(JsonElement expression)
    {
        foreach (var property in expression.EnumerateObject())
        {
            return property.Name switch
            {
                "match" or "counter" or "log" or "accept" or "drop" or "reject" or "return" or "jump" or "goto" or "continue" => null,
                "mangle" when property.Value.TryGetProperty("key", out var key) && key.TryGetProperty("meta", out var meta)
                    && meta.TryGetProperty("key", out var k) && k.GetString() == "mark" => null,
                var name => $"unknown statement {name}",
            };
        }

        return null;
    }

    private static string? Mangle(WalkState state, JsonElement expressions)
    {
        foreach (var expression in expressions.EnumerateArray())
        {
            if (expression.TryGetProperty("mangle", out var mangle))
            {
                if (Value(state, mangle.GetProperty("value")) is uint mark)
                {
                    state.Mark = mark;
                }
                else
                {
                    return $"meta mark set {mangle.GetProperty("value").GetRawText()} not understood";
                }
            }
        }

        return null;
    }

    /// <summary>Marks a left side that cannot match the ICMP probe at all.</summary>
    private sealed class NoValue
    {
        public static readonly NoValue Instance = new();
    }

    /// <summary>The probe's value of a left side: IPAddress, interface name, uint, symbol string, concatenation list, or null.</summary>
    private static object? Value(WalkState state, JsonElement left)
    {
        var probe = state.Probe;
        if (left.ValueKind == JsonValueKind.Number)
        {
            return left.TryGetUInt32(out var n) ? n : null;
        }

        if (left.TryGetProperty("meta", out var meta))
        {
            return meta.GetProperty("key").GetString() switch
            {
                "iifname" => probe.InInterface,
                "oifname" => probe.OutInterface,
                "mark" => state.Mark,
                "l4proto" => "icmp",
                "nfproto" => "ipv4",
                _ => null,
            };
        }

        if (left.TryGetProperty("payload", out var payload))
        {
            var protocol = payload.TryGetProperty("protocol", out var p) ? p.GetString() : null;
            var field = payload.TryGetProperty("field", out var f) ? f.GetString() : null;
            return (protocol, field) switch
            {
                ("ip", "saddr") => probe.Source,
                ("ip", "protocol") => "icmp",
                ("icmp", "type") => probe.State == ConnectionState.New ? "echo-request" : "echo-reply",
                ("tcp" or "udp" or "udplite" or "sctp" or "dccp" or "th", _) => NoValue.Instance,
                _ => null,
            };
        }

        if (IsCtState(left))
        {
            return probe.State == ConnectionState.New ? CtStates["new"] : CtStates["established"];
        }

        if (left.TryGetProperty("concat", out var parts))
        {
            var values = parts.EnumerateArray().Select(part => Value(state, part)).ToList();
            return values.Any(v => v is null) ? null : values.Any(v => v is NoValue) ? NoValue.Instance : values;
        }

        foreach (var op in new[] { "&", "|", "^" })
        {
            if (left.TryGetProperty(op, out var operands) && operands.GetArrayLength() == 2
                && Value(state, operands[0]) is uint a && Value(state, operands[1]) is uint b)
            {
                return op switch { "&" => a & b, "|" => a | b, _ => a ^ b };
            }
        }

        return null;
    }

    private static bool IsCtState(JsonElement left) =>
        left.ValueKind == JsonValueKind.Object && left.TryGetProperty("ct", out var ct) && ct.TryGetProperty("key", out var key) && key.GetString() == "state";

    private static uint CtMask(JsonElement right) => right.ValueKind switch
    {
        JsonValueKind.Array => right.EnumerateArray().Aggregate(0u, (mask, element) => mask | CtMask(element)),
        JsonValueKind.String => CtStates.GetValueOrDefault(right.GetString() ?? ""),
        JsonValueKind.Number => right.TryGetUInt32(out var n) ? n : 0,
        JsonValueKind.Object when right.TryGetProperty("set", out var set) => CtMask(set),
        _ => 0,
    };

    /// <summary>Whether <paramref name="value"/> equals (or is in) the right side; null when the right side is not understood.</summary>
    private static bool? Compare(NftRuleset nft, object value, JsonElement right)
    {
        if (right.ValueKind == JsonValueKind.String && right.GetString() is { } text && text.StartsWith('@'))
        {
            var set = nft.Set(Family, Table, text[1..]);
            return set is null ? null : AnyOf(value, set.Elements);
        }

        if (right.ValueKind == JsonValueKind.Object && right.TryGetProperty("set", out var literal))
        {
            return AnyOf(value, [.. literal.EnumerateArray().Select(NftSet.Element)]);
        }

        return Element(value, NftSet.Element(right));
    }

    private static bool? AnyOf(object value, IEnumerable<string> elements)
    {
        var unknown = false;
        foreach (var element in elements)
        {
            switch (Element(value, element))
            {
                case true:
                    return true;
                case null:
                    unknown = true;
                    break;
            }
        }

        return unknown ? null : false;
    }

    /// <summary>One element in <see cref="NftSet.Element"/>'s canonical text against the probe's value.</summary>
    private static bool? Element(object value, string element) => value switch
    {
        IPAddress address => Addresses.Contains(element, address),
        string name => Addresses.Interface(element, name) || element == name,
        uint number => Number(element) is { } n ? n == number : null,
        List<object?> parts => element.Split(',') is var pieces && pieces.Length == parts.Count
            ? parts.Zip(pieces).Select(p => Element(p.First!, p.Second)).Aggregate((bool?)true, (all, one) => all == false || one == false ? false : all is null || one is null ? null : true)
            : null,
        _ => null,
    };

    private static uint? Number(string text) =>
        text.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            ? uint.TryParse(text[2..], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var hex) ? hex : null
            : uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var dec) ? dec : null;

    private static Verdict Result(WalkState state, Outcome outcome, string chain, int? rule, string? text, string reason) =>
        new(outcome, Where, chain, rule, text, reason, [.. state.Trace], [.. state.Assumptions]);
}
