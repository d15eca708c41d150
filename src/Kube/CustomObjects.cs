using System.Text.Json.Nodes;
using k8s;
using k8s.Models;

namespace TsCgnat.Kube;

/// <summary>
/// Get and merge-patch of one custom kind through KubernetesClient's custom-objects API, cluster-scoped or
/// namespaced as the object says, read back as <typeparamref name="T"/> with KubernetesJson.
/// </summary>
internal sealed class CustomObjects<T>(IKubernetes client)
    where T : class, IKubernetesObject<V1ObjectMeta>
{
    private readonly ApiResource resource = Custom();

    public Task<T> GetAsync(string name, string? @namespace, CancellationToken cancellationToken) =>
        string.IsNullOrEmpty(@namespace)
            ? client.CustomObjects.GetClusterCustomObjectAsync<T>(resource.Group, resource.Version, resource.Plural, name, cancellationToken)
            : client.CustomObjects.GetNamespacedCustomObjectAsync<T>(resource.Group, resource.Version, @namespace, resource.Plural, name, cancellationToken);

    public Task<T> PatchAsync(string name, string? @namespace, JsonNode patch, CancellationToken cancellationToken)
    {
        var body = MergePatch(patch);
        return string.IsNullOrEmpty(@namespace)
            ? client.CustomObjects.PatchClusterCustomObjectAsync<T>(body, resource.Group, resource.Version, resource.Plural, name, cancellationToken: cancellationToken)
            : client.CustomObjects.PatchNamespacedCustomObjectAsync<T>(body, resource.Group, resource.Version, @namespace, resource.Plural, name, cancellationToken: cancellationToken);
    }

    public Task<T> PatchStatusAsync(string name, string? @namespace, JsonNode patch, CancellationToken cancellationToken)
    {
        var body = MergePatch(patch);
        return string.IsNullOrEmpty(@namespace)
            ? client.CustomObjects.PatchClusterCustomObjectStatusAsync<T>(body, resource.Group, resource.Version, resource.Plural, name, cancellationToken: cancellationToken)
            : client.CustomObjects.PatchNamespacedCustomObjectStatusAsync<T>(body, resource.Group, resource.Version, @namespace, resource.Plural, name, cancellationToken: cancellationToken);
    }

    private static V1Patch MergePatch(JsonNode patch) => new(patch.ToJsonString(), V1Patch.PatchType.MergePatch);

    private static ApiResource Custom()
    {
        var resource = ApiResource.Of<T>();
        return resource.IsCustom
            ? resource
            : throw new ArgumentException($"{typeof(T).Name} is a core-group kind; only custom kinds are written through the custom-objects API");
    }
}

/// <summary>
/// Optimistic concurrency as Kubernetes intends it: write with the resourceVersion we read; on 409 Conflict
/// read again, recompute, and try again, a bounded number of times (then the caller's backoff takes over).
/// </summary>
internal static class ConflictRetry
{
    public static async Task<TResult> RunAsync<T, TResult>(
        T current,
        int maxConflicts,
        Func<T, int, CancellationToken, Task<TResult>> attempt,
        Func<CancellationToken, Task<T>> reread,
        CancellationToken cancellationToken)
    {
        for (var conflicts = 0; ; conflicts++)
        {
            try
            {
                return await attempt(current, conflicts, cancellationToken);
            }
            catch (Exception e) when (KubeErrors.IsConflict(e) && conflicts < maxConflicts)
            {
                current = await reread(cancellationToken);
            }
        }
    }
}
