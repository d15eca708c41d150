using k8s.Models;

namespace TsCgnat.Api;

/// <summary>
/// Whether a <c>metav1.LabelSelector</c> selects an object with the given labels, as the API server
/// evaluates one (apimachinery's <c>LabelSelectorAsSelector</c>): every <c>matchLabels</c> pair and
/// every <c>matchExpressions</c> requirement must hold. The operator (which nodes a policy targets) and
/// the agent (which policies apply to its node) share this one function, so they never disagree.
/// </summary>
/// <remarks>
/// Hand-written: KubernetesClient carries the selector model but no evaluator, and the server-side
/// label selector of a list cannot say which of many policies select one node.
/// </remarks>
public static class LabelSelection
{
    /// <summary>
    /// True when <paramref name="selector"/> selects <paramref name="labels"/>. A null or empty selector
    /// selects everything (design section 3: "empty = every node with an agent"). An expression with an
    /// unknown operator selects nothing: such a policy fails validation and is applied nowhere anyway.
    /// </summary>
    public static bool Matches(V1LabelSelector? selector, IDictionary<string, string>? labels)
    {
        if (selector is null)
        {
            return true;
        }

        labels ??= new Dictionary<string, string>();
        foreach (var (key, value) in selector.MatchLabels ?? new Dictionary<string, string>())
        {
            if (!labels.TryGetValue(key, out var actual) || actual != value)
            {
                return false;
            }
        }

        foreach (var requirement in selector.MatchExpressions ?? [])
        {
            if (requirement is null || !Holds(requirement, labels))
            {
                return false;
            }
        }

        return true;
    }

    private static bool Holds(V1LabelSelectorRequirement requirement, IDictionary<string, string> labels)
    {
        var present = labels.TryGetValue(requirement.Key ?? "", out var value);
        var values = requirement.Values ?? [];
        return requirement.OperatorProperty switch
        {
            "In" => present && values.Contains(value),
            "NotIn" => !present || !values.Contains(value),
            "Exists" => present,
            "DoesNotExist" => !present,
            _ => false,
        };
    }
}
