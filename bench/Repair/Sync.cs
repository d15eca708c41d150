namespace TsCgnat.Bench.Repair;

/// <summary>The waits both modes share: the agent in sync at its start, and settled again after a rewrite.</summary>
internal static class Sync
{
    /// <summary>
    /// The agent's first apply: our rules in both chains in one of its layouts (for Indirect: hooked, and the copies
    /// the same as tailscaled's chains), then nothing changing for the settle time.
    /// </summary>
    public static async Task<Baseline> WaitInSyncAsync(Observer observer, AgentProcess agent, Options options, CancellationToken cancellationToken)
    {
        var deadline = Clock.NowMs() + options.RewriteTimeout.TotalMilliseconds;
        while (true)
        {
            CheckAlive(observer, agent, "the first apply");
            if (observer.Timeline.Latest is { } latest && latest.State.InSync() is { } baseline
                && Clock.NowMs() - QuietSince(observer) >= options.Settle.TotalMilliseconds)
            {
                return baseline;
            }

            if (Clock.NowMs() > deadline)
            {
                throw new BenchException($"the agent did not apply its rules within {options.RewriteTimeout.TotalSeconds:F0} s ({observer.Timeline.Latest?.State}); its log ends:\n{agent.Tail}");
            }

            await Task.Delay(20, cancellationToken);
        }
    }

    /// <summary>After a rewrite: our rules all back, and nothing changing for the settle time.</summary>
    public static async Task WaitSettledAsync(Observer observer, AgentProcess agent, Baseline baseline, string what, Options options, CancellationToken cancellationToken)
    {
        var deadline = Clock.NowMs() + options.RewriteTimeout.TotalMilliseconds;
        while (true)
        {
            CheckAlive(observer, agent, what);
            if (observer.Timeline.Latest is { } latest && latest.State.Complete(baseline)
                && Clock.NowMs() - QuietSince(observer) >= options.Settle.TotalMilliseconds)
            {
                return;
            }

            if (Clock.NowMs() > deadline)
            {
                throw new BenchException($"{what}: our rules were not back within {options.RewriteTimeout.TotalSeconds:F0} s ({observer.Timeline.Latest?.State}); the agent's log ends:\n{agent.Tail}");
            }

            await Task.Delay(20, cancellationToken);
        }
    }

    /// <summary>nft monitor: the last event of any kind; the legacy loop prints all the time, so there the last change that matters.</summary>
    private static double QuietSince(Observer observer) =>
        observer is NftMonitor ? Math.Max(observer.LastLineMs, observer.Timeline.Latest?.Since ?? 0) : observer.Timeline.Latest?.Since ?? 0;

    private static void CheckAlive(Observer observer, AgentProcess agent, string what)
    {
        if (agent.Exited)
        {
            throw new BenchException($"{what}: the agent exited; its log ends:\n{agent.Tail}");
        }

        if (observer.Exited)
        {
            throw new BenchException($"{what}: {observer.What} exited: {observer.LastError}");
        }
    }
}
