namespace TsCgnat.Chart.Tests;

/// <summary>Every template is well formed: balanced actions and blocks, and YAML once stubbed.</summary>
public sealed class TemplateTests
{
    public static TheoryData<string> Templates => [.. ChartPaths.TemplateNames()];

    public static TheoryData<string> Manifests => [.. ChartPaths.ManifestNames()];

    [Theory]
    [MemberData(nameof(Templates))]
    public void Actions_and_blocks_are_balanced(string template)
    {
        Assert.Empty(GoTemplate.Parse(ChartPaths.ReadTemplate(template)).Problems);
    }

    [Theory]
    [MemberData(nameof(Manifests))]
    public void Parses_as_yaml_once_actions_are_stubbed(string template)
    {
        var stub = GoTemplate.Parse(ChartPaths.ReadTemplate(template)).Stub();

        var documents = Yaml.Documents(stub);

        Assert.NotEmpty(documents);
        Assert.All(documents, d =>
        {
            Assert.NotNull(Yaml.Text(d, "apiVersion"));
            Assert.NotNull(Yaml.Text(d, "kind"));
            Assert.NotNull(Yaml.Text(d, "metadata", "name"));
        });
    }

    [Fact]
    public void The_chart_has_the_templates_the_design_asks_for()
    {
        var kinds = Rendered.All.Select(x => Yaml.Text(x.Document, "kind")).ToHashSet();

        Assert.Superset(
            new HashSet<string?>
            {
                "Deployment", "DaemonSet", "PodDisruptionBudget", "ServiceAccount", "ClusterRole", "ClusterRoleBinding",
                "Role", "RoleBinding", "Service", "ServiceMonitor", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding",
                "PrometheusRule", "ConfigMap",
            },
            kinds);
    }
}
