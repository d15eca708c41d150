using System.Text.Json;
using k8s.Models;

namespace TsCgnat.Api.Tests;

/// <summary>
/// Both kinds through the strict, source-generated <see cref="ApiJsonContext"/>: round trips, and
/// objects exactly as the API server returns them (managedFields, uid, resourceVersion, finalizers,
/// status), which the agent and operator read.
/// </summary>
public class ApiJsonTests
{
    private static readonly DateTime Applied = new(2026, 3, 1, 12, 0, 5, DateTimeKind.Utc);

    /// <summary>A policy as <c>kubectl get cgap aliyun-internal -o json</c> shows it on a live cluster.</summary>
    private const string PolicyFromApiServer = """
        {
          "apiVersion": "tscgnat.io/v1alpha1",
          "kind": "CgnatAllowPolicy",
          "metadata": {
            "annotations": {
              "kubectl.kubernetes.io/last-applied-configuration": "{\"apiVersion\":\"tscgnat.io/v1alpha1\",\"kind\":\"CgnatAllowPolicy\"}\n"
            },
            "creationTimestamp": "2026-03-01T11:58:00Z",
            "deletionGracePeriodSeconds": 0,
            "deletionTimestamp": "2026-03-01T12:30:00Z",
            "finalizers": ["tscgnat.io/node-cleanup"],
            "generation": 2,
            "labels": { "team": "infra" },
            "managedFields": [
              {
                "apiVersion": "tscgnat.io/v1alpha1",
                "fieldsType": "FieldsV1",
                "fieldsV1": { "f:spec": { ".": {}, "f:allowedSources": {}, "f:nodeSelector": { ".": {}, "f:matchLabels": { ".": {}, "f:topology.kubernetes.io/region": {} } } } },
                "manager": "kubectl-client-side-apply",
                "operation": "Update",
                "time": "2026-03-01T11:58:00Z"
              },
              {
                "apiVersion": "tscgnat.io/v1alpha1",
                "fieldsType": "FieldsV1",
                "fieldsV1": { "f:status": { ".": {}, "f:conditions": {}, "f:nodes": {} } },
                "manager": "ts-cgnat-operator",
                "operation": "Update",
                "subresource": "status",
                "time": "2026-03-01T11:59:00Z"
              }
            ],
            "name": "aliyun-internal",
            "resourceVersion": "48213",
            "uid": "6f1d8a8e-2b0c-4d8f-9a4e-0d6c1b7e2f10"
          },
          "spec": {
            "allowedSources": [
              { "cidr": "100.100.0.0/16", "description": "Alibaba Cloud DNS, mirrors, metadata", "interfaces": ["eth0"] }
            ],
            "nodeSelector": {
              "matchExpressions": [ { "key": "node-role.kubernetes.io/control-plane", "operator": "DoesNotExist" } ],
              "matchLabels": { "topology.kubernetes.io/region": "cn-hangzhou" }
            },
            "routedSubnets": [ { "cidr": "100.64.0.0/24" } ]
          },
          "status": {
            "appliedNodes": 2,
            "conditions": [
              { "lastTransitionTime": "2026-03-01T11:59:00Z", "message": "2 of 2 target nodes applied generation 2", "observedGeneration": 2, "reason": "AllNodesApplied", "status": "True", "type": "Ready" }
            ],
            "failedNodes": 0,
            "nodes": "2/2",
            "observedGeneration": 2,
            "targetNodes": 2
          }
        }
        """;

    [Fact]
    public void Policy_as_the_API_server_returns_it_deserializes_and_validates()
    {
        var policy = JsonSerializer.Deserialize(PolicyFromApiServer, ApiJsonContext.Default.CgnatAllowPolicy)!;

        Assert.Equal("6f1d8a8e-2b0c-4d8f-9a4e-0d6c1b7e2f10", policy.Metadata.Uid);
        Assert.Equal("48213", policy.Metadata.ResourceVersion);
        Assert.Equal(2, policy.Metadata.Generation);
        Assert.Equal(["tscgnat.io/node-cleanup"], policy.Metadata.Finalizers);
        Assert.Equal(new DateTime(2026, 3, 1, 12, 30, 0, DateTimeKind.Utc), policy.Metadata.DeletionTimestamp?.ToUniversalTime());
        Assert.Equal(2, policy.Metadata.ManagedFields.Count);
        Assert.Equal("status", policy.Metadata.ManagedFields[1].Subresource);
        Assert.Equal("cn-hangzhou", policy.Spec.NodeSelector!.MatchLabels["topology.kubernetes.io/region"]);
        Assert.Equal("DoesNotExist", policy.Spec.NodeSelector.MatchExpressions[0].OperatorProperty);
        Assert.Equal(["eth0"], policy.Spec.AllowedSources![0].Interfaces);
        Assert.Equal("2/2", policy.Status!.Nodes);
        Assert.True(Conditions.IsTrue(policy.Status.Conditions, ConditionTypes.Ready));
        Assert.Empty(PolicyValidator.Validate(policy, out var valid));
        Assert.Equal(2, valid!.Generation);
    }

    [Fact]
    public void Typo_in_a_policy_is_still_refused()
    {
        var typo = PolicyFromApiServer.Replace("\"routedSubnets\"", "\"routedSubnet\"", StringComparison.Ordinal);

        var e = Assert.Throws<JsonException>(() => JsonSerializer.Deserialize(typo, ApiJsonContext.Default.CgnatAllowPolicy));

        Assert.Contains("routedSubnet", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Policy_round_trips()
    {
        var policy = JsonSerializer.Deserialize(PolicyFromApiServer, ApiJsonContext.Default.CgnatAllowPolicy)!;

        var json = JsonSerializer.Serialize(policy, ApiJsonContext.Default.CgnatAllowPolicy);
        var again = JsonSerializer.Serialize(JsonSerializer.Deserialize(json, ApiJsonContext.Default.CgnatAllowPolicy)!, ApiJsonContext.Default.CgnatAllowPolicy);

        Assert.Equal(json, again);
        Assert.Contains("\"lastTransitionTime\": \"2026-03-01T11:59:00Z\"", json, StringComparison.Ordinal);
        Assert.Contains("\"f:topology.kubernetes.io/region\"", json, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(2, 2, "2/2")]
    [InlineData(1, 3, "1/3")]
    [InlineData(0, 0, "0/0")]
    public void Nodes_column_is_applied_over_target(int applied, int target, string nodes)
    {
        var status = new CgnatAllowPolicyStatus { AppliedNodes = applied, TargetNodes = target };

        Assert.Equal(nodes, status.Nodes);
        Assert.Contains($"\"nodes\": \"{nodes}\"", Serialize(new CgnatAllowPolicy { Status = status }), StringComparison.Ordinal);
    }

    [Fact]
    public void Nodes_is_absent_until_both_counts_are_known()
    {
        var policy = new CgnatAllowPolicy { Status = new CgnatAllowPolicyStatus { TargetNodes = 2 } };

        Assert.Null(policy.Status.Nodes);
        Assert.DoesNotContain("\"nodes\"", Serialize(policy), StringComparison.Ordinal);
    }

    [Fact]
    public void Stale_nodes_text_from_the_server_gives_way_to_the_counts()
    {
        var stale = PolicyFromApiServer.Replace("\"appliedNodes\": 2", "\"appliedNodes\": 1", StringComparison.Ordinal);

        var policy = JsonSerializer.Deserialize(stale, ApiJsonContext.Default.CgnatAllowPolicy)!;

        Assert.Equal("1/2", policy.Status!.Nodes);
    }

    [Fact]
    public void Node_state_round_trips_with_enums_spelled_as_in_the_CRD()
    {
        var state = FullNodeState();

        var json = JsonSerializer.Serialize(state, ApiJsonContext.Default.CgnatNodeState);
        var read = JsonSerializer.Deserialize(json, ApiJsonContext.Default.CgnatNodeState)!;

        Assert.Equal(json, JsonSerializer.Serialize(read, ApiJsonContext.Default.CgnatNodeState));
        Assert.Contains("\"backend\": \"iptables-nft\"", json, StringComparison.Ordinal);
        Assert.Contains("\"strategy\": \"Indirect\"", json, StringComparison.Ordinal);
        Assert.Contains("\"netfilterMode\": \"nodivert\"", json, StringComparison.Ordinal);
        Assert.Contains("\"runner\": \"iptables-nft\"", json, StringComparison.Ordinal);
        Assert.Contains("\"learnedFrom\": \"localapi\"", json, StringComparison.Ordinal);
        Assert.Contains("\"phase\": \"Applied\"", json, StringComparison.Ordinal);
        Assert.Contains("\"lastApplyTime\": \"2026-03-01T12:00:05Z\"", json, StringComparison.Ordinal);
        Assert.Equal(PolicyPhase.Removed, read.Status!.Policies![1].Phase);
        Assert.Equal(Applied, read.Status.LastApplyTime);
        Assert.Equal(17, read.Status.DriftRepairs);
    }

    [Fact]
    public void Node_state_as_the_API_server_returns_it_deserializes()
    {
        const string json = """
            {
              "apiVersion": "tscgnat.io/v1alpha1",
              "kind": "CgnatNodeState",
              "metadata": {
                "creationTimestamp": "2026-03-01T11:00:00Z",
                "generation": 1,
                "name": "node-a",
                "ownerReferences": [ { "apiVersion": "v1", "kind": "Node", "name": "node-a", "uid": "0b6e3f3c-8a35-4b43-9a43-3d1f6f0f7b11" } ],
                "resourceVersion": "50120",
                "uid": "9d0a3c1e-5d8b-4f7c-8a51-6b2f9f6f1e22"
              },
              "spec": { "nodeName": "node-a" },
              "status": {
                "backend": "nftables",
                "strategy": "InChain",
                "tailscale": { "detected": true, "netfilterMode": "on", "runner": "nftables", "backendState": "Running", "learnedFrom": "firewall" },
                "conditions": [
                  { "lastTransitionTime": "2026-03-01T11:00:02Z", "message": "", "reason": "InChainRepairs", "status": "True", "type": "TailscaleCompatible" }
                ]
              }
            }
            """;

        var state = JsonSerializer.Deserialize(json, ApiJsonContext.Default.CgnatNodeState)!;

        Assert.Equal("Node", Assert.Single(state.Metadata.OwnerReferences).Kind);
        Assert.Equal("node-a", state.Spec.NodeName);
        Assert.Equal(FirewallBackend.Nftables, state.Status!.Backend);
        Assert.Equal(ExemptionStrategy.InChain, state.Status.Strategy);
        Assert.Equal(TailscaleNetfilterMode.On, state.Status.Tailscale!.NetfilterMode);
        Assert.Equal(TailscaleFirewallRunner.Nftables, state.Status.Tailscale.Runner);
        Assert.Equal(TailscaleEvidence.Firewall, state.Status.Tailscale.LearnedFrom);
        Assert.True(Conditions.IsTrue(state.Status.Conditions, ConditionTypes.TailscaleCompatible));
    }

    [Fact]
    public void Node_state_backend_outside_the_enum_is_refused()
    {
        const string json = """{ "apiVersion": "tscgnat.io/v1alpha1", "kind": "CgnatNodeState", "metadata": { "name": "n" }, "spec": { "nodeName": "n" }, "status": { "backend": "ipfw" } }""";

        Assert.Throws<JsonException>(() => JsonSerializer.Deserialize(json, ApiJsonContext.Default.CgnatNodeState));
    }

    [Fact]
    public void New_objects_carry_their_apiVersion_and_kind()
    {
        Assert.Equal(("tscgnat.io/v1alpha1", "CgnatAllowPolicy"), (new CgnatAllowPolicy().ApiVersion, new CgnatAllowPolicy().Kind));
        Assert.Equal(("tscgnat.io/v1alpha1", "CgnatNodeState"), (new CgnatNodeState().ApiVersion, new CgnatNodeState().Kind));
    }

    private static string Serialize(CgnatAllowPolicy policy) => JsonSerializer.Serialize(policy, ApiJsonContext.Default.CgnatAllowPolicy);

    private static CgnatNodeState FullNodeState() => new()
    {
        Metadata = new V1ObjectMeta { Name = "node-a" },
        Spec = new CgnatNodeStateSpec { NodeName = "node-a" },
        Status = new CgnatNodeStateStatus
        {
            ObservedGeneration = 1,
            Policies =
            [
                new NodePolicyState { Name = "aliyun-internal", Uid = "6f1d8a8e-2b0c-4d8f-9a4e-0d6c1b7e2f10", Generation = 2, Phase = PolicyPhase.Applied },
                new NodePolicyState { Name = "old-lab", Generation = 5, Phase = PolicyPhase.Removed, Message = "deleted" },
            ],
            RulesDigest = new string('a', 64),
            Backend = FirewallBackend.IptablesNft,
            BackendReason = "ts-input found in iptables-nft",
            Strategy = ExemptionStrategy.Indirect,
            StrategyReason = "tailscaled runs in nodivert",
            Tailscale = new TailscaleObservation
            {
                Detected = true,
                NetfilterMode = TailscaleNetfilterMode.Nodivert,
                Runner = TailscaleFirewallRunner.IptablesNft,
                BackendState = "Running",
                Version = "1.90.6",
                LearnedFrom = TailscaleEvidence.LocalApi,
            },
            Exemptions = new ExemptionCounts { AllowedSources = 1, RoutedSubnets = 1 },
            LastApplyTime = Applied,
            DriftRepairs = 17,
            Conditions =
            [
                new V1Condition { Type = ConditionTypes.Ready, Status = ConditionStatus.True, Reason = "Applied", Message = "", ObservedGeneration = 1, LastTransitionTime = Applied },
            ],
        },
    };
}
