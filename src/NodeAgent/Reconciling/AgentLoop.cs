using System.Threading.Channels;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using TsCgnat.Api;
using TsCgnat.Firewall;
using TsCgnat.Firewall.Model;
using TsCgnat.NodeAgent.Tailscale;
using TsCgnat.NodeAgent.Triggers;
using TsCgnat.Telemetry;

namespace TsCgnat.NodeAgent.Reconciling;

/// <summary>Options of <c>ts-cgnat-agent run</c>, host and cluster mode alike.</summary>
/// <param name="Debounce">How long to wait after a firewall change before looking, so a burst of tailscaled's commands is read once.</param>
/// <param name="EnforceNoDivert">Switch tailscaled from mode on to nodivert through the LocalAPI (design section 4, off by default).</param>
/// <param name="NodeName">The node reconciled, as the <c>node</c> tag of each reconcile span.</param>
public sealed record AgentLoopOptions(TimeSpan ResyncInterval, TimeSpan? Debounce = null, bool EnforceNoDivert = false, string? NodeName = null);

/// <summary>The <c>stage</c> values of <c>tscgnat.apply.errors</c> and of a failed reconcile span, as the agent records them.</summary>
public static class ApplyStages
{
    /// <summary>Reading the policies failed (the policy source threw).</summary>
    public const string Policy = "policy";

    /// <summary>Reading, planning or writing the host firewall failed: the engine does the three in one call.</summary>
    public const string Firewall = "firewall";

    /// <summary>Saving the applied state for the fail-static start failed (the rules were written).</summary>
    public const string Cache = "cache";

    /// <summary>Cluster mode: writing this node's CgnatNodeState failed.</summary>
    public const string Status = "status";
}

/// <summary>
/// Where the policies come from: the policy files (host mode) or the API server (cluster mode). The
/// source's own inputs only call <c>changed</c>; the loop decides when to look.
/// </summary>
public interface IPolicySource
{
    /// <summary>Whether the source knows what the policies are: always in host mode; in cluster mode once the caches have listed once.</summary>
    bool HasSynced { get; }

    /// <summary>Starts the source's inputs (file watcher and SIGHUP; watches of the API server); disposing stops them.</summary>
    IDisposable Start(Action<string> changed, CancellationToken stoppingToken);

    /// <summary>How long to let a burst of this cause settle before reading (an editor's write-rename dance); zero for none.</summary>
    TimeSpan SettleTime(string cause);

    /// <summary>
    /// The policies this node should apply now, or null when none was ever known to be good: the loop then
    /// keeps the cached state in force (fail-static) and repairs drift from it.
    /// </summary>
    Task<IReadOnlyList<ValidatedPolicy>?> ReadAsync(string cause, CancellationToken cancellationToken);

    /// <summary>Told after every pass what it did; must return quickly (cluster mode hands it to its status writer).</summary>
    void Completed(PassOutcome outcome);
}

/// <summary>What one pass of the loop did.</summary>
/// <param name="Policies">The policies applied; null when the pass failed or the cached state was applied instead (nothing good known yet).</param>
/// <param name="Result">The engine's result; null when the pass failed or only the cache was applied.</param>
/// <param name="Error">Why the pass failed, or null.</param>
/// <param name="Repaired">The pass put back rules that something else had changed (counted in <see cref="RepairStats"/>).</param>
/// <param name="Tailscale">What the LocalAPI said of tailscaled at the time.</param>
public sealed record PassOutcome(
    string Cause,
    IReadOnlyList<ValidatedPolicy>? Policies,
    FirewallResult? Result,
    Exception? Error,
    bool Repaired,
    TailscaleView Tailscale);

/// <summary>
/// <c>run</c>, in both modes: restores the cached state, then keeps the host matching the policies. Inputs (the
/// policy source's own, the resync timer, a retry after a failure, firewall changes from the nft monitor or the
/// legacy poll, tailscaled's state and prefs notifications) only mark the host dirty; one reconcile reads
/// everything again, so bursts coalesce and no logic depends on which input fired. That is also how drift is
/// repaired within milliseconds. Stopping leaves the rules in place.
/// </summary>
/// <remarks>
/// Telemetry is recorded where the facts happen: each pass is one <c>tscgnat.reconcile</c> (duration and span),
/// a pass that wrote after drift counts a repair with the same latency as <see cref="RepairStats"/>, and a pass
/// that succeeded hands over the rule and set sizes. Every pass is a heartbeat (liveness); the first pass that
/// applied policies (after the caches listed, in cluster mode) makes the agent ready. A pass that only restored
/// the cached state does not: the agent does not know yet what the policies say.
/// </remarks>
public sealed class AgentLoop(
    IPolicySource source,
    Reconciler reconciler,
    AgentLoopOptions options,
    ILogger<AgentLoop> logger,
    TimeProvider time,
    RepairStats repairs,
    Func<Action<Trigger>, FirewallWatch>? firewallWatch = null,
    Func<Action<TailscaleView>, TailscaleWatcher>? tailscaleWatcher = null,
    LocalApiClient? localApi = null,
    TsCgnatMetrics? metrics = null,
    Readiness? readiness = null) : BackgroundService
{
    private int _enforcing;
    private string? _enforceProblem;

    // One pending trigger is enough (level-triggered): a later one while one waits adds nothing, and the
    // earliest one's time is what the repair latency is measured from.
    private readonly Channel<Trigger> _dirty = Channel.CreateBounded<Trigger>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private FirewallWatch? _firewall;
    private TailscaleView _tailscale = TailscaleView.NotYetKnown;
    private object? _compactedAfter;

    // The watchers, the timers and the pending retry run on their own; holding their tasks keeps each one's state (and
    // its PeriodicTimer) reachable from the loop whatever the GC does, between ticks too (CompactWhenIdle collects).
    private readonly List<Task> _background = [];
    private Task? _retry;
    private Task? _lookAgain;
    private long? _heldSince;
    private long _tailscaleSaidAt;

    /// <summary>
    /// How long the firewall must have been quiet before an <see cref="Strategy.Indirect"/> plan is written. Such a write
    /// never lets traffic through that was dropped (in nodivert nothing calls tailscaled's chains: its drop is in force
    /// only through our copy), so it can wait for tailscaled to finish: its start, stop and clean-up are dozens of
    /// commands, and following each one made 3 to 4 writes per restart instead of one for its chains going and one for
    /// their coming back.
    /// </summary>
    public static readonly TimeSpan QuietBeforeCopy = TimeSpan.FromMilliseconds(300);

    /// <summary>A firewall that never goes quiet (another program rewriting it all the time) holds a copy no longer than this (plus the quiet time).</summary>
    public static readonly TimeSpan LongestHold = TimeSpan.FromSeconds(2);
    private HashSet<string> _warned = new(StringComparer.Ordinal);
    private Task? _compaction;
    private bool _compact = true; // the start: cache, first read, first plan
    private long _allocatedAtCompaction;

    /// <summary>Completed reconciles, for tests and the log.</summary>
    public int Reconciles { get; private set; }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var inputs = source.Start(MarkDirty, stoppingToken);
        _firewall = firewallWatch?.Invoke(t => _dirty.Writer.TryWrite(t));
        if (_firewall is not null)
        {
            _background.Add(_firewall.RunMonitorAsync(stoppingToken));
            _background.Add(_firewall.RunLegacyPollAsync(stoppingToken));
        }

        if (tailscaleWatcher?.Invoke(OnTailscale) is { } tailscale)
        {
            _background.Add(tailscale.RunAsync(stoppingToken));
        }

        try
        {
            await reconciler.ApplyCacheAsync(stoppingToken);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Not fatal: the loop below retries with the policies (and backs off on failure).
            logger.LogError("restoring the cached state failed: {Error}", e.Message);
        }

        _background.Add(ResyncTimerAsync(stoppingToken));
        MarkDirty(Causes.Start);

        var failures = 0;
        await foreach (var trigger in _dirty.Reader.ReadAllAsync(stoppingToken))
        {
            var reason = trigger.Cause;
            if (source.SettleTime(reason) is var settle && settle > TimeSpan.Zero)
            {
                await Task.Delay(settle, time, stoppingToken);
                _dirty.Reader.TryRead(out _);
            }
            else if (reason is Causes.FirewallEvent or Causes.LegacyPoll && options.Debounce is { } debounce && debounce > TimeSpan.Zero)
            {
                await Task.Delay(debounce, time, stoppingToken); // one read for a burst of commands
                _dirty.Reader.TryRead(out _);
            }

            try
            {
                await ReconcileOnceAsync(trigger, stoppingToken);
                failures = 0;
            }
            catch (Exception e) when (e is not OperationCanceledException)
            {
                failures++;
                var retry = TimeSpan.FromSeconds(Math.Min(Math.Pow(2, failures - 1), options.ResyncInterval.TotalSeconds));
                logger.LogError("reconcile failed ({Reason}): {Error}; retrying in {Retry}", reason, e.Message, retry);
                source.Completed(new PassOutcome(reason, null, null, e, false, Volatile.Read(ref _tailscale)));
                _retry = RetryAsync(retry, stoppingToken);
            }

            // The loop passed, whatever the pass did: /healthz stays good while the loop turns.
            readiness?.Heartbeat();
            CompactWhenIdle();
        }
    }

    /// <summary>
    /// After the start, after a pass that read new policies, or once 2 MB more have been allocated since the last time
    /// (resyncs, scrapes of /metrics), and once the loop has then been idle for <see cref="IdleBeforeCompaction"/>: one
    /// full, compacting GC that gives the memory back to the system (issue 11: an idle agent under 15 MB anonymous).
    /// Reading 10,000 entries allocates tens of MB, and without this the GC keeps its young generation's budget
    /// committed for a burst an idle agent never has: scraped twice a second, the anonymous memory crept from 11.6 to
    /// 13.7 MB in a minute and went on. It waits for a quiet moment because a full collection stops every thread: done
    /// right after each pass, it sat between tailscaled's rebuilds and the repairs that follow them.
    /// </summary>
    private void CompactWhenIdle()
    {
        const long Allocated = 2 << 20;
        if ((_compact || GC.GetTotalAllocatedBytes() - _allocatedAtCompaction > Allocated) && _compaction is not { IsCompleted: false })
        {
            _compaction = CompactLaterAsync();
        }
    }

    /// <summary>How long the loop must have had nothing to do before <see cref="CompactWhenIdle"/> collects.</summary>
    public static readonly TimeSpan IdleBeforeCompaction = TimeSpan.FromSeconds(2);

    private async Task CompactLaterAsync()
    {
        int pass;
        do
        {
            pass = Reconciles;
            await Task.Delay(IdleBeforeCompaction, time);
        }
        while (Reconciles != pass || _dirty.Reader.TryPeek(out _)); // a pass came (our own writes echo back): wait again

        _compact = false;
        GC.Collect(GC.MaxGeneration, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        _allocatedAtCompaction = GC.GetTotalAllocatedBytes();
    }

    private async Task ReconcileOnceAsync(Trigger trigger, CancellationToken cancellationToken)
    {
        using var reconcile = metrics?.StartReconcile(trigger.Cause, node: options.NodeName);
        var stage = ApplyStages.Policy;
        try
        {
            var policies = await source.ReadAsync(trigger.Cause, cancellationToken);
            stage = ApplyStages.Firewall;
            if (policies is null)
            {
                // Nothing good was ever read: keep the cached state (if any) in force, repairing drift.
                var restored = await reconciler.ApplyCacheAsync(cancellationToken);
                reconcile?.Completed(restored?.Wrote ?? false, restored?.Plan.BackendName, restored?.Plan.Strategy?.Strategy.ToString());
                RecordSize(restored);
                source.Completed(new PassOutcome(trigger.Cause, null, null, null, false, Volatile.Read(ref _tailscale)));
                return;
            }

            if (!ReferenceEquals(policies, _compactedAfter))
            {
                (_compactedAfter, _compact) = (policies, true); // new policies: compact once idle again
            }

            var result = await reconciler.ApplyAsync(policies, dryRun: false, cancellationToken, Hold);
            if (result.HeldFor is { } held)
            {
                // Not a pass: the same trigger comes back once the firewall has been quiet (its time stays the repair's start).
                reconcile?.Completed(false, result.Plan.BackendName, result.Plan.Strategy?.Strategy.ToString());
                _lookAgain = RequeueLaterAsync(trigger, held);
                return;
            }

            _heldSince = null;
            reconcile?.Completed(result.Wrote, result.Plan.BackendName, result.Plan.Strategy?.Strategy.ToString());
            RecordSize(result);
            Passed(trigger, policies, result);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // The engine reads, plans and writes in one call; of what it throws, only saving the state cache
            // does file I/O (process failures come back as FirewallToolException).
            reconcile?.Failed(stage == ApplyStages.Firewall && e is IOException or UnauthorizedAccessException ? ApplyStages.Cache : stage, e);
            throw;
        }
    }

    private void RecordSize(FirewallResult? result)
    {
        if (metrics is null || result is null)
        {
            return;
        }

        var size = AppliedSize.Of(result.Plan); // counted by the engine when it planned
        metrics.SetRules([new(size.Strategy, size.Rules)]);
        metrics.SetSetMembers(size.SetMembers);
    }

    private void Passed(Trigger trigger, IReadOnlyList<ValidatedPolicy> policies, FirewallResult result)
    {
        var reason = trigger.Cause;
        Reconciles++;
        if (source.HasSynced)
        {
            readiness?.MarkCachesSynced();
        }

        readiness?.MarkReconciled();
        _firewall?.RulesLiveIn(result.Plan.BackendName, result.Plan.Runner?.Runner);
        var repaired = result.Wrote && Causes.IsRepair(reason);
        if (repaired)
        {
            var latency = time.GetElapsedTime(trigger.SeenAt);
            repairs.Record(reason, latency);
            metrics?.RecordRepair(reason, latency);
            logger.LogInformation("repaired drift ({Reason}): rules back {Latency:F1} ms after the change was seen", reason, latency.TotalMilliseconds);
        }

        // A warning is logged when it appears, not again at every pass while it holds.
        var warnings = result.Plan.Warnings.ToHashSet(StringComparer.Ordinal);
        foreach (var warning in result.Plan.Warnings.Where(w => !_warned.Contains(w)))
        {
            logger.LogWarning("{Warning}", warning);
        }

        _warned = warnings;
        if (result.Plan.Strategy?.LookAgainIn is { } wait && _lookAgain is not { IsCompleted: false })
        {
            _lookAgain = MarkDirtyLaterAsync(wait, Causes.TailscaleSettled);
        }

        if (result.Wrote)
        {
            var seen = result.Plan.Tailscale.GetValueOrDefault(IpFamily.V4) ?? TailscaleChains.Absent;
            logger.LogInformation(
                "reconciled ({Reason}) in {Elapsed:F1} ms: rules written to {Backend} ({Why}), strategy {Strategy} ({StrategyWhy}); "
                + "tailscaled's chains: {Mode}, {InputRules} rules of its own in ts-input; {Policies} policies",
                reason, result.Elapsed.TotalMilliseconds, result.Plan.BackendName, result.Plan.Backend.Reason,
                result.Plan.Strategy?.Strategy, result.Plan.Strategy?.Reason, seen.Mode, seen.InputRules, policies.Count);
        }
        else
        {
            logger.LogDebug("reconciled ({Reason}) in {Elapsed:F1} ms: in sync, nothing written", reason, result.Elapsed.TotalMilliseconds);
        }

        source.Completed(new PassOutcome(reason, policies, result, null, repaired, Volatile.Read(ref _tailscale)));
    }

    private void MarkDirty(string reason) => _dirty.Writer.TryWrite(new Trigger(reason, time.GetTimestamp()));

    /// <summary>
    /// See <see cref="QuietBeforeCopy"/>: how long to hold this plan's write, or null to write it now. An InChain plan made
    /// while one of tailscaled's chains exists, unhooked, without its CGNAT drop yet (part-way through a switch from
    /// nodivert, before its jumps) is held too: it could only write half of the exemptions, or remove the Indirect rules,
    /// and the jumps' or the drop's arrival brings the pass that writes everything at once (without this, a switch from
    /// nodivert took two writes).
    /// </summary>
    private TimeSpan? Hold(FirewallPlan plan)
    {
        var waitsForDrop = plan.Strategy?.Strategy == Strategy.InChain
            && plan.Tailscale.GetValueOrDefault(IpFamily.V4) is { PlainJumps: false } v4 && ((v4.Input && !v4.InputDrop) || (v4.Forward && !v4.ForwardDrop));
        if ((plan.Strategy?.Strategy != Strategy.Indirect && !waitsForDrop) || _firewall is not { LastChangeAt: > 0 } watch)
        {
            return null;
        }

        // A notification of tailscaled's is a change too: it comes with its firewall work, which a legacy poll sees late.
        var now = time.GetTimestamp();
        var quiet = time.GetElapsedTime(Math.Max(watch.LastChangeAt, Interlocked.Read(ref _tailscaleSaidAt)), now);
        var needed = watch.QuietAfter(QuietBeforeCopy);
        _heldSince ??= now;
        return quiet < needed && time.GetElapsedTime(_heldSince.Value, now) < LongestHold + needed ? needed - quiet : null;
    }

    private async Task RequeueLaterAsync(Trigger trigger, TimeSpan delay)
    {
        await Task.Delay(delay, time);
        _dirty.Writer.TryWrite(trigger);
    }

    /// <summary>tailscaled changed state or prefs (or came and went): remember what it says, and look again.</summary>
    private void OnTailscale(TailscaleView view)
    {
        Volatile.Write(ref _tailscale, view);
        Interlocked.Exchange(ref _tailscaleSaidAt, time.GetTimestamp());
        reconciler.Hint = view.Reachable && view.Prefs is { } prefs
            ? new TsCgnat.Firewall.Model.TailscaleHint(
                prefs.NetfilterMode,
                prefs.NetfilterKind,
                prefs.NoStatefulFiltering is null ? null : prefs.StatefulFiltering,
                view.State == BackendState.Running)
            : null;
        MarkDirty(Causes.Tailscale);
        // Never with the nftables runner: in nodivert nothing calls its chains, and the agent can only refuse (see PlanNative).
        if (options.EnforceNoDivert && localApi is not null && view.Reachable && view.Prefs?.NetfilterMode == NetfilterMode.On
            && view.Prefs.NetfilterKind != "nftables" && reconciler.Runner != TailscaleRunner.Nftables
            && Interlocked.Exchange(ref _enforcing, 1) == 0)
        {
            _ = EnforceNoDivertAsync(localApi);
        }
    }

    /// <summary>
    /// --enforce-nodivert: mode on puts tailscaled's jump above everything in INPUT, so only InChain works
    /// there, and InChain is wiped at every flush; nodivert lets Indirect hold. Mode off is left alone:
    /// it is a deliberate choice (no Tailscale firewall at all), not something we should undo.
    /// </summary>
    private async Task EnforceNoDivertAsync(LocalApiClient client)
    {
        try
        {
            await client.SetNetfilterModeAsync(NetfilterMode.NoDivert, CancellationToken.None);
            logger.LogInformation("--enforce-nodivert: switched tailscaled from netfilter mode on to nodivert through the LocalAPI");
            _enforceProblem = null;
        }
        catch (Exception e) when (e is LocalApiException or IOException or HttpRequestException)
        {
            if (e.Message != _enforceProblem)
            {
                logger.LogError("--enforce-nodivert: tailscaled refused to switch to nodivert: {Error}; staying with the strategy Auto picks", e.Message);
                _enforceProblem = e.Message;
            }
        }
        finally
        {
            Volatile.Write(ref _enforcing, 0);
        }
    }

    private async Task ResyncTimerAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(options.ResyncInterval, time);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken))
            {
                MarkDirty(Causes.PeriodicResync);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    private Task RetryAsync(TimeSpan delay, CancellationToken cancellationToken) => MarkDirtyLaterAsync(delay, Causes.Retry, cancellationToken);

    private async Task MarkDirtyLaterAsync(TimeSpan delay, string cause, CancellationToken cancellationToken = default)
    {
        try
        {
            await Task.Delay(delay, time, cancellationToken);
            MarkDirty(cause);
        }
        catch (OperationCanceledException)
        {
        }
    }
}
