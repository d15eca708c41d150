using k8s;
using k8s.Exceptions;

namespace TsCgnat.Kube;

/// <summary>Where the programs find their API server; KubernetesClientConfiguration does the work.</summary>
public static class KubeConfig
{
    /// <summary>
    /// An explicit kubeconfig file if given; else the pod's service account when running in a cluster; else
    /// <c>KUBECONFIG</c> (files separated by ':', merged as kubectl merges them) or <c>~/.kube/config</c>.
    /// </summary>
    /// <remarks>
    /// Kubeconfig files are read by <see cref="KubeconfigFile"/>, not by KubernetesClientConfiguration's own
    /// loader: that one goes through KubernetesYaml, whose static constructor fails in the NativeAOT binaries
    /// ("no metadata token available"), so a kubeconfig would work only in a JIT build.
    /// </remarks>
    /// <exception cref="KubeConfigException">No kubeconfig file exists where one was looked for, or it is not valid.</exception>
    public static KubernetesClientConfiguration Load(string? kubeconfigPath = null)
    {
        // Every program that talks to an API server comes here first, before any KubernetesJson use.
        KubeJson.Use(WatchEventJsonContext.Default);
        if (!string.IsNullOrEmpty(kubeconfigPath))
        {
            return FromFiles([kubeconfigPath]);
        }

        if (KubernetesClientConfiguration.IsInCluster())
        {
            return KubernetesClientConfiguration.InClusterConfig();
        }

        var fromEnvironment = Environment.GetEnvironmentVariable("KUBECONFIG");
        return string.IsNullOrEmpty(fromEnvironment)
            ? FromFiles([Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".kube", "config")])
            : FromFiles(fromEnvironment.Split(Path.PathSeparator, StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries));
    }

    private static KubernetesClientConfiguration FromFiles(IReadOnlyList<string> paths)
    {
        // As kubectl: files that do not exist are skipped, but at least one must.
        var existing = paths.Where(File.Exists).ToList();
        if (existing.Count == 0)
        {
            throw new KubeConfigException($"no kubeconfig file at {string.Join(", ", paths)}");
        }

        return KubernetesClientConfiguration.BuildConfigFromConfigObject(KubeconfigFile.Read(existing));
    }
}
