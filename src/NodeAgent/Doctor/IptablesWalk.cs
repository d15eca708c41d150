using System.Globalization;
using System.Text;
using TsCgnat.Firewall.Formats;

namespace TsCgnat.NodeAgent.Doctor;

/// <summary>
/// Table filter of one iptables back end as <c>iptables-save</c> printed it, with the built-in chains'
/// policies, which <see cref="SavedRuleset"/> does not keep (a ufw host has <c>:INPUT DROP</c>).
/// </summary>
public sealed class IptablesFilter
{
    private IptablesFilter(string name, SavedTable table, IReadOnlyDictionary<string, string> policies)
    {
        Name = name;
        Table = table;
        Policies = policies;
    }

    /// <summary>The back end, as reported: iptables-legacy or iptables-nft.</summary>
    public string Name { get; }

    public SavedTable Table { get; }

    /// <summary>Built-in chain → policy (ACCEPT or DROP).</summary>
    public IReadOnlyDictionary<string, string> Policies { get; }

    /// <summary>Table filter of an <c>iptables-save</c> listing, or null when that table is not loaded.</summary>
    public static IptablesFilter? Parse(string name, string iptablesSave)
    {
        var table = SavedRuleset.Parse(iptablesSave).Tables.GetValueOrDefault("filter");
        if (table is null)
        {
            return null;
        }

        var policies = new Dictionary<string, string>(StringComparer.Ordinal);
        var inFilter = false;
        foreach (var line in iptablesSave.Split('\n'))
        {
            if (line.StartsWith('*'))
            {
                inFilter = line.TrimEnd() == "*filter";
            }
            else if (inFilter && line.StartsWith(':') && line.Split(' ') is [var chain, var policy, ..] && policy != "-")
            {
                policies[chain[1..]] = policy;
            }
        }

        return new IptablesFilter(name, table, policies);
    }
}

/// <summary>
/// Walks a probe packet through table filter of one iptables back end as the kernel would: from the
/// built-in chain, through jumps, gotos and RETURNs, to a verdict or the chain policy. Only the matches
/// and targets named in <see cref="IptablesRule"/> are modelled; a rule beyond them is named in the result.
/// </summary>
public static class IptablesWalk
{
    /// <summary>Deeper than any real ruleset; a loop the kernel would refuse to load ends the walk as unknown.</summary>
    private const int MaxDepth = 32;

    /// <summary>Targets that neither decide nor change what the walker models.</summary>
    private static readonly HashSet<string> Passive = new(StringComparer.Ordinal) { "LOG", "NFLOG", "ULOG", "TRACE", "AUDIT", "CONNMARK", "CT", "NOTRACK" };

    /// <param name="ipsets">Every ipset set on the host (<c>ipset save</c>), by name, for <c>-m set</c>.</param>
    public static Verdict Walk(IptablesFilter filter, IReadOnlyDictionary<string, SavedSet> ipsets, Probe probe)
    {
        var state = new WalkState(probe);
        var chain = probe.BuiltInChain;
        var end = WalkChain(filter, ipsets, state, chain, 0);
        return end ?? Policy(filter, state, chain);
    }

    private static Verdict Policy(IptablesFilter filter, WalkState state, string chain)
    {
        var policy = filter.Policies.GetValueOrDefault(chain, "ACCEPT");
        return Result(filter, state, policy == "ACCEPT" ? Outcome.Allowed : Outcome.Dropped, chain, null, $"policy {policy}",
            $"the policy of {chain} ({policy}) decides");
    }

    /// <summary>Null when the chain returns (or ends) without a verdict.</summary>
    private static Verdict? WalkChain(IptablesFilter filter, IReadOnlyDictionary<string, SavedSet> ipsets, WalkState state, string chain, int depth)
    {
        if (depth > MaxDepth)
        {
            return Result(filter, state, Outcome.Unknown, chain, null, null, $"jumps nest deeper than {MaxDepth} chains at {chain}");
        }

        var rules = filter.Table.Rules(chain);
        for (var i = 0; i < rules.Count; i++)
        {
            var text = rules[i];
            var rule = IptablesRule.Parse(text);
            var match = rule.Matches(state, ipsets);
            if (match.Value == false)
            {
                continue;
            }

            var label = $"{chain} rule {i + 1}: {text}";
            var deciding = rule.Target is not null && !Passive.Contains(rule.Target) && rule.Target != "MARK";
            if (match.Value is null)
            {
                if (!deciding)
                {
                    state.Assumptions.Add($"{label}: {match.Why}: assumed not to match");
                    continue;
                }

                return Result(filter, state, Outcome.Unknown, chain, i + 1, text, $"{match.Why}, in a rule that would decide (-j {rule.Target})");
            }

            state.Trace.Add(label);
            switch (rule.Target)
            {
                case null:
                    continue;
                case "ACCEPT":
                    return Result(filter, state, Outcome.Allowed, chain, i + 1, text, $"accepted by {chain} rule {i + 1}");
                case "DROP":
                case "REJECT":
                    return Result(filter, state, Outcome.Dropped, chain, i + 1, text, $"{(rule.Target == "DROP" ? "dropped" : "rejected")} by {chain} rule {i + 1}");
                case "RETURN":
                    return filter.Policies.ContainsKey(chain) ? Policy(filter, state, chain) : null;
                case "MARK":
                    if (rule.ApplyMark(state) is { } problem)
                    {
                        return Result(filter, state, Outcome.Unknown, chain, i + 1, text, problem);
                    }

                    continue;
                case var passive when Passive.Contains(passive):
                    continue;
                case var target when filter.Table.HasChain(target) && !filter.Policies.ContainsKey(target):
                    var inner = WalkChain(filter, ipsets, state, target, depth + 1);
                    if (inner is not null)
                    {
                        return inner;
                    }

                    if (rule.Goto)
                    {
                        // -g: a RETURN in the target returns to whoever called this chain.
                        return filter.Policies.ContainsKey(chain) ? Policy(filter, state, chain) : null;
                    }

                    continue;
                default:
                    return Result(filter, state, Outcome.Unknown, chain, i + 1, text, $"target -j {rule.Target} is not modelled");
            }
        }

        return null;
    }

    private static Verdict Result(IptablesFilter filter, WalkState state, Outcome outcome, string chain, int? rule, string? text, string reason) =>
        new(outcome, filter.Name, chain, rule, text, reason, [.. state.Trace], [.. state.Assumptions]);
}

/// <summary>One rule body of <c>iptables-save</c>, split into the conditions the walker evaluates and a target.</summary>
internal sealed class IptablesRule
{
    private readonly List<Condition> _conditions = [];
    private readonly Dictionary<string, string[]> _targetOptions = new(StringComparer.Ordinal);

    public string? Target { get; private set; }

    public bool Goto { get; private set; }

    /// <summary>One test: a core option (-s, -i, ...) or a module option (conntrack --ctstate, ...).</summary>
    private sealed record Condition(string Module, string Option, string[] Values, bool Negate);

    public static IptablesRule Parse(string body)
    {
        var rule = new IptablesRule();
        var tokens = Tokens(body);
        var negate = false;
        string? module = null;
        var inTarget = false;
        for (var i = 0; i < tokens.Count; i++)
        {
            var token = tokens[i];
            string Next() => i + 1 < tokens.Count ? tokens[++i] : "";
            switch (token)
            {
                case "!":
                    negate = true;
                    continue;
                case "-m" or "--match":
                    module = Next();
                    inTarget = false;
                    break;
                case "-j" or "--jump":
                    rule.Target = Next();
                    inTarget = true;
                    break;
                case "-g" or "--goto":
                    rule.Target = Next();
                    rule.Goto = true;
                    inTarget = true;
                    break;
                case "-s" or "--source" or "-d" or "--destination" or "-i" or "--in-interface" or "-o" or "--out-interface" or "-p" or "--protocol":
                    rule._conditions.Add(new("", token.TrimStart('-')[..1], [Next()], negate));
                    break;
                case "-f" or "--fragment":
                    rule._conditions.Add(new("", "f", [], negate));
                    break;
                case var option when option.StartsWith("--", StringComparison.Ordinal):
                    var values = new List<string>();
                    while (i + 1 < tokens.Count && tokens[i + 1] != "!" && !tokens[i + 1].StartsWith('-'))
                    {
                        values.Add(tokens[++i]);
                    }

                    if (inTarget)
                    {
                        rule._targetOptions[option] = [.. values];
                    }
                    else
                    {
                        rule._conditions.Add(new(module ?? "", option, [.. values], negate));
                    }

                    break;
                default:
                    rule._conditions.Add(new("?", token, [], negate));
                    break;
            }

            negate = false;
        }

        return rule;
    }

    public Match Matches(WalkState state, IReadOnlyDictionary<string, SavedSet> ipsets) =>
        Match.All(_conditions.Select(c => Evaluate(c, state, ipsets)));

    /// <summary>MARK --set-xmark value/mask (what iptables-save prints for --set-mark too); null when applied.</summary>
    public string? ApplyMark(WalkState state)
    {
        if (_targetOptions.TryGetValue("--set-xmark", out var xmark) && xmark is [var x] && ValueMask(x) is var (value, mask))
        {
            state.Mark = (state.Mark & ~mask) ^ value;
            return null;
        }

        if (_targetOptions.TryGetValue("--set-mark", out var set) && set is [var s] && ValueMask(s) is var (v, m))
        {
            state.Mark = (state.Mark & ~m) | v;
            return null;
        }

        return "MARK with options other than --set-xmark/--set-mark is not modelled";
    }

    private static Match Evaluate(Condition c, WalkState state, IReadOnlyDictionary<string, SavedSet> ipsets)
    {
        var probe = state.Probe;
        var value = c.Values.FirstOrDefault() ?? "";
        switch (c.Module, c.Option)
        {
            case ("", "s"):
                return Addresses.Contains(value, probe.Source) is { } inside ? Match.Of(inside, c.Negate) : Match.Unknown($"-s {value} not understood");
            case ("", "d"):
                return Match.Unknown($"-d {value} depends on the destination, which the probe does not fix");
            case ("", "i"):
                return Match.Of(Addresses.Interface(value, probe.InInterface), c.Negate);
            case ("", "o"):
                return Match.Of(probe.OutInterface.Length > 0 && Addresses.Interface(value, probe.OutInterface), c.Negate);
            case ("", "p"):
                return Match.Of(value is "icmp" or "1" or "all" or "0", c.Negate);
            case ("", "f"):
                return Match.Of(false, c.Negate); // the probe is not a fragment
            case ("comment", "--comment"):
                return Match.Yes;
            case ("conntrack", "--ctstate") or ("state", "--state"):
                return Match.Of(value.Split(',').Contains(probe.State == ConnectionState.New ? "NEW" : "ESTABLISHED", StringComparer.Ordinal), c.Negate);
            case ("mark", "--mark"):
                return ValueMask(value) is var (mark, mask)
                    ? Match.Of((state.Mark & mask) == mark, c.Negate)
                    : Match.Unknown($"-m mark --mark {value} not understood");
            case ("icmp", "--icmp-type"):
                var wanted = probe.State == ConnectionState.New ? ("8", "echo-request") : ("0", "echo-reply");
                return Match.Of(value == "any" || value == wanted.Item1 || value.StartsWith(wanted.Item1 + "/", StringComparison.Ordinal) || value == wanted.Item2, c.Negate);
            case ("set", "--match-set"):
                return SetMatch(c, state, ipsets);
            case ("?", var token):
                return Match.Unknown($"option {token} not understood");
            default:
                return Match.Unknown($"unknown match -m {c.Module} {c.Option}");
        }
    }

    /// <summary><c>-m set --match-set NAME src[,src]</c> against the members <c>ipset save</c> listed.</summary>
    private static Match SetMatch(Condition c, WalkState state, IReadOnlyDictionary<string, SavedSet> ipsets)
    {
        if (c.Values is not [var name, var directions])
        {
            return Match.Unknown($"-m set {string.Join(' ', c.Values)} not understood");
        }

        if (!ipsets.TryGetValue(name, out var set))
        {
            return Match.Unknown($"ipset {name} was not listed by ipset save");
        }

        var flags = directions.Split(',');
        var probe = state.Probe;
        if (set.Type is "hash:net" or "hash:ip" && flags is ["src"])
        {
            return Match.Of(set.Members.Any(m => Addresses.Contains(m, probe.Source) == true), c.Negate);
        }

        if (set.Type == "hash:net,iface" && flags is ["src", var side])
        {
            // The second flag picks the interface: src = the one the packet came in on, dst = the one it leaves by.
            var iface = side == "src" ? probe.InInterface : probe.OutInterface;
            return Match.Of(set.Members.Any(m => m.Split(',') is [var net, var name2] && name2 == iface && Addresses.Contains(net, probe.Source) == true), c.Negate);
        }

        return Match.Unknown($"-m set --match-set {name} {directions} (ipset type {set.Type}) is not modelled");
    }

    private static (uint Value, uint Mask)? ValueMask(string text)
    {
        var parts = text.Split('/');
        return parts.Length is 1 or 2 && Number(parts[0]) is { } value && (parts.Length == 1 ? uint.MaxValue : Number(parts[1])) is { } mask
            ? (value, mask)
            : null;
    }

    private static uint? Number(string text) =>
        text.StartsWith("0x", StringComparison.OrdinalIgnoreCase)
            ? uint.TryParse(text[2..], NumberStyles.HexNumber, CultureInfo.InvariantCulture, out var hex) ? hex : null
            : uint.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var dec) ? dec : null;

    /// <summary>Words of a rule body; iptables-save quotes a comment with spaces and escapes quotes inside it.</summary>
    private static List<string> Tokens(string body)
    {
        var tokens = new List<string>();
        var current = new StringBuilder();
        var quoted = false;
        var any = false;
        for (var i = 0; i < body.Length; i++)
        {
            var ch = body[i];
            if (ch == '\\' && quoted && i + 1 < body.Length)
            {
                current.Append(body[++i]);
            }
            else if (ch == '"')
            {
                quoted = !quoted;
                any = true;
            }
            else if (ch == ' ' && !quoted)
            {
                if (any || current.Length > 0)
                {
                    tokens.Add(current.ToString());
                }

                current.Clear();
                any = false;
            }
            else
            {
                current.Append(ch);
            }
        }

        if (any || current.Length > 0)
        {
            tokens.Add(current.ToString());
        }

        return tokens;
    }
}
