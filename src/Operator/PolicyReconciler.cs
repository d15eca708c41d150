using System.Collections.Concurrent;
using System.Globalization;
using k8s.Models;
using Microsoft.Extensions.Logging;
using TsCgnat.Api;
using TsCgnat.Kube;
using TsCgnat.Telemetry;

namespace TsCgnat.Operator;

/// <summary>
/// One idempotent reconcile per policy (controller-runtime style: it is never told what changed). A live
/// policy gets the finalizer and the status <see cref="PolicyAggregation.Compute"/> says; a deleted one keeps
/// its finalizer until every target node confirmed the removal, the node went, or the deletion timeout passed.
/// </summary>
/// <remarks>
/// Each reconcile is one <c>tscgnat.reconcile</c> (duration with its outcome, and a span tagged with the policy);
/// each status write counts in <c>tscgnat.status.writes</c>; a failure counts in <c>tscgnat.apply.errors</c> under
/// the step that failed (<see cref="OperatorStages"/>).
/// </remarks>
public sealed class PolicyReconciler
{
    /// <summary>Holds a deleted policy until the agents have taken its exemptions off their hosts.</summary>
    public const string Finalizer = "tscgnat.io/node-cleanup";

    /// <summary>Node names listed in one event; the rest are counted, so the message stays readable.</summary>
    private const int MaxNamedNodes = 20;

    private readonly ResourceCache<CgnatAllowPolicy> policies;
    private readonly ResourceCache<CgnatNodeState> states;
    private readonly ResourceCache<V1Node> nodes;
    private readonly StatusWriter statusWriter;
    private readonly Finalizers finalizers;
    private readonly EventRecorder events;
    private readonly OperatorOptions options;
    private readonly TimeProvider time;
    private readonly ILogger logger;
    private readonly TsCgnatMetrics metrics;
    private readonly ConcurrentDictionary<string, long> lastWrite = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, bool> reconciledOnce = new(StringComparer.Ordinal);
    private long statusWrites;
    private long reconciles;

    public PolicyReconciler(
        ResourceCache<CgnatAllowPolicy> policies,
        ResourceCache<CgnatNodeState> states,
        ResourceCache<V1Node> nodes,
        StatusWriter statusWriter,
        Finalizers finalizers,
        EventRecorder events,
        OperatorOptions options,
        TimeProvider time,
        ILogger logger,
        TsCgnatMetrics metrics)
    {
        this.policies = policies;
        this.states = states;
        this.nodes = nodes;
        this.statusWriter = statusWriter;
        this.finalizers = finalizers;
        this.events = events;
        this.options = options;
        this.time = time;
        this.logger = logger;
        this.metrics = metrics;
    }

    /// <summary>Called after every reconcile, whatever it did; must return quickly.</summary>
    public event Action? Reconciled;

    /// <summary>Status writes sent so far (each one a PATCH of /status).</summary>
    public long StatusWrites => Interlocked.Read(ref statusWrites);

    /// <summary>Reconciles completed so far, written or not (tests wait on it to know a change was looked at).</summary>
    public long Reconciles => Interlocked.Read(ref reconciles);

    /// <summary>
    /// Whether every policy in the cache has been reconciled at least once (written, in sync or failed: a policy
    /// that keeps failing retries with backoff and must not keep the operator unready).
    /// </summary>
    public bool EveryPolicyReconciled => policies.Keys().All(reconciledOnce.ContainsKey);

    public async Task<ReconcileResult> ReconcileAsync(string key, CancellationToken cancellationToken)
    {
        try
        {
            // The work queue is level-triggered: it says which policy to look at, never why. The duration is
            // recorded (at the end of this block) before the reconcile counts as done, so whoever waits on
            // Reconciles finds it.
            using var reconcile = metrics.StartReconcile("work queue", policy: key);
            var pass = new Pass();
            try
            {
                var result = await ReconcileOnceAsync(key, pass, cancellationToken);
                reconcile.Completed(pass.Wrote);
                return result;
            }
            catch (Exception e) when (!cancellationToken.IsCancellationRequested)
            {
                reconcile.Failed(pass.Stage, e);
                throw;
            }
        }
        finally
        {
            Interlocked.Increment(ref reconciles);
            if (policies.GetByKey(key) is null)
            {
                reconciledOnce.TryRemove(key, out _);
            }
            else
            {
                reconciledOnce[key] = true;
            }

            Reconciled?.Invoke();
        }
    }

    private async Task<ReconcileResult> ReconcileOnceAsync(string key, Pass pass, CancellationToken cancellationToken)
    {
        if (policies.GetByKey(key) is not { } policy)
        {
            lastWrite.TryRemove(key, out _);
            return ReconcileResult.Done;
        }

        if (policy.Metadata.DeletionTimestamp is { } deletedAt)
        {
            return await FinalizeAsync(policy, deletedAt, pass, cancellationToken);
        }

        pass.Stage = OperatorStages.Finalizer;
        var withFinalizer = await finalizers.AddAsync(policy, Finalizer, cancellationToken);
        if (withFinalizer.Written)
        {
            pass.Wrote = true;
            logger.LogInformation("policy {Policy}: added finalizer {Finalizer}", key, Finalizer);
        }

        return await WriteStatusAsync(key, withFinalizer.Current, pass, cancellationToken);
    }

    /// <summary>
    /// Writes the aggregated status if it changed, at most once per <see cref="OperatorOptions.StatusWriteInterval"/>
    /// per policy: a burst of node-state changes (every agent reporting a new generation) is folded into one
    /// write at the end of the interval instead of one per change. The queue alone would not do it, since it
    /// only merges changes that arrive while the key waits, and a reconcile takes far less time than a rollout.
    /// </summary>
    private async Task<ReconcileResult> WriteStatusAsync(string key, CgnatAllowPolicy policy, Pass pass, CancellationToken cancellationToken)
    {
        var desired = PolicyAggregation.Compute(policy, nodes.List(), name => states.Get(name), time.GetUtcNow());
        if (StatusWriter.SameStatus(policy.Status, desired))
        {
            return ReconcileResult.Done;
        }

        if (lastWrite.TryGetValue(key, out var at) && time.GetElapsedTime(at) is var since && since < options.StatusWriteInterval)
        {
            return ReconcileResult.RequeueIn(options.StatusWriteInterval - since);
        }

        pass.Stage = OperatorStages.Status;
        var outcome = await statusWriter.WriteAsync(policy, desired, cancellationToken);
        if (outcome.Written)
        {
            pass.Wrote = true;
            metrics.RecordStatusWrite(CgnatAllowPolicy.KindName);
            lastWrite[key] = time.GetTimestamp();
            Interlocked.Increment(ref statusWrites);
            logger.LogInformation(
                "policy {Policy}: status written, generation {Generation}, {Applied}/{Target} applied, {Failed} failed, Ready={Ready}",
                key, desired.ObservedGeneration, desired.AppliedNodes, desired.TargetNodes, desired.FailedNodes,
                Conditions.Find(desired.Conditions, ConditionTypes.Ready)?.Status);
        }

        return ReconcileResult.Done;
    }

    private async Task<ReconcileResult> FinalizeAsync(CgnatAllowPolicy policy, DateTime deletedAt, Pass pass, CancellationToken cancellationToken)
    {
        var name = policy.Metadata.Name;
        if (!Finalizers.Has(policy, Finalizer))
        {
            return ReconcileResult.Done;
        }

        var waiting = PolicyAggregation.AwaitingRemoval(policy, states.List(), node => nodes.Get(node) is not null);
        if (waiting.Count == 0)
        {
            pass.Stage = OperatorStages.Event;
            await events.NormalAsync(policy, PolicyReasons.RemovedFromNodes, "every target node removed the policy's exemptions", cancellationToken);
            pass.Stage = OperatorStages.Finalizer;
            await finalizers.RemoveAsync(policy, Finalizer, cancellationToken);
            pass.Wrote = true;
            logger.LogInformation("policy {Policy}: every target node confirmed the removal; finalizer removed", name);
            return ReconcileResult.Done;
        }

        var elapsed = time.GetUtcNow() - new DateTimeOffset(DateTime.SpecifyKind(deletedAt, DateTimeKind.Utc));
        if (elapsed < options.DeletionTimeout)
        {
            logger.LogDebug("policy {Policy}: deletion waits for {Count} node(s): {Nodes}", name, waiting.Count, Names(waiting));
            return ReconcileResult.RequeueIn(options.DeletionTimeout - elapsed);
        }

        var message = string.Create(CultureInfo.InvariantCulture,
            $"the deletion timeout ({options.DeletionTimeout}) passed before {waiting.Count} node(s) confirmed the removal of the policy's exemptions: {Names(waiting)}; their rules may remain until their agents catch up");
        pass.Stage = OperatorStages.Event;
        await events.WarningAsync(policy, PolicyReasons.DeletionTimedOut, message, cancellationToken);
        pass.Stage = OperatorStages.Finalizer;
        await finalizers.RemoveAsync(policy, Finalizer, cancellationToken);
        pass.Wrote = true;
        logger.LogWarning("policy {Policy}: {Message}; finalizer removed", name, message);
        return ReconcileResult.Done;
    }

    /// <summary>What one reconcile has done so far: the step it is in (for a failure) and whether it wrote.</summary>
    private sealed class Pass
    {
        public string Stage { get; set; } = OperatorStages.Finalizer;

        public bool Wrote { get; set; }
    }

    private static string Names(IReadOnlyList<string> nodes) =>
        nodes.Count <= MaxNamedNodes
            ? string.Join(", ", nodes)
            : $"{string.Join(", ", nodes.Take(MaxNamedNodes))} and {nodes.Count - MaxNamedNodes} more";
}

/// <summary>The <c>stage</c> values of <c>tscgnat.apply.errors</c> and of a failed reconcile span, as the operator records them.</summary>
public static class OperatorStages
{
    /// <summary>Adding or removing the finalizer failed.</summary>
    public const string Finalizer = "finalizer";

    /// <summary>Writing the policy's status failed.</summary>
    public const string Status = "status";

    /// <summary>Recording the event of a finished deletion failed.</summary>
    public const string Event = "event";
}
