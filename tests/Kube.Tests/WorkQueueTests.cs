namespace TsCgnat.Kube.Tests;

public class WorkQueueTests
{
    private static readonly BackoffPolicy NoJitter = new(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(8), Jitter: 0);

    private static async Task<string?> Take(WorkQueue queue)
    {
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        return await queue.TakeAsync(timeout.Token);
    }

    [Fact]
    public async Task A_key_added_many_times_waits_in_the_queue_once()
    {
        using var queue = new WorkQueue();
        queue.Add("a");
        queue.Add("b");
        queue.Add("a");
        queue.Add("a");

        Assert.Equal(2, queue.Count);
        Assert.Equal("a", await Take(queue));
        Assert.Equal("b", await Take(queue));
        Assert.Equal(0, queue.Count);
    }

    [Fact]
    public async Task A_key_added_while_processing_is_handed_out_again_only_after_Done()
    {
        using var queue = new WorkQueue();
        queue.Add("a");
        var first = await Take(queue);

        queue.Add("a");
        queue.Add("a");
        using var cancel = new CancellationTokenSource();
        var second = queue.TakeAsync(cancel.Token);

        Assert.Equal(0, queue.Count);
        Assert.False(second.IsCompleted);

        queue.Done(first!);

        Assert.Equal("a", await second.WaitAsync(TimeSpan.FromSeconds(20)));
        queue.Done("a");
        Assert.Equal(0, queue.Count);
    }

    [Fact]
    public async Task Done_without_a_new_add_does_not_requeue()
    {
        using var queue = new WorkQueue();
        queue.Add("a");
        queue.Done((await Take(queue))!);

        Assert.Equal(0, queue.Count);
    }

    [Fact]
    public async Task A_waiting_taker_gets_the_next_added_key()
    {
        using var queue = new WorkQueue();
        var waiting = Take(queue);

        queue.Add("a");

        Assert.Equal("a", await waiting);
    }

    [Fact]
    public async Task A_cancelled_taker_does_not_swallow_a_key()
    {
        using var queue = new WorkQueue();
        using var cancel = new CancellationTokenSource();
        var abandoned = queue.TakeAsync(cancel.Token);
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => abandoned);

        queue.Add("a");

        Assert.Equal("a", await Take(queue));
    }

    [Fact]
    public async Task Rate_limited_adds_back_off_per_key_and_Forget_resets()
    {
        var time = new RecordingTime();
        using var queue = new WorkQueue(NoJitter, time);

        async Task FailOnce(string key)
        {
            queue.AddRateLimited(key);
            time.Advance(time.Timers[^1]);
            queue.Done((await Take(queue))!);
        }

        await FailOnce("a");
        await FailOnce("a");
        await FailOnce("b");
        await FailOnce("a");
        Assert.Equal(3, queue.Requeues("a"));
        Assert.Equal(1, queue.Requeues("b"));
        Assert.Equal([1, 2, 1, 4], time.Timers.Select(t => t.TotalSeconds));

        queue.Forget("a");
        await FailOnce("a");

        Assert.Equal(1, queue.Requeues("a"));
        Assert.Equal(1, time.Timers[^1].TotalSeconds);
    }

    [Fact]
    public async Task AddAfter_adds_when_the_delay_has_passed()
    {
        var time = new RecordingTime();
        using var queue = new WorkQueue(NoJitter, time);

        queue.AddAfter("a", TimeSpan.FromSeconds(5));
        time.Advance(TimeSpan.FromSeconds(4.9));
        Assert.Equal(0, queue.Count);

        time.Advance(TimeSpan.FromSeconds(0.1));
        Assert.Equal("a", await Take(queue));
    }

    [Fact]
    public void Of_two_delays_for_one_key_the_earlier_wins()
    {
        var time = new RecordingTime();
        using var queue = new WorkQueue(NoJitter, time);

        queue.AddAfter("a", TimeSpan.FromMinutes(5));
        queue.AddAfter("a", TimeSpan.FromSeconds(1));
        queue.AddAfter("a", TimeSpan.FromMinutes(1));

        time.Advance(TimeSpan.FromSeconds(1));
        Assert.Equal(1, queue.Count);

        time.Advance(TimeSpan.FromMinutes(10));
        Assert.Equal(1, queue.Count);
        Assert.Equal(2, time.Timers.Count);
    }

    [Fact]
    public async Task ShutDown_releases_waiting_takers_with_null_and_refuses_new_keys()
    {
        using var queue = new WorkQueue();
        var waiting = Take(queue);

        queue.ShutDown();
        queue.Add("a");

        Assert.Null(await waiting);
        Assert.Null(await Take(queue));
        Assert.True(queue.IsShuttingDown);
    }

    [Fact]
    public void ShutDown_drops_pending_delays()
    {
        var time = new RecordingTime();
        using var queue = new WorkQueue(NoJitter, time);
        queue.AddAfter("a", TimeSpan.FromSeconds(1));

        queue.ShutDown();
        time.Advance(TimeSpan.FromSeconds(2));

        Assert.Equal(0, queue.Count);
    }
}
