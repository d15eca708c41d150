using Microsoft.Extensions.Time.Testing;
using OpenTelemetry.Metrics;
using static TsCgnat.Telemetry.Tests.Recorded;

namespace TsCgnat.Telemetry.Tests;

/// <summary>What the in-memory exporter holds after the programs record through the public API.</summary>
public sealed class InstrumentTests : IDisposable
{
    private readonly FakeTimeProvider _time = new();
    private readonly TsCgnatMetrics _metrics;
    private readonly Recorded _recorded = new();

    public InstrumentTests() => _metrics = new TsCgnatMetrics(_time);

    public void Dispose()
    {
        _recorded.Dispose();
        _metrics.Dispose();
    }

    [Fact]
    public void A_reconcile_that_wrote_records_its_duration_in_seconds_with_outcome_written()
    {
        using (var reconcile = _metrics.StartReconcile("periodic resync", node: "node-a"))
        {
            _time.Advance(TimeSpan.FromMilliseconds(250));
            reconcile.Completed(wrote: true, backend: "iptables-nft", strategy: "Indirect");
        }

        var duration = _recorded.Collect()["tscgnat.reconcile.duration"];
        Assert.Equal("s", duration.Unit);
        Assert.Equal(MetricType.Histogram, duration.MetricType);
        var point = Point(duration, ("outcome", "written"));
        Assert.Equal(1, point.GetHistogramCount());
        Assert.Equal(0.25, point.GetHistogramSum());
    }

    [Fact]
    public void A_reconcile_in_sync_and_one_that_wrote_are_separate_outcomes()
    {
        using (var reconcile = _metrics.StartReconcile("periodic resync"))
        {
            _time.Advance(TimeSpan.FromMilliseconds(10));
            reconcile.Completed(wrote: false);
        }

        using (var reconcile = _metrics.StartReconcile("nft ruleset event"))
        {
            _time.Advance(TimeSpan.FromMilliseconds(30));
            reconcile.Completed(wrote: true);
        }

        var duration = _recorded.Collect()["tscgnat.reconcile.duration"];
        Assert.Equal(0.01, Point(duration, ("outcome", "in_sync")).GetHistogramSum(), 9);
        Assert.Equal(0.03, Point(duration, ("outcome", "written")).GetHistogramSum(), 9);
    }

    [Fact]
    public void A_failed_reconcile_records_outcome_failed_and_counts_an_apply_error_in_its_stage()
    {
        using (var reconcile = _metrics.StartReconcile("start"))
        {
            _time.Advance(TimeSpan.FromSeconds(2));
            reconcile.Failed("write", new IOException("iptables-restore: Another app is currently holding the xtables lock"));
        }

        var collected = _recorded.Collect();
        Assert.Equal(2.0, Point(collected["tscgnat.reconcile.duration"], ("outcome", "failed")).GetHistogramSum());
        var errors = collected["tscgnat.apply.errors"];
        Assert.Equal(MetricType.LongSum, errors.MetricType);
        Assert.Equal(1, Point(errors, ("stage", "write")).GetSumLong());
    }

    [Fact]
    public void A_reconcile_stopped_before_it_reported_a_result_records_outcome_cancelled()
    {
        using (_metrics.StartReconcile("start"))
        {
            _time.Advance(TimeSpan.FromMilliseconds(5));
        }

        Assert.Equal(1, Point(_recorded.Collect()["tscgnat.reconcile.duration"], ("outcome", "cancelled")).GetHistogramCount());
    }

    [Fact]
    public void A_repair_is_counted_by_cause_and_its_latency_recorded_in_seconds()
    {
        _metrics.RecordRepair("nft ruleset event", TimeSpan.FromMilliseconds(40));
        _metrics.RecordRepair("nft ruleset event", TimeSpan.FromMilliseconds(60));
        _metrics.RecordRepair("iptables-legacy poll", TimeSpan.FromSeconds(1));

        var collected = _recorded.Collect();
        var repairs = collected["tscgnat.drift.repairs"];
        Assert.Equal(2, Point(repairs, ("cause", "nft ruleset event")).GetSumLong());
        Assert.Equal(1, Point(repairs, ("cause", "iptables-legacy poll")).GetSumLong());
        var latency = collected["tscgnat.repair.latency"];
        Assert.Equal("s", latency.Unit);
        var events = Point(latency, ("cause", "nft ruleset event"));
        Assert.Equal(2, events.GetHistogramCount());
        Assert.Equal(0.1, events.GetHistogramSum(), 9);
    }

    [Fact]
    public void Repair_latency_buckets_resolve_milliseconds_so_the_100_ms_target_can_be_read()
    {
        _metrics.RecordRepair("nft ruleset event", TimeSpan.FromMilliseconds(40));

        var point = Point(_recorded.Collect()["tscgnat.repair.latency"], ("cause", "nft ruleset event"));
        var bounds = new List<double>();
        foreach (var bucket in point.GetHistogramBuckets())
        {
            bounds.Add(bucket.ExplicitBound);
            if (bucket.BucketCount == 1)
            {
                Assert.Equal(0.05, bucket.ExplicitBound); // 40 ms lands in (25 ms, 50 ms]
            }
        }

        Assert.Contains(0.1, bounds);
        Assert.Contains(0.001, bounds);
    }

    [Fact]
    public void Rules_and_set_members_report_the_latest_snapshot_only()
    {
        _metrics.SetRules([new("InChain", 2)]);
        _metrics.SetRules([new("Indirect", 7)]);
        _metrics.SetSetMembers([new("TSCGNAT-SRC4", 3), new("TSCGNAT-FWD4", 1)]);

        var collected = _recorded.Collect();
        var rules = collected["tscgnat.rules"];
        Assert.Equal("{rule}", rules.Unit);
        Assert.Equal(7, Point(rules, ("strategy", "Indirect")).GetGaugeLastValueLong());
        Assert.Single(rules.MetricPoints);
        var members = collected["tscgnat.set.members"];
        Assert.Equal(3, Point(members, ("set", "TSCGNAT-SRC4")).GetGaugeLastValueLong());
        Assert.Equal(1, Point(members, ("set", "TSCGNAT-FWD4")).GetGaugeLastValueLong());
    }

    [Fact]
    public void The_operator_reports_policies_by_condition_and_status_and_nodes_by_state()
    {
        _metrics.SetPolicyConditions(ConditionCount.Tally(
        [
            ("Accepted", "True"), ("Ready", "True"), ("Degraded", "False"),
            ("Accepted", "True"), ("Ready", "False"), ("Degraded", "True"),
            ("Accepted", "False"),
        ]));
        _metrics.SetNodes([new("applied", 40), new("failed", 2), new("pending", 3), new("missing", 1)]);
        _metrics.SetNodeConditions([new("Ready", "True", 40), new("TailscaleCompatible", "False", 1)]);
        _metrics.SetPolicyNodes([new("aliyun", "target", 45), new("aliyun", "applied", 40)]);
        _metrics.RecordStatusWrite("CgnatAllowPolicy");
        _metrics.RecordStatusWrite("CgnatAllowPolicy");

        var collected = _recorded.Collect();
        var policies = collected["tscgnat.policies"];
        Assert.Equal(2, Point(policies, ("condition", "Accepted"), ("status", "True")).GetGaugeLastValueLong());
        Assert.Equal(1, Point(policies, ("condition", "Accepted"), ("status", "False")).GetGaugeLastValueLong());
        Assert.Equal(1, Point(policies, ("condition", "Ready"), ("status", "False")).GetGaugeLastValueLong());
        Assert.Equal(6, policies.MetricPoints.Count);
        var nodes = collected["tscgnat.nodes"];
        Assert.Equal(40, Point(nodes, ("state", "applied")).GetGaugeLastValueLong());
        Assert.Equal(2, Point(nodes, ("state", "failed")).GetGaugeLastValueLong());
        Assert.Equal(1, Point(nodes, ("state", "missing")).GetGaugeLastValueLong());
        var nodeConditions = collected["tscgnat.node.conditions"];
        Assert.Equal(1, Point(nodeConditions, ("condition", "TailscaleCompatible"), ("status", "False")).GetGaugeLastValueLong());
        Assert.Equal(2, nodeConditions.MetricPoints.Count);
        Assert.Equal(45, Point(collected["tscgnat.policy.nodes"], ("policy", "aliyun"), ("state", "target")).GetGaugeLastValueLong());
        Assert.Equal(2, Point(collected["tscgnat.status.writes"], ("kind", "CgnatAllowPolicy")).GetSumLong());
    }

    [Fact]
    public void Gauges_whose_snapshot_was_never_set_report_nothing()
    {
        _metrics.SetRules([new("Indirect", 4)]);

        var collected = _recorded.Collect();
        Assert.True(collected.ContainsKey("tscgnat.rules"));
        Assert.False(collected.ContainsKey("tscgnat.policies"));
        Assert.False(collected.ContainsKey("tscgnat.nodes"));
        Assert.False(collected.ContainsKey("tscgnat.node.conditions"));
    }

    [Fact]
    public void Every_instrument_is_named_under_tscgnat_with_its_unit()
    {
        using (var reconcile = _metrics.StartReconcile("start"))
        {
            reconcile.Completed(wrote: true);
        }

        _metrics.RecordRepair("tailscaled state or prefs", TimeSpan.FromMilliseconds(3));
        _metrics.RecordApplyError("read");
        _metrics.RecordStatusWrite("CgnatNodeState");
        _metrics.SetRules([new("Indirect", 1)]);
        _metrics.SetSetMembers([new("TSCGNAT-SRC4", 1)]);
        _metrics.SetPolicyConditions([new("Ready", "True", 1)]);
        _metrics.SetNodes([new("applied", 1)]);
        _metrics.SetNodeConditions([new("Ready", "True", 1)]);
        _metrics.SetPolicyNodes([new("p", "target", 1)]);

        var units = _recorded.Collect().Values.ToDictionary(m => m.Name, m => m.Unit, StringComparer.Ordinal);
        Assert.Equal(new Dictionary<string, string>
        {
            ["tscgnat.reconcile.duration"] = "s",
            ["tscgnat.drift.repairs"] = "{repair}",
            ["tscgnat.repair.latency"] = "s",
            ["tscgnat.apply.errors"] = "{error}",
            ["tscgnat.status.writes"] = "{write}",
            ["tscgnat.rules"] = "{rule}",
            ["tscgnat.set.members"] = "{member}",
            ["tscgnat.policies"] = "{policy}",
            ["tscgnat.nodes"] = "{node}",
            ["tscgnat.node.conditions"] = "{node}",
            ["tscgnat.policy.nodes"] = "{node}",
        }, units);
    }

    [Fact]
    public void The_meter_is_named_tscgnat_and_carries_the_assembly_version()
    {
        var exported = new List<Metric>();
        _recorded.Dispose();
        using var provider = OpenTelemetry.Sdk.CreateMeterProviderBuilder().AddMeter(TsCgnatMetrics.MeterName).AddInMemoryExporter(exported).Build();
        _metrics.RecordApplyError("read");
        provider.ForceFlush();

        var metric = Assert.Single(exported);
        Assert.Equal("tscgnat", metric.MeterName);
        var version = typeof(TsCgnatMetrics).Assembly.GetName().Version!;
        Assert.Equal($"{version.Major}.{version.Minor}.{version.Build}", metric.MeterVersion);
    }

    [Fact]
    public void Tally_counts_each_condition_and_status_pair_in_a_stable_order()
    {
        var counts = ConditionCount.Tally([("Ready", "True"), ("Accepted", "True"), ("Ready", "True"), ("Ready", "False")]);

        Assert.Equal(
            [new("Accepted", "True", 1), new("Ready", "False", 1), new("Ready", "True", 2)],
            counts);
    }

    [Theory]
    [InlineData("")]
    [InlineData(null)]
    public void A_reconcile_without_a_cause_is_refused(string? cause)
    {
        var e = Assert.ThrowsAny<ArgumentException>(() => _metrics.StartReconcile(cause!));
        Assert.Equal("cause", e.ParamName);
    }

    [Fact]
    public void An_apply_error_without_a_stage_is_refused()
    {
        var e = Assert.ThrowsAny<ArgumentException>(() => _metrics.RecordApplyError(""));
        Assert.Equal("stage", e.ParamName);
    }
}
