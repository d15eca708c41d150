using System.Diagnostics.CodeAnalysis;

namespace TsCgnat.Kube;

/// <summary>
/// client-go's rate-limited work queue, for string keys. A key waits in the queue at most once however often
/// it is added; a key being processed is never handed out again until <see cref="Done"/>, and if it was added
/// meanwhile it is handed out once more afterwards, so the last change is always looked at. Failures back off
/// per key (<see cref="AddRateLimited"/>) until <see cref="Forget"/>.
/// </summary>
[SuppressMessage("Naming", "CA1711", Justification = "client-go's name for it, and it is a queue")]
public sealed class WorkQueue : IDisposable
{
    private readonly Lock gate = new();
    private readonly Queue<string> ready = new();
    private readonly HashSet<string> dirty = [];
    private readonly HashSet<string> processing = [];
    private readonly Queue<TaskCompletionSource<string?>> takers = new();
    private readonly Dictionary<string, int> failures = [];
    private readonly Dictionary<string, (DateTimeOffset Due, ITimer Timer)> delayed = [];
    private readonly BackoffPolicy backoff;
    private readonly TimeProvider time;
    private readonly Random random;
    private bool shuttingDown;

    public WorkQueue(BackoffPolicy? backoff = null, TimeProvider? time = null, Random? random = null)
    {
        this.backoff = backoff ?? BackoffPolicy.Reconcile;
        this.time = time ?? TimeProvider.System;
        this.random = random ?? Random.Shared;
    }

    /// <summary>Keys waiting to be taken (not those being processed or waiting for a delay).</summary>
    public int Count
    {
        get
        {
            lock (gate)
            {
                return ready.Count;
            }
        }
    }

    public bool IsShuttingDown
    {
        get
        {
            lock (gate)
            {
                return shuttingDown;
            }
        }
    }

    public void Add(string key)
    {
        ArgumentNullException.ThrowIfNull(key);
        lock (gate)
        {
            if (shuttingDown || !dirty.Add(key) || processing.Contains(key))
            {
                return;
            }

            HandOut(key);
        }
    }

    /// <summary>
    /// Adds <paramref name="key"/> once <paramref name="delay"/> has passed. Of several pending delays for one
    /// key the earliest wins, so a short retry is not pushed back by a long periodic requeue.
    /// </summary>
    public void AddAfter(string key, TimeSpan delay)
    {
        ArgumentNullException.ThrowIfNull(key);
        if (delay <= TimeSpan.Zero)
        {
            Add(key);
            return;
        }

        lock (gate)
        {
            if (shuttingDown)
            {
                return;
            }

            var due = time.GetUtcNow() + delay;
            if (delayed.TryGetValue(key, out var pending))
            {
                if (pending.Due <= due)
                {
                    return;
                }

                pending.Timer.Dispose();
            }

            var timer = time.CreateTimer(_ => Fire(key, due), null, delay, Timeout.InfiniteTimeSpan);
            delayed[key] = (due, timer);
        }
    }

    /// <summary>Adds <paramref name="key"/> after its backoff: one more failure of it, a longer wait.</summary>
    public void AddRateLimited(string key)
    {
        TimeSpan delay;
        lock (gate)
        {
            var count = failures.GetValueOrDefault(key) + 1;
            failures[key] = count;
            delay = backoff.DelayAfter(count, random.NextDouble());
        }

        AddAfter(key, delay);
    }

    /// <summary>After a success: the key's next failure backs off from the start again.</summary>
    public void Forget(string key)
    {
        lock (gate)
        {
            failures.Remove(key);
        }
    }

    /// <summary>Failures of <paramref name="key"/> since its last <see cref="Forget"/>.</summary>
    public int Requeues(string key)
    {
        lock (gate)
        {
            return failures.GetValueOrDefault(key);
        }
    }

    /// <summary>The next key to process, waiting for one; null once the queue is shut down.</summary>
    public Task<string?> TakeAsync(CancellationToken cancellationToken)
    {
        TaskCompletionSource<string?> taker;
        lock (gate)
        {
            if (ready.TryDequeue(out var key))
            {
                StartProcessing(key);
                return Task.FromResult<string?>(key);
            }

            if (shuttingDown)
            {
                return Task.FromResult<string?>(null);
            }

            taker = new TaskCompletionSource<string?>(TaskCreationOptions.RunContinuationsAsynchronously);
            takers.Enqueue(taker);
        }

        // A cancelled taker stays in the queue; HandOut skips it, because TrySetResult fails on it.
        return taker.Task.WaitAsync(cancellationToken).ContinueWith(
            t =>
            {
                if (t.IsCanceled && !taker.TrySetCanceled(cancellationToken) && taker.Task.IsCompletedSuccessfully && taker.Task.Result is { } won)
                {
                    // The key was handed to us just as we were cancelled: give it back.
                    Done(won);
                    Add(won);
                }

                return t;
            },
            CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default).Unwrap();
    }

    /// <summary>Processing of <paramref name="key"/> ended; if it was added meanwhile it goes back in the queue.</summary>
    public void Done(string key)
    {
        lock (gate)
        {
            processing.Remove(key);
            if (dirty.Contains(key) && !shuttingDown)
            {
                HandOut(key);
            }
        }
    }

    /// <summary>Stops handing out keys: waiting and later takers get null; pending delays are dropped.</summary>
    public void ShutDown()
    {
        lock (gate)
        {
            shuttingDown = true;
            foreach (var (_, pending) in delayed)
            {
                pending.Timer.Dispose();
            }

            delayed.Clear();
            ready.Clear();
            while (takers.TryDequeue(out var taker))
            {
                taker.TrySetResult(null);
            }
        }
    }

    public void Dispose() => ShutDown();

    private void Fire(string key, DateTimeOffset due)
    {
        lock (gate)
        {
            if (delayed.TryGetValue(key, out var pending) && pending.Due == due)
            {
                pending.Timer.Dispose();
                delayed.Remove(key);
            }
        }

        Add(key);
    }

    // Under the lock: give the key to a waiting taker, or queue it.
    private void HandOut(string key)
    {
        while (takers.TryDequeue(out var taker))
        {
            if (taker.TrySetResult(key))
            {
                StartProcessing(key);
                return;
            }
        }

        ready.Enqueue(key);
    }

    private void StartProcessing(string key)
    {
        dirty.Remove(key);
        processing.Add(key);
    }
}
