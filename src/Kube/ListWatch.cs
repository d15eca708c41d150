using System.Runtime.CompilerServices;
using System.Text.Json;
using k8s;
using k8s.Models;

namespace TsCgnat.Kube;

/// <summary>Server-side filters of a list and its watch (the agent watches its own Node with <c>metadata.name=NODE</c>).</summary>
public sealed record ListSelectors(string? LabelSelector = null, string? FieldSelector = null)
{
    public static ListSelectors None { get; } = new();
}

/// <summary>A consistent list: the objects and the resourceVersion a watch continues from.</summary>
public sealed record ListResult<T>(IReadOnlyList<T> Items, string ResourceVersion);

/// <summary>
/// The seam between <see cref="ResourceCache{T}"/> and the API: one list and one watch, so the cache does not
/// care whether <typeparamref name="T"/> is a built-in kind (typed KubernetesClient operations) or one of our
/// custom kinds (the custom-objects API). Selectors are bound when the instance is made.
/// </summary>
public interface IListWatch<T>
    where T : class, IKubernetesObject<V1ObjectMeta>
{
    Task<ListResult<T>> ListAsync(CancellationToken cancellationToken);

    /// <summary>
    /// Events after <paramref name="resourceVersion"/>, with bookmarks. The server ends the stream after
    /// <paramref name="timeout"/>. ERROR events (410 Gone among them) arrive through <paramref name="onError"/>
    /// as <see cref="KubernetesException"/>, as KubernetesClient's watcher reports them; transport failures
    /// are thrown from the enumeration.
    /// </summary>
    IAsyncEnumerable<(WatchEventType Type, T Object)> WatchAsync(
        string resourceVersion, TimeSpan timeout, Action<Exception> onError, CancellationToken cancellationToken);
}

/// <summary>An <see cref="IListWatch{T}"/> made of two functions; the factories below cover the kinds we watch.</summary>
public sealed class ListWatch<T>(
    Func<CancellationToken, Task<ListResult<T>>> list,
    Func<string, TimeSpan, Action<Exception>, CancellationToken, IAsyncEnumerable<(WatchEventType, T)>> watch) : IListWatch<T>
    where T : class, IKubernetesObject<V1ObjectMeta>
{
    public Task<ListResult<T>> ListAsync(CancellationToken cancellationToken) => list(cancellationToken);

    public IAsyncEnumerable<(WatchEventType Type, T Object)> WatchAsync(
        string resourceVersion, TimeSpan timeout, Action<Exception> onError, CancellationToken cancellationToken) =>
        watch(resourceVersion, timeout, onError, cancellationToken);
}

/// <summary>List-and-watch sources over KubernetesClient's own operations and its <c>WatchAsync</c>.</summary>
public static class ListWatch
{
    /// <summary>Nodes (cluster-scoped, core group).</summary>
    public static IListWatch<V1Node> Nodes(IKubernetes client, ListSelectors? selectors = null)
    {
        ArgumentNullException.ThrowIfNull(client);
        var s = selectors ?? ListSelectors.None;
        return new ListWatch<V1Node>(
            async ct =>
            {
                var list = await client.CoreV1.ListNodeAsync(fieldSelector: s.FieldSelector, labelSelector: s.LabelSelector, cancellationToken: ct);
                return new ListResult<V1Node>([.. list.Items], list.Metadata?.ResourceVersion ?? "");
            },
            (rv, timeout, onError, ct) => client.CoreV1.WatchListNodeAsync(
                allowWatchBookmarks: true, fieldSelector: s.FieldSelector, labelSelector: s.LabelSelector,
                resourceVersion: rv, timeoutSeconds: Seconds(timeout), onError: onError, cancellationToken: ct));
    }

    /// <summary>Leases in one namespace.</summary>
    public static IListWatch<V1Lease> Leases(IKubernetes client, string @namespace, ListSelectors? selectors = null)
    {
        ArgumentNullException.ThrowIfNull(client);
        var s = selectors ?? ListSelectors.None;
        return new ListWatch<V1Lease>(
            async ct =>
            {
                var list = await client.CoordinationV1.ListNamespacedLeaseAsync(
                    @namespace, fieldSelector: s.FieldSelector, labelSelector: s.LabelSelector, cancellationToken: ct);
                return new ListResult<V1Lease>([.. list.Items], list.Metadata?.ResourceVersion ?? "");
            },
            (rv, timeout, onError, ct) => client.CoordinationV1.WatchListNamespacedLeaseAsync(
                @namespace, allowWatchBookmarks: true, fieldSelector: s.FieldSelector, labelSelector: s.LabelSelector,
                resourceVersion: rv, timeoutSeconds: Seconds(timeout), onError: onError, cancellationToken: ct));
    }

    /// <summary>
    /// A cluster-scoped custom kind, at <c>/apis/GROUP/VERSION/PLURAL</c> as its [KubernetesEntity] says.
    /// Objects are read with KubernetesJson, which handles our CRD types as it handles its own models.
    /// </summary>
    public static IListWatch<T> ClusterCustom<T>(IKubernetes client, ListSelectors? selectors = null)
        where T : class, IKubernetesObject<V1ObjectMeta>
    {
        ArgumentNullException.ThrowIfNull(client);
        var s = selectors ?? ListSelectors.None;
        var resource = ApiResource.Of<T>();
        if (!resource.IsCustom)
        {
            throw new ArgumentException($"{typeof(T).Name} is a core-group kind; use its typed list-watch", nameof(T));
        }

        return new ListWatch<T>(
            async ct =>
            {
                using var response = await client.CustomObjects.ListClusterCustomObjectWithHttpMessagesAsync<KubernetesList<T>>(
                    resource.Group, resource.Version, resource.Plural,
                    fieldSelector: s.FieldSelector, labelSelector: s.LabelSelector, cancellationToken: ct);
                var list = response.Body;
                return new ListResult<T>([.. list.Items ?? []], list.Metadata?.ResourceVersion ?? "");
            },
            (rv, timeout, onError, ct) => Typed<T>(
                client.CustomObjects.WatchListClusterCustomObjectAsync(
                    resource.Group, resource.Version, resource.Plural, allowWatchBookmarks: true,
                    fieldSelector: s.FieldSelector, labelSelector: s.LabelSelector,
                    resourceVersion: rv, timeoutSeconds: Seconds(timeout), onError: onError, cancellationToken: ct),
                onError,
                ct));
    }

    /// <summary>
    /// The custom-objects watch yields each object as untyped JSON; read it as <typeparamref name="T"/> with
    /// KubernetesJson. A bad object is reported through <paramref name="onError"/> and skipped, as the
    /// watcher itself does with a line it cannot parse.
    /// </summary>
    private static async IAsyncEnumerable<(WatchEventType, T)> Typed<T>(
        IAsyncEnumerable<(WatchEventType, object)> events, Action<Exception> onError, [EnumeratorCancellation] CancellationToken cancellationToken)
        where T : class
    {
        await foreach (var (type, obj) in events.WithCancellation(cancellationToken))
        {
            T? typed = null;
            try
            {
                typed = obj switch
                {
                    T t => t,
                    JsonElement json => Read<T>(json),
                    _ => KubernetesJson.Deserialize<T>(KubernetesJson.Serialize(obj)),
                };
            }
            catch (Exception e) when (e is JsonException or FormatException)
            {
                onError(e);
            }

            if (typed is not null)
            {
                yield return (type, typed);
            }
        }
    }

    /// <summary>
    /// One watched object as <typeparamref name="T"/>; throws <see cref="JsonException"/> for any object it cannot read.
    /// KubernetesClient's converters throw <see cref="FormatException"/> for a malformed timestamp or quantity, which
    /// escaped the watch and ended it (found by fuzzing, issue 10).
    /// </summary>
    internal static T? Read<T>(JsonElement json)
    {
        try
        {
            return KubernetesJson.Deserialize<T>(json);
        }
        catch (FormatException e)
        {
            throw new JsonException($"{typeof(T).Name}: {e.Message}", e);
        }
    }

    private static int Seconds(TimeSpan timeout) => (int)Math.Max(1, Math.Ceiling(timeout.TotalSeconds));
}
