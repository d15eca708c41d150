using System.Globalization;
using System.Text.RegularExpressions;

namespace TsCgnat.Bench.Repair;

/// <summary>Where our exemptions live: inside tailscaled's chains (mode on) or in our own hooked chains (nodivert).</summary>
internal enum Layout
{
    /// <summary>Tagged rules at the top of ts-input / ts-forward: they go whenever tailscaled flushes its chains.</summary>
    InChain,

    /// <summary>
    /// Our TSCGNAT-INPUT / TSCGNAT-FORWARD, hooked at the top of INPUT / FORWARD: the exemptions, then a copy of
    /// tailscaled's own rules, which must follow every change of tailscaled's chains.
    /// </summary>
    Indirect,
}

/// <summary>
/// What matters in the IPv4 filter table at one moment. For <see cref="Layout.InChain"/>: how many of our exemption
/// rules sit in <c>ts-input</c> and <c>ts-forward</c>, whether tailscaled's CGNAT drops and its plain jumps from INPUT
/// and FORWARD (mode on) are there. For <see cref="Layout.Indirect"/>: how many exemptions our own chains hold,
/// whether our hooks call them, and whether the rest of each of our chains is the same as tailscaled's chain now.
/// </summary>
internal readonly record struct RuleState(
    int OursIn,
    int OursFwd,
    bool DropIn,
    bool DropFwd,
    bool HookIn,
    bool HookFwd,
    int IndirectIn = 0,
    int IndirectFwd = 0,
    bool OurHookIn = false,
    bool OurHookFwd = false,
    bool CopyDropIn = false,
    bool CopyDropFwd = false,
    bool CopyIn = false,
    bool CopyFwd = false)
{
    /// <summary>
    /// All our rules are back (at least as many as before the first rewrite). Indirect: also hooked, and each copy
    /// the same as tailscaled's chain, which holds its drop (a copy of a chain still being rebuilt is not back).
    /// </summary>
    public bool Complete(Baseline baseline) => baseline.Layout == Layout.InChain
        ? OursIn >= baseline.In && OursFwd >= baseline.Fwd
        : OurHookIn && OurHookFwd && IndirectIn >= baseline.In && IndirectFwd >= baseline.Fwd && CopyIn && CopyFwd;

    /// <summary>
    /// A packet from an allowed source would be dropped now: a CGNAT drop in force in a chain where our exemption is
    /// missing, either tailscaled's (its jump and drop; in mode on it inserts its jump at position 1, above any hook
    /// of ours, so ts-input's verdict is the one that counts) or the copy of it in our own hooked chain.
    /// </summary>
    public bool Exposed(Baseline baseline) =>
        (HookIn && DropIn && OursIn < baseline.In) || (HookFwd && DropFwd && OursFwd < baseline.Fwd)
        || (OurHookIn && CopyDropIn && IndirectIn < baseline.In) || (OurHookFwd && CopyDropFwd && IndirectFwd < baseline.Fwd);

    /// <summary>The baseline this state is, if the agent is in sync in one of its layouts; null if not.</summary>
    public Baseline? InSync() =>
        OursIn > 0 && OursFwd > 0 ? new Baseline(OursIn, OursFwd, Layout.InChain)
        : OurHookIn && OurHookFwd && IndirectIn > 0 && IndirectFwd > 0 && CopyIn && CopyFwd ? new Baseline(IndirectIn, IndirectFwd, Layout.Indirect)
        : null;
}

/// <summary>How many of our rules each chain holds when the agent is in sync (read before the first rewrite), and where.</summary>
internal readonly record struct Baseline(int In, int Fwd, Layout Layout = Layout.InChain);

/// <summary>
/// How one listing format says what a rule is. A rule is its chain and its body (the text after the chain name),
/// compared between tailscaled's chain and our copy of it.
/// </summary>
internal abstract class RuleSyntax
{
    public abstract bool IsOurs(string body);

    public abstract bool IsCgnatDrop(string body);

    /// <summary>The chain a rule jumps to, if it is a plain jump (tailscaled's) or one of our hooks.</summary>
    public abstract string? JumpTarget(string body);

    /// <summary>The state of the filter table whose rules, per chain, are <paramref name="chains"/>.</summary>
    public RuleState Read(IReadOnlyDictionary<string, List<string>> chains)
    {
        var none = new List<string>();
        List<string> Chain(string name) => chains.TryGetValue(name, out var rules) ? rules : none;
        int Ours(string chain) => Chain(chain).Count(IsOurs);
        bool Drop(string chain) => Chain(chain).Any(r => !IsOurs(r) && IsCgnatDrop(r));
        bool Jump(string from, string to) => Chain(from).Any(r => JumpTarget(r) == to);
        bool Copy(string theirs, string ours)
        {
            var tailscaled = Chain(theirs).Where(r => !IsOurs(r)).Order(StringComparer.Ordinal).ToList();
            var copy = Chain(ours).Where(r => !IsOurs(r)).Order(StringComparer.Ordinal).ToList();
            return tailscaled.Any(IsCgnatDrop) && tailscaled.SequenceEqual(copy, StringComparer.Ordinal);
        }

        return new RuleState(
            Ours("ts-input"),
            Ours("ts-forward"),
            Drop("ts-input"),
            Drop("ts-forward"),
            Jump("INPUT", "ts-input"),
            Jump("FORWARD", "ts-forward"),
            Ours("TSCGNAT-INPUT"),
            Ours("TSCGNAT-FORWARD"),
            Jump("INPUT", "TSCGNAT-INPUT"),
            Jump("FORWARD", "TSCGNAT-FORWARD"),
            Drop("TSCGNAT-INPUT"),
            Drop("TSCGNAT-FORWARD"),
            Copy("ts-input", "TSCGNAT-INPUT"),
            Copy("ts-forward", "TSCGNAT-FORWARD"));
    }
}

/// <summary>
/// The IPv4 filter table as <c>nft -a monitor ruleset</c> tells it, event by event, seeded from <c>nft -a list table
/// ip filter</c> when the monitor starts after tailscaled. Rules are known by their handle: a delete event carries
/// only the handle, so every rule's body is kept when it is added.
/// </summary>
/// <remarks>
/// iptables-nft keeps the <c>-m comment</c> text in the rule's userdata, which <c>nft monitor</c> (1.0.6) does not
/// print for xtables rules: an iptables-nft rule of ours shows as <c>iifname != "tailscale0"  xt match set ... return</c>.
/// tailscaled's iptables runner never matches an ipset, so an <c>xt match set</c> rule is ours; so is a hook of ours
/// (a jump to a TSCGNAT- chain). The native nft rules carry our comment (<c>comment "ts-cgnat exemption ..."</c>).
/// Counters are left out of a body, so that a copy and tailscaled's rule compare equal whatever they counted.
/// </remarks>
internal sealed partial class NftFilterTable : RuleSyntax
{
    private readonly Dictionary<(string Chain, long Handle), string> _rules = [];

    public RuleState State { get; private set; }

    public override bool IsOurs(string body) =>
        body.Contains("ts-cgnat exemption", StringComparison.Ordinal) || body.Contains("xt match set", StringComparison.Ordinal)
        || body.Contains("@TSCGNAT-", StringComparison.Ordinal);

    public override bool IsCgnatDrop(string body) =>
        body.Contains("ip saddr 100.64.0.0/10 ", StringComparison.Ordinal) && body.EndsWith(" drop", StringComparison.Ordinal);

    public override string? JumpTarget(string body) =>
        JumpRule().Match(body) is { Success: true } m ? m.Groups["chain"].Value : null;

    /// <summary>Applies one monitor line; returns true when the state changed.</summary>
    public bool Apply(string line)
    {
        var before = State;
        var words = line.Split(' ', 5, StringSplitOptions.RemoveEmptyEntries);
        if (words.Length < 4 || words[2] != "ip" || words[3] != "filter")
        {
            return false; // other families and tables (ip6, nat, mangle) and other objects do not matter here
        }

        var chain = words.Length > 4 ? words[4].Split(' ', 2)[0] : "";
        switch (words[0], words[1])
        {
            case ("add" or "insert", "rule"):
                if (Handle(line, "# handle ") is { } added)
                {
                    _rules[(chain, added)] = Body(words[4][chain.Length..]);
                }

                break;
            case ("delete", "rule"):
                if (Handle(line, " handle ") is { } deleted)
                {
                    _rules.Remove((chain, deleted));
                }

                break;
            case ("delete" or "flush", "chain"):
                foreach (var key in _rules.Keys.Where(k => k.Chain == chain).ToList())
                {
                    _rules.Remove(key);
                }

                break;
            case ("delete" or "flush", "table"):
                _rules.Clear();
                break;
        }

        State = Compute();
        return State != before;
    }

    /// <summary>
    /// Takes in the rules of an <c>nft -a list table ip filter</c> (the state before the monitor's first event);
    /// returns true when the state changed.
    /// </summary>
    public bool Seed(string listing)
    {
        var before = State;
        var chain = "";
        foreach (var line in listing.Split('\n'))
        {
            if (ChainLine().Match(line) is { Success: true } c)
            {
                chain = c.Groups["chain"].Value;
            }
            else if (chain.Length > 0 && RuleLine().Match(line) is { Success: true } r)
            {
                _rules[(chain, long.Parse(r.Groups["handle"].Value, CultureInfo.InvariantCulture))] = Body(r.Groups["body"].Value);
            }
        }

        State = Compute();
        return State != before;
    }

    private RuleState Compute() => Read(_rules
        .OrderBy(r => r.Key.Handle)
        .GroupBy(r => r.Key.Chain, StringComparer.Ordinal)
        .ToDictionary(g => g.Key, g => g.Select(r => r.Value).ToList(), StringComparer.Ordinal));

    /// <summary>
    /// A rule's text after its chain name, as the monitor or a listing prints it: without the monitor's position
    /// (<c>handle N</c> before the rule), the handle comment after it, counter values and repeated blanks.
    /// </summary>
    private static string Body(string text)
    {
        var body = text.Split(" # handle ", 2)[0];
        body = Position().Replace(body, "");
        body = Counter().Replace(body, "counter");
        return Blanks().Replace(body, " ").Trim();
    }

    /// <summary>The number after the last <paramref name="marker"/> (an add names the new rule's handle after "# handle").</summary>
    private static long? Handle(string line, string marker)
    {
        var at = line.LastIndexOf(marker, StringComparison.Ordinal);
        if (at < 0)
        {
            return null;
        }

        var digits = line[(at + marker.Length)..].Split(' ', 2)[0];
        return long.TryParse(digits, NumberStyles.None, CultureInfo.InvariantCulture, out var handle) ? handle : null;
    }

    [GeneratedRegex(@"(?:^| )jump (?<chain>\S+)$")]
    private static partial Regex JumpRule();

    [GeneratedRegex(@"^\s*handle \d+ ")]
    private static partial Regex Position();

    [GeneratedRegex(@"counter packets \d+ bytes \d+")]
    private static partial Regex Counter();

    [GeneratedRegex(@"\s+")]
    private static partial Regex Blanks();

    [GeneratedRegex(@"^\s*chain (?<chain>\S+) \{")]
    private static partial Regex ChainLine();

    [GeneratedRegex(@"^\t\t(?<body>.*\S) # handle (?<handle>\d+)$")]
    private static partial Regex RuleLine();
}

/// <summary>The same state read from one <c>iptables-legacy-save -t filter</c>.</summary>
internal sealed class LegacySave : RuleSyntax
{
    private static readonly LegacySave Syntax = new();

    public static RuleState Parse(IEnumerable<string> lines)
    {
        var chains = new Dictionary<string, List<string>>(StringComparer.Ordinal);
        foreach (var line in lines)
        {
            if (!line.StartsWith("-A ", StringComparison.Ordinal))
            {
                continue;
            }

            var parts = line.Split(' ', 3);
            if (parts.Length < 3)
            {
                continue;
            }

            if (!chains.TryGetValue(parts[1], out var rules))
            {
                chains[parts[1]] = rules = [];
            }

            rules.Add(parts[2]);
        }

        return Syntax.Read(chains);
    }

    public override bool IsOurs(string body) =>
        body.Contains("--comment \"ts-cgnat exemption", StringComparison.Ordinal) || body.Contains("--match-set TSCGNAT-", StringComparison.Ordinal);

    public override bool IsCgnatDrop(string body) =>
        body.Contains("-s 100.64.0.0/10 ", StringComparison.Ordinal) && body.EndsWith(" -j DROP", StringComparison.Ordinal);

    /// <summary>tailscaled's jumps are a bare <c>-j ts-input</c>; our hooks carry our comment before the jump.</summary>
    public override string? JumpTarget(string body) =>
        body.StartsWith("-j ", StringComparison.Ordinal) && body.IndexOf(' ', 3) < 0 ? body[3..]
        : body.StartsWith("-m comment --comment \"ts-cgnat hook\" -j ", StringComparison.Ordinal) ? body.Split(' ')[^1]
        : null;
}

/// <summary>The states seen over time (Unix milliseconds, one clock for one observer), appended as they change.</summary>
internal sealed class Timeline
{
    private readonly List<(double Ms, RuleState State)> _changes = [];
    private readonly Lock _lock = new();

    public void Record(double ms, RuleState state)
    {
        lock (_lock)
        {
            if (_changes.Count == 0 || _changes[^1].State != state)
            {
                _changes.Add((ms, state));
            }
        }
    }

    /// <summary>The latest state and when it began; null before the first observation.</summary>
    public (double Since, RuleState State)? Latest
    {
        get
        {
            lock (_lock)
            {
                return _changes.Count == 0 ? null : _changes[^1];
            }
        }
    }

    /// <summary>What one rewrite did to our rules between <paramref name="from"/> and <paramref name="to"/>.</summary>
    public RewriteMeasurement Measure(double from, double to, Baseline baseline)
    {
        List<(double Ms, RuleState State)> window;
        lock (_lock)
        {
            var start = _changes.FindLastIndex(c => c.Ms <= from);
            window = [.. _changes.Skip(Math.Max(start, 0)).Where(c => c.Ms <= to)];
        }

        return RewriteMeasurement.From(window, from, to, baseline);
    }
}

/// <summary>
/// One rewrite seen from outside the agent. <see cref="GapMs"/>: from the first moment one of our rules was gone to the
/// moment all were back for good (null if the rewrite never removed them). <see cref="ExposedMs"/>: how long, in total,
/// tailscaled's drop was in force while our exemption was missing. <see cref="Returns"/>: how often our rules came back
/// within the window (more than 1 when tailscaled flushed again after a repair). <see cref="BackAtMs"/>: when they
/// were back for good (Unix ms), to compare with the moment tailscaled's last command returned.
/// </summary>
internal sealed record RewriteMeasurement(double? GapMs, double ExposedMs, int Returns, bool BackAtEnd, double? BackAtMs)
{
    public static RewriteMeasurement From(IReadOnlyList<(double Ms, RuleState State)> changes, double from, double to, Baseline baseline)
    {
        double? removed = null, back = null;
        var exposed = 0.0;
        var returns = 0;
        for (var i = 0; i < changes.Count; i++)
        {
            var (at, state) = changes[i];
            var begin = Math.Max(at, from);
            var end = i + 1 < changes.Count ? changes[i + 1].Ms : to;
            if (state.Exposed(baseline))
            {
                exposed += Math.Max(0, end - begin);
            }

            if (i == 0)
            {
                continue;
            }

            var was = changes[i - 1].State.Complete(baseline);
            var now = state.Complete(baseline);
            if (was && !now)
            {
                removed ??= at;
            }
            else if (!was && now && removed is not null)
            {
                back = at;
                returns++;
            }
        }

        var backAtEnd = changes.Count > 0 && changes[^1].State.Complete(baseline);
        var gap = removed is { } r && back is { } b && backAtEnd ? b - r : (double?)null;
        return new RewriteMeasurement(gap, exposed, returns, backAtEnd, gap is null ? null : back);
    }
}

/// <summary>Percentiles by nearest rank: the value at rank ceil(p * n), so p99 of 50 samples is the largest one.</summary>
internal static class Percentile
{
    public static double Of(IReadOnlyList<double> values, double p)
    {
        if (values.Count == 0)
        {
            return double.NaN;
        }

        var sorted = values.Order().ToList();
        var rank = (int)Math.Ceiling(p * sorted.Count);
        return sorted[Math.Clamp(rank, 1, sorted.Count) - 1];
    }
}
