using k8s;
using k8s.Models;
using TsCgnat.KubeApiServer;
using TsCgnat.TestSupport;

namespace TsCgnat.EndToEnd.Tests;

/// <summary>
/// charts/ts-cgnat-operator installed with <c>helm install</c> into a namespace of its own on a real API server, so
/// the service accounts, RBAC and ValidatingAdmissionPolicy that the programs meet are the chart's own. Its
/// Deployment and DaemonSet are stored and never run (no kubelet): the tests run the programs themselves, with
/// tokens of the chart's service accounts from the TokenRequest API. The CRDs come from config/crds
/// (<see cref="SharedKubeApiServer.InstallCrds"/>), so the chart's copies are skipped here.
/// </summary>
public sealed class ChartRelease : IAsyncDisposable
{
    /// <summary>The API server's service account issuer, also its default audience (see tests/KubeApiServer).</summary>
    private const string Issuer = "https://kubernetes.default.svc";

    private readonly KubeApiServer.KubeApiServer _server;
    private readonly string _dir;

    private ChartRelease(KubeApiServer.KubeApiServer server, string name, string dir)
    {
        _server = server;
        Name = name;
        _dir = dir;
        Admin = server.Client();
    }

    /// <summary>The release name, also its namespace.</summary>
    public string Name { get; }

    public string Namespace => Name;

    /// <summary>The chart's "fullname" for a release whose name does not contain the chart's (see _helpers.tpl).</summary>
    public string FullName => $"{Name}-ts-cgnat-operator";

    public string OperatorServiceAccount => $"{FullName}-operator";

    public string AgentServiceAccount => $"{FullName}-agent";

    public Kubernetes Admin { get; }

    /// <summary>
    /// <c>helm install NAME charts/ts-cgnat-operator -n NAME --create-namespace --skip-crds</c> with the chart's default
    /// values (admission policy on, leader election on): every object the chart makes is accepted by the server.
    /// </summary>
    public static async Task<ChartRelease> InstallAsync(KubeApiServer.KubeApiServer server, string name, string dir)
    {
        var release = new ChartRelease(server, name, dir);
        try
        {
            KubeTools.Ok(server.AdminKubeconfig, KubeTools.Helm, "install", name, Path.Combine(Repo.Root, "charts", "ts-cgnat-operator"),
                "--namespace", name, "--create-namespace", "--skip-crds");
            // The admission policy is enforced once the server has loaded it (a second or so after it is stored); until
            // then a forged write would slip through. Wait until a dry run of one (a token that names no node) is refused.
            using var unbound = server.Client(await release.UnboundAgentTokenAsync());
            await Eventually.ValueAsync(() => RefusedAsync(unbound), refused => refused, "the chart's admission policy refuses an agent token without a node");
            return release;
        }
        catch
        {
            await release.DisposeAsync();
            throw;
        }
    }

    /// <summary>A token of the operator's service account (as the kubelet mounts one into the operator's pod).</summary>
    public Task<string> OperatorTokenAsync() => TokenAsync(OperatorServiceAccount, null);

    /// <summary>
    /// A token of the agent's service account bound to a Pod placed on <paramref name="nodeName"/>: like the kubelet's
    /// projected token of a DaemonSet pod, it names the node (userInfo.extra authentication.kubernetes.io/node-name),
    /// which the chart's admission policy compares with the CgnatNodeState being written.
    /// </summary>
    public async Task<string> AgentTokenAsync(string nodeName)
    {
        var pod = await Admin.CoreV1.CreateNamespacedPodAsync(new V1Pod
        {
            Metadata = new V1ObjectMeta { Name = $"agent-{nodeName}", NamespaceProperty = Namespace, Labels = new Dictionary<string, string> { ["app.kubernetes.io/component"] = "agent" } },
            Spec = new V1PodSpec
            {
                NodeName = nodeName,
                ServiceAccountName = AgentServiceAccount,
                Containers = [new V1Container { Name = "agent", Image = "ts-cgnat-agent:e2e" }],
            },
        }, Namespace);
        return await TokenAsync(AgentServiceAccount, new V1BoundObjectReference { ApiVersion = "v1", Kind = "Pod", Name = pod.Metadata.Name, Uid = pod.Metadata.Uid });
    }

    /// <summary>A token of the agent's service account that is bound to no Pod, so it names no node.</summary>
    public Task<string> UnboundAgentTokenAsync() => TokenAsync(AgentServiceAccount, null);

    /// <summary>Writes a kubeconfig for <paramref name="token"/> under the release's directory.</summary>
    public string Kubeconfig(string who, string token) => _server.WriteKubeconfig(Path.Combine(_dir, $"{who}.kubeconfig"), token, who);

    /// <summary>Uninstalls the release (cluster-scoped RBAC and admission policy go with it) and deletes the namespace.</summary>
    public async ValueTask DisposeAsync()
    {
        KubeTools.Run(_server.AdminKubeconfig, KubeTools.Helm, "uninstall", Name, "--namespace", Namespace);
        try
        {
            // No namespace controller runs: the namespace stays Terminating, its name is never reused.
            await Admin.CoreV1.DeleteNamespaceAsync(Namespace);
        }
        catch (k8s.Autorest.HttpOperationException)
        {
            // Already gone or never made; nothing to clean.
        }
        catch (HttpRequestException)
        {
            // The API server is down (a test that stops it failed before starting it again).
        }

        Admin.Dispose();
    }

    private static async Task<bool> RefusedAsync(Kubernetes agent)
    {
        var probe = new System.Text.Json.Nodes.JsonObject
        {
            ["apiVersion"] = "tscgnat.io/v1alpha1",
            ["kind"] = "CgnatNodeState",
            ["metadata"] = new System.Text.Json.Nodes.JsonObject { ["name"] = "admission-probe" },
            ["spec"] = new System.Text.Json.Nodes.JsonObject { ["nodeName"] = "admission-probe" },
        };
        try
        {
            await agent.CustomObjects.CreateClusterCustomObjectAsync(probe, "tscgnat.io", "v1alpha1", "cgnatnodestates", dryRun: "All");
            return false;
        }
        catch (k8s.Autorest.HttpOperationException e) when (e.Response.StatusCode == System.Net.HttpStatusCode.Forbidden
            && e.Response.Content.Contains("ValidatingAdmissionPolicy", StringComparison.Ordinal))
        {
            return true;
        }
    }

    private async Task<string> TokenAsync(string serviceAccount, V1BoundObjectReference? boundTo)
    {
        var request = await Admin.CoreV1.CreateNamespacedServiceAccountTokenAsync(new Authenticationv1TokenRequest
        {
            Spec = new V1TokenRequestSpec { Audiences = [Issuer], ExpirationSeconds = 3600, BoundObjectRef = boundTo },
        }, serviceAccount, Namespace);
        return request.Status.Token;
    }
}
