using System.Diagnostics;
using Microsoft.Extensions.Time.Testing;
using OpenTelemetry;
using OpenTelemetry.Trace;

namespace TsCgnat.Telemetry.Tests;

/// <summary>The <c>tscgnat.reconcile</c> span, as an exporter receives it.</summary>
public sealed class TracingTests
{
    [Fact]
    public void A_reconcile_is_one_span_tagged_with_node_cause_backend_strategy_and_wrote()
    {
        var spans = new List<Activity>();
        using var metrics = new TsCgnatMetrics(new FakeTimeProvider());
        using (Sdk.CreateTracerProviderBuilder().AddSource(TsCgnatTracing.SourceName).AddInMemoryExporter(spans).Build())
        {
            using var reconcile = metrics.StartReconcile("nft ruleset event", node: "node-a");
            reconcile.Completed(wrote: true, backend: "iptables-nft", strategy: "Indirect");
        }

        var span = Assert.Single(spans);
        Assert.Equal("tscgnat.reconcile", span.DisplayName);
        Assert.Equal("tscgnat", span.Source.Name);
        Assert.Equal(ActivityStatusCode.Unset, span.Status);
        Assert.Equal("node-a", span.GetTagItem("node"));
        Assert.Equal("nft ruleset event", span.GetTagItem("cause"));
        Assert.Equal("iptables-nft", span.GetTagItem("backend"));
        Assert.Equal("Indirect", span.GetTagItem("strategy"));
        Assert.Equal(true, span.GetTagItem("wrote"));
        Assert.Null(span.GetTagItem("policy"));
    }

    [Fact]
    public void An_operator_reconcile_is_tagged_with_its_policy()
    {
        var spans = new List<Activity>();
        using var metrics = new TsCgnatMetrics();
        using (Sdk.CreateTracerProviderBuilder().AddSource(TsCgnatTracing.SourceName).AddInMemoryExporter(spans).Build())
        {
            using var reconcile = metrics.StartReconcile("policy changed", policy: "aliyun-internal");
            reconcile.Completed(wrote: false);
        }

        var span = Assert.Single(spans);
        Assert.Equal("aliyun-internal", span.GetTagItem("policy"));
        Assert.Equal(false, span.GetTagItem("wrote"));
        Assert.Null(span.GetTagItem("backend"));
    }

    [Fact]
    public void A_failed_reconcile_span_has_error_status_its_stage_and_the_exception()
    {
        var spans = new List<Activity>();
        using var metrics = new TsCgnatMetrics();
        using (Sdk.CreateTracerProviderBuilder().AddSource(TsCgnatTracing.SourceName).AddInMemoryExporter(spans).Build())
        {
            using var reconcile = metrics.StartReconcile("start", node: "node-a");
            reconcile.Failed("write", new IOException("ipset: Set cannot be created"));
        }

        var span = Assert.Single(spans);
        Assert.Equal(ActivityStatusCode.Error, span.Status);
        Assert.Equal("ipset: Set cannot be created", span.StatusDescription);
        Assert.Equal("write", span.GetTagItem("stage"));
        var exception = Assert.Single(span.Events);
        Assert.Equal("exception", exception.Name);
    }

    [Fact]
    public void Without_a_listener_no_span_is_started_and_the_reconcile_is_still_timed()
    {
        using var metrics = new TsCgnatMetrics();
        using var recorded = new Recorded();
        using (var reconcile = metrics.StartReconcile("start"))
        {
            Assert.Null(reconcile.Activity);
            reconcile.Completed(wrote: false);
        }

        Assert.Equal(1, Recorded.Point(recorded.Collect()["tscgnat.reconcile.duration"], ("outcome", "in_sync")).GetHistogramCount());
    }
}
