using TsCgnat.KubeApiServer;
using TsCgnat.TestSupport;

namespace TsCgnat.Chart.Tests;

/// <summary>The chart rendered by real helm (<c>helm template</c>), as a user's install would render it.</summary>
internal static class HelmTemplate
{
    /// <summary>Every optional part of the chart switched on (and the ones on by default left on).</summary>
    public static readonly string[] EverythingOn =
    [
        "--set", "metrics.serviceMonitor.enabled=true",
        "--set", "metrics.serviceMonitor.labels.release=prometheus",
        "--set", "metrics.prometheusRule.enabled=true",
        "--set", "metrics.dashboard.enabled=true",
        "--set", "otel.endpoint=http://otel-collector.observability:4317",
        "--set", "otel.headersSecret.name=otlp-headers",
        "--set", "otel.resourceAttributes=deployment.environment=test",
        "--set", "imagePullSecrets[0].name=registry",
        "--set", "operator.priorityClassName=system-cluster-critical",
        "--set", "operator.image.digest=sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef",
    ];

    /// <summary>The manifest of release <c>ts-cgnat</c> in namespace <c>ts-cgnat</c> for Kubernetes 1.36 (needs helm: skips or fails the test without it).</summary>
    public static string Render(params string[] values) =>
        Sh.Ok(KubeTools.Helm, ["template", "ts-cgnat", ChartPaths.Chart, "--namespace", "ts-cgnat", "--kube-version", "1.36.0", .. values]);
}
