using System.Globalization;
using System.Text.Json.Nodes;
using k8s;
using k8s.Models;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace TsCgnat.Kube;

/// <summary>The two event types core/v1 knows.</summary>
public static class EventTypes
{
    public const string Normal = "Normal";
    public const string Warning = "Warning";
}

public sealed record EventRecorderOptions
{
    /// <summary>The same event again within this time bumps the existing Event's count (client-go: 10 minutes).</summary>
    public TimeSpan DeduplicationWindow { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>Distinct events remembered for de-duplication; the least recently seen go first.</summary>
    public int Capacity { get; init; } = 4096;
}

/// <summary>
/// What makes two events "the same" for de-duplication, as client-go's getEventKey: the involved object
/// (kind, namespace, name, uid), type, reason and message.
/// </summary>
public sealed record EventKey(string ApiVersion, string Kind, string? Namespace, string Name, string? Uid, string Type, string Reason, string Message)
{
    public static EventKey For(IKubernetesObject<V1ObjectMeta> involved, string type, string reason, string message)
    {
        ArgumentNullException.ThrowIfNull(involved);
        var (apiVersion, kind) = KindOf(involved);
        return new EventKey(apiVersion, kind, involved.Metadata?.NamespaceProperty, involved.Metadata?.Name ?? "", involved.Metadata?.Uid, type, reason, message);
    }

    /// <summary>
    /// Objects read from a list carry no apiVersion and kind (the API server leaves them out of list items
    /// for built-in kinds); the [KubernetesEntity] of the C# type says them then.
    /// </summary>
    internal static (string ApiVersion, string Kind) KindOf(IKubernetesObject<V1ObjectMeta> involved)
    {
        if (!string.IsNullOrEmpty(involved.ApiVersion) && !string.IsNullOrEmpty(involved.Kind))
        {
            return (involved.ApiVersion, involved.Kind);
        }

        var resource = ApiResource.Of(involved.GetType());
        return (resource.ApiVersion, resource.Kind);
    }
}

/// <summary>An Event this recorder wrote, as far as de-duplication needs to know it.</summary>
public sealed record RecordedEvent(string Namespace, string Name, int Count, DateTimeOffset FirstTimestamp, DateTimeOffset LastTimestamp);

/// <summary>
/// Which events were written recently. Pure bookkeeping, so de-duplication is tested without an API server.
/// </summary>
public sealed class EventHistory(TimeSpan window, int capacity)
{
    private readonly Dictionary<EventKey, RecordedEvent> seen = [];

    public int Count => seen.Count;

    /// <summary>The Event to bump for <paramref name="key"/>, if one was written less than the window ago.</summary>
    public RecordedEvent? Recent(EventKey key, DateTimeOffset now) =>
        seen.TryGetValue(key, out var recorded) && now - recorded.LastTimestamp < window ? recorded : null;

    public void Remember(EventKey key, RecordedEvent recorded, DateTimeOffset now)
    {
        seen[key] = recorded;
        if (seen.Count <= capacity)
        {
            return;
        }

        foreach (var stale in seen.Where(e => now - e.Value.LastTimestamp >= window).Select(e => e.Key).ToList())
        {
            seen.Remove(stale);
        }

        while (seen.Count > capacity)
        {
            seen.Remove(seen.MinBy(e => e.Value.LastTimestamp).Key);
        }
    }

    public void Forget(EventKey key) => seen.Remove(key);
}

/// <summary>
/// Writes core/v1 Events about our objects, de-duplicated as kubectl users expect: the same event again within
/// the window patches <c>count</c> and <c>lastTimestamp</c> of the Event already written instead of adding one.
/// Events are best effort: a failed write is logged, never thrown, so reporting never breaks a reconcile.
/// </summary>
public sealed class EventRecorder : IDisposable
{
    /// <summary>Cluster-scoped objects get their Events here, as Kubernetes does for Nodes.</summary>
    public const string ClusterScopedNamespace = "default";

    private readonly IKubernetes client;
    private readonly string component;
    private readonly string host;
    private readonly TimeProvider time;
    private readonly ILogger logger;
    private readonly EventHistory history;
    private readonly SemaphoreSlim gate = new(1, 1);
    private long sequence;

    public EventRecorder(IKubernetes client, string component, string? host = null, EventRecorderOptions? options = null, TimeProvider? time = null, ILogger? logger = null)
    {
        this.client = client ?? throw new ArgumentNullException(nameof(client));
        this.component = component ?? throw new ArgumentNullException(nameof(component));
        this.host = host ?? Environment.MachineName;
        options ??= new EventRecorderOptions();
        this.time = time ?? TimeProvider.System;
        this.logger = logger ?? NullLogger.Instance;
        history = new EventHistory(options.DeduplicationWindow, options.Capacity);
    }

    public Task NormalAsync(IKubernetesObject<V1ObjectMeta> involved, string reason, string message, CancellationToken cancellationToken) =>
        RecordAsync(involved, EventTypes.Normal, reason, message, cancellationToken);

    public Task WarningAsync(IKubernetesObject<V1ObjectMeta> involved, string reason, string message, CancellationToken cancellationToken) =>
        RecordAsync(involved, EventTypes.Warning, reason, message, cancellationToken);

    public async Task RecordAsync(IKubernetesObject<V1ObjectMeta> involved, string type, string reason, string message, CancellationToken cancellationToken)
    {
        var key = EventKey.For(involved, type, reason, message);
        await gate.WaitAsync(cancellationToken);
        try
        {
            var now = time.GetUtcNow();
            if (history.Recent(key, now) is { } recent && await TryBumpAsync(key, recent, now, cancellationToken))
            {
                return;
            }

            await CreateAsync(involved, key, now, cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            throw;
        }
        catch (Exception e)
        {
            logger.LogWarning("could not record event {Reason} on {Kind} {Name}: {Error}", reason, key.Kind, key.Name, e.Message);
        }
        finally
        {
            gate.Release();
        }
    }

    private async Task<bool> TryBumpAsync(EventKey key, RecordedEvent recent, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var count = recent.Count + 1;
        var patch = new JsonObject
        {
            ["count"] = count,
            ["lastTimestamp"] = Rfc3339(now),
        };
        try
        {
            await client.CoreV1.PatchNamespacedEventAsync(
                new V1Patch(patch.ToJsonString(), V1Patch.PatchType.MergePatch), recent.Name, recent.Namespace, cancellationToken: cancellationToken);
        }
        catch (Exception e) when (KubeErrors.IsNotFound(e))
        {
            // The Event expired (the API server keeps Events for an hour) or was deleted: write a new one.
            history.Forget(key);
            return false;
        }

        history.Remember(key, recent with { Count = count, LastTimestamp = now }, now);
        return true;
    }

    private async Task CreateAsync(IKubernetesObject<V1ObjectMeta> involved, EventKey key, DateTimeOffset now, CancellationToken cancellationToken)
    {
        var @namespace = string.IsNullOrEmpty(key.Namespace) ? ClusterScopedNamespace : key.Namespace;
        // client-go names Events <object>.<unix nanos in hex>; the sequence keeps two in one tick apart.
        var nanos = (now.ToUnixTimeMilliseconds() * 1_000_000) + Interlocked.Increment(ref sequence);
        var name = $"{key.Name}.{nanos:x}";
        var timestamp = now.UtcDateTime;
        var created = await client.CoreV1.CreateNamespacedEventAsync(
            new Corev1Event
            {
                Metadata = new V1ObjectMeta { Name = name, NamespaceProperty = @namespace },
                InvolvedObject = new V1ObjectReference
                {
                    ApiVersion = key.ApiVersion,
                    Kind = key.Kind,
                    Name = key.Name,
                    NamespaceProperty = key.Namespace,
                    Uid = key.Uid,
                    ResourceVersion = involved.Metadata?.ResourceVersion,
                },
                Type = key.Type,
                Reason = key.Reason,
                Message = key.Message,
                Count = 1,
                FirstTimestamp = timestamp,
                LastTimestamp = timestamp,
                Source = new V1EventSource { Component = component, Host = host },
                ReportingComponent = component,
                ReportingInstance = host,
            },
            @namespace,
            cancellationToken: cancellationToken);
        history.Remember(key, new RecordedEvent(@namespace, created.Metadata?.Name ?? name, 1, now, now), now);
    }

    public void Dispose() => gate.Dispose();

    private static string Rfc3339(DateTimeOffset t) => t.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);
}
