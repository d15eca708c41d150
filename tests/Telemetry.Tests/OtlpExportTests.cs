using Google.Protobuf;
using static TsCgnat.Telemetry.Tests.Proto;

namespace TsCgnat.Telemetry.Tests;

/// <summary>A real export from OpenTelemetry's OTLP exporter to a receiver on loopback, decoded.</summary>
public sealed class OtlpExportTests
{
    // opentelemetry/proto field numbers used below:
    // ExportMetricsServiceRequest.resource_metrics = 1; ResourceMetrics.resource = 1, .scope_metrics = 2;
    // Resource.attributes = 1; ScopeMetrics.scope = 1, .metrics = 2; InstrumentationScope.name = 1, .version = 2;
    // Metric.name = 1, .unit = 3, .sum = 7; Sum.data_points = 1; NumberDataPoint.as_int = 6, .attributes = 7.
    // ExportTraceServiceRequest.resource_spans = 1; ResourceSpans.scope_spans = 2; ScopeSpans.spans = 2;
    // Span.name = 5, .attributes = 9.
    private const int ResourceMetrics = 1, Resource = 1, ScopeMetrics = 2, Scope = 1, Metrics = 2, Sum = 7, DataPoints = 1;
    private const int ResourceSpans = 1, ScopeSpans = 2, Spans = 2;

    [Fact]
    public async Task With_OTEL_EXPORTER_OTLP_ENDPOINT_set_the_receiver_gets_metrics_and_traces_over_http_protobuf_that_decode()
    {
        await using var receiver = await OtlpReceiver.StartAsync();
        using var metrics = new TsCgnatMetrics();
        var settings = new Dictionary<string, string?>
        {
            ["OTEL_EXPORTER_OTLP_ENDPOINT"] = receiver.Endpoint.ToString().TrimEnd('/'),
            ["OTEL_EXPORTER_OTLP_PROTOCOL"] = "http/protobuf",
        };
        var host = await TelemetryHost.StartAsync(Loopback.Options(0, settings), new Readiness(TimeSpan.FromMinutes(1)), CancellationToken.None);
        Assert.True(host.ExportsOtlp);
        using (var reconcile = metrics.StartReconcile("nft ruleset event", node: "node-a"))
        {
            reconcile.Completed(wrote: true, "nftables", "InChain");
        }

        metrics.RecordRepair("nft ruleset event", TimeSpan.FromMilliseconds(12));
        metrics.RecordApplyError("read");
        await host.DisposeAsync(); // shutting down exports what is left, as the programs do when they stop

        var metricBodies = receiver.Bodies("/v1/metrics");
        Assert.NotEmpty(metricBodies);
        Assert.All(receiver.Requests, r => Assert.Equal("application/x-protobuf", r.ContentType));
        var resources = metricBodies.SelectMany(b => Walk(ByteString.CopyFrom(b), ResourceMetrics)).ToList();
        Assert.All(resources, r => Assert.Equal("ts-cgnat-agent", Attributes(Walk(r, Resource).Single(), 1)["service.name"]));
        var scopes = resources.SelectMany(r => Walk(r, ScopeMetrics)).ToList();
        Assert.All(scopes, s => Assert.Equal("tscgnat", String(Walk(s, Scope).Single(), 1)));
        var byName = scopes.SelectMany(s => Walk(s, Metrics)).GroupBy(m => String(m, 1)!).ToDictionary(g => g.Key, g => g.Last(), StringComparer.Ordinal);
        Assert.Superset(
            new HashSet<string>(["tscgnat.reconcile.duration", "tscgnat.drift.repairs", "tscgnat.repair.latency", "tscgnat.apply.errors"]),
            byName.Keys.ToHashSet());
        Assert.Equal("s", String(byName["tscgnat.repair.latency"], 3));

        var errorPoint = Walk(byName["tscgnat.apply.errors"], Sum, DataPoints).Single();
        Assert.Equal(1UL, ProtoField.Read(errorPoint).Single(f => f.Number == 6).Scalar);
        Assert.Equal("read", Attributes(errorPoint, 7)["stage"]);

        var spans = receiver.Bodies("/v1/traces").SelectMany(b => Walk(ByteString.CopyFrom(b), ResourceSpans, ScopeSpans, Spans)).ToList();
        var span = Assert.Single(spans);
        Assert.Equal("tscgnat.reconcile", String(span, 5));
        var tags = Attributes(span, 9);
        Assert.Equal("node-a", tags["node"]);
        Assert.Equal("nft ruleset event", tags["cause"]);
        Assert.Equal("InChain", tags["strategy"]);
        Assert.Equal("True", tags["wrote"]);
    }

    [Fact]
    public async Task Without_an_OTLP_endpoint_nothing_is_exported_and_no_span_is_started()
    {
        await using var receiver = await OtlpReceiver.StartAsync();
        using var metrics = new TsCgnatMetrics();
        var host = await TelemetryHost.StartAsync(Loopback.Options(0), new Readiness(TimeSpan.FromMinutes(1)), CancellationToken.None);
        Assert.False(host.ExportsOtlp);
        Assert.False(TsCgnatTracing.Source.HasListeners());
        metrics.RecordApplyError("read");
        await host.DisposeAsync();

        Assert.Empty(receiver.Requests);
    }
}
