using System.Text.Json.Nodes;
using k8s;
using k8s.Models;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace TsCgnat.Kube;

/// <summary>The object after a write, whether anything was sent, and how many 409s it took.</summary>
public sealed record WriteOutcome<T>(T Current, bool Written, int Conflicts);

/// <summary>
/// Writes the <c>/status</c> subresource of a custom object only when the desired status differs from the
/// object's (compared as JSON, so property order and C# identity do not count): an idle resync of thousands of
/// objects then sends nothing. The write is a merge patch computed from the two statuses (fields that went away
/// are sent as null) and carries the resourceVersion it was computed from, so a concurrent change is a 409, not
/// a lost update; on 409 the object is read again and the comparison repeated.
/// </summary>
public sealed class StatusWriter(IKubernetes client, int maxConflicts = 5, ILogger? logger = null)
{
    private readonly ILogger logger = logger ?? NullLogger.Instance;

    /// <summary>True when the two statuses have the same JSON form.</summary>
    public static bool SameStatus(object? current, object? desired) => JsonMergePatch.SameJson(current, desired);

    /// <summary>
    /// The merge patch that turns the status of <paramref name="current"/> into <paramref name="desired"/>,
    /// guarded by <paramref name="current"/>'s resourceVersion; null when there is nothing to write.
    /// </summary>
    public static JsonObject? StatusPatch<TStatus>(IKubernetesObject<V1ObjectMeta> current, TStatus currentStatus, TStatus desired)
    {
        ArgumentNullException.ThrowIfNull(current);
        var before = JsonMergePatch.ToJson(currentStatus);
        var after = JsonMergePatch.ToJson(desired);
        if (JsonNode.DeepEquals(before, after))
        {
            return null;
        }

        return new JsonObject
        {
            ["metadata"] = new JsonObject { ["resourceVersion"] = current.Metadata?.ResourceVersion },
            ["status"] = JsonMergePatch.Create(before, after),
        };
    }

    /// <summary>
    /// Makes the status of <paramref name="current"/> (the object as last read, typically from a cache) equal
    /// <paramref name="desired"/>, writing only if it differs. Throws the 409 after too many conflicts in a row,
    /// and any other API error, for the caller's retry.
    /// </summary>
    public Task<WriteOutcome<T>> WriteAsync<T, TStatus>(T current, TStatus desired, CancellationToken cancellationToken)
        where T : class, IKubernetesObject<V1ObjectMeta>, IStatus<TStatus?>
        where TStatus : class
    {
        ArgumentNullException.ThrowIfNull(current);
        var objects = new CustomObjects<T>(client);
        var name = current.Metadata.Name;
        var @namespace = current.Metadata.NamespaceProperty;
        return ConflictRetry.RunAsync(
            current,
            maxConflicts,
            async (obj, conflicts, ct) =>
            {
                if (StatusPatch(obj, obj.Status, desired) is not { } patch)
                {
                    return new WriteOutcome<T>(obj, false, conflicts);
                }

                var written = await objects.PatchStatusAsync(name, @namespace, patch, ct);
                logger.LogDebug("status of {Kind} {Name} written after {Conflicts} conflict(s)", typeof(T).Name, name, conflicts);
                return new WriteOutcome<T>(written, true, conflicts);
            },
            ct => objects.GetAsync(name, @namespace, ct),
            cancellationToken);
    }
}

/// <summary>
/// Adds and removes a finalizer of a custom object with a merge patch guarded by resourceVersion (the list is
/// replaced whole, so a stale list would drop someone else's finalizer); 409 means read again and retry.
/// </summary>
public sealed class Finalizers(IKubernetes client, int maxConflicts = 5)
{
    /// <summary>
    /// Adds <paramref name="finalizer"/> unless the object has it; no request when it does, nor when the object
    /// is being deleted (the API server refuses new finalizers then).
    /// </summary>
    public Task<WriteOutcome<T>> AddAsync<T>(T obj, string finalizer, CancellationToken cancellationToken)
        where T : class, IKubernetesObject<V1ObjectMeta> =>
        ChangeAsync(obj, finalizer, add: true, cancellationToken);

    /// <summary>
    /// Removes <paramref name="finalizer"/> if the object has it. Removing the last finalizer of an object being
    /// deleted lets it go; if it is already gone, the outcome holds the object as it was last seen.
    /// </summary>
    public Task<WriteOutcome<T>> RemoveAsync<T>(T obj, string finalizer, CancellationToken cancellationToken)
        where T : class, IKubernetesObject<V1ObjectMeta> =>
        ChangeAsync(obj, finalizer, add: false, cancellationToken);

    public static bool Has(IKubernetesObject<V1ObjectMeta> obj, string finalizer) =>
        obj?.Metadata?.Finalizers?.Contains(finalizer) ?? false;

    private async Task<WriteOutcome<T>> ChangeAsync<T>(T obj, string finalizer, bool add, CancellationToken cancellationToken)
        where T : class, IKubernetesObject<V1ObjectMeta>
    {
        ArgumentNullException.ThrowIfNull(obj);
        ArgumentException.ThrowIfNullOrEmpty(finalizer);
        var objects = new CustomObjects<T>(client);
        var name = obj.Metadata.Name;
        var @namespace = obj.Metadata.NamespaceProperty;
        try
        {
            return await ConflictRetry.RunAsync(
                obj,
                maxConflicts,
                async (current, conflicts, ct) =>
                {
                    var finalizers = current.Metadata.Finalizers ?? [];
                    if (add == finalizers.Contains(finalizer) || (add && current.Metadata.DeletionTimestamp is not null))
                    {
                        return new WriteOutcome<T>(current, false, conflicts);
                    }

                    var changed = add ? [.. finalizers, finalizer] : finalizers.Where(f => f != finalizer).ToList();
                    var patch = new JsonObject
                    {
                        ["metadata"] = new JsonObject
                        {
                            ["resourceVersion"] = current.Metadata.ResourceVersion,
                            ["finalizers"] = new JsonArray([.. changed.Select(f => (JsonNode)JsonValue.Create(f))]),
                        },
                    };
                    return new WriteOutcome<T>(await objects.PatchAsync(name, @namespace, patch, ct), true, conflicts);
                },
                ct => objects.GetAsync(name, @namespace, ct),
                cancellationToken);
        }
        catch (Exception e) when (!add && KubeErrors.IsNotFound(e))
        {
            return new WriteOutcome<T>(obj, false, 0);
        }
    }
}
