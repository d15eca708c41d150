using System.Text.Json.Nodes;
using TsCgnat.KubeApiServer;
using TsCgnat.TestSupport;
using Xunit.Abstractions;

namespace TsCgnat.Chart.Tests;

[CollectionDefinition(SharedKubeApiServer.Collection)]
public sealed class KubeApiServerCollectionDefinition;

/// <summary>
/// The chart as a user installs it: real helm 4 against a real kube-apiserver (v1.36 in CI). Lint, render with every
/// optional part switched on, install, upgrade with changed values, uninstall; every object accepted by the server.
/// Nothing runs (no kubelet), so what is proven is that the server stores every object as rendered, with its
/// schemas, admission and RBAC escalation checks.
/// </summary>
[Collection(SharedKubeApiServer.Collection)]
public sealed class HelmOnKubeApiServerTests(ITestOutputHelper output)
{
    [SkippableFact]
    public void Helm_lint_strict_passes()
    {
        var lint = Sh.Run(KubeTools.Helm, "lint", "--strict", ChartPaths.Chart, "--kube-version", "1.36.0");
        output.WriteLine(lint.StdOut + lint.StdErr);
        Assert.True(lint.Succeeded, lint.StdOut + lint.StdErr);
        Assert.Contains("1 chart(s) linted, 0 chart(s) failed", lint.StdOut, StringComparison.Ordinal);
    }

    [SkippableFact]
    public void Helm_template_renders_every_optional_part()
    {
        var rendered = HelmTemplate.Render(HelmTemplate.EverythingOn);

        var kinds = Kinds(rendered);
        foreach (var kind in new[] { "ServiceMonitor", "PrometheusRule", "ConfigMap", "ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding", "PodDisruptionBudget", "DaemonSet", "Deployment", "Service" })
        {
            Assert.Contains(kind, kinds);
        }

        Assert.Contains("OTEL_EXPORTER_OTLP_HEADERS", rendered, StringComparison.Ordinal);
        Assert.Contains("name: registry", rendered, StringComparison.Ordinal);
        Assert.Contains("@sha256:0123456789abcdef", rendered, StringComparison.Ordinal);
    }

    [SkippableFact]
    public async Task The_chart_installs_upgrades_and_uninstalls_on_the_real_API_server()
    {
        var server = await KubeApiServer.KubeApiServer.SharedAsync();
        var kubeconfig = server.AdminKubeconfig;
        string Kubectl(params string[] args) => KubeTools.Ok(kubeconfig, KubeTools.Kubectl, args);
        string Helm(params string[] args) => KubeTools.Ok(kubeconfig, KubeTools.Helm, args);

        // ServiceMonitor is the Prometheus Operator's kind, not ours: its CRD, in the shape that operator ships
        // (a structural schema that keeps the unknown spec), so the server can store the chart's object.
        Kubectl("apply", "--server-side", "--field-manager=tscgnat-tests", "-f", ForeignCrds.Write(Path.Combine(Path.GetTempPath(), UniqueName.For("foreign-crds-") + ".yaml")));
        Kubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/servicemonitors.monitoring.coreos.com", "crd/prometheusrules.monitoring.coreos.com");

        var ns = UniqueName.For("helm-");
        var release = UniqueName.For("tsc");
        Kubectl("create", "namespace", ns);
        try
        {
            var installed = Helm(["install", release, ChartPaths.Chart, "--namespace", ns, .. HelmTemplate.EverythingOn]);
            output.WriteLine(installed);
            Assert.Contains("STATUS: deployed", installed, StringComparison.Ordinal);

            // helm installs crds/ only where they are missing; applying the chart's copy server-side must work too.
            SharedKubeApiServer.InstallCrds(server, ChartPaths.ChartCrds);

            var manifest = Helm("get", "manifest", release, "--namespace", ns);
            var expected = Objects(manifest);
            output.WriteLine($"installed: {string.Join(", ", expected)}");
            Assert.Contains("ServiceMonitor", Kinds(manifest));
            Assert.Contains("PrometheusRule", Kinds(manifest));
            Assert.Contains("ValidatingAdmissionPolicy", Kinds(manifest));
            AssertStored(Kubectl, ns, manifest, expected);

            // Upgrade with changed values: more operator replicas, another strategy, ServiceMonitor and admission policy off.
            var upgraded = Helm("upgrade", release, ChartPaths.Chart, "--namespace", ns, "--reuse-values",
                "--set", "operator.replicas=3", "--set", "agent.strategy=in-chain",
                "--set", "metrics.serviceMonitor.enabled=false", "--set", "agent.ownNodeStateOnly.enabled=false");
            Assert.Contains("REVISION: 2", upgraded, StringComparison.Ordinal);
            var manifest2 = Helm("get", "manifest", release, "--namespace", ns);
            AssertStored(Kubectl, ns, manifest2, Objects(manifest2));
            Assert.Equal("3", Kubectl("get", "deployment", "--namespace", ns, "-l", $"app.kubernetes.io/instance={release}", "-o", "jsonpath={.items[0].spec.replicas}"));
            Assert.Contains("in-chain", Kubectl("get", "daemonset", "--namespace", ns, "-l", $"app.kubernetes.io/instance={release}", "-o", "jsonpath={.items[0].spec.template.spec.containers[0].args}"), StringComparison.Ordinal);
            Assert.Equal("", Kubectl("get", "servicemonitors", "--namespace", ns, "-o", "name"));
            Assert.DoesNotContain(Objects(manifest2), o => o.StartsWith("ValidatingAdmissionPolicy", StringComparison.Ordinal));

            var uninstalled = Helm("uninstall", release, "--namespace", ns, "--wait", "--timeout", "60s");
            Assert.Contains("uninstalled", uninstalled, StringComparison.Ordinal);
            var left = KubeTools.Run(kubeconfig, KubeTools.Kubectl, "get", "--namespace", ns, "--ignore-not-found", "-o", "name", "-f", Save(manifest));
            Assert.Equal("", left.StdOut.Trim());
            Assert.Contains("cgnatallowpolicies.tscgnat.io", Kubectl("get", "crd", "-o", "name"), StringComparison.Ordinal); // helm never deletes crds/
        }
        finally
        {
            KubeTools.Run(kubeconfig, KubeTools.Helm, "uninstall", release, "--namespace", ns, "--ignore-not-found");
            KubeTools.Run(kubeconfig, KubeTools.Kubectl, "delete", "namespace", ns, "--wait=false");
        }
    }

    /// <summary>Every object of the manifest is on the server, cluster-scoped ones included.</summary>
    private static void AssertStored(Func<string[], string> kubectl, string ns, string manifest, List<string> expected)
    {
        var stored = kubectl(["get", "--namespace", ns, "-o", "name", "-f", Save(manifest)])
            .Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Equal(expected.Count, stored.Length);
    }

    private static string Save(string manifest)
    {
        var path = Path.Combine(Path.GetTempPath(), UniqueName.For("manifest-") + ".yaml");
        File.WriteAllText(path, manifest);
        return path;
    }

    private static List<string> Kinds(string manifest) => [.. Objects(manifest).Select(o => o.Split('/')[0])];

    /// <summary>"Kind/name" of every document in a rendered manifest.</summary>
    private static List<string> Objects(string manifest) =>
    [
        .. manifest.Split("\n---", StringSplitOptions.RemoveEmptyEntries)
            .Select(doc => doc.Split('\n'))
            .Select(lines => (Kind: lines.FirstOrDefault(l => l.StartsWith("kind: ", StringComparison.Ordinal))?[6..].Trim(),
                Name: lines.SkipWhile(l => !l.StartsWith("metadata:", StringComparison.Ordinal)).Skip(1)
                    .FirstOrDefault(l => l.StartsWith("  name: ", StringComparison.Ordinal))?[8..].Trim()))
            .Where(o => o.Kind is not null)
            .Select(o => $"{o.Kind}/{o.Name}"),
    ];
}

/// <summary>CRDs of other projects that optional parts of the chart need, written by the test (no download).</summary>
public static class ForeignCrds
{
    /// <summary>monitoring.coreos.com/v1 ServiceMonitor and PrometheusRule, namespaced, with a spec kept as given.</summary>
    public static string Write(string path)
    {
        static string Crd(string kind, string plural) => $"""
            apiVersion: apiextensions.k8s.io/v1
            kind: CustomResourceDefinition
            metadata:
              name: {plural}.monitoring.coreos.com
            spec:
              group: monitoring.coreos.com
              names: {"{"}kind: {kind}, listKind: {kind}List, plural: {plural}, singular: {kind.ToLowerInvariant()}{"}"}
              scope: Namespaced
              versions:
              - name: v1
                served: true
                storage: true
                schema:
                  openAPIV3Schema:
                    type: object
                    properties:
                      spec:
                        type: object
                        x-kubernetes-preserve-unknown-fields: true
            """;
        File.WriteAllText(path, Crd("ServiceMonitor", "servicemonitors") + "\n---\n" + Crd("PrometheusRule", "prometheusrules") + "\n");
        return path;
    }
}
