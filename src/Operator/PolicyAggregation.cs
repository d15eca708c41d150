using k8s.Models;
using TsCgnat.Api;

namespace TsCgnat.Operator;

/// <summary>
/// A policy's status as a pure function of the policy, the nodes (labels only) and the agents' node states at
/// one moment (design sections 3 and 6). The reconcile reads its inputs from caches and writes what this
/// returns; everything that decides what the status says is here, tested without a server.
/// </summary>
public static class PolicyAggregation
{
    /// <summary>
    /// The status <paramref name="policy"/> should have. Conditions start from the policy's current ones
    /// (copied, never changed in place: they belong to a cache), so <c>lastTransitionTime</c> moves only when a
    /// status flips; <paramref name="now"/> is the time a flip is stamped with.
    /// </summary>
    /// <param name="nodes">Every Node; only names and labels are read.</param>
    /// <param name="stateOf">The CgnatNodeState of a node by name, or null when the node runs no agent.</param>
    public static CgnatAllowPolicyStatus Compute(
        CgnatAllowPolicy policy, IEnumerable<V1Node> nodes, Func<string, CgnatNodeState?> stateOf, DateTimeOffset now)
    {
        ArgumentNullException.ThrowIfNull(policy);
        ArgumentNullException.ThrowIfNull(nodes);
        ArgumentNullException.ThrowIfNull(stateOf);
        var generation = policy.Metadata?.Generation;
        var time = new PointInTime(now);
        var conditions = (policy.Status?.Conditions ?? []).Select(Copy).ToList();
        var errors = PolicyValidator.Validate(policy, out _);
        var targets = Targets(policy, nodes, stateOf);
        var status = new CgnatAllowPolicyStatus { ObservedGeneration = generation, TargetNodes = targets.Count, Conditions = conditions };

        if (errors.Count > 0)
        {
            var message = string.Join("; ", errors.Select(e => e.ToString()));
            Conditions.Set(conditions, ConditionTypes.Accepted, ConditionStatus.False, PolicyReasons.InvalidSpec, message, generation, time);
            Conditions.Set(conditions, ConditionTypes.Ready, ConditionStatus.False, PolicyReasons.InvalidSpec,
                "the spec is invalid, so no node applies it (see Accepted)", generation, time);
            Conditions.Set(conditions, ConditionTypes.Degraded, ConditionStatus.False, PolicyReasons.InvalidSpec,
                "nothing is applied while the spec is invalid (see Accepted)", generation, time);
            status.AppliedNodes = 0;
            status.FailedNodes = 0;
            return status;
        }

        Conditions.Set(conditions, ConditionTypes.Accepted, ConditionStatus.True, PolicyReasons.Valid, "the spec passed validation", generation, time);

        var applied = 0;
        var failed = 0;
        var incompatible = 0;
        var issues = new List<NodeIssue>();
        foreach (var (node, state) in targets)
        {
            var entry = EntryFor(policy, state);
            if (entry?.Phase == PolicyPhase.Failed)
            {
                failed++;
                issues.Add(new NodeIssue { Node = node, Reason = PolicyReasons.ApplyFailed, Message = Truncate(entry.Message ?? "the agent reports the policy Failed") });
            }
            else if (entry is { Phase: PolicyPhase.Applied } && entry.Generation == generation && Conditions.IsTrue(state.Status?.Conditions, ConditionTypes.Ready))
            {
                applied++;
            }

            if (Conditions.Find(state.Status?.Conditions, ConditionTypes.TailscaleCompatible) is { Status: ConditionStatus.False } compatible)
            {
                incompatible++;
                issues.Add(new NodeIssue { Node = node, Reason = PolicyReasons.TailscaleIncompatible, Message = Truncate(compatible.Message ?? "") });
            }
        }

        status.AppliedNodes = applied;
        status.FailedNodes = failed;
        status.NodeIssues = issues.Count == 0
            ? null
            : [.. issues.OrderBy(i => i.Node, StringComparer.Ordinal).ThenBy(i => i.Reason, StringComparer.Ordinal).Take(CgnatAllowPolicyStatus.MaxNodeIssues)];

        var total = targets.Count;
        var (readyStatus, readyReason, readyMessage) = (applied, failed, total) switch
        {
            (_, _, 0) => (ConditionStatus.True, PolicyReasons.NoTargetNodes, "no node that runs an agent matches the node selector"),
            _ when applied == total => (ConditionStatus.True, PolicyReasons.AllNodesApplied, $"all {total} target node(s) applied generation {generation}"),
            _ when failed > 0 => (ConditionStatus.False, PolicyReasons.ApplyFailed, $"{applied}/{total} target node(s) applied generation {generation}; {failed} failed"),
            _ => (ConditionStatus.False, PolicyReasons.Applying, $"{applied}/{total} target node(s) applied generation {generation}; waiting for the others"),
        };
        Conditions.Set(conditions, ConditionTypes.Ready, readyStatus, readyReason, readyMessage, generation, time);

        var (degradedStatus, degradedReason, degradedMessage) = (failed > 0, incompatible > 0) switch
        {
            (false, false) => (ConditionStatus.False, PolicyReasons.NoIssues, "no target node failed or runs an incompatible Tailscale set-up"),
            (true, false) => (ConditionStatus.True, PolicyReasons.ApplyFailed, $"{failed} target node(s) failed to apply the policy (see nodeIssues)"),
            (false, true) => (ConditionStatus.True, PolicyReasons.TailscaleIncompatible,
                $"on {incompatible} target node(s) the Tailscale set-up keeps the exemptions from working (see nodeIssues)"),
            _ => (ConditionStatus.True, PolicyReasons.ApplyFailed,
                $"{failed} target node(s) failed to apply the policy and {incompatible} run an incompatible Tailscale set-up (see nodeIssues)"),
        };
        Conditions.Set(conditions, ConditionTypes.Degraded, degradedStatus, degradedReason, degradedMessage, generation, time);
        return status;
    }

    /// <summary>
    /// The nodes a policy being deleted still waits for: those whose Node exists and whose state still lists
    /// the policy in a phase other than Removed. A node that is gone, runs no agent, or no longer lists the
    /// policy has nothing left to confirm. Sorted by name.
    /// </summary>
    public static IReadOnlyList<string> AwaitingRemoval(CgnatAllowPolicy policy, IEnumerable<CgnatNodeState> states, Func<string, bool> nodeExists)
    {
        ArgumentNullException.ThrowIfNull(policy);
        ArgumentNullException.ThrowIfNull(states);
        ArgumentNullException.ThrowIfNull(nodeExists);
        return [.. states
            .Where(s => s.Metadata?.Name is { } name && nodeExists(name) && EntryFor(policy, s) is { } entry && entry.Phase != PolicyPhase.Removed)
            .Select(s => s.Metadata.Name)
            .Order(StringComparer.Ordinal)];
    }

    /// <summary>Nodes <paramref name="policy"/> targets: selected by its node selector and running an agent (having a state).</summary>
    public static IReadOnlyList<(string Node, CgnatNodeState State)> Targets(CgnatAllowPolicy policy, IEnumerable<V1Node> nodes, Func<string, CgnatNodeState?> stateOf)
    {
        ArgumentNullException.ThrowIfNull(policy);
        ArgumentNullException.ThrowIfNull(nodes);
        ArgumentNullException.ThrowIfNull(stateOf);
        var selector = policy.Spec?.NodeSelector;
        var targets = new List<(string, CgnatNodeState)>();
        foreach (var node in nodes)
        {
            if (node.Metadata?.Name is { } name && LabelSelection.Matches(selector, node.Metadata.Labels) && stateOf(name) is { } state)
            {
                targets.Add((name, state));
            }
        }

        return targets;
    }

    /// <summary>
    /// The state's entry for this policy. An entry with another uid belongs to an earlier policy of the same
    /// name (deleted and created again) and says nothing about this one.
    /// </summary>
    public static NodePolicyState? EntryFor(CgnatAllowPolicy policy, CgnatNodeState state)
    {
        ArgumentNullException.ThrowIfNull(policy);
        ArgumentNullException.ThrowIfNull(state);
        var name = policy.Metadata?.Name;
        var uid = policy.Metadata?.Uid;
        return state.Status?.Policies?.FirstOrDefault(p =>
            p is not null && p.Name == name && (string.IsNullOrEmpty(p.Uid) || string.IsNullOrEmpty(uid) || p.Uid == uid));
    }

    private static V1Condition Copy(V1Condition c) => new()
    {
        Type = c.Type,
        Status = c.Status,
        Reason = c.Reason,
        Message = c.Message,
        ObservedGeneration = c.ObservedGeneration,
        LastTransitionTime = c.LastTransitionTime,
    };

    private static string Truncate(string message) =>
        message.Length <= Conditions.MaxMessageLength ? message : string.Concat(message.AsSpan(0, Conditions.MaxMessageLength - 1), "…");

    /// <summary>The clock <see cref="Conditions.Set"/> asks, stopped at the moment the status is computed for.</summary>
    private sealed class PointInTime(DateTimeOffset now) : TimeProvider
    {
        public override DateTimeOffset GetUtcNow() => now;
    }
}
