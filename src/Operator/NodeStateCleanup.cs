using System.Net;
using k8s;
using k8s.Autorest;
using k8s.Models;
using Microsoft.Extensions.Logging;
using TsCgnat.Api;
using TsCgnat.Kube;

namespace TsCgnat.Operator;

/// <summary>
/// Deletes the CgnatNodeState of a Node that is gone. The owner reference to the Node normally has the
/// garbage collector do it; a state written without one (an older agent, a restore from backup) would
/// otherwise stay forever and keep a deleted policy waiting for a node that will never answer.
/// </summary>
public sealed class NodeStateCleanup(
    IKubernetes client, ResourceCache<CgnatNodeState> states, ResourceCache<V1Node> nodes, ILogger logger)
{
    private long deleted;

    /// <summary>States deleted so far.</summary>
    public long Deleted => Interlocked.Read(ref deleted);

    /// <param name="key">A node name (a state and its Node share it).</param>
    public async Task<ReconcileResult> ReconcileAsync(string key, CancellationToken cancellationToken)
    {
        if (states.GetByKey(key) is null || nodes.GetByKey(key) is not null)
        {
            return ReconcileResult.Done;
        }

        // The cache may not have seen a Node created a moment ago; ask the server before deleting anything.
        try
        {
            await client.CoreV1.ReadNodeAsync(key, cancellationToken: cancellationToken);
            return ReconcileResult.Done;
        }
        catch (HttpOperationException e) when (e.Response?.StatusCode == HttpStatusCode.NotFound)
        {
        }

        var resource = ApiResource.Of<CgnatNodeState>();
        try
        {
            await client.CustomObjects.DeleteClusterCustomObjectAsync(resource.Group, resource.Version, resource.Plural, key, cancellationToken: cancellationToken);
            Interlocked.Increment(ref deleted);
            logger.LogInformation("node state {Node}: its Node is gone; deleted it", key);
        }
        catch (HttpOperationException e) when (e.Response?.StatusCode == HttpStatusCode.NotFound)
        {
            // The garbage collector was quicker.
        }

        return ReconcileResult.Done;
    }
}
