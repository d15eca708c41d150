namespace TsCgnat.Telemetry;

/// <summary>An answer of <c>/healthz</c> or <c>/readyz</c>: whether it is good, and a line that says why.</summary>
public sealed record HealthState(bool Ok, string Reason);

/// <summary>
/// What <c>/healthz</c> and <c>/readyz</c> answer, flipped by the program. Alive means the reconcile loop
/// passed recently (it calls <see cref="Heartbeat"/> each pass, and the periodic resync guarantees a pass at
/// least every resync interval), so a wedged loop gets the container restarted. Ready means the first
/// reconcile is done and, in cluster mode, the caches have listed once: before that the program would act on
/// nothing, and an operator replica would report empty aggregates.
/// </summary>
/// <remarks>Ready does not imply alive and the other way round; the kubelet asks each on its own probe.</remarks>
public sealed class Readiness
{
    private readonly TimeProvider _time;
    private long _lastHeartbeat;
    private int _reconciled;
    private int _cachesSynced;

    /// <param name="livenessBound">How old the last heartbeat may be before <c>/healthz</c> fails; 3x the resync interval is a good bound.</param>
    /// <param name="requireCachesSynced">Cluster mode: also wait for <see cref="MarkCachesSynced"/> before ready.</param>
    /// <param name="time">The clock; tests pass a fake one.</param>
    public Readiness(TimeSpan livenessBound, bool requireCachesSynced = false, TimeProvider? time = null)
    {
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(livenessBound, TimeSpan.Zero);
        LivenessBound = livenessBound;
        RequireCachesSynced = requireCachesSynced;
        _time = time ?? TimeProvider.System;
        _lastHeartbeat = _time.GetTimestamp(); // a process that just started is alive
    }

    public TimeSpan LivenessBound { get; }

    public bool RequireCachesSynced { get; }

    /// <summary>The loop passed; call once per pass, whatever the pass did.</summary>
    public void Heartbeat() => Interlocked.Exchange(ref _lastHeartbeat, _time.GetTimestamp());

    /// <summary>The first reconcile is done (whether or not it wrote); stays set.</summary>
    public void MarkReconciled()
    {
        Volatile.Write(ref _reconciled, 1);
        Heartbeat();
    }

    /// <summary>Cluster mode: every informer cache has listed once; stays set.</summary>
    public void MarkCachesSynced() => Volatile.Write(ref _cachesSynced, 1);

    /// <summary>What <c>/healthz</c> answers.</summary>
    public HealthState Liveness()
    {
        var since = _time.GetElapsedTime(Interlocked.Read(ref _lastHeartbeat));
        return since > LivenessBound
            ? new HealthState(false, $"the reconcile loop has not passed for {since.TotalSeconds:F0} s (bound {LivenessBound.TotalSeconds:F0} s)")
            : new HealthState(true, "ok");
    }

    /// <summary>What <c>/readyz</c> answers.</summary>
    public HealthState Ready()
    {
        if (RequireCachesSynced && Volatile.Read(ref _cachesSynced) == 0)
        {
            return new HealthState(false, "caches not synced yet");
        }

        return Volatile.Read(ref _reconciled) == 0
            ? new HealthState(false, "first reconcile not done yet")
            : new HealthState(true, "ok");
    }
}
