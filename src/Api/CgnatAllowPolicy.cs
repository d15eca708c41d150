using System.ComponentModel;
using System.Text.Json.Serialization;
using k8s;
using k8s.Models;
using TsCgnat.Api.Crds;

namespace TsCgnat.Api;

/// <summary>What a user writes (design section 3). The attributes are the CRD: see <see cref="ApiCrds"/>.</summary>
[KubernetesEntity(Group = ApiGroup.Name, ApiVersion = ApiGroup.Version, Kind = KindName, PluralName = Plural)]
[ClusterScoped]
[ShortNames("cgap")]
[Categories(ApiGroup.Category)]
[PrinterColumn("READY", "string", ".status.conditions[?(@.type==\"Ready\")].status", Description = "Every target node applied this generation.")]
[PrinterColumn("NODES", "string", ".status.nodes", Description = "Nodes that applied this generation / nodes the policy selects.")]
[PrinterColumn("AGE", "date", ".metadata.creationTimestamp")]
[Description("Which CGNAT-range (100.64.0.0/10) sources the selected nodes accept despite Tailscale's drop, "
    + "and which CGNAT subnets they route into the tailnet. Cluster-scoped.")]
public sealed class CgnatAllowPolicy : IKubernetesObject<V1ObjectMeta>, ISpec<CgnatAllowPolicySpec>, IStatus<CgnatAllowPolicyStatus?>
{
    public const string KindName = "CgnatAllowPolicy";
    public const string Plural = "cgnatallowpolicies";

    [JsonPropertyName("apiVersion")]
    [Description(StandardDescriptions.ApiVersion)]
    public string ApiVersion { get; set; } = ApiGroup.ApiVersion;

    [JsonPropertyName("kind")]
    [Description(StandardDescriptions.Kind)]
    public string Kind { get; set; } = KindName;

    [JsonPropertyName("metadata")]
    public V1ObjectMeta Metadata { get; set; } = new();

    [JsonPropertyName("spec")]
    [Required]
    public CgnatAllowPolicySpec Spec { get; set; } = new();

    [JsonPropertyName("status")]
    public CgnatAllowPolicyStatus? Status { get; set; }
}

[Description("What the selected nodes exempt from Tailscale's CGNAT drop.")]
[ValidationRule(CidrRules.NarrowSources, CidrRules.NarrowMessage, FieldPath = ".allowedSources")]
[ValidationRule(CidrRules.NarrowSubnets, CidrRules.NarrowMessage, FieldPath = ".routedSubnets")]
public sealed class CgnatAllowPolicySpec
{
    [JsonPropertyName("nodeSelector")]
    [Description("Nodes this policy applies to; empty or absent selects every node that runs an agent. "
        + "Not evaluated in host mode, where every policy in the files applies.")]
    public V1LabelSelector? NodeSelector { get; set; }

    [JsonPropertyName("allowedSources")]
    [Description("Traffic to the node from these sources is exempt from Tailscale's input-path CGNAT drop "
        + "(and from nothing else: the rest of INPUT still applies). Each cidr at most once.")]
    [MaxItems(PolicyValidator.MaxEntries)]
    [ListMap("cidr")]
    public IList<AllowedSource>? AllowedSources { get; set; }

    [JsonPropertyName("routedSubnets")]
    [Description("Subnets the node routes into the tailnet; traffic from them to tailscale0 is exempt from "
        + "Tailscale's forward-path CGNAT drop. Each cidr at most once.")]
    [MaxItems(PolicyValidator.MaxEntries)]
    [ListMap("cidr")]
    public IList<RoutedSubnet>? RoutedSubnets { get; set; }

    [JsonPropertyName("allowBroadRanges")]
    [Description("Allows prefixes shorter than /16, which bring back the spoofing risk (CVE-2019-14899) the drop exists for.")]
    public bool? AllowBroadRanges { get; set; }
}

[Description("A source the node accepts despite Tailscale's CGNAT drop.")]
public sealed class AllowedSource
{
    [JsonPropertyName("cidr")]
    [Description("Canonical IPv4 prefix inside 100.64.0.0/10 (host bits zero), e.g. 100.100.0.0/16.")]
    [Required]
    [MaxLength(CidrRules.MaxLength)]
    [ValidationRule(CidrRules.IsCidr, CidrRules.IsCidrMessage)]
    [ValidationRule(CidrRules.IPv4, CidrRules.IPv4Message)]
    [ValidationRule(CidrRules.Canonical, CidrRules.CanonicalMessage)]
    [ValidationRule(CidrRules.HostBitsZero, CidrRules.HostBitsZeroMessage)]
    [ValidationRule(CidrRules.NotOutside, CidrRules.NotOutsideMessage)]
    [ValidationRule(CidrRules.NotWider, CidrRules.NotWiderMessage)]
    public string? Cidr { get; set; }

    [JsonPropertyName("interfaces")]
    [Description("Only packets that arrive on one of these interfaces (full names, no wildcards); "
        + "empty or absent means any interface but Tailscale's.")]
    [MaxItems(PolicyValidator.MaxInterfacesPerSource)]
    [Items(Pattern = "^[A-Za-z0-9_.-]{1,15}$", MinLength = 1, MaxLength = PolicyValidator.MaxInterfaceNameLength)]
    [ListSet]
    [ValidationRule("self.all(n, n != '.' && n != '..')", "\".\" and \"..\" are not interface names")]
    public IList<string>? Interfaces { get; set; }

    [JsonPropertyName("description")]
    [Description("Free text for humans.")]
    [MaxLength(PolicyValidator.MaxDescriptionLength)]
    public string? Description { get; set; }
}

[Description("A CGNAT subnet the node routes into the tailnet.")]
public sealed class RoutedSubnet
{
    [JsonPropertyName("cidr")]
    [Description("Canonical IPv4 prefix inside 100.64.0.0/10 (host bits zero) that this node routes into the tailnet.")]
    [Required]
    [MaxLength(CidrRules.MaxLength)]
    [ValidationRule(CidrRules.IsCidr, CidrRules.IsCidrMessage)]
    [ValidationRule(CidrRules.IPv4, CidrRules.IPv4Message)]
    [ValidationRule(CidrRules.Canonical, CidrRules.CanonicalMessage)]
    [ValidationRule(CidrRules.HostBitsZero, CidrRules.HostBitsZeroMessage)]
    [ValidationRule(CidrRules.NotOutside, CidrRules.NotOutsideMessage)]
    [ValidationRule(CidrRules.NotWider, CidrRules.NotWiderMessage)]
    public string? Cidr { get; set; }

    [JsonPropertyName("description")]
    [Description("Free text for humans.")]
    [MaxLength(PolicyValidator.MaxDescriptionLength)]
    public string? Description { get; set; }
}

/// <summary>The aggregate of the node states; see design section 6 for who counts as a target.</summary>
[Description("Written by the operator only: how far the policy has been applied across its target nodes.")]
public sealed class CgnatAllowPolicyStatus
{
    /// <summary>At most this many <see cref="NodeIssues"/>: the status of a policy on 5,000 nodes must stay small.</summary>
    public const int MaxNodeIssues = 20;

    [JsonPropertyName("observedGeneration")]
    [Description("The metadata.generation this status was computed from.")]
    [Minimum(0)]
    public long? ObservedGeneration { get; set; }

    [JsonPropertyName("targetNodes")]
    [Description("Nodes the selector selects that run an agent.")]
    [Minimum(0)]
    public int? TargetNodes { get; set; }

    [JsonPropertyName("appliedNodes")]
    [Description("Target nodes that report this generation applied and ready.")]
    [Minimum(0)]
    public int? AppliedNodes { get; set; }

    [JsonPropertyName("failedNodes")]
    [Description("Target nodes that report this generation failed.")]
    [Minimum(0)]
    public int? FailedNodes { get; set; }

    /// <summary>
    /// Derived, never set: a printer column is one JSONPath and cannot join two integers, so the
    /// NODES column needs this string; computing it from the counts keeps it from disagreeing with them.
    /// </summary>
    [JsonPropertyName("nodes")]
    [Description("appliedNodes/targetNodes, for kubectl get (e.g. 2/2).")]
    [MaxLength(23)]
    public string? Nodes => AppliedNodes is { } applied && TargetNodes is { } target ? $"{applied}/{target}" : null;

    [JsonPropertyName("conditions")]
    [Description("Accepted (the spec is valid), Ready (every target node applied this generation), "
        + "Degraded (some node failed, or its Tailscale set-up makes the policy ineffective).")]
    [MaxItems(8)]
    [ListMap("type")]
    public IList<V1Condition>? Conditions { get; set; }

    [JsonPropertyName("nodeIssues")]
    [Description("Up to 20 nodes that failed or cannot apply the policy, and why.")]
    [MaxItems(MaxNodeIssues)]
    public IList<NodeIssue>? NodeIssues { get; set; }
}

[Description("Why one node has not applied the policy.")]
public sealed class NodeIssue
{
    [JsonPropertyName("node")]
    [Description("The node's name.")]
    [MaxLength(253)]
    public string? Node { get; set; }

    [JsonPropertyName("reason")]
    [Description("A CamelCase reason, e.g. ApplyFailed or TailscaleIncompatible.")]
    [MaxLength(1024)]
    public string? Reason { get; set; }

    [JsonPropertyName("message")]
    [Description("What the node reported.")]
    [MaxLength(Conditions.MaxMessageLength)]
    public string? Message { get; set; }
}

public static class ApiGroup
{
    public const string Name = "tscgnat.io";
    public const string Version = "v1alpha1";
    public const string ApiVersion = Name + "/" + Version;

    /// <summary><c>kubectl get tscgnat</c> lists every kind of ours.</summary>
    public const string Category = "tscgnat";
}
