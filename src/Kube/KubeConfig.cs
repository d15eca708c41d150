using k8s;

namespace TsCgnat.Kube;

/// <summary>Where the programs find their API server; KubernetesClientConfiguration does the work.</summary>
public static class KubeConfig
{
    /// <summary>
    /// An explicit kubeconfig file if given; else the pod's service account when running in a cluster; else
    /// <c>KUBECONFIG</c> or <c>~/.kube/config</c>.
    /// </summary>
    public static KubernetesClientConfiguration Load(string? kubeconfigPath = null)
    {
        if (!string.IsNullOrEmpty(kubeconfigPath))
        {
            return KubernetesClientConfiguration.BuildConfigFromConfigFile(kubeconfigPath);
        }

        return KubernetesClientConfiguration.IsInCluster()
            ? KubernetesClientConfiguration.InClusterConfig()
            : KubernetesClientConfiguration.BuildDefaultConfig();
    }
}
