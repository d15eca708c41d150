using Microsoft.Extensions.Time.Testing;

namespace TsCgnat.Telemetry.Tests;

/// <summary>What /healthz and /readyz mean, on a fake clock.</summary>
public sealed class ReadinessTests
{
    private readonly FakeTimeProvider _time = new();

    [Fact]
    public void Host_mode_is_not_ready_until_the_first_reconcile()
    {
        var readiness = new Readiness(TimeSpan.FromSeconds(90), time: _time);
        Assert.Equal(new HealthState(false, "first reconcile not done yet"), readiness.Ready());

        readiness.MarkReconciled();

        Assert.Equal(new HealthState(true, "ok"), readiness.Ready());
    }

    [Fact]
    public void Cluster_mode_is_not_ready_until_the_caches_synced_even_after_a_reconcile()
    {
        var readiness = new Readiness(TimeSpan.FromSeconds(90), requireCachesSynced: true, time: _time);
        readiness.MarkReconciled();
        Assert.Equal(new HealthState(false, "caches not synced yet"), readiness.Ready());

        readiness.MarkCachesSynced();

        Assert.True(readiness.Ready().Ok);
    }

    [Fact]
    public void Caches_synced_alone_is_not_ready_without_a_reconcile()
    {
        var readiness = new Readiness(TimeSpan.FromSeconds(90), requireCachesSynced: true, time: _time);
        readiness.MarkCachesSynced();

        Assert.Equal(new HealthState(false, "first reconcile not done yet"), readiness.Ready());
    }

    [Fact]
    public void A_process_that_just_started_is_alive()
    {
        var readiness = new Readiness(TimeSpan.FromSeconds(90), time: _time);

        Assert.Equal(new HealthState(true, "ok"), readiness.Liveness());
    }

    [Fact]
    public void Liveness_fails_once_the_heartbeat_is_older_than_the_bound_and_recovers_with_the_next_one()
    {
        var readiness = new Readiness(TimeSpan.FromSeconds(90), time: _time);
        _time.Advance(TimeSpan.FromSeconds(90));
        Assert.True(readiness.Liveness().Ok); // exactly at the bound is still alive

        _time.Advance(TimeSpan.FromSeconds(5));
        Assert.Equal(new HealthState(false, "the reconcile loop has not passed for 95 s (bound 90 s)"), readiness.Liveness());

        readiness.Heartbeat();
        Assert.True(readiness.Liveness().Ok);
    }

    [Fact]
    public void A_reconcile_counts_as_a_heartbeat()
    {
        var readiness = new Readiness(TimeSpan.FromSeconds(30), time: _time);
        _time.Advance(TimeSpan.FromSeconds(29));
        readiness.MarkReconciled();
        _time.Advance(TimeSpan.FromSeconds(29));

        Assert.True(readiness.Liveness().Ok);
    }

    [Theory]
    [InlineData(0)]
    [InlineData(-1)]
    public void A_bound_that_is_not_positive_is_refused(int seconds)
    {
        var e = Assert.Throws<ArgumentOutOfRangeException>(() => new Readiness(TimeSpan.FromSeconds(seconds)));
        Assert.Equal("livenessBound", e.ParamName);
    }
}
