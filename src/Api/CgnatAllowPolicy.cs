using System.Text.Json.Serialization;
using k8s;
using k8s.Models;

namespace TsCgnat.Api;

/// <summary>
/// Which CGNAT-range (100.64.0.0/10) sources the selected nodes accept despite Tailscale's drop,
/// and which CGNAT subnets they route into the tailnet. Cluster-scoped.
/// </summary>
[KubernetesEntity(Group = ApiGroup.Name, ApiVersion = ApiGroup.Version, Kind = KindName, PluralName = Plural)]
public sealed class CgnatAllowPolicy : IKubernetesObject<V1ObjectMeta>, ISpec<CgnatAllowPolicySpec>, IStatus<CgnatAllowPolicyStatus?>
{
    public const string KindName = "CgnatAllowPolicy";
    public const string Plural = "cgnatallowpolicies";

    [JsonPropertyName("apiVersion")]
    public string ApiVersion { get; set; } = ApiGroup.ApiVersion;

    [JsonPropertyName("kind")]
    public string Kind { get; set; } = KindName;

    [JsonPropertyName("metadata")]
    public V1ObjectMeta Metadata { get; set; } = new();

    [JsonPropertyName("spec")]
    public CgnatAllowPolicySpec Spec { get; set; } = new();

    [JsonPropertyName("status")]
    public CgnatAllowPolicyStatus? Status { get; set; }
}

public sealed class CgnatAllowPolicySpec
{
    /// <summary>Nodes this policy applies to; empty selects every node that runs an agent.</summary>
    [JsonPropertyName("nodeSelector")]
    public V1LabelSelector? NodeSelector { get; set; }

    /// <summary>Traffic to the node from these sources is exempt from Tailscale's input-path CGNAT drop.</summary>
    [JsonPropertyName("allowedSources")]
    public IList<AllowedSource>? AllowedSources { get; set; }

    /// <summary>Subnets the node routes into the tailnet; exempt from Tailscale's forward-path CGNAT drop.</summary>
    [JsonPropertyName("routedSubnets")]
    public IList<RoutedSubnet>? RoutedSubnets { get; set; }

    /// <summary>Allows prefixes shorter than /16, which bring back the spoofing risk the drop exists for.</summary>
    [JsonPropertyName("allowBroadRanges")]
    public bool? AllowBroadRanges { get; set; }
}

public sealed class AllowedSource
{
    /// <summary>Canonical IPv4 prefix inside 100.64.0.0/10, e.g. 100.100.0.0/16.</summary>
    [JsonPropertyName("cidr")]
    public string? Cidr { get; set; }

    /// <summary>Only packets that arrive on one of these interfaces; empty means any interface but Tailscale's.</summary>
    [JsonPropertyName("interfaces")]
    public IList<string>? Interfaces { get; set; }

    /// <summary>Free text for humans.</summary>
    [JsonPropertyName("description")]
    public string? Description { get; set; }
}

public sealed class RoutedSubnet
{
    /// <summary>Canonical IPv4 prefix inside 100.64.0.0/10 that this node routes into the tailnet.</summary>
    [JsonPropertyName("cidr")]
    public string? Cidr { get; set; }

    /// <summary>Free text for humans.</summary>
    [JsonPropertyName("description")]
    public string? Description { get; set; }
}

/// <summary>Written by the operator only.</summary>
public sealed class CgnatAllowPolicyStatus
{
    [JsonPropertyName("observedGeneration")]
    public long? ObservedGeneration { get; set; }

    [JsonPropertyName("targetNodes")]
    public int? TargetNodes { get; set; }

    [JsonPropertyName("appliedNodes")]
    public int? AppliedNodes { get; set; }

    [JsonPropertyName("failedNodes")]
    public int? FailedNodes { get; set; }

    [JsonPropertyName("conditions")]
    public IList<V1Condition>? Conditions { get; set; }

    [JsonPropertyName("nodeIssues")]
    public IList<NodeIssue>? NodeIssues { get; set; }
}

public sealed class NodeIssue
{
    [JsonPropertyName("node")]
    public string? Node { get; set; }

    [JsonPropertyName("reason")]
    public string? Reason { get; set; }

    [JsonPropertyName("message")]
    public string? Message { get; set; }
}

public static class ApiGroup
{
    public const string Name = "tscgnat.io";
    public const string Version = "v1alpha1";
    public const string ApiVersion = Name + "/" + Version;
}
