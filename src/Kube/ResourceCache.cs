using System.Collections.Immutable;
using k8s;
using k8s.Models;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace TsCgnat.Kube;

/// <summary>Timing of a <see cref="ResourceCache{T}"/>; the defaults are client-go's reflector's.</summary>
public sealed record ResourceCacheOptions
{
    /// <summary>Wait between failed lists or watches.</summary>
    public BackoffPolicy Backoff { get; init; } = BackoffPolicy.Watch;

    /// <summary>
    /// Each watch asks the server to end it after a random time between this and twice this, so that
    /// watches of many clients do not all restart at once (client-go: 5 to 10 minutes).
    /// </summary>
    public TimeSpan MinWatchTimeout { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// A watch that ends sooner than this without delivering anything counts as a failure and backs off,
    /// as client-go's "very short watch": a server that accepts and closes at once must not be hammered.
    /// </summary>
    public TimeSpan ShortWatch { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Beyond the server-side timeout, how long before the client gives up on a silent watch.</summary>
    public TimeSpan WatchGrace { get; init; } = TimeSpan.FromSeconds(30);
}

/// <summary>
/// An informer: a local copy of one kind, kept current by list, then watch from the list's resourceVersion.
/// A dropped or timed-out watch resumes from the last resourceVersion seen (bookmarks advance it), so nothing
/// is relisted and nothing is missed; only a 410 Gone (the server no longer has that history) relists. Every
/// change of an object calls the subscribers with its key; that only says "look again" (level-triggered).
/// </summary>
public sealed class ResourceCache<T>
    where T : class, IKubernetesObject<V1ObjectMeta>
{
    private readonly IListWatch<T> source;
    private readonly ResourceCacheOptions options;
    private readonly TimeProvider time;
    private readonly ILogger logger;
    private readonly Random random;
    private readonly TaskCompletionSource synced = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly Lock subscribersLock = new();
    private ImmutableDictionary<string, T> items = ImmutableDictionary<string, T>.Empty;
    private ImmutableArray<Action<string>> subscribers = [];
    private volatile string? resourceVersion;
    private int running;

    public ResourceCache(IListWatch<T> source, ResourceCacheOptions? options = null, TimeProvider? time = null, ILogger? logger = null, Random? random = null)
    {
        this.source = source ?? throw new ArgumentNullException(nameof(source));
        this.options = options ?? new ResourceCacheOptions();
        this.time = time ?? TimeProvider.System;
        this.logger = logger ?? NullLogger.Instance;
        this.random = random ?? Random.Shared;
    }

    /// <summary>True once the first list is in: <see cref="List"/> is then the cluster's state, not a partial one.</summary>
    public bool HasSynced => synced.Task.IsCompleted;

    /// <summary>The resourceVersion the next watch continues from (null before the first list and after a 410).</summary>
    public string? ResourceVersion => resourceVersion;

    public Task WaitForSyncAsync(CancellationToken cancellationToken) => synced.Task.WaitAsync(cancellationToken);

    public T? Get(string name, string? @namespace = null) => GetByKey(ObjectKey.For(name, @namespace));

    public T? GetByKey(string key) => Volatile.Read(ref items).GetValueOrDefault(key);

    /// <summary>A snapshot of every object; the cache keeps changing underneath, the list does not.</summary>
    public IReadOnlyList<T> List() => [.. Volatile.Read(ref items).Values];

    public IReadOnlyList<string> Keys() => [.. Volatile.Read(ref items).Keys];

    /// <summary>
    /// Calls <paramref name="onChange"/> with the key of every object added, changed or deleted (including
    /// those found at each list). Called on the cache's own loop: keep it short (add to a queue).
    /// </summary>
    public IDisposable Subscribe(Action<string> onChange)
    {
        ArgumentNullException.ThrowIfNull(onChange);
        lock (subscribersLock)
        {
            subscribers = subscribers.Add(onChange);
        }

        return new Subscription(() =>
        {
            lock (subscribersLock)
            {
                subscribers = subscribers.Remove(onChange);
            }
        });
    }

    /// <summary>Lists and watches until <paramref name="cancellationToken"/> is cancelled; then returns.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        if (Interlocked.Exchange(ref running, 1) == 1)
        {
            throw new InvalidOperationException($"the {typeof(T).Name} cache is already running");
        }

        var backoff = new Backoff(options.Backoff, random);
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                TimeSpan delay;
                var listed = resourceVersion is null;
                try
                {
                    if (listed)
                    {
                        await RelistAsync(cancellationToken);
                        backoff.Reset();
                    }

                    if (await WatchOnceAsync(listed, cancellationToken))
                    {
                        backoff.Reset();
                        continue;
                    }

                    delay = backoff.NextDelay();
                    logger.LogWarning("{Kind} watch closed at once without events; retrying in {Delay}", typeof(T).Name, delay);
                }
                catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
                {
                    break;
                }
                catch (Exception e) when (KubeErrors.IsGone(e))
                {
                    logger.LogInformation("{Kind} watch from resourceVersion {ResourceVersion} is too old (410 Gone); relisting", typeof(T).Name, resourceVersion);
                    resourceVersion = null;
                    if (!listed)
                    {
                        continue;
                    }

                    // Gone straight after our own list: the server is confused; do not relist in a tight loop.
                    delay = backoff.NextDelay();
                }
                catch (Exception e)
                {
                    delay = backoff.NextDelay();
                    logger.LogWarning("{Kind} {Step} failed ({Failures} in a row), retrying in {Delay}: {Error}",
                        typeof(T).Name, resourceVersion is null ? "list" : "watch", backoff.Failures, delay, e.Message);
                }

                await Task.Delay(delay, time, cancellationToken);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Stopping is the normal end of a cache.
        }
        finally
        {
            Volatile.Write(ref running, 0);
        }
    }

    private async Task RelistAsync(CancellationToken cancellationToken)
    {
        var list = await source.ListAsync(cancellationToken);
        var fresh = list.Items.ToImmutableDictionary(o => ObjectKey.Of(o));
        var old = Volatile.Read(ref items);
        Volatile.Write(ref items, fresh);
        resourceVersion = list.ResourceVersion;
        logger.LogDebug("{Kind} listed: {Count} objects at resourceVersion {ResourceVersion}", typeof(T).Name, fresh.Count, list.ResourceVersion);

        // What changed while we were not watching: new or different objects, and objects gone.
        foreach (var (key, obj) in fresh)
        {
            if (!old.TryGetValue(key, out var before) || before.Metadata?.ResourceVersion != obj.Metadata?.ResourceVersion)
            {
                Notify(key);
            }
        }

        foreach (var key in old.Keys.Where(k => !fresh.ContainsKey(k)))
        {
            Notify(key);
        }

        synced.TrySetResult();
    }

    /// <summary>
    /// One watch from <see cref="resourceVersion"/>; true if it was a healthy one: it delivered something, or
    /// lasted, or expired (410) a resourceVersion older than a list just made, which a relist cures at once.
    /// </summary>
    private async Task<bool> WatchOnceAsync(bool justListed, CancellationToken cancellationToken)
    {
        var timeout = options.MinWatchTimeout * (1 + random.NextDouble());
        using var deadline = new CancellationTokenSource(timeout + options.WatchGrace, time);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, deadline.Token);
        var started = time.GetTimestamp();
        var delivered = 0;
        var gone = false;
        Exception? watchError = null;

        void OnError(Exception e)
        {
            if (KubeErrors.IsGone(e))
            {
                gone = true;
            }
            else
            {
                watchError = e;
                logger.LogWarning("{Kind} watch reported an error: {Error}", typeof(T).Name, e.Message);
            }
        }

        try
        {
            await foreach (var (type, obj) in source.WatchAsync(resourceVersion!, timeout, OnError, linked.Token).WithCancellation(linked.Token))
            {
                delivered++;
                Apply(type, obj);
                if (gone)
                {
                    break;
                }
            }
        }
        catch (OperationCanceledException) when (deadline.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
        {
            logger.LogInformation("{Kind} watch silent past its timeout; resuming", typeof(T).Name);
        }
        catch (Exception e) when (!cancellationToken.IsCancellationRequested && !KubeErrors.IsGone(e) && (delivered > 0 || gone))
        {
            // A connection that worked and then broke (API server restart, load balancer idle cut): resume at
            // once from where it got to. One that never worked goes to the caller's backoff instead.
            logger.LogInformation("{Kind} watch broke after {Events} event(s), resuming from {ResourceVersion}: {Error}", typeof(T).Name, delivered, resourceVersion, e.Message);
        }

        if (gone)
        {
            logger.LogInformation("{Kind} watch from resourceVersion {ResourceVersion} expired (410 Gone); relisting", typeof(T).Name, resourceVersion);
            resourceVersion = null;
        }

        // A 410 straight after a list means the server cannot serve its own list's version: back off then,
        // or a confused server would be relisted in a tight loop.
        var healthy = delivered > 0 || time.GetElapsedTime(started) >= options.ShortWatch || (gone && !justListed);
        if (!healthy && watchError is not null)
        {
            throw watchError;
        }

        return healthy;
    }

    private void Apply(WatchEventType type, T obj)
    {
        var version = obj.Metadata?.ResourceVersion;
        switch (type)
        {
            case WatchEventType.Added or WatchEventType.Modified:
                {
                    var key = ObjectKey.Of(obj);
                    ImmutableInterlocked.Update(ref items, (d, o) => d.SetItem(ObjectKey.Of(o), o), obj);
                    resourceVersion = version ?? resourceVersion;
                    Notify(key);
                    break;
                }

            case WatchEventType.Deleted:
                {
                    var key = ObjectKey.Of(obj);
                    ImmutableInterlocked.Update(ref items, (d, k) => d.Remove(k), key);
                    resourceVersion = version ?? resourceVersion;
                    Notify(key);
                    break;
                }

            case WatchEventType.Bookmark:
                resourceVersion = version ?? resourceVersion;
                break;

            default:
                // ERROR events come through onError (KubernetesClient turns a Status object into an exception).
                break;
        }
    }

    private void Notify(string key)
    {
        foreach (var subscriber in subscribers)
        {
            try
            {
                subscriber(key);
            }
            catch (Exception e)
            {
                logger.LogError(e, "{Kind} change subscriber failed for {Key}", typeof(T).Name, key);
            }
        }
    }

    private sealed class Subscription(Action unsubscribe) : IDisposable
    {
        private Action? unsubscribe = unsubscribe;

        public void Dispose() => Interlocked.Exchange(ref unsubscribe, null)?.Invoke();
    }
}

/// <summary>The key of an object in caches and queues: <c>namespace/name</c>, or <c>name</c> for cluster-scoped kinds (client-go's convention).</summary>
public static class ObjectKey
{
    public static string Of(IKubernetesObject<V1ObjectMeta> obj)
    {
        ArgumentNullException.ThrowIfNull(obj);
        return For(obj.Metadata?.Name ?? "", obj.Metadata?.NamespaceProperty);
    }

    public static string For(string name, string? @namespace = null) =>
        string.IsNullOrEmpty(@namespace) ? name : $"{@namespace}/{name}";
}
