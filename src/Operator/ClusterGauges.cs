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
}

/// <summary>
/// What the operator's gauges report, as pure functions of its caches: <c>tscgnat.policies</c> by condition type
/// and status, <c>tscgnat.nodes</c> by what each node's agent reports. Counts over a small fixed vocabulary, never
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
    /// Nodes that run an agent (have a CgnatNodeState) and still exist, by what the state says: failed when any
    /// policy failed there, applied when it is Ready, pending otherwise. Every state is present, zero or not, so a
    /// state that empties reports 0 instead of vanishing from the scrape.
    /// </summary>
    /// <param name="nodeExists">Whether the Node is still there; a state outliving its Node is about to be collected.</param>
    public static IReadOnlyDictionary<string, long> Nodes(IEnumerable<CgnatNodeState> states, Func<string, bool> nodeExists)
    {
        ArgumentNullException.ThrowIfNull(states);
        ArgumentNullException.ThrowIfNull(nodeExists);
        var counts = new Dictionary<string, long>(StringComparer.Ordinal)
        {
            [NodeGaugeStates.Applied] = 0,
            [NodeGaugeStates.Failed] = 0,
            [NodeGaugeStates.Pending] = 0,
        };
        foreach (var state in states)
        {
            if (state.Metadata?.Name is not { } name || !nodeExists(name))
            {
                continue;
            }

            var key = state.Status?.Policies?.Any(p => p?.Phase == PolicyPhase.Failed) == true ? NodeGaugeStates.Failed
                : Conditions.IsTrue(state.Status?.Conditions, ConditionTypes.Ready) ? NodeGaugeStates.Applied
                : NodeGaugeStates.Pending;
            counts[key]++;
        }

        return counts;
    }
}
