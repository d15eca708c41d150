using System.Collections.Frozen;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Reflection;

namespace TsCgnat.Telemetry;

/// <summary>
/// The instruments of design section 8, on one <see cref="Meter"/> named <c>tscgnat</c>. Both programs
/// create one instance and record through its methods; OpenTelemetry's MeterProvider (see
/// <see cref="TelemetryHost"/>) picks the meter up by name. docs/telemetry.md lists every instrument.
/// </summary>
/// <remarks>
/// The gauges (<c>tscgnat.rules</c>, <c>tscgnat.set.members</c>, <c>tscgnat.policies</c>,
/// <c>tscgnat.nodes</c>, <c>tscgnat.node.conditions</c>, <c>tscgnat.policy.nodes</c>) are observable: the program hands over a fresh
/// snapshot after each reconcile and the callbacks only read it at collection time, so a scrape never waits on the reconcile loop. A gauge
/// whose snapshot was never set reports nothing, so the operator does not show empty agent gauges and the
/// other way round.
/// </remarks>
public sealed class TsCgnatMetrics : IDisposable
{
    /// <summary>The meter name, for <c>AddMeter</c>.</summary>
    public const string MeterName = "tscgnat";

    // Seconds, from 1 ms to 30 s: the repair target is under 100 ms p99 and a resync with nothing to do under
    // 30 ms (design section 10), so the interesting buckets are the small ones. OpenTelemetry's default
    // boundaries (0 to 10,000) are meant for milliseconds and would put every reconcile in the first bucket.
    private static readonly IReadOnlyList<double> SecondsBuckets =
        [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

    private readonly Meter _meter;
    private readonly TimeProvider _time;
    private readonly Histogram<double> _reconcileDuration;
    private readonly Counter<long> _driftRepairs;
    private readonly Histogram<double> _repairLatency;
    private readonly Counter<long> _applyErrors;
    private readonly Counter<long> _statusWrites;

    private volatile FrozenDictionary<string, long> _rulesByStrategy = FrozenDictionary<string, long>.Empty;
    private volatile FrozenDictionary<string, long> _membersBySet = FrozenDictionary<string, long>.Empty;
    private volatile FrozenDictionary<string, long> _nodesByState = FrozenDictionary<string, long>.Empty;
    private volatile IReadOnlyList<ConditionCount> _policyConditions = [];
    private volatile IReadOnlyList<ConditionCount> _nodeConditions = [];
    private volatile IReadOnlyList<PolicyNodeCount> _policyNodes = [];

    /// <param name="time">The clock reconcile durations are measured with; tests pass a fake one.</param>
    public TsCgnatMetrics(TimeProvider? time = null)
    {
        _time = time ?? TimeProvider.System;
        _meter = new Meter(new MeterOptions(MeterName) { Version = Version });
        var seconds = new InstrumentAdvice<double> { HistogramBucketBoundaries = SecondsBuckets };

        _reconcileDuration = _meter.CreateHistogram("tscgnat.reconcile.duration", "s",
            "How long one reconcile took, from reading the inputs to the last write.", tags: null, advice: seconds);
        _driftRepairs = _meter.CreateCounter<long>("tscgnat.drift.repairs", "{repair}",
            "Reconciles that had to write because someone else changed the firewall, by what noticed it.");
        _repairLatency = _meter.CreateHistogram("tscgnat.repair.latency", "s",
            "From the change being seen (event, poll or resync) to our rules being back.", tags: null, advice: seconds);
        _applyErrors = _meter.CreateCounter<long>("tscgnat.apply.errors", "{error}",
            "Failures, by the stage that failed.");
        _statusWrites = _meter.CreateCounter<long>("tscgnat.status.writes", "{write}",
            "Status writes to the API server (only changed statuses are written).");

        _meter.CreateObservableGauge("tscgnat.rules", () => Observe(_rulesByStrategy, "strategy"), "{rule}",
            "Our rules on the host now, by strategy.");
        _meter.CreateObservableGauge("tscgnat.set.members", () => Observe(_membersBySet, "set"), "{member}",
            "CIDR entries in our sets now, by set name.");
        _meter.CreateObservableGauge("tscgnat.policies", () => ObserveConditions(_policyConditions), "{policy}",
            "Policies by condition type and status.");
        _meter.CreateObservableGauge("tscgnat.nodes", () => Observe(_nodesByState, "state"), "{node}",
            "Target nodes by what they reported.");
        _meter.CreateObservableGauge("tscgnat.node.conditions", () => ObserveConditions(_nodeConditions), "{node}",
            "Nodes with an agent by the condition type and status of their CgnatNodeState.");
        _meter.CreateObservableGauge("tscgnat.policy.nodes", ObservePolicyNodes, "{node}",
            "Each policy's target, applied and failed nodes, as its status reports them.");
    }

    /// <summary>The version the meter carries: this assembly's, without the source revision suffix.</summary>
    public static string Version { get; } =
        typeof(TsCgnatMetrics).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion.Split('+')[0]
        ?? typeof(TsCgnatMetrics).Assembly.GetName().Version?.ToString()
        ?? "0.0.0";

    /// <summary>
    /// The meter itself: a <see cref="MeterListener"/> can tell this instance's measurements from those of
    /// another instance in the same process (tests that run several programs at once), since every instance's
    /// meter is named <c>tscgnat</c>.
    /// </summary>
    public Meter Meter => _meter;

    /// <summary>
    /// Starts timing one reconcile and, when anyone listens to <see cref="TsCgnatTracing.SourceName"/>, a
    /// <c>tscgnat.reconcile</c> span. Dispose the scope when the reconcile ends; call
    /// <see cref="ReconcileScope.Completed"/> or <see cref="ReconcileScope.Failed"/> before that.
    /// </summary>
    /// <param name="cause">What made us look (a resync, a firewall event, ...); a low-cardinality word.</param>
    /// <param name="node">The node reconciled (the agent), if any.</param>
    /// <param name="policy">The policy reconciled (the operator), if any.</param>
    public ReconcileScope StartReconcile(string cause, string? node = null, string? policy = null)
    {
        ArgumentException.ThrowIfNullOrEmpty(cause);
        return new ReconcileScope(this, TsCgnatTracing.StartReconcile(cause, node, policy), _time.GetTimestamp());
    }

    /// <summary>Records a repair of drift: one <c>tscgnat.drift.repairs</c> and its <c>tscgnat.repair.latency</c>.</summary>
    /// <param name="cause">What noticed the drift (nft event, legacy poll, tailscaled, resync).</param>
    /// <param name="latency">From the change being seen to the rules being back.</param>
    public void RecordRepair(string cause, TimeSpan latency)
    {
        ArgumentException.ThrowIfNullOrEmpty(cause);
        var tag = new KeyValuePair<string, object?>("cause", cause);
        _driftRepairs.Add(1, tag);
        _repairLatency.Record(latency.TotalSeconds, tag);
    }

    /// <summary>Counts one failure in <paramref name="stage"/> (e.g. <c>read</c>, <c>write</c>, <c>status</c>, <c>policy</c>).</summary>
    public void RecordApplyError(string stage)
    {
        ArgumentException.ThrowIfNullOrEmpty(stage);
        _applyErrors.Add(1, new KeyValuePair<string, object?>("stage", stage));
    }

    /// <summary>Counts one status write of <paramref name="kind"/> (<c>CgnatAllowPolicy</c> or <c>CgnatNodeState</c>).</summary>
    public void RecordStatusWrite(string kind)
    {
        ArgumentException.ThrowIfNullOrEmpty(kind);
        _statusWrites.Add(1, new KeyValuePair<string, object?>("kind", kind));
    }

    /// <summary>The agent: our rules on the host after the last reconcile, by strategy (replaces the previous snapshot).</summary>
    public void SetRules(IEnumerable<KeyValuePair<string, long>> byStrategy) =>
        _rulesByStrategy = byStrategy.ToFrozenDictionary(StringComparer.Ordinal);

    /// <summary>The agent: members of each of our sets after the last reconcile, by set name (replaces the previous snapshot).</summary>
    public void SetSetMembers(IEnumerable<KeyValuePair<string, long>> bySet) =>
        _membersBySet = bySet.ToFrozenDictionary(StringComparer.Ordinal);

    /// <summary>The operator: policies by condition type and status; see <see cref="ConditionCount.Tally"/>.</summary>
    public void SetPolicyConditions(IEnumerable<ConditionCount> counts) => _policyConditions = [.. counts];

    /// <summary>The operator: nodes by the condition type and status of their CgnatNodeState (<c>Ready</c>, <c>TailscaleCompatible</c>).</summary>
    public void SetNodeConditions(IEnumerable<ConditionCount> counts) => _nodeConditions = [.. counts];

    /// <summary>The operator: each policy's target, applied and failed node counts (its status' NODES column).</summary>
    public void SetPolicyNodes(IEnumerable<PolicyNodeCount> counts) => _policyNodes = [.. counts];

    /// <summary>The operator: nodes by state (e.g. <c>applied</c>, <c>failed</c>, <c>pending</c>, <c>missing</c>).</summary>
    public void SetNodes(IEnumerable<KeyValuePair<string, long>> byState) =>
        _nodesByState = byState.ToFrozenDictionary(StringComparer.Ordinal);

    public void Dispose() => _meter.Dispose();

    internal void RecordReconcile(long startedAt, string outcome) =>
        _reconcileDuration.Record(_time.GetElapsedTime(startedAt).TotalSeconds, new KeyValuePair<string, object?>("outcome", outcome));

    private static IEnumerable<Measurement<long>> Observe(FrozenDictionary<string, long> snapshot, string attribute) =>
        snapshot.Select(p => new Measurement<long>(p.Value, new KeyValuePair<string, object?>(attribute, p.Key)));

    private IEnumerable<Measurement<long>> ObservePolicyNodes() =>
        _policyNodes.Select(c => new Measurement<long>(c.Count,
            new KeyValuePair<string, object?>("policy", c.Policy),
            new KeyValuePair<string, object?>("state", c.State)));

    private static IEnumerable<Measurement<long>> ObserveConditions(IReadOnlyList<ConditionCount> counts) =>
        counts.Select(c => new Measurement<long>(c.Count,
            new KeyValuePair<string, object?>("condition", c.Condition),
            new KeyValuePair<string, object?>("status", c.Status)));
}

/// <summary>How many nodes policy <paramref name="Policy"/> counts in <paramref name="State"/> (<c>target</c>, <c>applied</c>, <c>failed</c>).</summary>
public sealed record PolicyNodeCount(string Policy, string State, long Count);

/// <summary>How many objects (policies, or nodes' states) have condition <paramref name="Condition"/> at <paramref name="Status"/>.</summary>
public sealed record ConditionCount(string Condition, string Status, long Count)
{
    /// <summary>
    /// Counts each (condition type, status) pair over every object's conditions, ordered by type then status.
    /// The operator passes what it holds, e.g. <c>policies.SelectMany(p => p.Status.Conditions.Select(c => (c.Type, c.Status)))</c>.
    /// </summary>
    public static IReadOnlyList<ConditionCount> Tally(IEnumerable<(string Type, string Status)> conditions) =>
        [.. conditions
            .GroupBy(c => c)
            .Select(g => new ConditionCount(g.Key.Type, g.Key.Status, g.LongCount()))
            .OrderBy(c => c.Condition, StringComparer.Ordinal)
            .ThenBy(c => c.Status, StringComparer.Ordinal)];
}
