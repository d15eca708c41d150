using System.Text.RegularExpressions;
using k8s.Models;
using TsCgnat.Api.Crds;

namespace TsCgnat.Api.Tests;

/// <summary>
/// The CRDs generated from the annotated types (design sections 3 and 11): names, scope, status
/// subresource, columns, structural schemas with a description on every field, list-map keys, and
/// the CEL rules on every cidr.
/// </summary>
public partial class CrdSchemaTests
{
    private static readonly V1CustomResourceDefinition Policy = ApiCrds.All()[0];
    private static readonly V1CustomResourceDefinition NodeState = ApiCrds.All()[1];

    public static TheoryData<string> Kinds => new() { CgnatAllowPolicy.KindName, CgnatNodeState.KindName };

    [Fact]
    public void Policy_kind_is_named_as_in_design_section_3()
    {
        Assert.Equal("cgnatallowpolicies.tscgnat.io", Policy.Metadata.Name);
        Assert.Equal("tscgnat.io", Policy.Spec.Group);
        Assert.Equal("Cluster", Policy.Spec.Scope);
        Assert.Equal("CgnatAllowPolicy", Policy.Spec.Names.Kind);
        Assert.Equal("CgnatAllowPolicyList", Policy.Spec.Names.ListKind);
        Assert.Equal("cgnatallowpolicies", Policy.Spec.Names.Plural);
        Assert.Equal("cgnatallowpolicy", Policy.Spec.Names.Singular);
        Assert.Equal(["cgap"], Policy.Spec.Names.ShortNames);
        Assert.Equal(["tscgnat"], Policy.Spec.Names.Categories);
    }

    [Fact]
    public void Node_state_kind_is_named_as_in_design_section_3()
    {
        Assert.Equal("cgnatnodestates.tscgnat.io", NodeState.Metadata.Name);
        Assert.Equal("Cluster", NodeState.Spec.Scope);
        Assert.Equal("CgnatNodeState", NodeState.Spec.Names.Kind);
        Assert.Equal("cgnatnodestates", NodeState.Spec.Names.Plural);
        Assert.Equal(["cgns"], NodeState.Spec.Names.ShortNames);
        Assert.Equal(["tscgnat"], NodeState.Spec.Names.Categories);
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void One_served_storage_version_v1alpha1_with_a_status_subresource(string kind)
    {
        var version = Assert.Single(Crd(kind).Spec.Versions);

        Assert.Equal("v1alpha1", version.Name);
        Assert.True(version.Served);
        Assert.True(version.Storage);
        Assert.NotNull(version.Subresources?.Status);
        Assert.Null(version.Subresources.Scale);
    }

    [Fact]
    public void Policy_columns_are_ready_nodes_and_age()
    {
        var columns = Columns(Policy);

        Assert.Equal(
            [
                ("READY", "string", ".status.conditions[?(@.type==\"Ready\")].status"),
                ("NODES", "string", ".status.nodes"),
                ("AGE", "date", ".metadata.creationTimestamp"),
            ],
            columns);
    }

    [Fact]
    public void Node_state_columns_are_ready_backend_strategy_mode_and_age()
    {
        var columns = Columns(NodeState);

        Assert.Equal(
            [
                ("READY", "string", ".status.conditions[?(@.type==\"Ready\")].status"),
                ("BACKEND", "string", ".status.backend"),
                ("STRATEGY", "string", ".status.strategy"),
                ("MODE", "string", ".status.tailscale.netfilterMode"),
                ("AGE", "date", ".metadata.creationTimestamp"),
            ],
            columns);
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Every_column_path_names_a_field_of_the_schema(string kind)
    {
        var crd = Crd(kind);
        foreach (var column in crd.Spec.Versions[0].AdditionalPrinterColumns.Where(c => !c.JsonPath.StartsWith(".metadata.", StringComparison.Ordinal)))
        {
            // ".status.conditions[?(@.type==\"Ready\")].status" walks status, conditions (into its items), status.
            var schema = Root(crd);
            foreach (var step in Filter().Replace(column.JsonPath, "[]").TrimStart('.').Split('.'))
            {
                var name = step.TrimEnd('[', ']');
                schema = Assert.Contains(name, schema.Properties);
                if (step.EndsWith("[]", StringComparison.Ordinal))
                {
                    schema = Item(schema);
                }
            }
        }
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Every_field_and_the_object_itself_has_a_description_for_kubectl_explain(string kind)
    {
        // metadata is the exception: the API server refuses a description there and explains ObjectMeta itself.
        var missing = Walk(Root(Crd(kind)), "")
            .Where(f => f.IsField && f.Path != ".metadata" && string.IsNullOrWhiteSpace(f.Schema.Description))
            .Select(f => f.Path)
            .ToList();

        Assert.NotEmpty(Root(Crd(kind)).Description);
        Assert.Empty(missing);
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Schema_is_structural_every_node_typed_and_nothing_preserves_unknown_fields(string kind)
    {
        var nodes = Walk(Root(Crd(kind)), "").ToList();

        Assert.Empty(nodes.Where(n => n.Schema.XKubernetesPreserveUnknownFields == true).Select(n => n.Path));
        Assert.Empty(nodes.Where(n => string.IsNullOrEmpty(n.Schema.Type)).Select(n => n.Path));
        Assert.Empty(nodes.Where(n => n.Schema.Type == "object" && n.Path != ".metadata" && n.Schema.Properties is null && n.Schema.AdditionalProperties is null).Select(n => n.Path));
        Assert.Empty(nodes.Where(n => n.Schema.Type == "array" && n.Schema.Items is not V1JSONSchemaProps).Select(n => n.Path));
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Metadata_is_a_bare_object_as_the_API_server_requires_of_a_CRD(string kind)
    {
        var metadata = Root(Crd(kind)).Properties["metadata"];

        Assert.Equal("object", metadata.Type);
        Assert.Null(metadata.Properties);
        Assert.Null(metadata.Description); // kube-apiserver v1.36: "must not specify anything other than name and generateName"
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Spec_is_required(string kind)
    {
        Assert.Equal(["spec"], Root(Crd(kind)).Required);
    }

    [Theory]
    [InlineData("allowedSources")]
    [InlineData("routedSubnets")]
    public void Policy_lists_are_maps_keyed_by_a_required_cidr_with_at_most_1024_entries(string list)
    {
        var schema = Spec(Policy).Properties[list];

        Assert.Equal("map", schema.XKubernetesListType);
        Assert.Equal(["cidr"], schema.XKubernetesListMapKeys);
        Assert.Equal(1024, schema.MaxItems);
        Assert.Contains("cidr", ((V1JSONSchemaProps)schema.Items).Required);
    }

    [Fact]
    public void Interfaces_are_a_set_of_at_most_16_Linux_names()
    {
        var interfaces = Item(Spec(Policy).Properties["allowedSources"]).Properties["interfaces"];
        var name = (V1JSONSchemaProps)interfaces.Items;

        Assert.Equal("set", interfaces.XKubernetesListType);
        Assert.Equal(16, interfaces.MaxItems);
        Assert.Equal("^[A-Za-z0-9_.-]{1,15}$", name.Pattern);
        Assert.Equal(15, name.MaxLength);
        Assert.Contains(interfaces.XKubernetesValidations, r => r.Rule.Contains("'..'", StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("allowedSources")]
    [InlineData("routedSubnets")]
    public void Description_is_bounded_to_256_characters(string list)
    {
        Assert.Equal(256, Item(Spec(Policy).Properties[list]).Properties["description"].MaxLength);
    }

    [Theory]
    [InlineData("allowedSources")]
    [InlineData("routedSubnets")]
    public void Every_cidr_carries_the_CEL_rules_of_design_section_11_and_at_most_18_characters(string list)
    {
        var cidr = Item(Spec(Policy).Properties[list]).Properties["cidr"];
        var rules = cidr.XKubernetesValidations.Select(r => r.Rule).ToList();

        Assert.Equal(18, cidr.MaxLength);
        Assert.Equal("isCIDR(self)", rules[0]);
        Assert.Contains(rules, r => r.EndsWith("cidr(self).ip().family() == 4", StringComparison.Ordinal));
        Assert.Contains(rules, r => r.Contains("cidr('100.64.0.0/10').containsCIDR(self)", StringComparison.Ordinal));
        Assert.Contains(rules, r => r.EndsWith("cidr(self).masked() == cidr(self)", StringComparison.Ordinal));
        Assert.All(cidr.XKubernetesValidations, r => Assert.False(string.IsNullOrWhiteSpace(r.Message), r.Rule));
    }

    /// <summary>Without the guard, "lab-network" would get every rule's message, not only "is not a CIDR" (design section 11).</summary>
    [Theory]
    [InlineData("allowedSources")]
    [InlineData("routedSubnets")]
    public void Every_cidr_rule_after_the_first_is_guarded_by_isCIDR(string list)
    {
        var rules = Item(Spec(Policy).Properties[list]).Properties["cidr"].XKubernetesValidations.Select(r => r.Rule).ToList();

        Assert.True(rules.Count > 1);
        Assert.All(rules.Skip(1), r => Assert.StartsWith("!isCIDR(self) || ", r, StringComparison.Ordinal));
    }

    [Theory]
    [InlineData(".allowedSources", "self.allowedSources.all(s, !isCIDR(s.cidr) ||")]
    [InlineData(".routedSubnets", "self.routedSubnets.all(s, !isCIDR(s.cidr) ||")]
    public void The_16_rule_sits_on_spec_because_it_reads_allowBroadRanges(string fieldPath, string guardedLoop)
    {
        var rule = Assert.Single(Spec(Policy).XKubernetesValidations, r => r.FieldPath == fieldPath);

        Assert.StartsWith("(has(self.allowBroadRanges) && self.allowBroadRanges) || ", rule.Rule, StringComparison.Ordinal);
        Assert.Contains(guardedLoop, rule.Rule, StringComparison.Ordinal);
        Assert.Contains("cidr(s.cidr).prefixLength() >= 16", rule.Rule, StringComparison.Ordinal);
        Assert.Contains("spec.allowBroadRanges: true", rule.Message, StringComparison.Ordinal);
    }

    /// <summary>
    /// The API server estimates each rule's worst case from the bounds of what it reads, and refuses a
    /// CRD whose estimate exceeds its budget: so every string a rule reads, and every list on the way
    /// to it, must be bounded.
    /// </summary>
    [Theory]
    [MemberData(nameof(Kinds))]
    public void Every_list_and_string_under_a_CEL_rule_is_bounded(string kind)
    {
        var unbounded = new List<string>();
        foreach (var (path, schema, _) in Walk(Root(Crd(kind)), "").Where(n => n.Schema.XKubernetesValidations is { Count: > 0 } && n.Path.Length > 0))
        {
            var rules = string.Join(" ", schema.XKubernetesValidations.Select(r => r.Rule));
            unbounded.AddRange(Walk(schema, path)
                .Where(n => n.Path == path || n.Path == path + "[]" || rules.Contains("." + n.Path.Split('.')[^1].TrimEnd('[', ']'), StringComparison.Ordinal))
                .Where(n => (n.Schema.Type == "array" && n.Schema.MaxItems is null) || (n.Schema.Type == "string" && n.Schema.MaxLength is null && n.Schema.EnumProperty is null))
                .Select(n => n.Path));
        }

        Assert.Empty(unbounded);
    }

    [Fact]
    public void Node_selector_has_the_standard_LabelSelector_schema()
    {
        var selector = Spec(Policy).Properties["nodeSelector"];
        var requirement = Item(selector.Properties["matchExpressions"]);

        Assert.Equal("object", selector.Type);
        Assert.Equal("string", ((V1JSONSchemaProps)selector.Properties["matchLabels"].AdditionalProperties).Type);
        Assert.Equal(["key", "operator"], requirement.Required);
        Assert.Equal(["In", "NotIn", "Exists", "DoesNotExist"], requirement.Properties["operator"].EnumProperty);
        Assert.Equal("string", Item(requirement.Properties["values"]).Type);
    }

    [Theory]
    [MemberData(nameof(Kinds))]
    public void Conditions_are_metav1_Conditions_keyed_by_type(string kind)
    {
        var conditions = Root(Crd(kind)).Properties["status"].Properties["conditions"];
        var condition = Item(conditions);

        Assert.Equal("map", conditions.XKubernetesListType);
        Assert.Equal(["type"], conditions.XKubernetesListMapKeys);
        Assert.Equal(["lastTransitionTime", "message", "reason", "status", "type"], condition.Required);
        Assert.Equal(["True", "False", "Unknown"], condition.Properties["status"].EnumProperty);
        Assert.Equal(Conditions.ReasonPattern, condition.Properties["reason"].Pattern);
        Assert.Equal("date-time", condition.Properties["lastTransitionTime"].Format);
    }

    [Fact]
    public void Policy_status_has_the_fields_of_design_section_3()
    {
        var status = Root(Policy).Properties["status"].Properties;

        Assert.Equal(["observedGeneration", "targetNodes", "appliedNodes", "failedNodes", "nodes", "conditions", "nodeIssues"], status.Keys);
        Assert.Equal(20, status["nodeIssues"].MaxItems);
    }

    [Fact]
    public void Node_state_policies_are_a_map_keyed_by_name_with_a_phase()
    {
        var policies = Root(NodeState).Properties["status"].Properties["policies"];

        Assert.Equal("map", policies.XKubernetesListType);
        Assert.Equal(["name"], policies.XKubernetesListMapKeys);
        Assert.Equal(["name"], Item(policies).Required);
        Assert.Equal(["Applied", "Failed", "Removed"], Item(policies).Properties["phase"].EnumProperty);
    }

    [Theory]
    [InlineData("backend", new[] { "iptables-legacy", "iptables-nft", "nftables" })]
    [InlineData("strategy", new[] { "Indirect", "InChain", "None" })]
    public void Node_state_enums_are_spelled_as_the_serializer_writes_them(string field, string[] values)
    {
        Assert.Equal(values, Root(NodeState).Properties["status"].Properties[field].EnumProperty);
    }

    [Theory]
    [InlineData("netfilterMode", new[] { "unknown", "on", "nodivert", "off" })]
    [InlineData("runner", new[] { "unknown", "iptables-legacy", "iptables-nft", "nftables" })]
    [InlineData("learnedFrom", new[] { "localapi", "firewall" })]
    public void Tailscale_enums_are_spelled_as_the_serializer_writes_them(string field, string[] values)
    {
        Assert.Equal(values, Root(NodeState).Properties["status"].Properties["tailscale"].Properties[field].EnumProperty);
    }

    [Fact]
    public void Node_state_name_must_be_its_node_name()
    {
        var rule = Assert.Single(Root(NodeState).XKubernetesValidations);

        Assert.Equal("self.metadata.name == self.spec.nodeName", rule.Rule);
        Assert.Equal(["nodeName"], Spec(NodeState).Required);
    }

    [Fact]
    public void Rules_digest_is_hex_sha256()
    {
        Assert.Equal("^[0-9a-f]{64}$", Root(NodeState).Properties["status"].Properties["rulesDigest"].Pattern);
    }

    [Fact]
    public void Yaml_is_stable_across_generations()
    {
        Assert.Equal(ApiCrds.ToYaml(ApiCrds.All()), ApiCrds.ToYaml(ApiCrds.All()));
    }

    [Fact]
    public void Multi_document_yaml_holds_each_CRD_file_after_a_separator()
    {
        var crds = ApiCrds.All();

        Assert.Equal(string.Concat(crds.Select(c => "---\n" + ApiCrds.ToYaml(c))), ApiCrds.ToYaml(crds));
        Assert.Equal(["tscgnat.io_cgnatallowpolicies.yaml", "tscgnat.io_cgnatnodestates.yaml"], crds.Select(ApiCrds.FileName));
    }

    /// <summary>
    /// ApiCrds writes YAML without KubernetesYaml, which does not run under NativeAOT; KubernetesYaml
    /// must still read it as the very definition generated, quoting included ("True", "on").
    /// </summary>
    [Theory]
    [MemberData(nameof(Kinds))]
    public void KubernetesYaml_reads_the_yaml_as_the_generated_definition(string kind)
    {
        var crd = Crd(kind);

        var read = k8s.KubernetesYaml.Deserialize<V1CustomResourceDefinition>(ApiCrds.ToYaml(crd));

        Assert.Equal(k8s.KubernetesJson.Serialize(crd), k8s.KubernetesJson.Serialize(read));
    }

    [GeneratedRegex(@"\[\?\(.*?\)\]")]
    private static partial Regex Filter();

    private static V1CustomResourceDefinition Crd(string kind) => kind == CgnatAllowPolicy.KindName ? Policy : NodeState;

    private static V1JSONSchemaProps Root(V1CustomResourceDefinition crd) => crd.Spec.Versions[0].Schema.OpenAPIV3Schema;

    private static V1JSONSchemaProps Spec(V1CustomResourceDefinition crd) => Root(crd).Properties["spec"];

    private static V1JSONSchemaProps Item(V1JSONSchemaProps list) => Assert.IsType<V1JSONSchemaProps>(list.Items);

    private static List<(string, string, string)> Columns(V1CustomResourceDefinition crd) =>
        [.. crd.Spec.Versions[0].AdditionalPrinterColumns.Select(c => (c.Name, c.Type, c.JsonPath))];

    /// <summary>Every schema node under <paramref name="schema"/>; IsField marks named properties (not list items or map values).</summary>
    private static IEnumerable<(string Path, V1JSONSchemaProps Schema, bool IsField)> Walk(V1JSONSchemaProps schema, string path, bool isField = false)
    {
        yield return (path, schema, isField);
        foreach (var (name, child) in schema.Properties ?? new Dictionary<string, V1JSONSchemaProps>())
        {
            foreach (var node in Walk(child, $"{path}.{name}", isField: true))
            {
                yield return node;
            }
        }

        if (schema.Items is V1JSONSchemaProps items)
        {
            foreach (var node in Walk(items, path + "[]"))
            {
                yield return node;
            }
        }

        if (schema.AdditionalProperties is V1JSONSchemaProps values)
        {
            foreach (var node in Walk(values, path + "{}"))
            {
                yield return node;
            }
        }
    }
}
