using TsCgnat.TestSupport;

namespace TsCgnat.KubeApiServer;

/// <summary>
/// The tests of an assembly that use the shared real API server form one collection, so they do not run beside
/// each other's clean-ups and share one start-up; <see cref="WithCrdsAsync"/> installs our CRDs from config/crds once.
/// Each test project declares the collection with <c>[CollectionDefinition(SharedKubeApiServer.Collection)]</c>.
/// </summary>
public static class SharedKubeApiServer
{
    public const string Collection = "kube-apiserver";

    private static readonly SemaphoreSlim Once = new(1, 1);
    private static bool _crdsInstalled;

    /// <summary>The shared server with both CRDs from config/crds applied (server-side) and Established.</summary>
    public static async Task<KubeApiServer> WithCrdsAsync()
    {
        var server = await KubeApiServer.SharedAsync();
        await Once.WaitAsync();
        try
        {
            if (!_crdsInstalled)
            {
                InstallCrds(server, Path.Combine(Repo.Root, "config", "crds"));
                _crdsInstalled = true;
            }
        }
        finally
        {
            Once.Release();
        }

        return server;
    }

    /// <summary>Server-side applies the CRDs in <paramref name="dir"/> with kubectl and waits until both are Established.</summary>
    public static void InstallCrds(KubeApiServer server, string dir)
    {
        KubeTools.Ok(server.AdminKubeconfig, KubeTools.Kubectl, "apply", "--server-side", "--field-manager=tscgnat-tests", "-f", dir);
        KubeTools.Ok(server.AdminKubeconfig, KubeTools.Kubectl, "wait", "--for=condition=Established", "--timeout=60s",
            "crd/cgnatallowpolicies.tscgnat.io", "crd/cgnatnodestates.tscgnat.io");
    }
}
