using Microsoft.Extensions.Logging;
using TsCgnat.Api;
using TsCgnat.Firewall;
using TsCgnat.Firewall.Model;
using TsCgnat.Firewall.Rules;
using TsCgnat.NodeAgent.State;

namespace TsCgnat.NodeAgent.Reconciling;

/// <summary>
/// One idempotent step: make the host match a set of policies, and remember what was applied.
/// Everything that wants a change (a file, a signal, the resync timer) only calls this again.
/// </summary>
public sealed class Reconciler(HostFirewall firewall, FirewallSettings settings, AppliedStateCache cache, TimeProvider time, ILogger logger)
{
    private SavedStateFile? _saved;
    private bool _cacheProblemReported;
    private IReadOnlyList<ValidatedPolicy>? _policies;
    private Exemptions? _exemptions;

    /// <summary>What the LocalAPI says about tailscaled (null while it is not reachable); set by the agent's watcher.</summary>
    public TailscaleHint? Hint { get; set; }

    private FirewallSettings Current => settings with { Hint = Hint };

    /// <summary>The runner tailscaled was last seen writing with (null before any pass told).</summary>
    public TailscaleRunner? Runner => firewall.Previous.Runner;

    /// <summary>tailscaled's stateful filtering as last seen; seeds the planner while ts-forward is being rebuilt.</summary>
    public bool? Stateful { get; private set; }

    /// <summary>
    /// Applies the cached state, if any: first thing at start (the fail-static start), and again on
    /// each pass while no valid policy has been read. Returns what the engine did, or null when there was no
    /// usable cache (nothing was done).
    /// </summary>
    public async Task<ReconcileResult?> ApplyCacheAsync(CancellationToken cancellationToken)
    {
        AppliedState? state;
        try
        {
            state = cache.Load();
        }
        catch (InvalidDataException e)
        {
            if (!_cacheProblemReported)
            {
                logger.LogError("{Problem}", e.Message);
                _cacheProblemReported = true;
            }

            return null;
        }

        if (state is null)
        {
            if (!_cacheProblemReported)
            {
                logger.LogInformation("no cached state in {Path}; nothing to restore until valid policies are read", cache.Path);
                _cacheProblemReported = true;
            }

            return null;
        }

        _saved = cache.Peek();
        Stateful = state.Stateful;
        var exemptions = state.ToExemptions();
        var result = await firewall.ReconcileAsync(exemptions, Current, Stateful, dryRun: false, cancellationToken);
        logger.Log(
            result.Wrote ? LogLevel.Information : LogLevel.Debug,
            "restored the cached state of {AppliedAt:O} ({Policies} policies): {Outcome}",
            state.AppliedAt, state.Policies.Count, result.Wrote ? "rules written" : "rules already in place");
        return result;
    }

    /// <summary>Makes the host match <paramref name="policies"/>; writes nothing when it already does.</summary>
    public async Task<ReconcileResult> ApplyAsync(IReadOnlyList<ValidatedPolicy> policies, bool dryRun, CancellationToken cancellationToken)
    {
        if (!ReferenceEquals(policies, _policies))
        {
            // The same list instance means the same policies (the run loop reuses it while the files are
            // unchanged), and the same Exemptions instance lets the engine keep its rendered sets.
            (_policies, _exemptions) = (policies, Exemptions.From(policies));
        }

        var exemptions = _exemptions!;
        var saved = Saved();
        Task<SavedStateFile?>? staging = null;
        ReconcileResult result;
        try
        {
            // While the firewall writes run, the cache file that will describe them is written and synced beside
            // the old one (when it changes); it replaces the old one only once the writes succeeded.
            result = await firewall.ReconcileAsync(exemptions, Current, Stateful ?? saved?.Stateful, dryRun, cancellationToken,
                writing: plan => staging = Task.Run(() => StageIfChanged(policies, exemptions, plan.Tailscale[IpFamily.V4].Stateful ?? Stateful, saved)));
        }
        catch
        {
            await DiscardAsync(staging);
            throw;
        }

        if (dryRun)
        {
            return result;
        }

        Stateful = result.Plan.Tailscale[IpFamily.V4].Stateful ?? Stateful;

        // The cache is rewritten only when what it says changes, so an idle resync does no disk I/O.
        var state = AppliedState.From(policies, exemptions, Stateful, time.GetUtcNow());
        var staged = staging is null ? null : await staging;
        if (staged is not null && staged.Holds(state))
        {
            _saved = cache.Commit(staged);
        }
        else
        {
            if (staged is not null)
            {
                cache.Discard(); // staged for a plan that a raced write changed
            }

            if (saved is null || !saved.Holds(state))
            {
                _saved = cache.Save(state);
            }
        }

        return result;
    }

    /// <summary>After a failed write: the staged cache file is removed, and the old one stays (a failure here changes nothing).</summary>
    private async Task DiscardAsync(Task<SavedStateFile?>? staging)
    {
        try
        {
            if (staging is not null && await staging is not null)
            {
                cache.Discard();
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            logger.LogDebug("the staged state cache was not written or removed: {Error}", e.Message);
        }
    }

    /// <summary>The cache file for these policies, staged when it differs from <paramref name="saved"/>; null when it does not.</summary>
    private SavedStateFile? StageIfChanged(IReadOnlyList<ValidatedPolicy> policies, Exemptions exemptions, bool? stateful, SavedStateFile? saved)
    {
        var state = AppliedState.From(policies, exemptions, stateful, time.GetUtcNow());
        return saved is not null && saved.Holds(state) ? null : cache.Stage(state);
    }

    /// <summary>The cache file as last read or written (read once, unchecked: only compared and asked for stateful).</summary>
    private SavedStateFile? Saved() => _saved ??= cache.Peek();
}
