using YamlDotNet.RepresentationModel;

namespace TsCgnat.Chart.Tests;

/// <summary>The security properties of the rendered manifests that design section 9 promises.</summary>
public sealed class ManifestTests
{
    private static YamlNode DaemonSet => Rendered.Single("DaemonSet", "-agent");

    private static YamlNode Deployment => Rendered.Single("Deployment", "-operator");

    private static YamlNode AgentPod => Yaml.At(DaemonSet, "spec", "template", "spec")!;

    private static YamlNode OperatorPod => Yaml.At(Deployment, "spec", "template", "spec")!;

    /// <summary>Every Role and ClusterRole, as "Kind name-suffix" (a test asserts there are no others).</summary>
    public static TheoryData<string> Roles => ["ClusterRole -agent", "ClusterRole -operator", "Role -operator-leader-election"];

    [SkippableFact]
    public void Agent_adds_exactly_NET_ADMIN_and_NET_RAW_and_drops_every_other_capability()
    {
        var container = Assert.Single(Yaml.Items(AgentPod, "containers"));

        Assert.Equal(["NET_ADMIN", "NET_RAW"], Yaml.Strings(container, "securityContext", "capabilities", "add").Order(StringComparer.Ordinal));
        Assert.Equal(["ALL"], Yaml.Strings(container, "securityContext", "capabilities", "drop"));
    }

    [SkippableFact]
    public void Agent_is_not_privileged_and_its_root_filesystem_is_read_only()
    {
        var container = Assert.Single(Yaml.Items(AgentPod, "containers"));

        Assert.Equal("false", Yaml.Text(container, "securityContext", "privileged"));
        Assert.Equal("false", Yaml.Text(container, "securityContext", "allowPrivilegeEscalation"));
        Assert.Equal("true", Yaml.Text(container, "securityContext", "readOnlyRootFilesystem"));
        Assert.Equal("RuntimeDefault", Yaml.Text(AgentPod, "securityContext", "seccompProfile", "type"));
    }

    [SkippableFact]
    public void Agent_uses_the_host_network_with_cluster_dns_and_node_critical_priority()
    {
        Assert.Equal("true", Yaml.Text(AgentPod, "hostNetwork"));
        Assert.Equal("ClusterFirstWithHostNet", Yaml.Text(AgentPod, "dnsPolicy"));
        Assert.Equal("system-node-critical", Yaml.Text(AgentPod, "priorityClassName"));
    }

    [SkippableFact]
    public void Agent_tolerates_every_taint()
    {
        var toleration = Assert.Single(Yaml.Items(AgentPod, "tolerations"));

        Assert.Equal("Exists", Yaml.Text(toleration, "operator"));
        Assert.Null(Yaml.At(toleration, "key"));
        Assert.Null(Yaml.At(toleration, "effect"));
    }

    [SkippableTheory]
    [InlineData("xtables-lock", "/run/xtables.lock", "FileOrCreate", "false")]
    [InlineData("tailscale-socket", "/var/run/tailscale", "DirectoryOrCreate", "true")]
    [InlineData("state", "/var/lib/ts-cgnat", "DirectoryOrCreate", "false")]
    public void Agent_mounts_the_host_path(string volume, string mountPath, string type, string readOnly)
    {
        var container = Assert.Single(Yaml.Items(AgentPod, "containers"));
        var hostPath = Yaml.At(Yaml.Items(AgentPod, "volumes").Single(v => Yaml.Text(v, "name") == volume), "hostPath")!;
        var mount = Yaml.Items(container, "volumeMounts").Single(m => Yaml.Text(m, "name") == volume);

        Assert.Equal(type, Yaml.Text(hostPath, "type"));
        Assert.Equal(mountPath, Yaml.Text(mount, "mountPath"));
        Assert.Equal(readOnly, Yaml.Text(mount, "readOnly") ?? "false");
    }

    [SkippableFact]
    public void Agent_gets_its_node_name_from_the_downward_api()
    {
        var container = Assert.Single(Yaml.Items(AgentPod, "containers"));
        var nodeName = Yaml.Items(container, "env").Single(e => Yaml.Text(e, "name") == "NODE_NAME");

        Assert.Equal("spec.nodeName", Yaml.Text(nodeName, "valueFrom", "fieldRef", "fieldPath"));
        Assert.Contains("$(NODE_NAME)", Yaml.Strings(container, "args"));
    }

    [SkippableFact]
    public void Agent_runs_in_cluster_mode_without_policy_files()
    {
        var container = Assert.Single(Yaml.Items(AgentPod, "containers"));
        var args = Yaml.Strings(container, "args");

        Assert.Equal("run", args[0]);
        Assert.DoesNotContain("--policy-file", args);
    }

    [SkippableFact]
    public void Agent_rolls_out_node_by_node_as_configured()
    {
        Assert.Equal("RollingUpdate", Yaml.Text(DaemonSet, "spec", "updateStrategy", "type"));
        Assert.NotNull(Yaml.Text(DaemonSet, "spec", "updateStrategy", "rollingUpdate", "maxUnavailable"));
    }

    [SkippableFact]
    public void Operator_runs_as_non_root_with_no_capabilities_and_a_read_only_root()
    {
        var container = Assert.Single(Yaml.Items(OperatorPod, "containers"));

        Assert.Equal("true", Yaml.Text(OperatorPod, "securityContext", "runAsNonRoot"));
        Assert.Equal("RuntimeDefault", Yaml.Text(OperatorPod, "securityContext", "seccompProfile", "type"));
        Assert.Equal(["ALL"], Yaml.Strings(container, "securityContext", "capabilities", "drop"));
        Assert.Null(Yaml.At(container, "securityContext", "capabilities", "add"));
        Assert.Equal("true", Yaml.Text(container, "securityContext", "readOnlyRootFilesystem"));
        Assert.Equal("false", Yaml.Text(container, "securityContext", "allowPrivilegeEscalation"));
    }

    [SkippableTheory]
    [InlineData("operator", "livenessProbe", "/healthz")]
    [InlineData("operator", "readinessProbe", "/readyz")]
    [InlineData("agent", "livenessProbe", "/healthz")]
    [InlineData("agent", "readinessProbe", "/readyz")]
    public void Probes_use_the_health_endpoints(string component, string probe, string path)
    {
        var pod = component == "agent" ? AgentPod : OperatorPod;
        var container = Assert.Single(Yaml.Items(pod, "containers"));

        Assert.Equal(path, Yaml.Text(container, probe, "httpGet", "path"));
        Assert.Equal("metrics", Yaml.Text(container, probe, "httpGet", "port"));
    }

    [SkippableTheory]
    [MemberData(nameof(Roles))]
    public void No_rbac_rule_uses_a_wildcard(string role)
    {
        var (kind, suffix) = (role.Split(' ')[0], role.Split(' ')[1]);
        var document = Rendered.Single(kind, suffix);

        Assert.NotEmpty(Yaml.Items(document, "rules"));
        Assert.All(Yaml.Items(document, "rules"), rule =>
        {
            foreach (var field in new[] { "apiGroups", "resources", "verbs", "resourceNames", "nonResourceURLs" })
            {
                Assert.DoesNotContain(Yaml.Strings(rule, field), s => s.Contains('*', StringComparison.Ordinal));
            }
        });
    }

    [SkippableFact]
    public void Agent_cluster_role_grants_exactly_what_the_agent_needs()
    {
        Assert.Equal(
            [
                "/events: create patch",
                "/nodes: get list watch",
                "tscgnat.io/cgnatallowpolicies: get list watch",
                "tscgnat.io/cgnatnodestates/status: get patch update",
                "tscgnat.io/cgnatnodestates: create get patch update",
            ],
            Grants(Rendered.Single("ClusterRole", "-agent")));
    }

    [SkippableFact]
    public void Operator_cluster_role_grants_exactly_what_the_operator_needs()
    {
        Assert.Equal(
            [
                "/events: create patch",
                "/nodes: get list watch",
                "tscgnat.io/cgnatallowpolicies/status: patch update",
                "tscgnat.io/cgnatallowpolicies: get list patch update watch",
                "tscgnat.io/cgnatnodestates: delete get list watch",
            ],
            Grants(Rendered.Single("ClusterRole", "-operator")));
    }

    [SkippableFact]
    public void Operator_leader_election_role_only_reads_and_writes_leases()
    {
        Assert.Equal(
            ["coordination.k8s.io/leases: create get update"],
            Grants(Rendered.Single("Role", "-operator-leader-election")));
    }

    [SkippableFact]
    public void The_admission_policy_compares_the_node_state_name_with_the_token_node_name()
    {
        var policy = Rendered.Single("ValidatingAdmissionPolicy", "-agent-own-node-state");
        var binding = Rendered.Single("ValidatingAdmissionPolicyBinding", "-agent-own-node-state");

        Assert.Equal("admissionregistration.k8s.io/v1", Yaml.Text(policy, "apiVersion"));
        Assert.Equal("Fail", Yaml.Text(policy, "spec", "failurePolicy"));
        Assert.Contains(
            "request.userInfo.extra[\"authentication.kubernetes.io/node-name\"]",
            Yaml.Text(Yaml.Items(policy, "spec", "variables").Single(), "expression"),
            StringComparison.Ordinal);
        Assert.Contains(
            Yaml.Items(policy, "spec", "validations"),
            v => Yaml.Text(v, "expression")!.Contains("object.metadata.name == variables.nodeName", StringComparison.Ordinal));
        Assert.Equal(["cgnatnodestates", "cgnatnodestates/status"], Yaml.Strings(Yaml.Items(policy, "spec", "matchConstraints", "resourceRules").Single(), "resources"));
        Assert.Equal(["Deny"], Yaml.Strings(binding, "spec", "validationActions"));
    }

    /// <summary>"group/resource: sorted verbs", one line per group and resource, sorted.</summary>
    private static List<string> Grants(YamlNode role) =>
        [.. Yaml.Items(role, "rules")
            .SelectMany(rule => Yaml.Strings(rule, "apiGroups").SelectMany(group => Yaml.Strings(rule, "resources").Select(resource =>
                $"{group}/{resource}: {string.Join(' ', Yaml.Strings(rule, "verbs").Order(StringComparer.Ordinal))}")))
            .Order(StringComparer.Ordinal)];

    [SkippableFact]
    public void The_chart_has_no_role_beyond_the_three_checked_here()
    {
        var roles = Rendered.OfKind("ClusterRole", "Role").Select(d => $"{Yaml.Text(d, "kind")} {Yaml.Text(d, "metadata", "name")}").ToList();

        Assert.Equal(3, roles.Count);
        foreach (var role in new[] { "ClusterRole -agent", "ClusterRole -operator", "Role -operator-leader-election" })
        {
            Assert.Single(roles, x => x.StartsWith(role.Split(' ')[0] + " ", StringComparison.Ordinal) && x.EndsWith(role.Split(' ')[1], StringComparison.Ordinal));
        }
    }
}
