namespace TsCgnat.Chart.Tests;

/// <summary>Every template is well formed (balanced actions and blocks) and renders with real helm.</summary>
public sealed class TemplateTests
{
    public static TheoryData<string> Templates => [.. ChartPaths.TemplateNames()];

    [Theory]
    [MemberData(nameof(Templates))]
    public void Actions_and_blocks_are_balanced(string template)
    {
        Assert.Empty(GoTemplate.Parse(ChartPaths.ReadTemplate(template)).Problems);
    }

    [SkippableFact]
    public void Every_manifest_template_renders_an_object_with_every_optional_part_on()
    {
        var rendered = Rendered.All.Select(x => x.Template).ToHashSet(StringComparer.Ordinal);

        Assert.Equal(ChartPaths.ManifestNames(), rendered.Order(StringComparer.Ordinal));
        Assert.All(Rendered.All, x =>
        {
            Assert.NotNull(Yaml.Text(x.Document, "apiVersion"));
            Assert.NotNull(Yaml.Text(x.Document, "metadata", "name"));
        });
    }

    [SkippableFact]
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
