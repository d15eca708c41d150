using System.Collections.Concurrent;
using k8s.Models;
using TsCgnat.Api;
using TsCgnat.Kube;

namespace TsCgnat.Operator;

/// <summary>
/// Which policies a change of a node state or a Node concerns, so that the policy controller's queue gets
/// those keys only (and merges them): a node state concerns the policies it lists and those that select its
/// node; a Node concerns nothing unless its labels changed, and then the policies its old or new labels
/// select. What each node was last mapped to is remembered, so a policy that drops out of a state or a
/// selection is still told to look again.
/// </summary>
public sealed class PolicyKeys(ResourceCache<CgnatAllowPolicy> policies, ResourceCache<CgnatNodeState> states, ResourceCache<V1Node> nodes)
{
    private readonly ConcurrentDictionary<string, string[]> concernedByState = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, IDictionary<string, string>> labelsByNode = new(StringComparer.Ordinal);

    /// <summary>Keys for a change of the CgnatNodeState named <paramref name="key"/> (a node name).</summary>
    public IEnumerable<string> ForNodeState(string key)
    {
        string[] now = [];
        if (states.GetByKey(key) is { } state)
        {
            var node = nodes.GetByKey(key);
            now = [.. Listed(state).Union(Selecting(node?.Metadata?.Labels, node is not null), StringComparer.Ordinal)];
        }

        string[]? before = null;
        if (now.Length == 0)
        {
            concernedByState.TryRemove(key, out before);
        }
        else
        {
            concernedByState.AddOrUpdate(key, _ => now, (_, previous) =>
            {
                before = previous;
                return now;
            });
        }

        return (before ?? []).Union(now, StringComparer.Ordinal);
    }

    /// <summary>Keys for a change of the Node named <paramref name="key"/>: none unless its labels changed or it came or went.</summary>
    public IEnumerable<string> ForNode(string key)
    {
        var node = nodes.GetByKey(key);
        var labels = node?.Metadata?.Labels ?? new Dictionary<string, string>();
        IDictionary<string, string>? old = null;
        if (node is null)
        {
            labelsByNode.TryRemove(key, out old);
        }
        else
        {
            var copy = new Dictionary<string, string>(labels, StringComparer.Ordinal);
            labelsByNode.AddOrUpdate(key, k => copy, (k, previous) =>
            {
                old = previous;
                return copy;
            });
            if (old is not null && SameLabels(old, labels))
            {
                return [];
            }
        }

        // A node without an agent is nobody's target, before or after.
        if (states.GetByKey(key) is null)
        {
            return [];
        }

        return Selecting(old, old is not null).Union(Selecting(labels, node is not null), StringComparer.Ordinal);
    }

    private static IEnumerable<string> Listed(CgnatNodeState state) =>
        (state.Status?.Policies ?? []).Select(p => p?.Name).OfType<string>();

    private IEnumerable<string> Selecting(IDictionary<string, string>? labels, bool exists) =>
        exists
            ? policies.List().Where(p => LabelSelection.Matches(p.Spec?.NodeSelector, labels)).Select(p => ObjectKey.Of(p))
            : [];

    private static bool SameLabels(IDictionary<string, string> a, IDictionary<string, string> b) =>
        a.Count == b.Count && a.All(kv => b.TryGetValue(kv.Key, out var v) && v == kv.Value);
}
