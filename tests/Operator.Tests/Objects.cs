using k8s.Models;
using TsCgnat.Api;

namespace TsCgnat.Operator.Tests;

/// <summary>Policies, Nodes and node states as the tests need them, built as the API server would hand them out.</summary>
internal static class Objects
{
    public static readonly DateTimeOffset T0 = new(2030, 1, 1, 12, 0, 0, TimeSpan.Zero);

    public static CgnatAllowPolicy Policy(string name = "aliyun", long generation = 1, V1LabelSelector? selector = null, string cidr = "100.100.0.0/16", string? uid = null) => new()
    {
        Metadata = new V1ObjectMeta { Name = name, Generation = generation, Uid = uid ?? $"uid-{name}" },
        Spec = new CgnatAllowPolicySpec
        {
            NodeSelector = selector,
            AllowedSources = [new AllowedSource { Cidr = cidr }],
        },
    };

    public static V1LabelSelector Region(string region) => new() { MatchLabels = new Dictionary<string, string> { ["region"] = region } };

    public static V1Node Node(string name, string region = "hz") => new()
    {
        Metadata = new V1ObjectMeta { Name = name, Labels = new Dictionary<string, string> { ["region"] = region } },
    };

    public static CgnatNodeState State(string node, bool ready = true, bool? compatible = true, string compatibleMessage = "", params NodePolicyState[] policies) => new()
    {
        Metadata = new V1ObjectMeta { Name = node },
        Spec = new CgnatNodeStateSpec { NodeName = node },
        Status = new CgnatNodeStateStatus
        {
            Policies = [.. policies],
            Conditions =
            [
                new V1Condition { Type = ConditionTypes.Ready, Status = ConditionStatus.Of(ready), Reason = ready ? "RulesInPlace" : "ApplyFailed", Message = "" },
                .. compatible is { } c
                    ? [new V1Condition { Type = ConditionTypes.TailscaleCompatible, Status = ConditionStatus.Of(c), Reason = c ? "Compatible" : "NetfilterModeOff", Message = compatibleMessage }]
                    : Array.Empty<V1Condition>(),
            ],
        },
    };

    public static NodePolicyState Entry(string policy, long generation, PolicyPhase phase, string? message = null, string? uid = null) =>
        new() { Name = policy, Generation = generation, Phase = phase, Message = message, Uid = uid };

    public static Func<string, CgnatNodeState?> Lookup(params CgnatNodeState[] states)
    {
        var byName = states.ToDictionary(s => s.Metadata.Name);
        return name => byName.GetValueOrDefault(name);
    }

    public static V1Condition Condition(CgnatAllowPolicyStatus status, string type) =>
        Conditions.Find(status.Conditions, type) ?? throw new Xunit.Sdk.XunitException($"no {type} condition in the status");
}
