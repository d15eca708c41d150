using k8s;
using k8s.Models;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace TsCgnat.Kube;

/// <summary>What a reconcile asks for next: nothing (done until something changes), or another look after a delay.</summary>
public sealed record ReconcileResult(TimeSpan? RequeueAfter = null)
{
    public static ReconcileResult Done { get; } = new();

    public static ReconcileResult RequeueIn(TimeSpan delay) => new(delay);
}

public sealed record ControllerOptions
{
    /// <summary>Keys reconciled at the same time; one key is never reconciled by two workers at once.</summary>
    public int Workers { get; init; } = 1;

    /// <summary>Retry of a key whose reconcile threw.</summary>
    public BackoffPolicy RetryBackoff { get; init; } = BackoffPolicy.Reconcile;
}

/// <summary>
/// controller-runtime's controller, small: caches say which keys changed, a <see cref="WorkQueue"/> coalesces
/// them, and one idempotent reconcile per key computes everything from the current state (it is never told
/// which event arrived). A reconcile that throws is logged and retried with backoff, never dropped.
/// </summary>
public sealed class Controller
{
    private readonly string name;
    private readonly Func<string, CancellationToken, Task<ReconcileResult>> reconcile;
    private readonly ControllerOptions options;
    private readonly TimeProvider time;
    private readonly ILogger logger;
    private readonly List<Source> sources = [];

    public Controller(
        string name,
        Func<string, CancellationToken, Task<ReconcileResult>> reconcile,
        ControllerOptions? options = null,
        TimeProvider? time = null,
        ILogger? logger = null)
    {
        this.name = name ?? throw new ArgumentNullException(nameof(name));
        this.reconcile = reconcile ?? throw new ArgumentNullException(nameof(reconcile));
        this.options = options ?? new ControllerOptions();
        ArgumentOutOfRangeException.ThrowIfLessThan(this.options.Workers, 1);
        this.time = time ?? TimeProvider.System;
        this.logger = logger ?? NullLogger.Instance;
    }

    /// <summary>
    /// Reconcile on changes in <paramref name="cache"/>: the changed object's own key, or the keys
    /// <paramref name="keysFor"/> maps it to (a Node change may concern every policy). Register before
    /// <see cref="RunAsync"/>.
    /// </summary>
    public Controller Watches<T>(ResourceCache<T> cache, Func<string, IEnumerable<string>>? keysFor = null)
        where T : class, IKubernetesObject<V1ObjectMeta>
    {
        ArgumentNullException.ThrowIfNull(cache);
        var map = keysFor ?? (key => [key]);
        sources.Add(new Source(
            typeof(T).Name,
            onChange => cache.Subscribe(key => Enqueue(onChange, map, key)),
            cache.WaitForSyncAsync,
            () => cache.Keys().SelectMany(map)));
        return this;
    }

    /// <summary>
    /// Waits for every watched cache to sync, reconciles every key they hold, then every key that changes,
    /// until <paramref name="cancellationToken"/> is cancelled (for instance on loss of leadership). Each run
    /// starts from a fresh queue, so a controller can run again after it stopped. The caches themselves run
    /// elsewhere; they outlive a run.
    /// </summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        using var queue = new WorkQueue(options.RetryBackoff, time);
        var subscriptions = sources.Select(s => s.Subscribe(queue.Add)).ToList();
        try
        {
            await Task.WhenAll(sources.Select(s => s.WaitForSync(cancellationToken)));
            logger.LogInformation("{Controller}: caches synced, starting {Workers} worker(s)", name, options.Workers);
            foreach (var key in sources.SelectMany(s => s.AllKeys()))
            {
                queue.Add(key);
            }

            using var stop = cancellationToken.Register(queue.ShutDown);
            await Task.WhenAll(Enumerable.Range(0, options.Workers).Select(_ => Task.Run(() => WorkAsync(queue, cancellationToken), CancellationToken.None)));
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            // Stopped before the caches synced.
        }
        finally
        {
            queue.ShutDown();
            subscriptions.ForEach(s => s.Dispose());
            logger.LogInformation("{Controller}: stopped", name);
        }
    }

    private async Task WorkAsync(WorkQueue queue, CancellationToken cancellationToken)
    {
        while (await queue.TakeAsync(CancellationToken.None) is { } key)
        {
            try
            {
                var result = await reconcile(key, cancellationToken);
                queue.Forget(key);
                if (result.RequeueAfter is { } delay)
                {
                    queue.AddAfter(key, delay);
                }
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                // Stopping: the next run (or the next leader) starts from a full resync anyway.
            }
            catch (Exception e)
            {
                queue.AddRateLimited(key);
                logger.LogError(e, "{Controller}: reconcile of {Key} failed ({Failures} in a row); retrying with backoff",
                    name, key, queue.Requeues(key));
            }
            finally
            {
                queue.Done(key);
            }
        }
    }

    private static void Enqueue(Action<string> add, Func<string, IEnumerable<string>> map, string key)
    {
        foreach (var mapped in map(key))
        {
            add(mapped);
        }
    }

    private sealed record Source(
        string Kind,
        Func<Action<string>, IDisposable> Subscribe,
        Func<CancellationToken, Task> WaitForSync,
        Func<IEnumerable<string>> AllKeys);
}
