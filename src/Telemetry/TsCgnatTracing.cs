using System.Diagnostics;

namespace TsCgnat.Telemetry;

/// <summary>
/// The <c>tscgnat</c> <see cref="ActivitySource"/>. With no listener (no OTLP endpoint set) starting an
/// activity returns null and costs nothing, which is why every helper here accepts a null activity.
/// </summary>
public static class TsCgnatTracing
{
    /// <summary>The source name, for <c>AddSource</c>.</summary>
    public const string SourceName = "tscgnat";

    /// <summary>The span around one reconcile.</summary>
    public const string ReconcileActivity = "tscgnat.reconcile";

    public static ActivitySource Source { get; } = new(SourceName, TsCgnatMetrics.Version);

    /// <summary>
    /// Starts a <c>tscgnat.reconcile</c> span with the tags known at the start (<c>cause</c>, <c>node</c>,
    /// <c>policy</c>), so a sampler sees them. Prefer <see cref="TsCgnatMetrics.StartReconcile"/>, which also
    /// times the reconcile; this is for a caller that only traces.
    /// </summary>
    public static Activity? StartReconcile(string cause, string? node = null, string? policy = null)
    {
        if (!Source.HasListeners())
        {
            return null;
        }

        var tags = new ActivityTagsCollection { ["cause"] = cause };
        if (node is not null)
        {
            tags["node"] = node;
        }

        if (policy is not null)
        {
            tags["policy"] = policy;
        }

        return Source.StartActivity(ReconcileActivity, ActivityKind.Internal, parentContext: default, tags);
    }

    /// <summary>Tags what the reconcile found and did: the firewall back end, the strategy, and whether it wrote.</summary>
    public static Activity? SetResult(this Activity? activity, bool wrote, string? backend = null, string? strategy = null)
    {
        if (activity is null)
        {
            return null;
        }

        if (backend is not null)
        {
            activity.SetTag("backend", backend);
        }

        if (strategy is not null)
        {
            activity.SetTag("strategy", strategy);
        }

        return activity.SetTag("wrote", wrote);
    }

    /// <summary>Marks the span failed in <paramref name="stage"/> and records the exception on it.</summary>
    public static Activity? SetFailed(this Activity? activity, string stage, Exception exception)
    {
        ArgumentNullException.ThrowIfNull(exception);
        if (activity is null)
        {
            return null;
        }

        activity.SetTag("stage", stage);
        activity.AddException(exception);
        return activity.SetStatus(ActivityStatusCode.Error, exception.Message);
    }
}
