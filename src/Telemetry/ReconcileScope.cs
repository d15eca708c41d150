using System.Diagnostics;

namespace TsCgnat.Telemetry;

/// <summary>The <c>outcome</c> attribute values of <c>tscgnat.reconcile.duration</c>.</summary>
public static class ReconcileOutcome
{
    /// <summary>The host (or status) already matched; nothing was written.</summary>
    public const string InSync = "in_sync";

    /// <summary>Something differed and was written.</summary>
    public const string Written = "written";

    /// <summary>The reconcile failed; <c>tscgnat.apply.errors</c> says in which stage.</summary>
    public const string Failed = "failed";

    /// <summary>The reconcile was stopped before it reported a result (the program is stopping).</summary>
    public const string Cancelled = "cancelled";
}

/// <summary>
/// One reconcile being measured: its duration goes to <c>tscgnat.reconcile.duration</c> and, when traced,
/// its <c>tscgnat.reconcile</c> span ends, both at <see cref="Dispose"/>. Tying the two together keeps the
/// call site to three lines, and the outcome on the histogram agrees with the span.
/// </summary>
/// <example>
/// <code>
/// using var reconcile = metrics.StartReconcile(cause, node: nodeName);
/// try { var result = await ApplyAsync(ct); reconcile.Completed(result.Wrote, result.Backend, result.Strategy); }
/// catch (Exception e) { reconcile.Failed("write", e); throw; }
/// </code>
/// </example>
public sealed class ReconcileScope : IDisposable
{
    private readonly TsCgnatMetrics _metrics;
    private readonly long _startedAt;
    private string? _outcome;
    private bool _disposed;

    internal ReconcileScope(TsCgnatMetrics metrics, Activity? activity, long startedAt)
    {
        _metrics = metrics;
        Activity = activity;
        _startedAt = startedAt;
    }

    /// <summary>The span, null when nobody traces; for extra tags or events.</summary>
    public Activity? Activity { get; }

    /// <summary>The reconcile finished: it wrote (<paramref name="wrote"/>) or found everything in sync.</summary>
    public void Completed(bool wrote, string? backend = null, string? strategy = null)
    {
        _outcome = wrote ? ReconcileOutcome.Written : ReconcileOutcome.InSync;
        Activity.SetResult(wrote, backend, strategy);
    }

    /// <summary>The reconcile failed in <paramref name="stage"/>: counts one <c>tscgnat.apply.errors</c> and marks the span.</summary>
    public void Failed(string stage, Exception exception)
    {
        ArgumentException.ThrowIfNullOrEmpty(stage);
        ArgumentNullException.ThrowIfNull(exception);
        _outcome = ReconcileOutcome.Failed;
        _metrics.RecordApplyError(stage);
        Activity.SetFailed(stage, exception);
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        _metrics.RecordReconcile(_startedAt, _outcome ?? ReconcileOutcome.Cancelled);
        Activity?.Dispose();
    }
}
