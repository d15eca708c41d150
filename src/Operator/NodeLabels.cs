using System.Runtime.CompilerServices;
using k8s;
using k8s.Models;
using TsCgnat.Kube;

namespace TsCgnat.Operator;

/// <summary>
/// Nodes as the operator needs them: name, uid, labels and resourceVersion, nothing else. A Node's status
/// (images, conditions, addresses) is most of its size; a cache of 5,000 of them whole would cost tens of
/// megabytes for fields the operator never reads (controller-runtime's metadata-only informer, by hand,
/// because the fake and real API servers alike send whole Nodes on a typed watch). The list is read in pages
/// (one consistent snapshot, as <c>limit</c>/<c>continue</c> guarantee) and trimmed page by page, so a relist
/// of thousands of Nodes never holds them all whole at once.
/// </summary>
public sealed class NodeLabels(IKubernetes client, int pageSize = 500) : IListWatch<V1Node>
{
    private readonly IListWatch<V1Node> nodes = ListWatch.Nodes(client);

    public async Task<ListResult<V1Node>> ListAsync(CancellationToken cancellationToken)
    {
        var items = new List<V1Node>();
        var resourceVersion = "";
        string? next = null;
        do
        {
            var page = await client.CoreV1.ListNodeAsync(continueParameter: next, limit: pageSize, cancellationToken: cancellationToken);
            items.AddRange(page.Items.Select(Trim));
            resourceVersion = page.Metadata?.ResourceVersion ?? resourceVersion;
            next = page.Metadata?.ContinueProperty;
        }
        while (!string.IsNullOrEmpty(next));

        return new ListResult<V1Node>(items, resourceVersion);
    }

    public async IAsyncEnumerable<(WatchEventType Type, V1Node Object)> WatchAsync(
        string resourceVersion, TimeSpan timeout, Action<Exception> onError, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        await foreach (var (type, node) in nodes.WatchAsync(resourceVersion, timeout, onError, cancellationToken).WithCancellation(cancellationToken))
        {
            yield return (type, Trim(node));
        }
    }

    /// <summary>The fields the operator reads; the rest is dropped before it reaches the cache.</summary>
    public static V1Node Trim(V1Node node)
    {
        ArgumentNullException.ThrowIfNull(node);
        var meta = node.Metadata;
        return new V1Node
        {
            Metadata = meta is null ? null : new V1ObjectMeta
            {
                Name = meta.Name,
                Uid = meta.Uid,
                ResourceVersion = meta.ResourceVersion,
                Labels = meta.Labels,
                DeletionTimestamp = meta.DeletionTimestamp,
            },
        };
    }

    /// <summary>The labels as one comparable string, so a change of anything else (a heartbeat) is seen as no change.</summary>
    public static string Fingerprint(V1Node? node) =>
        node?.Metadata?.Labels is { Count: > 0 } labels
            ? string.Join('\n', labels.OrderBy(l => l.Key, StringComparer.Ordinal).Select(l => $"{l.Key}={l.Value}"))
            : "";
}
