using Microsoft.Extensions.Logging;
using TsCgnat.Api;
using TsCgnat.Firewall;
using TsCgnat.Firewall.Model;
using TsCgnat.Firewall.Rules;
using TsCgnat.NodeAgent.State;

namespace TsCgnat.NodeAgent.HostMode;

/// <summary>
/// One idempotent step: make the host match a set of policies, and remember what was applied.
/// Everything that wants a change (a file, a signal, the resync timer) only calls this again.
/// </summary>
public sealed class Reconciler(HostFirewall firewall, FirewallSettings settings, AppliedStateCache cache, TimeProvider time, ILogger logger)
{
    private AppliedState? _saved;
    private bool _cacheProblemReported;
    private IReadOnlyList<ValidatedPolicy>? _policies;
    private Exemptions? _exemptions;
    private Exemptions? _applied;
    private (object Key, AppliedSize Size)? _size;

    /// <summary>What the LocalAPI says about tailscaled (null while it is not reachable); set by the agent's watcher.</summary>
    public TailscaleHint? Hint { get; set; }

    private FirewallSettings Current => settings with { Hint = Hint };

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

        _saved = state;
        Stateful = state.Stateful;
        var exemptions = state.ToExemptions();
        var result = await firewall.ReconcileAsync(exemptions, Current, Stateful, dryRun: false, cancellationToken);
        _applied = exemptions;
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
        var result = await firewall.ReconcileAsync(exemptions, Current, Stateful ?? Cached()?.Stateful, dryRun, cancellationToken);
        if (dryRun)
        {
            return result;
        }

        _applied = exemptions;
        Stateful = result.Plan.Tailscale[IpFamily.V4].Stateful ?? Stateful;
        var state = AppliedState.From(policies, exemptions, Stateful, time.GetUtcNow());
        if (!SameAsSaved(state))
        {
            cache.Save(state);
            _saved = state;
        }

        return result;
    }

    /// <summary>
    /// How much of ours the host holds after <paramref name="result"/>, the last pass of <see cref="ApplyAsync"/>
    /// or <see cref="ApplyCacheAsync"/> (it wrote or found the host in sync). Kept until the exemptions or what
    /// the plan found change, so an idle resync renders no set.
    /// </summary>
    public AppliedSize Size(ReconcileResult result)
    {
        ArgumentNullException.ThrowIfNull(result);
        var plan = result.Plan;
        var exemptions = _applied ?? Exemptions.None;
        var key = (exemptions, plan.Runner?.Runner, plan.Strategy?.Strategy, plan.Stateful,
            plan.Tailscale.GetValueOrDefault(IpFamily.V4), plan.Tailscale.GetValueOrDefault(IpFamily.V6));
        if (_size is { } kept && kept.Key.Equals(key))
        {
            return kept.Size;
        }

        var size = AppliedSize.Of(plan, Current, IndirectLayout.Sets(exemptions));
        _size = (key, size);
        return size;
    }

    private AppliedState? Cached()
    {
        try
        {
            return _saved ??= cache.Load();
        }
        catch (InvalidDataException)
        {
            return null;
        }
    }

    /// <summary>The cache is rewritten only when what it says changes, so an idle resync does no disk I/O.</summary>
    private bool SameAsSaved(AppliedState state)
    {
        var saved = Cached();
        return saved is not null
            && saved.Stateful == state.Stateful
            && saved.Policies.Select(p => (p.Name, p.Generation)).SequenceEqual(state.Policies.Select(p => (p.Name, p.Generation)))
            && saved.AllowedSources.Select(s => s.Cidr + "|" + string.Join(',', s.Interfaces)).SequenceEqual(state.AllowedSources.Select(s => s.Cidr + "|" + string.Join(',', s.Interfaces)), StringComparer.Ordinal)
            && saved.RoutedSubnets.SequenceEqual(state.RoutedSubnets, StringComparer.Ordinal);
    }
}
