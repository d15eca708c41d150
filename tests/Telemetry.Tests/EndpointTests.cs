using System.Net;
using Microsoft.Extensions.Time.Testing;

namespace TsCgnat.Telemetry.Tests;

/// <summary>/metrics, /healthz and /readyz over HTTP on a loopback port, as Prometheus and the kubelet ask them.</summary>
public sealed class EndpointTests : IAsyncLifetime, IDisposable
{
    private readonly FakeTimeProvider _time = new();
    private readonly int _port = Loopback.FreePort();
    private readonly HttpClient _http = new();
    private TsCgnatMetrics _metrics = null!;
    private TelemetryHost _host = null!;
    private Readiness _readiness = null!;

    public async Task InitializeAsync()
    {
        _metrics = new TsCgnatMetrics(_time);
        _readiness = new Readiness(TimeSpan.FromSeconds(90), requireCachesSynced: false, _time);
        _host = await TelemetryHost.StartAsync(Loopback.Options(_port), _readiness, CancellationToken.None);
        _http.BaseAddress = new Uri($"http://127.0.0.1:{_port}");
    }

    public async Task DisposeAsync() => await _host.DisposeAsync();

    public void Dispose()
    {
        _http.Dispose();
        _metrics?.Dispose();
    }

    [Fact]
    public async Task Metrics_serves_Prometheus_text_with_the_recorded_instruments()
    {
        using (var reconcile = _metrics.StartReconcile("periodic resync", node: "node-a"))
        {
            _time.Advance(TimeSpan.FromMilliseconds(20));
            reconcile.Completed(wrote: true, "iptables-legacy", "Indirect");
        }

        _metrics.RecordRepair("iptables-legacy poll", TimeSpan.FromMilliseconds(400));
        _metrics.RecordApplyError("write");
        _metrics.SetRules([new("Indirect", 9)]);
        _metrics.SetSetMembers([new("TSCGNAT-SRC4", 3)]);

        using var response = await _http.GetAsync(new Uri("/metrics", UriKind.Relative));
        var text = await response.Content.ReadAsStringAsync();

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.StartsWith("text/plain", response.Content.Headers.ContentType?.MediaType, StringComparison.Ordinal);
        var lines = text.Split('\n');
        Assert.Contains("# TYPE tscgnat_reconcile_duration_seconds histogram", lines);
        Assert.Contains(lines, l => l.StartsWith("tscgnat_reconcile_duration_seconds_count{", StringComparison.Ordinal) && l.Contains("outcome=\"written\"", StringComparison.Ordinal) && l.EndsWith(" 1", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("tscgnat_reconcile_duration_seconds_sum{", StringComparison.Ordinal) && l.EndsWith(" 0.02", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("tscgnat_drift_repairs_total{", StringComparison.Ordinal) && l.Contains("cause=\"iptables-legacy poll\"", StringComparison.Ordinal) && l.EndsWith(" 1", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("tscgnat_repair_latency_seconds_sum{", StringComparison.Ordinal) && l.EndsWith(" 0.4", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("tscgnat_apply_errors_total{", StringComparison.Ordinal) && l.Contains("stage=\"write\"", StringComparison.Ordinal) && l.EndsWith(" 1", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("tscgnat_rules{", StringComparison.Ordinal) && l.Contains("strategy=\"Indirect\"", StringComparison.Ordinal) && l.EndsWith(" 9", StringComparison.Ordinal));
        Assert.Contains(lines, l => l.StartsWith("tscgnat_set_members{", StringComparison.Ordinal) && l.Contains("set=\"TSCGNAT-SRC4\"", StringComparison.Ordinal) && l.EndsWith(" 3", StringComparison.Ordinal));
    }

    [Fact]
    public async Task Readyz_is_503_until_the_first_reconcile_then_200()
    {
        await AssertAnswer("/readyz", HttpStatusCode.ServiceUnavailable, "first reconcile not done yet");

        _readiness.MarkReconciled();

        await AssertAnswer("/readyz", HttpStatusCode.OK, "ok");
    }

    [Fact]
    public async Task Healthz_is_503_when_the_heartbeat_is_older_than_the_bound_and_200_after_the_next_pass()
    {
        await AssertAnswer("/healthz", HttpStatusCode.OK, "ok");

        _time.Advance(TimeSpan.FromSeconds(91));
        await AssertAnswer("/healthz", HttpStatusCode.ServiceUnavailable, "the reconcile loop has not passed for 91 s (bound 90 s)");

        _readiness.Heartbeat();
        await AssertAnswer("/healthz", HttpStatusCode.OK, "ok");
    }

    [Fact]
    public async Task Any_other_path_is_404_and_names_the_three_that_exist()
    {
        await AssertAnswer("/", HttpStatusCode.NotFound, "not found; try /metrics, /healthz or /readyz");
    }

    [Fact]
    public async Task A_port_that_is_taken_fails_the_start_with_an_IOException()
    {
        var taken = _port; // the host of this test listens there already
        await Assert.ThrowsAnyAsync<IOException>(() =>
            TelemetryHost.StartAsync(Loopback.Options(taken), _readiness, CancellationToken.None));
    }

    [Theory]
    [InlineData(-1)]
    [InlineData(65536)]
    public async Task A_port_outside_0_to_65535_is_refused(int port)
    {
        var e = await Assert.ThrowsAsync<ArgumentOutOfRangeException>(() =>
            TelemetryHost.StartAsync(Loopback.Options(port), _readiness, CancellationToken.None));
        Assert.Equal("options.Port", e.ParamName);
    }

    private async Task AssertAnswer(string path, HttpStatusCode status, string text)
    {
        using var response = await _http.GetAsync(new Uri(path, UriKind.Relative));
        Assert.Equal(status, response.StatusCode);
        Assert.Equal(text + "\n", await response.Content.ReadAsStringAsync());
    }
}

/// <summary>The cluster-mode readiness over HTTP.</summary>
public sealed class ClusterReadinessEndpointTests
{
    [Fact]
    public async Task In_cluster_mode_readyz_also_waits_for_the_caches()
    {
        var port = Loopback.FreePort();
        var readiness = new Readiness(TimeSpan.FromSeconds(90), requireCachesSynced: true);
        await using var host = await TelemetryHost.StartAsync(Loopback.Options(port), readiness, CancellationToken.None);
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}") };

        readiness.MarkReconciled();
        using (var before = await http.GetAsync(new Uri("/readyz", UriKind.Relative)))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, before.StatusCode);
            Assert.Equal("caches not synced yet\n", await before.Content.ReadAsStringAsync());
        }

        readiness.MarkCachesSynced();
        using var after = await http.GetAsync(new Uri("/readyz", UriKind.Relative));
        Assert.Equal(HttpStatusCode.OK, after.StatusCode);
    }
}
