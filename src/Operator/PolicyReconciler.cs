using System.Collections.Concurrent;
using System.Globalization;
using k8s.Models;
using Microsoft.Extensions.Logging;
using TsCgnat.Api;
using TsCgnat.Kube;

namespace TsCgnat.Operator;

/// <summary>
/// One idempotent reconcile per policy (controller-runtime style: it is never told what changed). A live
/// policy gets the finalizer and the status <see cref="PolicyAggregation.Compute"/> says; a deleted one keeps
/// its finalizer until every target node confirmed the removal, the node went, or the deletion timeout passed.
/// </summary>
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
    private readonly ConcurrentDictionary<string, long> lastWrite = new(StringComparer.Ordinal);
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
        ILogger logger)
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
    }

    /// <summary>Status writes sent so far (each one a PATCH of /status).</summary>
    public long StatusWrites => Interlocked.Read(ref statusWrites);

    /// <summary>Reconciles completed so far, written or not (tests wait on it to know a change was looked at).</summary>
    public long Reconciles => Interlocked.Read(ref reconciles);

    public async Task<ReconcileResult> ReconcileAsync(string key, CancellationToken cancellationToken)
    {
        try
        {
            return await ReconcileOnceAsync(key, cancellationToken);
        }
        finally
        {
            Interlocked.Increment(ref reconciles);
        }
    }

    private async Task<ReconcileResult> ReconcileOnceAsync(string key, CancellationToken cancellationToken)
    {
        if (policies.GetByKey(key) is not { } policy)
        {
            lastWrite.TryRemove(key, out _);
            return ReconcileResult.Done;
        }

        if (policy.Metadata.DeletionTimestamp is { } deletedAt)
        {
            return await FinalizeAsync(policy, deletedAt, cancellationToken);
        }

        var withFinalizer = await finalizers.AddAsync(policy, Finalizer, cancellationToken);
        if (withFinalizer.Written)
        {
            logger.LogInformation("policy {Policy}: added finalizer {Finalizer}", key, Finalizer);
        }

        return await WriteStatusAsync(key, withFinalizer.Current, cancellationToken);
    }

    /// <summary>
    /// Writes the aggregated status if it changed, at most once per <see cref="OperatorOptions.StatusWriteInterval"/>
    /// per policy: a burst of node-state changes (every agent reporting a new generation) is folded into one
    /// write at the end of the interval instead of one per change. The queue alone would not do it, since it
    /// only merges changes that arrive while the key waits, and a reconcile takes far less time than a rollout.
    /// </summary>
    private async Task<ReconcileResult> WriteStatusAsync(string key, CgnatAllowPolicy policy, CancellationToken cancellationToken)
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

        var outcome = await statusWriter.WriteAsync(policy, desired, cancellationToken);
        if (outcome.Written)
        {
            lastWrite[key] = time.GetTimestamp();
            Interlocked.Increment(ref statusWrites);
            logger.LogInformation(
                "policy {Policy}: status written, generation {Generation}, {Applied}/{Target} applied, {Failed} failed, Ready={Ready}",
                key, desired.ObservedGeneration, desired.AppliedNodes, desired.TargetNodes, desired.FailedNodes,
                Conditions.Find(desired.Conditions, ConditionTypes.Ready)?.Status);
        }

        return ReconcileResult.Done;
    }

    private async Task<ReconcileResult> FinalizeAsync(CgnatAllowPolicy policy, DateTime deletedAt, CancellationToken cancellationToken)
    {
        var name = policy.Metadata.Name;
        if (!Finalizers.Has(policy, Finalizer))
        {
            return ReconcileResult.Done;
        }

        var waiting = PolicyAggregation.AwaitingRemoval(policy, states.List(), node => nodes.Get(node) is not null);
        if (waiting.Count == 0)
        {
            await events.NormalAsync(policy, PolicyReasons.RemovedFromNodes, "every target node removed the policy's exemptions", cancellationToken);
            await finalizers.RemoveAsync(policy, Finalizer, cancellationToken);
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
        await events.WarningAsync(policy, PolicyReasons.DeletionTimedOut, message, cancellationToken);
        await finalizers.RemoveAsync(policy, Finalizer, cancellationToken);
        logger.LogWarning("policy {Policy}: {Message}; finalizer removed", name, message);
        return ReconcileResult.Done;
    }

    private static string Names(IReadOnlyList<string> nodes) =>
        nodes.Count <= MaxNamedNodes
            ? string.Join(", ", nodes)
            : $"{string.Join(", ", nodes.Take(MaxNamedNodes))} and {nodes.Count - MaxNamedNodes} more";
}
