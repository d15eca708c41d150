using k8s.Models;
using TsCgnat.Api;

namespace TsCgnat.NodeAgent.Cluster;

/// <summary>One policy as this node sees it.</summary>
/// <param name="Selected">Its node selector selects this node's labels.</param>
/// <param name="Deleting">It carries a deletionTimestamp: its rules go, and the node state says Removed.</param>
/// <param name="Valid">The validator's result when it is selected, not being deleted and valid; else null.</param>
/// <param name="Problem">The validator's message when it is selected, not being deleted and invalid; else null.</param>
public sealed record PolicyOnNode(string Name, string? Uid, long Generation, bool Selected, bool Deleting, ValidatedPolicy? Valid, string? Problem)
{
    /// <summary>Its exemptions belong on this host.</summary>
    public bool Applies => Valid is not null;
}

/// <summary>
/// Which policies apply to one node: those whose node selector matches the node's labels, that pass the
/// shared validator, and that are not being deleted. Pure, so the rules are tested without an API server.
/// </summary>
public sealed record PolicySelection(IReadOnlyList<PolicyOnNode> Policies)
{
    public static PolicySelection Empty { get; } = new([]);

    /// <summary>The policies to apply, in name order.</summary>
    public IReadOnlyList<ValidatedPolicy> ToApply() => [.. Policies.Where(p => p.Applies).Select(p => p.Valid!)];

    /// <summary>
    /// Every policy in <paramref name="policies"/> with what it means for a node labelled <paramref name="labels"/>,
    /// in name order. <paramref name="validate"/> is <see cref="Validate"/> unless the caller remembers results.
    /// </summary>
    public static PolicySelection Select(
        IEnumerable<CgnatAllowPolicy> policies,
        IDictionary<string, string>? labels,
        Func<CgnatAllowPolicy, (ValidatedPolicy? Valid, string? Problem)>? validate = null)
    {
        ArgumentNullException.ThrowIfNull(policies);
        validate ??= Validate;
        var result = new List<PolicyOnNode>();
        foreach (var policy in policies.OrderBy(p => p.Metadata?.Name, StringComparer.Ordinal))
        {
            var meta = policy.Metadata ?? new V1ObjectMeta();
            var selected = LabelSelection.Matches(policy.Spec?.NodeSelector, labels);
            var deleting = meta.DeletionTimestamp is not null;
            var (valid, problem) = selected && !deleting ? validate(policy) : (null, null);
            result.Add(new PolicyOnNode(meta.Name ?? "", meta.Uid, meta.Generation ?? 0, selected, deleting, valid, problem));
        }

        return new PolicySelection(result);
    }

    /// <summary>The shared validator, its errors joined into one message as the operator's Accepted condition says them.</summary>
    public static (ValidatedPolicy? Valid, string? Problem) Validate(CgnatAllowPolicy policy)
    {
        var errors = PolicyValidator.Validate(policy, out var valid);
        return errors.Count == 0 ? (valid, null) : (null, "invalid policy, not applied: " + string.Join("; ", errors.Select(e => e.ToString())));
    }
}
