using k8s.Models;
using TsCgnat.Api;
using TsCgnat.Telemetry;

namespace TsCgnat.Operator;

/// <summary>The <c>state</c> values of <c>tscgnat.nodes</c>.</summary>
public static class NodeGaugeStates
{
    /// <summary>The agent reports Ready: its host matches every policy that selects it.</summary>
    public const string Applied = "applied";

    /// <summary>The agent reports at least one policy Failed.</summary>
    public const string Failed = "failed";

    /// <summary>Neither yet: the agent has not reported Ready (still applying, or its status is not written yet).</summary>
    public const string Pending = "pending";

    /// <summary>
    /// No agent: the node has no CgnatNodeState, yet a policy's non-empty node selector picks it. An empty selector
    /// means "every node with an agent" (design section 3), so only a selector that names the node's labels says the
    /// node was meant to be covered.
    /// </summary>
    public const string Missing = "missing";
}

/// <summary>
/// What the operator's gauges report, as pure functions of its caches: <c>tscgnat.policies</c> by condition type
/// and status, <c>tscgnat.nodes</c> by what each node's agent reports (or that it has none), and
/// <c>tscgnat.node.conditions</c> by the conditions of the node states. Counts over a small fixed vocabulary, never
/// per name, so a 5,000-node cluster still has a handful of series.
/// </summary>
public static class ClusterGauges
{
    /// <summary>Every policy's conditions, counted by (type, status).</summary>
    public static IReadOnlyList<ConditionCount> Policies(IEnumerable<CgnatAllowPolicy> policies)
    {
        ArgumentNullException.ThrowIfNull(policies);
        return ConditionCount.Tally(policies
            .SelectMany(p => p.Status?.Conditions ?? [])
            .Where(c => c?.Type is not null && c.Status is not null)
            .Select(c => (c.Type, c.Status)));
    }

    /// <summary>
    /// Nodes by state: those that run an agent (have a CgnatNodeState) and still exist by what the state says: failed
    /// when any policy failed there, applied when it is Ready, pending otherwise; and nodes without an agent that a
    /// policy (not being deleted) picks with a non-empty node selector: missing. Every state is present, zero or not,
    /// so a state that empties reports 0 instead of vanishing from the scrape.
    /// </summary>
    /// <param name="nodes">Every Node; a state outliving its Node is about to be collected and is not counted.</param>
    public static IReadOnlyDictionary<string, long> Nodes(
        IEnumerable<CgnatNodeState> states, IEnumerable<V1Node> nodes, IEnumerable<CgnatAllowPolicy> policies)
    {
        ArgumentNullException.ThrowIfNull(states);
        ArgumentNullException.ThrowIfNull(nodes);
        ArgumentNullException.ThrowIfNull(policies);
        var byName = nodes.Where(n => n.Metadata?.Name is not null).ToDictionary(n => n.Metadata.Name, StringComparer.Ordinal);
        var counts = new Dictionary<string, long>(StringComparer.Ordinal)
        {
            [NodeGaugeStates.Applied] = 0,
            [NodeGaugeStates.Failed] = 0,
            [NodeGaugeStates.Pending] = 0,
            [NodeGaugeStates.Missing] = 0,
        };
        var withAgent = new HashSet<string>(StringComparer.Ordinal);
        foreach (var state in states)
        {
            if (state.Metadata?.Name is not { } name || !byName.ContainsKey(name))
            {
                continue;
            }

            withAgent.Add(name);
            var key = state.Status?.Policies?.Any(p => p?.Phase == PolicyPhase.Failed) == true ? NodeGaugeStates.Failed
                : Conditions.IsTrue(state.Status?.Conditions, ConditionTypes.Ready) ? NodeGaugeStates.Applied
                : NodeGaugeStates.Pending;
            counts[key]++;
        }

        var selectors = policies
            .Where(p => p.Metadata?.DeletionTimestamp is null && Names(p.Spec?.NodeSelector))
            .Select(p => p.Spec!.NodeSelector)
            .ToList();
        counts[NodeGaugeStates.Missing] = byName.Values.LongCount(node =>
            !withAgent.Contains(node.Metadata.Name) && selectors.Any(s => LabelSelection.Matches(s, node.Metadata.Labels)));
        return counts;
    }

    /// <summary>The conditions (<c>Ready</c>, <c>TailscaleCompatible</c>) of the node states whose Node still exists, counted by (type, status).</summary>
    public static IReadOnlyList<ConditionCount> NodeConditions(IEnumerable<CgnatNodeState> states, Func<string, bool> nodeExists)
    {
        ArgumentNullException.ThrowIfNull(states);
        ArgumentNullException.ThrowIfNull(nodeExists);
        return ConditionCount.Tally(states
            .Where(s => s.Metadata?.Name is { } name && nodeExists(name))
            .SelectMany(s => s.Status?.Conditions ?? [])
            .Where(c => c?.Type is not null && c.Status is not null)
            .Select(c => (c.Type, c.Status)));
    }

    /// <summary>
    /// Each policy's NODES column as series (target, applied, failed), from the status the operator last wrote; a
    /// policy without a status yet reports nothing. One series per policy and state: policies are few (tens), unlike
    /// nodes, whose names never become labels.
    /// </summary>
    public static IReadOnlyList<PolicyNodeCount> PolicyNodes(IEnumerable<CgnatAllowPolicy> policies)
    {
        ArgumentNullException.ThrowIfNull(policies);
        return [.. policies
            .Where(p => p.Metadata?.Name is not null && p.Status?.TargetNodes is not null)
            .OrderBy(p => p.Metadata.Name, StringComparer.Ordinal)
            .SelectMany(p => new PolicyNodeCount[]
            {
                new(p.Metadata.Name, "target", p.Status!.TargetNodes ?? 0),
                new(p.Metadata.Name, "applied", p.Status.AppliedNodes ?? 0),
                new(p.Metadata.Name, "failed", p.Status.FailedNodes ?? 0),
            })];
    }

    private static bool Names(V1LabelSelector? selector) =>
        selector is not null && (selector.MatchLabels is { Count: > 0 } || selector.MatchExpressions is { Count: > 0 });
}
