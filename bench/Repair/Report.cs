using System.Globalization;

namespace TsCgnat.Bench.Repair;

/// <summary>The tables and the verdicts against design section 10.</summary>
internal static class Report
{
    /// <summary>The poll the comparison models (Calico re-reads every 180 s, kube-proxy 30 s, public scripts 10-15 s).</summary>
    private const double PollMs = 10_000;

    /// <summary>Draws of the poll model; the seed is fixed so a report can be reproduced from its samples.</summary>
    private const int ModelDraws = 100_000;

    private static readonly CultureInfo Inv = CultureInfo.InvariantCulture;

    public static void Print(IReadOnlyList<BackendResult> results, Options options, TextWriter o)
    {
        var main = results.Where(r => !r.IsPollComparison).ToList();
        o.WriteLine("Rules gone: from the first moment one of our rules was removed by the rewrite to the moment all were back,");
        o.WriteLine("timed from outside the agent (nft monitor events; for legacy, iptables-legacy-save snapshots). Percentiles by nearest rank.");
        o.WriteLine("10 s poll: MODELLED, not measured: each measured time plus a wait uniform in [0, 10 s) for the next poll");
        o.WriteLine(string.Create(Inv, $"({ModelDraws:N0} draws, fixed seed; its max is 10 s + the measured max). ratio = 10 s poll / measured."));
        o.WriteLine();
        o.WriteLine("                  rules gone (ms, measured)      10 s poll (ms, modelled)       ratio");
        o.WriteLine("backend    n      p50       p99       max        p50       p99       max       p50      p99");
        foreach (var r in main)
        {
            var gaps = r.Gaps;
            var (m50, m99, mMax) = PollModel(gaps);
            o.WriteLine(string.Create(
                Inv,
                $"{r.Label,-9} {gaps.Count,3}  {P(gaps, .5),8:F1}  {P(gaps, .99),8:F1}  {Max(gaps),8:F1}   {m50,8:F0}  {m99,8:F0}  {mMax,8:F0}  {m50 / P(gaps, .5),7:F0}x  {m99 / P(gaps, .99),6:F0}x"));
        }

        o.WriteLine();
        o.WriteLine("Drop without exemption: total time, per rewrite, in which tailscaled's jump and CGNAT drop were in force in");
        o.WriteLine("ts-input or ts-forward while our rule there was missing (the time packets from allowed sources are really dropped).");
        o.WriteLine("After tailscaled: from the moment tailscaled's last command of the rewrite returned to our rules back (0 if already back).");
        o.WriteLine("Agent's log: its own \"rules back N ms after the change was seen\" (event or poll seen -> rules written), every repair.");
        o.WriteLine();
        o.WriteLine("                  drop without exemption (ms)    after tailscaled (ms)          agent's log (ms)                  tailscaled's");
        o.WriteLine("backend    n      p50       p99       max        p50       p99       max        n     p50       p99       max    rewrite p50 (ms)");
        foreach (var r in main)
        {
            var exposed = r.Rewrites.Select(m => m.ExposedMs).ToList();
            var logged = r.Logged.Select(l => l.LatencyMs).ToList();
            var after = r.AfterCommandsMs;
            o.WriteLine(string.Create(
                Inv,
                $"{r.Label,-9} {exposed.Count,3}  {P(exposed, .5),8:F1}  {P(exposed, .99),8:F1}  {Max(exposed),8:F1}   {P(after, .5),8:F1}  {P(after, .99),8:F1}  {Max(after),8:F1}   {logged.Count,4}  {P(logged, .5),8:F1}  {P(logged, .99),8:F1}  {Max(logged),8:F1}    {P(r.RewriteCommandMs, .5),8:F0}"));
        }

        o.WriteLine();
        foreach (var r in main)
        {
            var causes = string.Join(", ", r.Logged.GroupBy(l => l.Cause).Select(g => $"{g.Key}: {g.Count()}"));
            var notRemoved = r.Rewrites.Count(m => m.GapMs is null);
            var returns = r.Rewrites.Count == 0 ? 0 : r.Rewrites.Average(m => m.Returns);
            o.WriteLine(string.Create(
                Inv,
                $"  {r.Label,-9} repairs by cause: {(causes.Length == 0 ? "none" : causes)}; our rules came back {returns:F1} times per rewrite on average (tailscaled flushes again after an early repair); ")
                + string.Create(Inv, $"rewrites that never removed our rules: {notRemoved}; failed reconciles: {r.FailedReconciles}"));
            if (r.SamplePeriods is { Count: > 0 } periods)
            {
                o.WriteLine(string.Create(
                    Inv,
                    $"  {r.Label,-9} sampling: {periods.Count} snapshots, one every {P(periods, .5):F1} ms (median; p99 {P(periods, .99):F1}, max {Max(periods):F1}); ")
                    + "each end of a measured interval is known to within one sampling interval, nothing is subtracted");
            }

            o.WriteLine($"  {r.Label,-9} load average: {r.LoadStart} at its start, {r.LoadEnd} at its end");
        }

        foreach (var r in results.Where(r => r.IsPollComparison))
        {
            var gaps = r.Gaps;
            var modelled = main.FirstOrDefault(m => m.Backend == "legacy") is { } legacy ? PollModel(legacy.Gaps) : (double.NaN, double.NaN, double.NaN);
            o.WriteLine();
            o.WriteLine("Side by side, MEASURED: the same agent on iptables-legacy with --legacy-poll-interval 10 (resync 3600 s, so only the poll repairs):");
            o.WriteLine(string.Create(
                Inv,
                $"  {r.Label}: n {gaps.Count}, rules gone p50 {P(gaps, .5):F0} ms, p99 {P(gaps, .99):F0} ms, max {Max(gaps):F0} ms ")
                + string.Create(Inv, $"(the model above said p50 {modelled.Item1:F0}, p99 {modelled.Item2:F0}, max {modelled.Item3:F0}); load average {r.LoadStart} -> {r.LoadEnd}"));
        }

        o.WriteLine();
        o.WriteLine("targets (design section 10: repair under 100 ms p99 on nft back ends, under the poll interval on legacy):");
        foreach (var r in main)
        {
            var nft = r.Backend != "legacy";
            var limit = nft ? 100 : Options.DefaultLegacyPoll * 1000;
            var what = nft ? "under 100 ms" : string.Create(Inv, $"under the {Options.DefaultLegacyPoll:0.#} s poll interval");
            var gaps = r.Gaps;
            var logged = r.Logged.Select(l => l.LatencyMs).ToList();
            var exposed = r.Rewrites.Select(m => m.ExposedMs).ToList();
            var after = r.AfterCommandsMs.ToList();
            o.WriteLine(string.Create(Inv, $"  {r.Label,-9} rules gone p99 {what}: {P(gaps, .99):F1} ms  {Verdict(gaps, limit)}"));
            o.WriteLine(string.Create(
                Inv,
                $"  {r.Label,-9}   the same limit on the other p99s: drop without exemption {P(exposed, .99):F1} ms {Verdict(exposed, limit)}, after tailscaled {P(after, .99):F1} ms {Verdict(after, limit)}, agent's log {P(logged, .99):F1} ms {Verdict(logged, limit)}"));
        }
    }

    private static string Verdict(List<double> values, double limitMs) =>
        values.Count == 0 ? "NO DATA" : P(values, .99) < limitMs ? "PASS" : "MISS";

    private static double P(IReadOnlyList<double> values, double p) => Percentile.Of(values, p);

    private static double Max(IReadOnlyList<double> values) => values.Count == 0 ? double.NaN : values.Max();

    /// <summary>
    /// A 10 s poll notices the rewrite after a wait uniform in [0, 10 s), then repairs as the agent did: measured + U(0, 10 s).
    /// Hand-written Monte Carlo: no statistics package is referenced, and the sum of an empirical and a uniform
    /// distribution needs nothing more.
    /// </summary>
    private static (double P50, double P99, double Max) PollModel(List<double> measured)
    {
        if (measured.Count == 0)
        {
            return (double.NaN, double.NaN, double.NaN);
        }

        var random = new Random(20261128);
        var draws = new double[ModelDraws];
        for (var i = 0; i < draws.Length; i++)
        {
            draws[i] = (random.NextDouble() * PollMs) + measured[random.Next(measured.Count)];
        }

        return (Percentile.Of(draws, .5), Percentile.Of(draws, .99), PollMs + measured.Max());
    }
}
