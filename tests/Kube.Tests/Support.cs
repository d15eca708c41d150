using System.Collections.Concurrent;
using System.Threading.Channels;
using k8s;
using k8s.Models;
using Microsoft.Extensions.Time.Testing;

namespace TsCgnat.Kube.Tests;

/// <summary>
/// A FakeTimeProvider that remembers every timer asked of it, so a test can wait until the code under test
/// sleeps (a backoff delay registered) before moving time: no guessing, no real sleeping.
/// </summary>
public sealed class RecordingTime : FakeTimeProvider
{
    private readonly Lock gate = new();
    private readonly List<TimeSpan> timers = [];

    public IReadOnlyList<TimeSpan> Timers
    {
        get
        {
            lock (gate)
            {
                return [.. timers];
            }
        }
    }

    public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
    {
        lock (gate)
        {
            timers.Add(dueTime);
        }

        return base.CreateTimer(callback, state, dueTime, period);
    }

    /// <summary>Waits until the code under test has asked for its <paramref name="n"/>-th backoff delay (1-based) and returns it.</summary>
    public async Task<TimeSpan> BackoffTimerAsync(int n)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (BackoffTimers.Count < n)
        {
            Assert.True(DateTime.UtcNow < deadline, $"backoff delay {n} was never asked for; delays so far: {string.Join(", ", BackoffTimers)}");
            await Task.Delay(5);
        }

        return BackoffTimers[n - 1];
    }

    /// <summary>Backoff delays are under a minute; watch deadlines are minutes long.</summary>
    public static bool IsBackoff(TimeSpan due) => due > TimeSpan.Zero && due < TimeSpan.FromMinutes(1);

    public IReadOnlyList<TimeSpan> BackoffTimers => [.. Timers.Where(IsBackoff)];
}

/// <summary>
/// An <see cref="IListWatch{T}"/> a test scripts: each list answers from <see cref="ListAnswers"/> (or the
/// current objects), each watch is a session the test feeds, ends, breaks, or fails with an ERROR event.
/// </summary>
public sealed class ScriptedListWatch : IListWatch<V1Node>
{
    private readonly ConcurrentQueue<Func<ListResult<V1Node>>> listAnswers = new();
    private readonly Channel<WatchSession> sessions = Channel.CreateUnbounded<WatchSession>();
    private int lists;

    public int Lists => Volatile.Read(ref lists);

    public ConcurrentQueue<string> WatchedFrom { get; } = new();

    /// <summary>What the next list calls return (or throw), in order; when empty, an empty list at "1".</summary>
    public void NextList(Func<ListResult<V1Node>> answer) => listAnswers.Enqueue(answer);

    public Task<ListResult<V1Node>> ListAsync(CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref lists);
        return Task.FromResult(listAnswers.TryDequeue(out var answer) ? answer() : new ListResult<V1Node>([], "1"));
    }

    public async IAsyncEnumerable<(WatchEventType Type, V1Node Object)> WatchAsync(
        string resourceVersion, TimeSpan timeout, Action<Exception> onError, [System.Runtime.CompilerServices.EnumeratorCancellation] CancellationToken cancellationToken)
    {
        WatchedFrom.Enqueue(resourceVersion);
        var session = new WatchSession(resourceVersion, onError);
        await sessions.Writer.WriteAsync(session, cancellationToken);
        await foreach (var item in session.Events.Reader.ReadAllAsync(cancellationToken))
        {
            yield return item;
        }
    }

    /// <summary>The next watch the cache opens.</summary>
    public async Task<WatchSession> NextWatchAsync()
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        return await sessions.Reader.ReadAsync(timeout.Token);
    }

    public static V1Node Node(string name, string resourceVersion, string? label = null) => new()
    {
        Metadata = new V1ObjectMeta
        {
            Name = name,
            ResourceVersion = resourceVersion,
            Labels = label is null ? null : new Dictionary<string, string> { ["role"] = label },
        },
    };
}

public sealed class WatchSession(string resourceVersion, Action<Exception> onError)
{
    public string ResourceVersion { get; } = resourceVersion;

    internal Channel<(WatchEventType, V1Node)> Events { get; } = Channel.CreateUnbounded<(WatchEventType, V1Node)>();

    public void Send(WatchEventType type, V1Node node) => Events.Writer.TryWrite((type, node));

    public void Bookmark(string resourceVersion) =>
        Send(WatchEventType.Bookmark, new V1Node { Metadata = new V1ObjectMeta { ResourceVersion = resourceVersion } });

    /// <summary>The server ends the stream (timeout, or a dropped connection read as end of stream).</summary>
    public void End() => Events.Writer.TryComplete();

    /// <summary>The connection breaks mid-stream.</summary>
    public void Break() => Fail(new IOException("connection reset by peer"));

    /// <summary>The watch request or stream fails with <paramref name="error"/>.</summary>
    public void Fail(Exception error) => Events.Writer.TryComplete(error);

    /// <summary>An ERROR event with a Status, as the API server sends for an expired resourceVersion, then the end.</summary>
    public void Expire()
    {
        onError(new KubernetesException(new V1Status { Code = 410, Reason = "Expired", Message = "too old resource version" }));
        End();
    }
}

internal static class Eventually
{
    /// <summary>Waits (generously) for a condition another thread brings about; fails if it never comes.</summary>
    public static async Task TrueAsync(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (!condition())
        {
            Assert.True(DateTime.UtcNow < deadline, $"never happened: {what}");
            await Task.Delay(10);
        }
    }
}
