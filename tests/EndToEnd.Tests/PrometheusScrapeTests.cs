using System.Diagnostics;
using System.Text.Json.Nodes;
using TsCgnat.TestSupport;
using Xunit.Abstractions;

namespace TsCgnat.EndToEnd.Tests;

/// <summary>
/// Issue 12, item 3: a real Prometheus scrapes the operator and both agents of the end-to-end lab while they work,
/// and what it stored is read back through its HTTP API: every instrument docs/telemetry.md lists, from the
/// programs it says, with its documented attributes; every alert rule of deploy/prometheus evaluated without
/// error; every query of the chart's Grafana dashboard returning numbers. Instruments that appear only after
/// events are made to appear: a repair (tailscaled restarts and flushes its chains, twice, so rates and
/// quantiles have two points) and status writes the API server refuses (an apply error in stage status in both
/// programs).
/// </summary>
/// <remarks>
/// The cluster underneath is <see cref="LabCluster"/> (the test API server). Only <see cref="RefuseNextStatusWrites"/>
/// uses something a real API server does not offer (fault injection); there a ValidatingAdmissionPolicy that
/// refuses status updates for a moment does the same.
/// </remarks>
[Collection("netns")]
public sealed class PrometheusScrapeTests(ITestOutputHelper output)
{
    private const string U2Lan = "100.64.0.0/24";
    private const string U5Lan = "100.64.1.0/24";
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);
    private static readonly string Rules = Path.Combine(Repo.Root, "deploy", "prometheus", "ts-cgnat.rules.yaml");
    private static readonly string Dashboard = Path.Combine(Repo.Root, "charts", "ts-cgnat-operator", "files", "ts-cgnat-dashboard.json");
    private static readonly string TelemetryDoc = Path.Combine(Repo.Root, "docs", "telemetry.md");

    /// <summary>Labels every series may carry besides the documented attributes: Prometheus' own and the scrape's.</summary>
    private static readonly HashSet<string> ScrapeLabels = ["__name__", "job", "instance", "node", "otel_scope_name", "otel_scope_version", "le"];

    [SkippableFact]
    public async Task A_real_Prometheus_finds_every_documented_instrument_evaluates_every_alert_and_answers_every_dashboard_query()
    {
        Privileges.RequireNetns();
        var binary = Privileges.RequireTool("prometheus", "prometheus");
        var clock = Stopwatch.StartNew();
        void Phase(string done) => output.WriteLine($"{clock.Elapsed.TotalSeconds,6:F1} s  {done}");
        // On the fake API server: the test refuses status writes on demand to make both programs count an apply error.
        await using var cluster = await LabCluster.StartOnFakeApiServerAsync(metrics: true);
        using var prometheus = new PrometheusServer(binary, ScrapeConfigs(cluster, cluster.MetricsPorts), Rules);
        prometheus.WaitReady(Patience);
        Eventually(() => prometheus.Vector("up == 1").Count == 3, "all three targets up", prometheus, cluster);
        Phase("lab, operator, agents and Prometheus up");

        RefuseNextStatusWrites(cluster);
        await cluster.CreatePolicyAsync("lab", U2Lan, U5Lan);
        await cluster.WaitForAsync(async () => await cluster.NodesAsync("lab") == "2/2" && LabCluster.Condition(await cluster.PolicyAsync("lab"), "Ready") == "True", "policy lab Ready with 2/2");
        Phase("policy lab Ready 2/2");
        for (var repairs = 1; repairs <= 2; repairs++)
        {
            cluster.U2.Run("restart"); // tailscaled flushes its chains, and our exemptions in them with them
            var expected = repairs;
            await cluster.WaitForAsync(async () => (long?)(await cluster.StateAsync("u2"))?["status"]?["driftRepairs"] >= expected, $"u2 counts repair {expected}");
            Eventually(() => prometheus.Vector($"sum(tscgnat_drift_repairs_total{{node=\"{cluster.NodeName("u2")}\"}})") is [var (_, total)] && total >= expected,
                $"Prometheus scraped repair {expected}", prometheus, cluster);
            Phase($"repair {expected} scraped");
        }

        var instruments = DocumentedInstruments();
        Assert.True(instruments.Count >= 11, $"docs/telemetry.md lists {instruments.Count} instruments");
        Eventually(() => instruments.All(i => Problems(prometheus, i).Count == 0), "every documented instrument scraped", prometheus, cluster);
        foreach (var instrument in instruments)
        {
            Assert.Empty(Problems(prometheus, instrument));
        }

        Phase($"{instruments.Count} documented instruments found");

        var evaluatedAfter = DateTimeOffset.UtcNow;
        Eventually(() => prometheus.Rules().All(r => DateTimeOffset.Parse((string)r["lastEvaluation"]!, System.Globalization.CultureInfo.InvariantCulture) > evaluatedAfter),
            "every rule evaluated once more", prometheus, cluster);
        var rules = prometheus.Rules();
        Assert.Equal(11, rules.Count);
        Assert.All(rules, r => Assert.True((string?)r["health"] == "ok", $"{r["name"]}: {r["health"]} {r["lastError"]}"));
        foreach (var rule in rules)
        {
            prometheus.Query((string)rule["query"]!); // an error status fails the test
        }

        Phase($"{rules.Count} rules evaluated");
        foreach (var (panel, expr) in DashboardQueries())
        {
            // Grafana's $__rate_interval: a window that covers the whole run, so both repairs are in it.
            var vector = prometheus.Vector(expr.Replace("$__rate_interval", "5m", StringComparison.Ordinal));
            Assert.True(vector.Any(v => double.IsFinite(v.Value)), $"panel '{panel}': {expr} returned no number ({vector.Count} series)");
            output.WriteLine($"{panel}: {string.Join(", ", vector.Select(v => $"{v.Labels.ToJsonString()} {v.Value}"))}");
        }
    }

    /// <summary>One status write of each program is refused (503): the agent on u5 and the operator each count an apply error in stage status, then retry.</summary>
    private static void RefuseNextStatusWrites(LabCluster cluster)
    {
        cluster.Fake!.FailNext(r => r.Verb == "patch" && r.Path.EndsWith($"/{LabCluster.StatePlural}/{cluster.NodeName("u5")}/status", StringComparison.Ordinal), 503);
        cluster.Fake!.FailNext(r => r.Verb == "patch" && r.Path.EndsWith($"/{LabCluster.PolicyPlural}/{cluster.PolicyName("lab")}/status", StringComparison.Ordinal), 503);
    }

    /// <summary>The job names the alert rules select, as the chart's ServiceMonitors give them; the agents with their node.</summary>
    private static string ScrapeConfigs(LabCluster cluster, IReadOnlyDictionary<string, int> ports) => $"""
          - job_name: ts-cgnat-agent
            static_configs:
              - targets: ['127.0.0.1:{ports["u2"]}']
                labels: {"{"} node: {cluster.NodeName("u2")} {"}"}
              - targets: ['127.0.0.1:{ports["u5"]}']
                labels: {"{"} node: {cluster.NodeName("u5")} {"}"}
          - job_name: ts-cgnat-operator
            static_configs:
              - targets: ['127.0.0.1:{ports["operator"]}']
        """;

    /// <summary>What is wrong with one instrument in Prometheus now: missing from a program, an attribute missing or undocumented.</summary>
    private static List<string> Problems(PrometheusServer prometheus, Instrument instrument)
    {
        var problems = new List<string>();
        var stored = instrument.Kind == "histogram" ? instrument.PrometheusName + "_count" : instrument.PrometheusName;
        var vocabulary = File.ReadAllText(TelemetryDoc);
        foreach (var job in instrument.Jobs)
        {
            var series = prometheus.Series($"{stored}{{job=\"{job}\"}}");
            if (series.Count == 0)
            {
                problems.Add($"{stored}: no series from {job}");
                continue;
            }

            foreach (var labels in series)
            {
                var keys = labels.Select(l => l.Key).ToHashSet(StringComparer.Ordinal);
                problems.AddRange(instrument.Attributes.Where(a => !keys.Contains(a)).Select(a => $"{stored} from {job}: attribute {a} missing in {labels.ToJsonString()}"));
                problems.AddRange(keys.Where(k => !ScrapeLabels.Contains(k) && !instrument.Attributes.Contains(k)).Select(k => $"{stored} from {job}: undocumented label {k}"));
                problems.AddRange(instrument.Attributes
                    .Where(a => a != "policy" && labels[a] is { } value && !vocabulary.Contains($"`{(string)value!}`", StringComparison.Ordinal))
                    .Select(a => $"{stored} from {job}: {a}=\"{labels[a]}\" is not documented"));
                if ((string?)labels["otel_scope_name"] != "tscgnat")
                {
                    problems.Add($"{stored} from {job}: otel_scope_name {labels["otel_scope_name"]}");
                }
            }
        }

        return problems;
    }

    /// <summary>The rows of docs/telemetry.md's instrument table.</summary>
    private static List<Instrument> DocumentedInstruments()
    {
        var doc = File.ReadAllText(TelemetryDoc);
        var table = doc[doc.IndexOf("| instrument | kind | unit | attributes | recorded by | Prometheus |", StringComparison.Ordinal)..];
        var instruments = new List<Instrument>();
        foreach (var line in table.Split('\n').Skip(2).TakeWhile(l => l.StartsWith('|')))
        {
            var cells = line.Trim('|').Split('|').Select(c => c.Trim()).ToArray();
            var attributes = cells[3].Split(';').Select(p => p.Trim()).Where(p => p.StartsWith('`')).Select(p => p[1..p.IndexOf('`', 1)]).ToList();
            var by = cells[4];
            var jobs = by == "both" ? ["ts-cgnat-agent", "ts-cgnat-operator"]
                : new[] { by.Contains("agent", StringComparison.Ordinal) ? "ts-cgnat-agent" : null, by.Contains("operator", StringComparison.Ordinal) ? "ts-cgnat-operator" : null }.OfType<string>().ToArray();
            instruments.Add(new Instrument(cells[0].Trim('`'), cells[1].Split(' ')[0], attributes, jobs, cells[5].Trim('`')));
        }

        return instruments;
    }

    private static IEnumerable<(string Panel, string Expr)> DashboardQueries() =>
        JsonNode.Parse(File.ReadAllText(Dashboard))!["panels"]!.AsArray()
            .SelectMany(p => p!["targets"]!.AsArray().Select(t => ((string?)p["title"] ?? "", (string)t!["expr"]!)));

    private static void Eventually(Func<bool> condition, string what, PrometheusServer prometheus, LabCluster cluster)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > Patience)
            {
                Assert.Fail($"{what}: not seen within {Patience.TotalSeconds} s\n--- prometheus:\n{prometheus.Output}\n{cluster.Output}");
            }

            Thread.Sleep(250);
        }
    }

    private sealed record Instrument(string Name, string Kind, IReadOnlyList<string> Attributes, IReadOnlyList<string> Jobs, string PrometheusName);
}
