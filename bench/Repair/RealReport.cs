using System.Globalization;

namespace TsCgnat.Bench.Repair;

/// <summary>The real-tailscaled mode's tables: the real daemon and the emulator side by side, per runner x mode x step.</summary>
internal static class RealReport
{
    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static void Print(IReadOnlyList<TargetResult> results, IReadOnlyList<(string Runner, string Mode, string Why)> skipped, Options options, TextWriter o)
    {
        var rows = (from r in results
                    from step in options.Steps
                    group r by (r.Runner, r.Mode, Step: step) into g
                    select (g.Key.Runner, g.Key.Mode, g.Key.Step,
                        Real: g.FirstOrDefault(r => r.Kind == "real")?.Of(g.Key.Step).ToList(),
                        Emu: g.FirstOrDefault(r => r.Kind == "emulator")?.Of(g.Key.Step).ToList())).ToList();

        o.WriteLine(string.Create(Inv, $"Pings: u2 -> u3 ({RealBench.Neighbour}, allowed by the policy), one every {options.PingInterval.TotalMilliseconds:F0} ms from just before the step until our"));
        o.WriteLine(string.Create(Inv, $"rules had been back and quiet for {options.Settle.TotalMilliseconds:F0} ms; lost = requests without an answer, p50 / max over the n steps, the longest run"));
        o.WriteLine("of consecutive losses in brackets. Drop without exemption: time in which a CGNAT drop was in force (tailscaled's,");
        o.WriteLine("or the copy in our own chain) while our exemption before it was missing, seen from outside (ms, p50 / max).");
        o.WriteLine();
        o.WriteLine("                                  pings lost, p50 / max (run)        drop without exemption (ms), p50 / max");
        o.WriteLine("runner    mode      step         n   real              emulator          real                 emulator");
        foreach (var (runner, mode, step, real, emu) in rows)
        {
            o.WriteLine(string.Create(
                Inv,
                $"{runner,-9} {mode,-9} {step,-11} {Math.Max(real?.Count ?? 0, emu?.Count ?? 0),2}   {Lost(real),-16}  {Lost(emu),-16}  {Exposed(real),-19}  {Exposed(emu)}"));
        }

        o.WriteLine();
        o.WriteLine("Rules gone: from the first moment one of our rules was missing (InChain: removed from ts-input/ts-forward; Indirect:");
        o.WriteLine("a hook or exemption missing, or the copy in our chain no longer the same as tailscaled's chain) to the moment all");
        o.WriteLine("were back for good (ms). After tailscaled: from the moment tailscaled's last command of the step returned (tailnet.sh");
        o.WriteLine("returns once the daemon is settled) to our rules back, 0 if already back. tailscaled's step: its commands' wall time.");
        o.WriteLine("real/emu: the ratio of the p50s, measured in this run.");
        o.WriteLine();
        o.WriteLine("                                  rules gone (ms)                           after tailscaled (ms)    tailscaled's step (ms)");
        o.WriteLine("runner    mode      step         n   real p50  emu p50  real/emu  real max  emu max   real p50  emu p50       real p50  emu p50  real/emu");
        foreach (var (runner, mode, step, real, emu) in rows)
        {
            var realGap = Gaps(real);
            var emuGap = Gaps(emu);
            var realCmd = real?.Select(s => s.CommandMs).ToList() ?? [];
            var emuCmd = emu?.Select(s => s.CommandMs).ToList() ?? [];
            o.WriteLine(string.Create(
                Inv,
                $"{runner,-9} {mode,-9} {step,-11} {Math.Max(real?.Count ?? 0, emu?.Count ?? 0),2}   {F(P50(realGap)),8}  {F(P50(emuGap)),7}  {Ratio(P50(realGap), P50(emuGap)),8}  {F(Max(realGap)),8}  {F(Max(emuGap)),7}   "
                + $"{F(P50(After(real))),8}  {F(P50(After(emu))),7}       {P50(realCmd),8:F0}  {P50(emuCmd),7:F0}  {Ratio(P50(realCmd), P50(emuCmd)),8}"));
        }

        o.WriteLine();
        o.WriteLine("Per lab: the agent's writes per step (its \"reconciled (...)\" lines, p50 / max), writes with another strategy than its");
        o.WriteLine("design gives for the runner and mode, warnings and errors it logged, lines tailscaled logged that look like errors and");
        o.WriteLine("that the lab's allow-list (tests/TestSupport/Tailnet.cs, TailscaledLog) does not explain, repairs by cause.");
        foreach (var r in results)
        {
            var writes = r.Steps.Select(s => (double)s.Writes).ToList();
            var other = r.Steps.SelectMany(s => s.OtherStrategy).ToList();
            var problems = r.Steps.SelectMany(s => s.AgentProblems).ToList();
            var unexplained = r.Steps.SelectMany(s => s.TailscaledUnexplained).ToList();
            var causes = string.Join(", ", r.Logged.GroupBy(l => l.Cause).Select(g => $"{g.Key}: {g.Count()}"));
            o.WriteLine(string.Create(
                Inv,
                $"  {r.Kind,-8} {r.Runner}/{r.Mode}: layout {r.Baseline.Layout} (expected {RealBench.Expected(r.Runner, r.Mode)}), ready in {r.SetupMs / 1000:F1} s; writes per step {P50(writes):F0} / {Max(writes):F0}; ")
                + $"other strategy: {other.Count}; agent warnings/errors: {problems.Count}; failed reconciles: {r.FailedReconciles}; tailscaled unexplained: {(r.Kind == "real" ? unexplained.Count.ToString(Inv) : "n/a")}");
            o.WriteLine($"           repairs by cause: {(causes.Length == 0 ? "none" : causes)}");
            if (r.SamplePeriods is { Count: > 0 } periods)
            {
                o.WriteLine(string.Create(Inv, $"           sampling (iptables-legacy-save loop): one snapshot every {P50(periods):F1} ms (median; max {Max(periods):F1})"));
            }

            o.WriteLine($"           load average: {r.LoadStart} at its start, {r.LoadEnd} at its end");
            foreach (var line in other.Concat(problems).Distinct().Take(5))
            {
                o.WriteLine($"           agent: {Shorten(line)}");
            }

            foreach (var line in unexplained.Distinct().Take(5))
            {
                o.WriteLine($"           tailscaled: {Shorten(line)}");
            }
        }

        foreach (var (runner, mode, why) in skipped)
        {
            o.WriteLine($"  {runner}/{mode}: not measured, {why}");
        }
    }

    private static string Lost(List<StepMeasurement>? steps)
    {
        if (steps is not { Count: > 0 })
        {
            return "-";
        }

        var lost = steps.Select(s => (double)s.Pings.Lost).ToList();
        return string.Create(Inv, $"{P50(lost):F0} / {Max(lost):F0} ({steps.Max(s => s.Pings.LongestRunLost)})");
    }

    private static string Exposed(List<StepMeasurement>? steps)
    {
        if (steps is not { Count: > 0 })
        {
            return "-";
        }

        var exposed = steps.Select(s => s.Rules.ExposedMs).ToList();
        return string.Create(Inv, $"{P50(exposed):F1} / {Max(exposed):F1}");
    }

    private static List<double> Gaps(List<StepMeasurement>? steps) => [.. (steps ?? []).Where(s => s.Rules.GapMs is not null).Select(s => s.Rules.GapMs!.Value)];

    private static List<double> After(List<StepMeasurement>? steps) => [.. (steps ?? []).Where(s => s.AfterMs is not null).Select(s => s.AfterMs!.Value)];

    private static double P50(IReadOnlyList<double> values) => Percentile.Of(values, .5);

    private static double Max(IReadOnlyList<double> values) => values.Count == 0 ? double.NaN : values.Max();

    private static string F(double value) => double.IsNaN(value) ? "-" : value.ToString("F1", Inv);

    private static string Ratio(double real, double emulator) =>
        double.IsNaN(real) || double.IsNaN(emulator) || emulator <= 0 ? "-" : (real / emulator).ToString("F1", Inv) + "x";

    private static string Shorten(string line) => line.Length > 220 ? line[..220] + " ..." : line;
}
