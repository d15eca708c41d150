using System.Collections.Concurrent;
using System.Net;
using k8s;
using k8s.Autorest;
using k8s.Models;
using static TsCgnat.Kube.Tests.ScriptedListWatch;

namespace TsCgnat.Kube.Tests;

/// <summary>The informer against a scripted list-watch and fake time: every reconnect path, no API server.</summary>
public sealed class ResourceCacheTests : IAsyncDisposable
{
    private static readonly ResourceCacheOptions Options = new()
    {
        Backoff = new BackoffPolicy(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(8), Jitter: 0),
    };

    private readonly ScriptedListWatch source = new();
    private readonly RecordingTime time = new();
    private readonly CancellationTokenSource stop = new();
    private readonly ConcurrentQueue<string> changed = new();
    private readonly ResourceCache<V1Node> cache;
    private Task? running;

    public ResourceCacheTests()
    {
        cache = new ResourceCache<V1Node>(source, Options, time);
        cache.Subscribe(changed.Enqueue);
    }

    public async ValueTask DisposeAsync()
    {
        await stop.CancelAsync();
        if (running is not null)
        {
            await running.WaitAsync(TimeSpan.FromSeconds(20));
        }

        stop.Dispose();
    }

    private async Task<WatchSession> StartAsync()
    {
        running = cache.RunAsync(stop.Token);
        var session = await source.NextWatchAsync();
        Assert.True(cache.HasSynced);
        return session;
    }

    private List<string> Drain()
    {
        var keys = new List<string>();
        while (changed.TryDequeue(out var key))
        {
            keys.Add(key);
        }

        return keys;
    }

    [Fact]
    public async Task Lists_then_watches_from_the_lists_resourceVersion()
    {
        source.NextList(() => new ListResult<V1Node>([Node("n1", "5"), Node("n2", "6")], "10"));

        var watch = await StartAsync();

        Assert.Equal("10", watch.ResourceVersion);
        Assert.Equal(["n1", "n2"], cache.List().Select(n => n.Metadata.Name).Order());
        Assert.Equal("5", cache.Get("n1")?.Metadata.ResourceVersion);
        Assert.Null(cache.Get("n3"));
        Assert.Equal(["n1", "n2"], Drain().Order());
    }

    [Fact]
    public async Task Not_synced_before_the_first_list()
    {
        Assert.False(cache.HasSynced);
        Assert.Empty(cache.List());
        using var shortWait = new CancellationTokenSource(TimeSpan.FromMilliseconds(50));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => cache.WaitForSyncAsync(shortWait.Token));
    }

    [Fact]
    public async Task Watch_events_update_the_cache_and_notify_each_key()
    {
        source.NextList(() => new ListResult<V1Node>([Node("n1", "5"), Node("n2", "6")], "10"));
        var watch = await StartAsync();
        Drain();

        watch.Send(WatchEventType.Added, Node("n3", "11"));
        watch.Send(WatchEventType.Modified, Node("n1", "12", label: "router"));
        watch.Send(WatchEventType.Deleted, Node("n2", "13"));
        await Eventually.TrueAsync(() => cache.ResourceVersion == "13", "the three events applied");

        Assert.Equal(["n1", "n3"], cache.List().Select(n => n.Metadata.Name).Order());
        Assert.Equal("router", cache.Get("n1")?.Metadata.Labels["role"]);
        Assert.Equal(["n3", "n1", "n2"], Drain());
    }

    [Fact]
    public async Task A_watch_ended_by_the_server_resumes_from_the_last_bookmark_without_relisting()
    {
        var watch = await StartAsync();

        watch.Bookmark("42");
        watch.End();
        var resumed = await source.NextWatchAsync();

        Assert.Equal("42", resumed.ResourceVersion);
        Assert.Equal(1, source.Lists);
        Assert.Empty(time.BackoffTimers);
    }

    [Fact]
    public async Task A_broken_connection_resumes_from_the_last_event_without_relisting()
    {
        source.NextList(() => new ListResult<V1Node>([Node("n1", "5")], "10"));
        var watch = await StartAsync();

        watch.Send(WatchEventType.Modified, Node("n1", "15"));
        watch.Break();
        var resumed = await source.NextWatchAsync();

        Assert.Equal("15", resumed.ResourceVersion);
        Assert.Equal(1, source.Lists);
        Assert.Empty(time.BackoffTimers);
        Assert.Equal("15", cache.Get("n1")?.Metadata.ResourceVersion);
    }

    [Fact]
    public async Task An_expired_resourceVersion_relists_and_reports_what_changed_and_went_meanwhile()
    {
        source.NextList(() => new ListResult<V1Node>([Node("n1", "5"), Node("n2", "6"), Node("n3", "7")], "10"));
        source.NextList(() => new ListResult<V1Node>([Node("n1", "20"), Node("n3", "7")], "30"));
        var watch = await StartAsync();
        watch.Bookmark("11");
        await Eventually.TrueAsync(() => cache.ResourceVersion == "11", "bookmark applied");
        Drain();

        watch.Expire();
        var afterRelist = await source.NextWatchAsync();

        Assert.Equal(2, source.Lists);
        Assert.Equal("30", afterRelist.ResourceVersion);
        Assert.Null(cache.Get("n2"));
        Assert.Equal("20", cache.Get("n1")?.Metadata.ResourceVersion);
        Assert.Equal(["n1", "n2"], Drain().Order());
        Assert.Empty(time.BackoffTimers);
    }

    [Fact]
    public async Task Http_410_on_a_resumed_watch_request_relists_at_once()
    {
        var watch = await StartAsync();
        watch.Bookmark("11");
        watch.End();
        var resumed = await source.NextWatchAsync();

        resumed.Fail(HttpError(HttpStatusCode.Gone));
        await source.NextWatchAsync();

        Assert.Equal(2, source.Lists);
        Assert.Empty(time.BackoffTimers);
    }

    [Fact]
    public async Task Http_410_straight_after_a_list_backs_off()
    {
        var watch = await StartAsync();

        watch.Fail(HttpError(HttpStatusCode.Gone));

        Assert.Equal(TimeSpan.FromSeconds(1), await time.BackoffTimerAsync(1));
    }

    [Fact]
    public async Task A_watch_request_refused_backs_off_and_resumes_without_relisting()
    {
        var watch = await StartAsync();

        watch.Fail(new HttpRequestException("Connection refused"));
        time.Advance(await time.BackoffTimerAsync(1));
        var resumed = await source.NextWatchAsync();

        Assert.Equal("1", resumed.ResourceVersion);
        Assert.Equal(1, source.Lists);
    }

    [Fact]
    public async Task Failed_lists_back_off_exponentially_up_to_the_cap()
    {
        for (var i = 0; i < 5; i++)
        {
            source.NextList(() => throw new HttpRequestException("Connection refused"));
        }

        running = cache.RunAsync(stop.Token);
        for (var n = 1; n <= 5; n++)
        {
            await Eventually.TrueAsync(() => source.Lists == n, $"list attempt {n}");
            time.Advance(await time.BackoffTimerAsync(n));
        }

        await source.NextWatchAsync();
        Assert.Equal([1, 2, 4, 8, 8], time.BackoffTimers.Select(t => t.TotalSeconds));
        Assert.Equal(6, source.Lists);
        Assert.True(cache.HasSynced);
    }

    [Fact]
    public async Task A_successful_list_resets_the_backoff()
    {
        source.NextList(() => throw new HttpRequestException("Connection refused"));
        source.NextList(() => throw new HttpRequestException("Connection refused"));
        running = cache.RunAsync(stop.Token);
        time.Advance(await time.BackoffTimerAsync(1));
        time.Advance(await time.BackoffTimerAsync(2));
        var watch = await source.NextWatchAsync();

        watch.Break();

        Assert.Equal(TimeSpan.FromSeconds(1), await time.BackoffTimerAsync(3));
    }

    [Fact]
    public async Task A_watch_that_closes_at_once_without_events_backs_off_instead_of_spinning()
    {
        var watch = await StartAsync();

        for (var n = 1; n <= 3; n++)
        {
            watch.End();
            time.Advance(await time.BackoffTimerAsync(n));
            watch = await source.NextWatchAsync();
        }

        Assert.Equal([1, 2, 4], time.BackoffTimers.Select(t => t.TotalSeconds));
        Assert.Equal(1, source.Lists);
        Assert.Equal(["1", "1", "1", "1"], source.WatchedFrom);
    }

    [Fact]
    public async Task A_410_straight_after_a_list_backs_off_before_relisting()
    {
        var watch = await StartAsync();
        watch.Bookmark("11");
        watch.Expire();
        watch = await source.NextWatchAsync();
        Assert.Empty(time.BackoffTimers);

        watch.Expire();

        Assert.Equal(TimeSpan.FromSeconds(1), await time.BackoffTimerAsync(1));
        Assert.Equal(2, source.Lists);
    }

    [Fact]
    public async Task A_failing_subscriber_does_not_stop_the_cache()
    {
        cache.Subscribe(_ => throw new InvalidOperationException("subscriber bug"));
        var watch = await StartAsync();

        watch.Send(WatchEventType.Added, Node("n1", "11"));

        await Eventually.TrueAsync(() => cache.Get("n1") is not null, "n1 cached");
        Assert.Contains("n1", Drain());
    }

    [Fact]
    public async Task An_unsubscribed_callback_hears_nothing_more()
    {
        var heard = new ConcurrentQueue<string>();
        var subscription = cache.Subscribe(heard.Enqueue);
        var watch = await StartAsync();

        subscription.Dispose();
        watch.Send(WatchEventType.Added, Node("n1", "11"));

        await Eventually.TrueAsync(() => cache.Get("n1") is not null, "n1 cached");
        Assert.Empty(heard);
    }

    [Fact]
    public async Task Stopping_ends_RunAsync_without_an_exception()
    {
        await StartAsync();

        await stop.CancelAsync();

        await running!.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.True(running.IsCompletedSuccessfully);
    }

    internal static HttpOperationException HttpError(HttpStatusCode code) => new($"HTTP {(int)code}")
    {
        Response = new HttpResponseMessageWrapper(new HttpResponseMessage(code), ""),
    };
}
