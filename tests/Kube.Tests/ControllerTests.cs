using System.Collections.Concurrent;
using k8s;
using k8s.Models;
using static TsCgnat.Kube.Tests.ScriptedListWatch;

namespace TsCgnat.Kube.Tests;

public sealed class ControllerTests : IAsyncDisposable
{
    private static readonly ControllerOptions NoJitter = new()
    {
        RetryBackoff = new BackoffPolicy(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(8), Jitter: 0),
    };

    private readonly ScriptedListWatch source = new();
    private readonly RecordingTime time = new();
    private readonly CancellationTokenSource stop = new();
    private readonly ResourceCache<V1Node> nodes;
    private readonly List<Task> running = [];

    public ControllerTests()
    {
        nodes = new ResourceCache<V1Node>(source, time: time);
    }

    public async ValueTask DisposeAsync()
    {
        await stop.CancelAsync();
        await Task.WhenAll(running).WaitAsync(TimeSpan.FromSeconds(20));
        stop.Dispose();
    }

    private async Task<WatchSession> RunAsync(Controller controller)
    {
        running.Add(nodes.RunAsync(stop.Token));
        running.Add(controller.RunAsync(stop.Token));
        return await source.NextWatchAsync();
    }

    [Fact]
    public async Task Every_cached_key_is_reconciled_once_the_cache_has_synced()
    {
        source.NextList(() => new ListResult<V1Node>([Node("n1", "5"), Node("n2", "6")], "10"));
        var seen = new ConcurrentQueue<string>();
        var controller = new Controller("test", (key, _) => { seen.Enqueue(key); return Task.FromResult(ReconcileResult.Done); }, NoJitter, time)
            .Watches(nodes);

        await RunAsync(controller);

        await Eventually.TrueAsync(() => seen.Count >= 2, "both nodes reconciled");
        Assert.Equal(["n1", "n2"], seen.Order());
    }

    [Fact]
    public async Task A_change_is_reconciled_by_its_key()
    {
        var seen = new ConcurrentQueue<string>();
        var controller = new Controller("test", (key, _) => { seen.Enqueue(key); return Task.FromResult(ReconcileResult.Done); }, NoJitter, time)
            .Watches(nodes);
        var watch = await RunAsync(controller);

        watch.Send(WatchEventType.Added, Node("n7", "11"));

        await Eventually.TrueAsync(() => seen.Contains("n7"), "n7 reconciled");
    }

    [Fact]
    public async Task A_failing_reconcile_is_retried_with_growing_backoff_until_it_succeeds()
    {
        source.NextList(() => new ListResult<V1Node>([Node("n1", "5")], "10"));
        var attempts = 0;
        var controller = new Controller(
            "test",
            (_, _) => Interlocked.Increment(ref attempts) <= 3 ? throw new InvalidOperationException("API down") : Task.FromResult(ReconcileResult.Done),
            NoJitter,
            time).Watches(nodes);
        await RunAsync(controller);

        for (var n = 1; n <= 3; n++)
        {
            await Eventually.TrueAsync(() => Volatile.Read(ref attempts) == n, $"attempt {n}");
            time.Advance(await time.BackoffTimerAsync(n));
        }

        await Eventually.TrueAsync(() => Volatile.Read(ref attempts) == 4, "the fourth attempt");
        Assert.Equal([1, 2, 4], time.BackoffTimers.Select(t => t.TotalSeconds));
    }

    [Fact]
    public async Task RequeueAfter_looks_again_after_the_delay()
    {
        source.NextList(() => new ListResult<V1Node>([Node("n1", "5")], "10"));
        var attempts = 0;
        var controller = new Controller(
            "test",
            (_, _) => { Interlocked.Increment(ref attempts); return Task.FromResult(ReconcileResult.RequeueIn(TimeSpan.FromSeconds(30))); },
            NoJitter,
            time).Watches(nodes);
        await RunAsync(controller);
        await Eventually.TrueAsync(() => Volatile.Read(ref attempts) == 1, "first reconcile");

        await Eventually.TrueAsync(() => time.Timers.Contains(TimeSpan.FromSeconds(30)), "requeue delay asked for");
        time.Advance(TimeSpan.FromSeconds(30));

        await Eventually.TrueAsync(() => Volatile.Read(ref attempts) == 2, "second reconcile");
    }

    [Fact]
    public async Task Changes_of_a_watched_kind_map_to_the_keys_they_concern()
    {
        var seen = new ConcurrentQueue<string>();
        var controller = new Controller("test", (key, _) => { seen.Enqueue(key); return Task.FromResult(ReconcileResult.Done); }, NoJitter, time)
            .Watches(nodes, node => [$"policy-for-{node}", "every-policy"]);
        var watch = await RunAsync(controller);

        watch.Send(WatchEventType.Added, Node("n1", "11"));

        await Eventually.TrueAsync(() => seen.Contains("policy-for-n1") && seen.Contains("every-policy"), "mapped keys reconciled");
        Assert.DoesNotContain("n1", seen);
    }

    [Fact]
    public async Task One_key_is_never_reconciled_by_two_workers_at_once()
    {
        var inside = 0;
        var most = 0;
        var calls = 0;
        var release = new TaskCompletionSource();
        var controller = new Controller(
            "test",
            async (_, ct) =>
            {
                var now = Interlocked.Increment(ref inside);
                InterlockedMax(ref most, now);
                if (Interlocked.Increment(ref calls) == 1)
                {
                    await release.Task.WaitAsync(ct);
                }

                Interlocked.Decrement(ref inside);
                return ReconcileResult.Done;
            },
            NoJitter with { Workers = 4 },
            time).Watches(nodes);
        var watch = await RunAsync(controller);

        watch.Send(WatchEventType.Added, Node("n1", "11"));
        await Eventually.TrueAsync(() => Volatile.Read(ref calls) == 1, "first reconcile started");
        watch.Send(WatchEventType.Modified, Node("n1", "12"));
        watch.Send(WatchEventType.Modified, Node("n1", "13"));
        await Eventually.TrueAsync(() => nodes.ResourceVersion == "13", "both changes cached");
        release.SetResult();

        await Eventually.TrueAsync(() => Volatile.Read(ref calls) == 2, "one more reconcile for the changes made meanwhile");
        Assert.Equal(1, most);
    }

    [Fact]
    public async Task A_controller_runs_again_after_it_was_stopped()
    {
        source.NextList(() => new ListResult<V1Node>([Node("n1", "5")], "10"));
        var calls = 0;
        var controller = new Controller("test", (_, _) => { Interlocked.Increment(ref calls); return Task.FromResult(ReconcileResult.Done); }, NoJitter, time)
            .Watches(nodes);
        running.Add(nodes.RunAsync(stop.Token));
        using (var term = CancellationTokenSource.CreateLinkedTokenSource(stop.Token))
        {
            var first = controller.RunAsync(term.Token);
            await Eventually.TrueAsync(() => Volatile.Read(ref calls) == 1, "first run reconciled n1");
            await term.CancelAsync();
            await first.WaitAsync(TimeSpan.FromSeconds(20));
        }

        running.Add(controller.RunAsync(stop.Token));

        await Eventually.TrueAsync(() => Volatile.Read(ref calls) == 2, "second run reconciled n1 again");
    }

    private static void InterlockedMax(ref int target, int value)
    {
        int seen;
        while ((seen = Volatile.Read(ref target)) < value && Interlocked.CompareExchange(ref target, value, seen) != seen)
        {
        }
    }
}
