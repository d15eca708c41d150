using System.Net;
using System.Net.Sockets;
using TsCgnat.Api;
using TsCgnat.Telemetry;
using TsCgnat.TestSupport;

namespace TsCgnat.Operator.Tests;

/// <summary>What the operator records (design section 8) and what its /readyz answers, against the fake API server.</summary>
public class TelemetryTests : OnApiServer
{
    private static OperatorOptions Elected(string identity) => FastOptions with
    {
        LeaderElect = true,
        Identity = identity,
        LeaseNamespace = "ts-cgnat",
        LeaseDuration = TimeSpan.FromSeconds(3),
        RenewDeadline = TimeSpan.FromSeconds(2),
        RetryPeriod = TimeSpan.FromMilliseconds(200),
    };

    [Fact]
    public async Task After_the_operator_reconciles_the_gauges_count_policies_by_condition_and_nodes_by_state_and_every_status_write_and_reconcile_is_recorded()
    {
        PutNode("n1");
        PutNode("n2");
        PutNode("n3");
        PutNode("n4", region: "sh");
        PutState("n1", ready: true, policies: Applied("tm-good"));
        PutState("n2", ready: false, policies: Objects.Entry("tm-good", 1, PolicyPhase.Failed));
        PutState("n3", ready: false);
        PutPolicy("tm-good");
        PutPolicy("tm-bad", cidr: "10.0.0.0/8");
        PutPolicy("tm-sh", region: "sh");
        using var metrics = new TsCgnatMetrics();
        using var measured = new Measured(metrics.Meter);
        using var spans = new Spans("policy", "tm-good");

        var op = Start(metrics: metrics);
        await PolicyStatus("tm-good", p => Has(p, ConditionTypes.Degraded, ConditionStatus.True, PolicyReasons.ApplyFailed), "Degraded by n2");
        await PolicyStatus("tm-bad", p => Has(p, ConditionTypes.Accepted, ConditionStatus.False, PolicyReasons.InvalidSpec), "not Accepted");
        await Eventually(() => measured.Gauge("tscgnat.policies", ("condition", "Accepted"), ("status", "False")) == 1, "the policies gauge caught up");

        await PolicyStatus("tm-sh", p => Has(p, ConditionTypes.Ready, ConditionStatus.True, PolicyReasons.NoTargetNodes), "tm-sh has no node with an agent");
        await Eventually(() => measured.Gauge("tscgnat.policies", ("condition", "Accepted"), ("status", "True")) == 2, "the gauges counted tm-sh");

        Assert.Equal(2, measured.Gauge("tscgnat.policies", ("condition", "Ready"), ("status", "False")));
        Assert.Equal(1, measured.Gauge("tscgnat.policies", ("condition", "Degraded"), ("status", "True")));
        Assert.Equal(2, measured.Gauge("tscgnat.policies", ("condition", "Degraded"), ("status", "False")));
        Assert.Equal(1, measured.Gauge("tscgnat.policies", ("condition", "Ready"), ("status", "True")));
        Assert.Equal(1, measured.Gauge("tscgnat.nodes", ("state", "applied")));
        Assert.Equal(1, measured.Gauge("tscgnat.nodes", ("state", "failed")));
        Assert.Equal(1, measured.Gauge("tscgnat.nodes", ("state", "pending")));
        Assert.Equal(1, measured.Gauge("tscgnat.nodes", ("state", "missing"))); // n4: tm-sh selects it, no agent runs there
        Assert.Equal(1, measured.Gauge("tscgnat.node.conditions", ("condition", "Ready"), ("status", "True")));
        Assert.Equal(2, measured.Gauge("tscgnat.node.conditions", ("condition", "Ready"), ("status", "False")));
        Assert.Equal(3, measured.Gauge("tscgnat.node.conditions", ("condition", "TailscaleCompatible"), ("status", "True")));
        Assert.Equal(3, measured.Gauge("tscgnat.policy.nodes", ("policy", "tm-good"), ("state", "target")));
        Assert.Equal(1, measured.Gauge("tscgnat.policy.nodes", ("policy", "tm-good"), ("state", "applied")));
        Assert.Equal(1, measured.Gauge("tscgnat.policy.nodes", ("policy", "tm-good"), ("state", "failed")));
        Assert.Equal(0, measured.Gauge("tscgnat.policy.nodes", ("policy", "tm-sh"), ("state", "target")));

        // A reconcile may still be in flight (the watch event of the last status write): compare once they settle.
        await Eventually(() => StatusWrites("tm-good") + StatusWrites("tm-bad") + StatusWrites("tm-sh") == measured.Sum("tscgnat.status.writes", ("kind", "CgnatAllowPolicy")),
            "one status write counted per PATCH the API server saw");
        await Eventually(() => op.PolicyReconciler.Reconciles == Durations(measured, "written") + Durations(measured, "in_sync"),
            "one duration per reconcile");
        Assert.True(Durations(measured, "written") >= 3, "each policy's first reconcile wrote its finalizer and status");
        Assert.Equal(0, Durations(measured, "failed"));
        Assert.Equal(0, measured.Sum("tscgnat.apply.errors", ("stage", "status")));

        var span = spans.Stopped[0];
        Assert.Equal(TsCgnatTracing.ReconcileActivity, span.OperationName);
        Assert.Equal("work queue", span.GetTagItem("cause"));
        Assert.Equal(true, span.GetTagItem("wrote"));
    }

    [Fact]
    public async Task A_status_write_the_API_server_refuses_counts_an_error_in_stage_status_and_the_retry_writes_it()
    {
        PutNode("n1");
        PutState("n1", ready: true, policies: Applied("tm-refused"));
        Server.FailNext(r => r.Path.EndsWith("/cgnatallowpolicies/tm-refused/status", StringComparison.Ordinal), 500);
        PutPolicy("tm-refused");
        using var metrics = new TsCgnatMetrics();
        using var measured = new Measured(metrics.Meter);

        Start(metrics: metrics);
        await PolicyStatus("tm-refused", p => Has(p, ConditionTypes.Ready, ConditionStatus.True), "Ready after the retry");

        Assert.Equal(1, measured.Sum("tscgnat.apply.errors", ("stage", "status")));
        Assert.Single(measured.Values("tscgnat.reconcile.duration", ("outcome", "failed")));
        Assert.Equal(1, measured.Sum("tscgnat.status.writes", ("kind", "CgnatAllowPolicy")));
    }

    [Fact]
    public async Task Readyz_answers_503_while_the_caches_cannot_list_and_200_once_they_listed_and_every_policy_was_reconciled()
    {
        PutPolicy("tm-ready");
        await Server.StopAsync();
        var readiness = new Readiness(TimeSpan.FromMinutes(1), requireCachesSynced: true);
        await using var telemetry = await TelemetryHost.StartAsync(Listening(out var port), readiness, CancellationToken.None);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/") };

        var op = Start(readiness: readiness);
        await Task.Delay(TimeSpan.FromSeconds(1)); // lists are failing meanwhile
        Assert.Equal((HttpStatusCode.ServiceUnavailable, "caches not synced yet\n"), await Get(http, "readyz"));
        Assert.Equal((HttpStatusCode.OK, "ok\n"), await Get(http, "healthz"));

        await Server.StartAgainAsync();
        await Eventually(() => Get(http, "readyz").Result.Status == HttpStatusCode.OK, "readyz 200");

        Assert.True(op.PolicyReconciler.EveryPolicyReconciled);
        Assert.True(op.PolicyReconciler.Reconciles >= 1);
    }

    [Fact]
    public async Task A_standby_replica_is_ready_once_its_caches_listed_and_leaves_the_gauges_to_the_leader()
    {
        PutPolicy("tm-standby");
        var leader = Start(Elected("a"));
        await Eventually(() => leader.IsLeader && leader.Readiness.Ready().Ok, "a leads and is ready");
        using var metrics = new TsCgnatMetrics();
        using var measured = new Measured(metrics.Meter);
        var readiness = new Readiness(TimeSpan.FromMinutes(1), requireCachesSynced: true);

        var standby = Start(Elected("b"), metrics: metrics, readiness: readiness);
        await Eventually(() => readiness.Ready().Ok, "b ready while standing by");

        Assert.False(standby.IsLeader);
        Assert.Equal(0L, standby.PolicyReconciler.Reconciles);
        Assert.Null(measured.Gauge("tscgnat.policies", ("condition", "Accepted"), ("status", "True")));
        Assert.Null(measured.Gauge("tscgnat.nodes", ("state", "applied")));

        // The leader's own instance, listened to after the fact: gauges are read at collection, so nothing is missed.
        using var leaders = new Measured(leader.Metrics.Meter);
        await Eventually(() => leaders.Gauge("tscgnat.policies", ("condition", "Accepted"), ("status", "True")) == 1, "the leader reports the policy");
    }

    private static long Durations(Measured measured, string outcome) => measured.Values("tscgnat.reconcile.duration", ("outcome", outcome)).Count;

    private static TelemetryOptions Listening(out int port)
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        port = ((IPEndPoint)probe.LocalEndpoint).Port;
        return new TelemetryOptions
        {
            ServiceName = "ts-cgnat-operator",
            Port = port,
            ListenAddress = IPAddress.Loopback,
            Settings = new Dictionary<string, string?> { [TelemetryOptions.OtlpEndpointVariable] = "" },
        };
    }

    private static async Task<(HttpStatusCode Status, string Body)> Get(HttpClient http, string path)
    {
        using var response = await http.GetAsync(new Uri(path, UriKind.Relative));
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }
}
