using System.ComponentModel;
using System.Text.Json.Serialization;
using k8s;
using k8s.Models;
using TsCgnat.Api.Crds;

namespace TsCgnat.Api;

/// <summary>
/// What one node's agent reports (design section 3): one per node, named after it, owned by its Node
/// so that it goes when the node goes. Written by that node's agent only.
/// </summary>
[KubernetesEntity(Group = ApiGroup.Name, ApiVersion = ApiGroup.Version, Kind = KindName, PluralName = Plural)]
[ClusterScoped]
[ShortNames("cgns")]
[Categories(ApiGroup.Category)]
[PrinterColumn("READY", "string", ".status.conditions[?(@.type==\"Ready\")].status", Description = "The host rules match the desired state.")]
[PrinterColumn("BACKEND", "string", ".status.backend", Description = "The firewall back end the rules are written with.")]
[PrinterColumn("STRATEGY", "string", ".status.strategy", Description = "How the exemptions are wired to Tailscale's chains.")]
[PrinterColumn("MODE", "string", ".status.tailscale.netfilterMode", Description = "tailscaled's netfilter mode.")]
[PrinterColumn("AGE", "date", ".metadata.creationTimestamp")]
[ValidationRule("self.metadata.name == self.spec.nodeName", "metadata.name must equal spec.nodeName: there is one CgnatNodeState per node, named after it")]
[Description("What the ts-cgnat agent on one node applied and found there. One per node, named after it; written by that node's agent.")]
public sealed class CgnatNodeState : IKubernetesObject<V1ObjectMeta>, ISpec<CgnatNodeStateSpec>, IStatus<CgnatNodeStateStatus?>
{
    public const string KindName = "CgnatNodeState";
    public const string Plural = "cgnatnodestates";

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
    public CgnatNodeStateSpec Spec { get; set; } = new();

    [JsonPropertyName("status")]
    public CgnatNodeStateStatus? Status { get; set; }
}

[Description("Which node this state belongs to.")]
public sealed class CgnatNodeStateSpec
{
    [JsonPropertyName("nodeName")]
    [Description("The node's name; equal to metadata.name.")]
    [Required]
    [MinLength(1)]
    [MaxLength(253)]
    public string? NodeName { get; set; }
}

[Description("Written by the node's agent only: what it applied, with which back end and strategy, and what it learned of Tailscale.")]
public sealed class CgnatNodeStateStatus
{
    /// <summary>A bound the API server can check; far above the policies one cluster has.</summary>
    public const int MaxPolicies = 1024;

    [JsonPropertyName("observedGeneration")]
    [Description("The metadata.generation of this object the agent last acted on.")]
    [Minimum(0)]
    public long? ObservedGeneration { get; set; }

    [JsonPropertyName("policies")]
    [Description("Every policy that selects this node or was just removed from it, with the generation the agent acted on.")]
    [MaxItems(MaxPolicies)]
    [ListMap("name")]
    public IList<NodePolicyState>? Policies { get; set; }

    [JsonPropertyName("rulesDigest")]
    [Description("Hex SHA-256 of the applied desired state; equal digests on two nodes mean equal rules.")]
    [Pattern("^[0-9a-f]{64}$")]
    public string? RulesDigest { get; set; }

    [JsonPropertyName("backend")]
    [Description("The firewall back end the rules are written with: the one tailscaled writes with, or they would not combine.")]
    public FirewallBackend? Backend { get; set; }

    [JsonPropertyName("backendReason")]
    [Description("Why that back end was chosen (what was found on the host).")]
    [MaxLength(1024)]
    public string? BackendReason { get; set; }

    [JsonPropertyName("strategy")]
    [Description("How the exemptions are wired to Tailscale's chains: Indirect (our chains call Tailscale's; nodivert), "
        + "InChain (our rules inside Tailscale's chains; mode on or the nftables runner), None (nothing to do or nothing possible).")]
    public ExemptionStrategy? Strategy { get; set; }

    [JsonPropertyName("strategyReason")]
    [Description("Why that strategy is in use.")]
    [MaxLength(1024)]
    public string? StrategyReason { get; set; }

    [JsonPropertyName("tailscale")]
    public TailscaleObservation? Tailscale { get; set; }

    [JsonPropertyName("exemptions")]
    public ExemptionCounts? Exemptions { get; set; }

    [JsonPropertyName("lastApplyTime")]
    [Description("When the agent last wrote rules to the host (a resync that found nothing to change does not count).")]
    public DateTime? LastApplyTime { get; set; }

    [JsonPropertyName("driftRepairs")]
    [Description("How many times the agent put back rules that something else changed or removed, since it started.")]
    [Minimum(0)]
    public long? DriftRepairs { get; set; }

    [JsonPropertyName("conditions")]
    [Description("Ready (the host rules match the desired state), TailscaleCompatible (the detected Tailscale set-up lets the strategy work).")]
    [MaxItems(8)]
    [ListMap("type")]
    public IList<V1Condition>? Conditions { get; set; }
}

[Description("One policy as this node applied it.")]
public sealed class NodePolicyState
{
    [JsonPropertyName("name")]
    [Description("The policy's name.")]
    [Required]
    [MaxLength(253)]
    public string? Name { get; set; }

    [JsonPropertyName("uid")]
    [Description("The policy's metadata.uid, so a policy deleted and created again under the same name is not mistaken for the old one.")]
    [MaxLength(128)]
    public string? Uid { get; set; }

    [JsonPropertyName("generation")]
    [Description("The policy's metadata.generation this entry describes.")]
    [Minimum(0)]
    public long? Generation { get; set; }

    [JsonPropertyName("phase")]
    [Description("Applied (its exemptions are on the host), Failed (they could not be written; see message), "
        + "Removed (the policy no longer applies here and its exemptions are gone).")]
    public PolicyPhase? Phase { get; set; }

    [JsonPropertyName("message")]
    [Description("Details, e.g. the firewall tool's error.")]
    [MaxLength(4096)]
    public string? Message { get; set; }
}

[Description("What the agent learned of tailscaled on this node.")]
public sealed class TailscaleObservation
{
    [JsonPropertyName("detected")]
    [Description("tailscaled was found (its LocalAPI answered, or its ts-* chains exist).")]
    public bool? Detected { get; set; }

    [JsonPropertyName("netfilterMode")]
    [Description("tailscaled's --netfilter-mode: on, nodivert, off, or unknown.")]
    public TailscaleNetfilterMode? NetfilterMode { get; set; }

    [JsonPropertyName("runner")]
    [Description("The firewall tool tailscaled writes its rules with.")]
    public TailscaleFirewallRunner? Runner { get; set; }

    [JsonPropertyName("backendState")]
    [Description("tailscaled's backend state, e.g. Running, Stopped, NeedsLogin.")]
    [MaxLength(64)]
    public string? BackendState { get; set; }

    [JsonPropertyName("version")]
    [Description("tailscaled's version.")]
    [MaxLength(128)]
    public string? Version { get; set; }

    [JsonPropertyName("learnedFrom")]
    [Description("Where this was learned: localapi (tailscaled's LocalAPI) or firewall (its chains, when the LocalAPI is unreachable).")]
    public TailscaleEvidence? LearnedFrom { get; set; }
}

[Description("How many exemptions the node has in force, over all applied policies.")]
public sealed class ExemptionCounts
{
    [JsonPropertyName("allowedSources")]
    [Description("Distinct allowed sources (input path).")]
    [Minimum(0)]
    public int? AllowedSources { get; set; }

    [JsonPropertyName("routedSubnets")]
    [Description("Distinct routed subnets (forward path).")]
    [Minimum(0)]
    public int? RoutedSubnets { get; set; }
}

/// <summary>What became of one policy on one node.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<PolicyPhase>))]
public enum PolicyPhase
{
    Applied,
    Failed,
    Removed,
}

/// <summary>The firewall back end a node's rules are written with.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<FirewallBackend>))]
public enum FirewallBackend
{
    [JsonStringEnumMemberName("iptables-legacy")]
    IptablesLegacy,

    [JsonStringEnumMemberName("iptables-nft")]
    IptablesNft,

    [JsonStringEnumMemberName("nftables")]
    Nftables,
}

/// <summary>How exemptions are wired to Tailscale's chains (design section 4); None when there is nothing to wire.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<ExemptionStrategy>))]
public enum ExemptionStrategy
{
    Indirect,
    InChain,
    None,
}

/// <summary>tailscaled's <c>--netfilter-mode</c>, as reported.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<TailscaleNetfilterMode>))]
public enum TailscaleNetfilterMode
{
    [JsonStringEnumMemberName("unknown")]
    Unknown,

    [JsonStringEnumMemberName("on")]
    On,

    [JsonStringEnumMemberName("nodivert")]
    Nodivert,

    [JsonStringEnumMemberName("off")]
    Off,
}

/// <summary>The tool tailscaled writes its firewall rules with, as reported.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<TailscaleFirewallRunner>))]
public enum TailscaleFirewallRunner
{
    [JsonStringEnumMemberName("unknown")]
    Unknown,

    [JsonStringEnumMemberName("iptables-legacy")]
    IptablesLegacy,

    [JsonStringEnumMemberName("iptables-nft")]
    IptablesNft,

    [JsonStringEnumMemberName("nftables")]
    Nftables,
}

/// <summary>Where the agent learned what it reports of tailscaled.</summary>
[JsonConverter(typeof(JsonStringEnumConverter<TailscaleEvidence>))]
public enum TailscaleEvidence
{
    /// <summary>tailscaled's LocalAPI (prefs and status).</summary>
    [JsonStringEnumMemberName("localapi")]
    LocalApi,

    /// <summary>Tailscale's chains on the host, when the LocalAPI could not be reached.</summary>
    [JsonStringEnumMemberName("firewall")]
    Firewall,
}
