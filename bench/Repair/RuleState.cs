using System.Globalization;

namespace TsCgnat.Bench.Repair;

/// <summary>
/// What matters in the IPv4 filter table at one moment: how many of our exemption rules sit in
/// <c>ts-input</c> and <c>ts-forward</c>, whether tailscaled's CGNAT drops are there, and whether
/// tailscaled's plain jumps from INPUT and FORWARD are there (mode on).
/// </summary>
internal readonly record struct RuleState(int OursIn, int OursFwd, bool DropIn, bool DropFwd, bool HookIn, bool HookFwd)
{
    /// <summary>All our rules are back (at least as many as before the first rewrite).</summary>
    public bool Complete(Baseline baseline) => OursIn >= baseline.In && OursFwd >= baseline.Fwd;

    /// <summary>
    /// A packet from an allowed source would be dropped now: tailscaled's jump and its CGNAT drop are in force
    /// in a chain where our exemption is missing. In mode on tailscaled inserts its jump at position 1, above
    /// any hook of ours, so ts-input's verdict is the one that counts.
    /// </summary>
    public bool Exposed(Baseline baseline) =>
        (HookIn && DropIn && OursIn < baseline.In) || (HookFwd && DropFwd && OursFwd < baseline.Fwd);
}

/// <summary>How many of our rules each chain holds when the agent is in sync (read before the first rewrite).</summary>
internal readonly record struct Baseline(int In, int Fwd);

/// <summary>
/// The IPv4 filter table as <c>nft -a monitor ruleset</c> tells it, event by event. Rules are known by their
/// handle: a delete event carries only the handle, so every rule is classified when it is added.
/// </summary>
/// <remarks>
/// iptables-nft keeps the <c>-m comment</c> text in the rule's userdata, which <c>nft monitor</c> (1.0.6) does not
/// print for xtables rules: an iptables-nft rule of ours shows as <c>iifname != "tailscale0"  xt match set ... return</c>.
/// tailscaled's iptables runner never matches an ipset, so an <c>xt match set</c> rule in a ts-* chain is ours.
/// The native nft rules carry our comment (<c>comment "ts-cgnat exemption ..."</c>).
/// </remarks>
internal sealed class NftFilterTable
{
    private readonly Dictionary<(string Chain, long Handle), RuleKind> _rules = [];

    public RuleState State { get; private set; }

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
                if (Handle(line, "# handle ") is { } added && Classify(chain, line) is { } kind)
                {
                    _rules[(chain, added)] = kind;
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

        State = new RuleState(
            _rules.Values.Count(k => k == RuleKind.OursIn),
            _rules.Values.Count(k => k == RuleKind.OursFwd),
            _rules.ContainsValue(RuleKind.DropIn),
            _rules.ContainsValue(RuleKind.DropFwd),
            _rules.ContainsValue(RuleKind.HookIn),
            _rules.ContainsValue(RuleKind.HookFwd));
        return State != before;
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

    private static RuleKind? Classify(string chain, string line)
    {
        var body = line.Split(" # handle ", 2)[0];
        var ours = body.Contains("ts-cgnat exemption", StringComparison.Ordinal) || body.Contains("xt match set", StringComparison.Ordinal);
        var cgnatDrop = body.Contains("ip saddr 100.64.0.0/10 ", StringComparison.Ordinal) && body.EndsWith(" drop", StringComparison.Ordinal);
        return chain switch
        {
            "ts-input" when ours => RuleKind.OursIn,
            "ts-input" when cgnatDrop => RuleKind.DropIn,
            "ts-forward" when ours => RuleKind.OursFwd,
            "ts-forward" when cgnatDrop => RuleKind.DropFwd,
            "INPUT" when body.EndsWith(" jump ts-input", StringComparison.Ordinal) => RuleKind.HookIn,
            "FORWARD" when body.EndsWith(" jump ts-forward", StringComparison.Ordinal) => RuleKind.HookFwd,
            _ => null,
        };
    }

    private enum RuleKind
    {
        OursIn,
        OursFwd,
        DropIn,
        DropFwd,
        HookIn,
        HookFwd,
    }
}

/// <summary>The same state read from one <c>iptables-legacy-save -t filter</c>.</summary>
internal static class LegacySave
{
    public static RuleState Parse(IEnumerable<string> lines)
    {
        int oursIn = 0, oursFwd = 0;
        bool dropIn = false, dropFwd = false, hookIn = false, hookFwd = false;
        foreach (var line in lines)
        {
            var ours = line.Contains("--comment \"ts-cgnat exemption", StringComparison.Ordinal);
            var cgnatDrop = line.Contains(" -s 100.64.0.0/10 ", StringComparison.Ordinal) && line.EndsWith(" -j DROP", StringComparison.Ordinal);
            if (line.StartsWith("-A ts-input ", StringComparison.Ordinal))
            {
                oursIn += ours ? 1 : 0;
                dropIn |= cgnatDrop;
            }
            else if (line.StartsWith("-A ts-forward ", StringComparison.Ordinal))
            {
                oursFwd += ours ? 1 : 0;
                dropFwd |= cgnatDrop;
            }
            else
            {
                hookIn |= line == "-A INPUT -j ts-input";
                hookFwd |= line == "-A FORWARD -j ts-forward";
            }
        }

        return new RuleState(oursIn, oursFwd, dropIn, dropFwd, hookIn, hookFwd);
    }
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
