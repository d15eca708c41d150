using System.Diagnostics;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TsCgnat.Api;
using TsCgnat.Firewall.Detection;
using TsCgnat.Firewall.Formats;
using TsCgnat.Firewall.Model;
using TsCgnat.Firewall.Processes;
using TsCgnat.Firewall.Rules;

namespace TsCgnat.Firewall;

/// <summary>
/// Reads the host, plans the difference to what we want and writes it: the edge between the pure
/// planner and the host's iptables, ipset and nft. One instance per host (or network namespace).
/// </summary>
public sealed class HostFirewall(ICommandRunner runner, ILogger? logger = null)
{
    private const int LockRetries = 3;
    private const int WriteAttempts = 3;
    private static readonly (IptablesBackend, IpFamily)[] Everything =
    [
        (IptablesBackend.Legacy, IpFamily.V4), (IptablesBackend.Legacy, IpFamily.V6),
        (IptablesBackend.Nft, IpFamily.V4), (IptablesBackend.Nft, IpFamily.V6),
    ];

    private readonly ILogger _log = logger ?? NullLogger.Instance;
    private BackendChoice? _settled;
    private bool _settledNative;
    private int _settledPasses;
    private Exemptions? _setsFor;
    private IReadOnlyList<DesiredSet>? _sets;
    private PreviousPass _previous = PreviousPass.None;
    private Task<HostSnapshot>? _prefetched;

    /// <summary>
    /// After a pass that read both back ends and left ours only in the chosen one, the next passes read
    /// only the chosen back end (a resync costs 3 processes instead of 6, or 1 with the nftables runner),
    /// until this many have gone by or Tailscale's ts-input there is empty (tailscaled down, restarting,
    /// or moving to another back end): then everything is read again.
    /// </summary>
    public int FullReadEvery { get; init; } = 10;

    /// <summary>What the last pass learned (strategy, runner, stateful filtering).</summary>
    public PreviousPass Previous => _previous;

    /// <summary>Reads both iptables back ends, both families, our ipset sets and the nft ruleset, all at once.</summary>
    public Task<HostSnapshot> ReadAsync(CancellationToken cancellationToken) => ReadAsync(Everything, ipset: true, nft: true, cancellationToken);

    /// <summary>
    /// Starts the full read now, for the next <see cref="ReconcileAsync"/> to use instead of reading then: the one-shot
    /// <c>apply</c> reads the host while it reads its policy files (issue 11), which do not depend on each other. A
    /// read is a snapshot whenever it is taken, and a write that races a change is re-read and re-planned as always.
    /// </summary>
    public void Prefetch(CancellationToken cancellationToken) => _prefetched ??= ReadAsync(cancellationToken);

    /// <summary>Waits for a <see cref="Prefetch"/> nobody will use (the policies were refused), so no read outlives the caller.</summary>
    public async Task DropPrefetchAsync()
    {
        if (Interlocked.Exchange(ref _prefetched, null) is { } read)
        {
            try
            {
                await read;
            }
            catch (Exception e) when (e is FirewallToolException or OperationCanceledException)
            {
                // Nothing was going to use it; the command reports the policies' problems instead.
            }
        }
    }

    private async Task<HostSnapshot> ReadAsync((IptablesBackend, IpFamily)[] keys, bool ipset, bool nft, CancellationToken cancellationToken)
    {
        var saves = keys.Select(k => runner.RunAsync(Tools.Save(k.Item1, k.Item2), [], null, cancellationToken)).ToList();
        var ipsetSave = ipset ? runner.RunAsync(Tools.Ipset, ["save"], null, cancellationToken) : null;
        var nftList = nft ? runner.RunAsync(Tools.Nft, ["-j", "list", "ruleset"], null, cancellationToken) : null;
        await Task.WhenAll(saves.Cast<Task>().Concat(new Task?[] { ipsetSave, nftList }.OfType<Task>()));

        var notes = new List<string>();
        var rulesets = new Dictionary<(IptablesBackend, IpFamily), SavedRuleset>();
        var iptablesNftFailed = false;
        for (var i = 0; i < keys.Length; i++)
        {
            var output = saves[i].Result;
            if (output.Succeeded)
            {
                rulesets[keys[i]] = SavedRuleset.Parse(output.StdOut);
            }
            else
            {
                iptablesNftFailed |= keys[i] == (IptablesBackend.Nft, IpFamily.V4);
                notes.Add($"{Tools.Save(keys[i].Item1, keys[i].Item2)} failed ({output.ExitCode}): {output.StdErr.Trim()}");
            }
        }

        IReadOnlyDictionary<string, SavedSet> ours = new Dictionary<string, SavedSet>();
        if (ipsetSave?.Result is { } sets)
        {
            if (!sets.Succeeded)
            {
                throw new FirewallToolException($"ipset save failed ({sets.ExitCode}): {sets.StdErr.Trim()}; {Remedy(sets)}");
            }

            ours = IpsetSave.Parse(sets.StdOut, Names.SetPrefix);
        }

        NftRuleset? ruleset = null;
        if (nftList?.Result is { } listed)
        {
            if (listed.Succeeded)
            {
                ruleset = NftRuleset.Parse(listed.StdOut);
            }
            else
            {
                notes.Add($"nft -j list ruleset failed ({listed.ExitCode}): {listed.StdErr.Trim()}");
            }
        }

        return new HostSnapshot(rulesets, ours, notes, Nft: ruleset, NftUnreadableByIptables: iptablesNftFailed && ruleset is not null);
    }

    /// <summary>What to do about a read that failed, in the reader's terms.</summary>
    private static string Remedy(CommandOutput output) =>
        output.ExitCode == 127 ? "install ipset, nftables and iptables (1.8 or later)"
        : output.StdErr.Contains("not permitted", StringComparison.OrdinalIgnoreCase) || output.StdErr.Contains("Permission denied", StringComparison.OrdinalIgnoreCase)
            ? "the agent needs root, or CAP_NET_ADMIN and CAP_NET_RAW"
            : "check that the ip_set and ip_tables/nf_tables kernel modules can load";

    /// <summary>The plan that gives the host exactly <paramref name="exemptions"/> (null: nothing of ours, for cleanup).</summary>
    /// <param name="previousStateful">What we knew of tailscaled's stateful filtering before, used while ts-forward is empty.</param>
    public static FirewallPlan Plan(HostSnapshot snapshot, Exemptions? exemptions, FirewallSettings settings, bool? previousStateful) =>
        Plan(snapshot, exemptions is null ? null : IndirectLayout.Sets(exemptions), settings, new PreviousPass(previousStateful, null, null));

    /// <summary>The plan for sets already computed with <see cref="IndirectLayout.Sets"/> (null: nothing of ours).</summary>
    /// <param name="now">This pass's <see cref="Stopwatch.GetTimestamp"/>, for how long tailscaled has been unhooked.</param>
    public static FirewallPlan Plan(HostSnapshot snapshot, IReadOnlyList<DesiredSet>? sets, FirewallSettings settings, PreviousPass previous, long? now = null)
    {
        var tun = settings.TailscaleInterface;
        var at = now ?? Stopwatch.GetTimestamp();
        var runnerChoice = RunnerDetector.Detect(snapshot.Rulesets, snapshot.Nft, snapshot.NftUnreadableByIptables, settings.Hint, tun, previous.Runner);
        if (runnerChoice.Runner == TailscaleRunner.Nftables && settings.Backend is null)
        {
            return PlanNative(snapshot, sets, settings, previous, runnerChoice, at);
        }

        var warnings = new List<string>(snapshot.Notes);
        var v4 = snapshot.Rulesets.Where(r => r.Key.Family == IpFamily.V4).ToDictionary(r => r.Key.Backend, r => r.Value);
        if (v4.Count == 0)
        {
            throw new FirewallToolException($"no iptables back end could be read: {string.Join("; ", snapshot.Notes)}");
        }

        var choice = settings.Backend is { } forced
            ? new BackendChoice(forced, $"{Tools.Name(forced)} was chosen with --backend")
            : snapshot.Settled ?? runnerChoice.Runner switch
            {
                TailscaleRunner.IptablesLegacy => new BackendChoice(IptablesBackend.Legacy, runnerChoice.Reason),
                TailscaleRunner.IptablesNft => new BackendChoice(IptablesBackend.Nft, runnerChoice.Reason),
                _ => BackendDetector.Detect(v4, SystemIptables.Default),
            };
        if (!snapshot.Rulesets.ContainsKey((choice.Backend, IpFamily.V4)))
        {
            throw new FirewallToolException($"{Tools.Save(choice.Backend, IpFamily.V4)} could not be run: {string.Join("; ", snapshot.Notes)}");
        }

        var tailscale = new Dictionary<IpFamily, TailscaleChains>();
        foreach (var family in new[] { IpFamily.V4, IpFamily.V6 })
        {
            if (snapshot.Rulesets.TryGetValue((choice.Backend, family), out var ruleset))
            {
                tailscale[family] = TailscaleChainsReader.FromIptables(ruleset, tun);
            }
        }

        var stateful = tailscale[IpFamily.V4].Stateful ?? previous.Stateful ?? settings.Hint?.Stateful ?? false;
        var unhookedSince = UnhookedSince(tailscale[IpFamily.V4], previous, at);
        var strategy = RunnerDetector.Choose(settings.Strategy, runnerChoice, tailscale[IpFamily.V4], settings.Hint, previous.Strategy, Elapsed(unhookedSince, at));

        // Tailscale's chains are referenced (Indirect) or written into (InChain) only once we know its
        // iptables runner made them: an empty ts-input in nft may belong to the nftables runner.
        var confirmed = runnerChoice.Runner is TailscaleRunner.IptablesLegacy or TailscaleRunner.IptablesNft || settings.Backend is not null;
        var layoutTailscale = confirmed ? tailscale : tailscale.ToDictionary(t => t.Key, _ => TailscaleChains.Absent);
        var desired = sets is null
            ? DesiredState.Nothing
            : strategy.Strategy == Strategy.Indirect
                ? IndirectLayout.Build(sets, tun, layoutTailscale, stateful)
                : InChainLayout.Build(sets, tun, layoutTailscale, stateful);
        if (sets is not null && strategy.Strategy == Strategy.Indirect && tailscale[IpFamily.V4].PlainJumps)
        {
            warnings.Add("tailscaled is in netfilter mode \"on\": its own jump at the top of INPUT reaches ts-input before our hook, "
                + "so Indirect exemptions have no effect; use --strategy auto (InChain) or run 'tailscale set --netfilter-mode=nodivert'");
        }

        if (sets is not null && settings.Hint?.Mode == NetfilterMode.Off)
        {
            warnings.Add("tailscaled is in netfilter mode \"off\": it drops nothing, so no exemption is needed, but subnet routing lacks "
                + "its MARK and MASQUERADE rules; use mode on or nodivert");
        }

        var restores = new List<RestoreStep>();

        // Our rules leave the back end we are not using first (after a switch of back end), then go into the chosen one.
        foreach (var ((backend, family), ruleset) in snapshot.Rulesets.OrderBy(r => r.Key.Backend == choice.Backend).ThenBy(r => r.Key.Family))
        {
            var tables = backend == choice.Backend ? desired.Tables(family) : [];
            if (Planner.Iptables(tables, ruleset) is { } input)
            {
                restores.Add(new RestoreStep(backend, family, input));
            }
        }

        return new FirewallPlan(
            choice,
            tailscale,
            stateful,
            Planner.IpsetDestroy(desired.Sets, snapshot.Sets, staging: true),
            Planner.IpsetUpdate(desired.Sets, snapshot.Sets),
            restores,
            Planner.IpsetDestroy(desired.Sets, snapshot.Sets, staging: false),
            warnings,
            runnerChoice,
            strategy,
            // Sets an earlier InChain under the nftables runner left behind.
            snapshot.Nft is { } nft ? NftLayout.Plan(null, [], nft, ownAll: false) : null)
        {
            Ours = OursAfter.Of(desired),
            UnhookedSince = unhookedSince,
        };
    }

    /// <summary>Since when ts-input has been full without tailscaled's jumps under InChain (see <see cref="RunnerDetector.Mode"/>), or null.</summary>
    private static long? UnhookedSince(TailscaleChains v4, PreviousPass previous, long now) =>
        previous.Strategy == Strategy.InChain && v4.Any && !v4.PlainJumps && v4.InputRules > 0 ? previous.UnhookedSince ?? now : null;

    private static TimeSpan? Elapsed(long? since, long now) => since is { } start ? Stopwatch.GetElapsedTime(start, now) : null;

    /// <summary>tailscaled's nftables runner: InChain in nft, and nothing of ours left in iptables or ipset.</summary>
    private static FirewallPlan PlanNative(
        HostSnapshot snapshot, IReadOnlyList<DesiredSet>? sets, FirewallSettings settings, PreviousPass previous, RunnerChoice runnerChoice, long now)
    {
        var nft = snapshot.Nft ?? NftRuleset.Empty;
        var tun = settings.TailscaleInterface;
        var v4 = TailscaleChainsReader.FromNft(nft, "ip", tun);
        var tailscale = new Dictionary<IpFamily, TailscaleChains> { [IpFamily.V4] = v4, [IpFamily.V6] = TailscaleChainsReader.FromNft(nft, "ip6", tun) };
        var stateful = v4.Stateful ?? previous.Stateful ?? settings.Hint?.Stateful ?? false;
        var unhookedSince = UnhookedSince(v4, previous, now);
        var strategy = RunnerDetector.Choose(settings.Strategy, runnerChoice, v4, settings.Hint, previous.Strategy, Elapsed(unhookedSince, now));

        // In nodivert nothing calls this runner's chains: its drop is not in force, so there is nothing to cancel, and its
        // masquerade is not either, so a subnet route does not work. Calling them ourselves from a chain of ours is what
        // breaks its next start; so the agent writes nothing and says why.
        var mode = v4.Any ? RunnerDetector.Mode(v4, settings.Hint, previous.Strategy, Elapsed(unhookedSince, now)) : null;
        var incompatible = settings.Strategy == StrategyRequest.Auto && mode?.Mode == NetfilterMode.NoDivert
            ? new Incompatibility(
                NodeReasons.NativeRunnerNoDivert,
                "tailscaled uses its nftables runner in netfilter mode nodivert: nothing calls its chains, so neither its CGNAT drop "
                + "nor its subnet-route masquerade is in force, and a chain of ours that called them would make its next start fail; "
                + "run 'tailscale set --netfilter-mode=on' (the agent then exempts the policies' sources inside its chains)")
            : null;

        if (incompatible is not null)
        {
            strategy = strategy with { Reason = $"none: {mode!.Reason}, where nothing calls tailscaled's nftables chains" };
        }
        else if (mode?.LookAgainIn is { } settling)
        {
            strategy = strategy with { Reason = mode.Reason, LookAgainIn = settling }; // kept InChain until nodivert settles
        }

        // Into a chain only once tailscaled will not flush it again (see InChainLayout): one write per rebuild. Refused: not even the
        // sets, which nothing would use.
        var nftSets = sets is null || incompatible is not null ? null : NftLayout.Sets(sets);
        var nftRules = sets is null || incompatible is not null ? []
            : NftLayout.Rules(tun, stateful).Where(r => InChainLayout.Settled(v4, r.Chain)).ToList();
        // tailscaled's chains gone (down, stopping, restarting): nothing of ours is used, so nothing changes until they are
        // back; the sets stay as they are rather than going and coming with every restart.
        var script = sets is not null && !v4.Any ? null : NftLayout.Plan(nftSets, nftRules, nft, ownAll: true);

        // iptables-legacy may still hold what an earlier strategy wrote there; iptables-nft's part is in the script above.
        var restores = snapshot.Rulesets
            .Where(r => r.Key.Backend == IptablesBackend.Legacy)
            .Select(r => (r.Key, Input: Planner.Iptables([], r.Value)))
            .Where(r => r.Input is not null)
            .Select(r => new RestoreStep(r.Key.Backend, r.Key.Family, r.Input!))
            .ToList();
        var warnings = snapshot.Notes.Where(n => !n.StartsWith(Tools.Save(IptablesBackend.Nft, IpFamily.V4), StringComparison.Ordinal)
            && !n.StartsWith(Tools.Save(IptablesBackend.Nft, IpFamily.V6), StringComparison.Ordinal)).ToList();
        if (sets is not null && incompatible is not null)
        {
            warnings.Add(incompatible.Message);
        }

        return new FirewallPlan(
            new BackendChoice(IptablesBackend.Nft, runnerChoice.Reason),
            tailscale,
            stateful,
            Planner.IpsetDestroy([], snapshot.Sets, staging: true),
            null,
            restores,
            Planner.IpsetDestroy([], snapshot.Sets, staging: false),
            warnings,
            runnerChoice,
            strategy,
            script)
        {
            // Our rules go into Tailscale's chains that exist (nft leaves out a prefix inside another one of the same set).
            Ours = new OursAfter(nftRules.Count(r => r.Chain == Names.TsInput ? v4.Input : v4.Forward), OursAfter.Members(nftSets ?? [])),
            Incompatible = sets is null ? null : incompatible,
            UnhookedSince = unhookedSince,
        };
    }

    /// <summary>Reads, plans and (unless <paramref name="dryRun"/>) writes the difference; writes nothing when in sync.</summary>
    /// <param name="writing">Called with the plan as its first write starts (not for a dry run or an empty plan), for work
    /// the caller can do meanwhile: the agent stages its state cache there.</param>
    /// <param name="hold">Asked before a non-empty plan is written: a time to wait and look again instead of writing now, or null.</param>
    public async Task<FirewallResult> ReconcileAsync(
        Exemptions? exemptions, FirewallSettings settings, bool? previousStateful, bool dryRun, CancellationToken cancellationToken,
        Action<FirewallPlan>? writing = null, Func<FirewallPlan, TimeSpan?>? hold = null)
    {
        var started = Stopwatch.GetTimestamp();
        var snapshot = Interlocked.Exchange(ref _prefetched, null) is { } prefetched
            ? await prefetched
            : await ReadSettledAsync(exemptions is not null, settings, cancellationToken) ?? await ReadAsync(cancellationToken);
        var previous = _previous with { Stateful = previousStateful ?? _previous.Stateful };
        var plan = Plan(snapshot, DesiredSets(exemptions), settings, previous);
        if (!dryRun && !plan.IsEmpty && hold?.Invoke(plan) is { } wait)
        {
            _previous = _previous with { UnhookedSince = plan.UnhookedSince };
            return new FirewallResult(plan, false, Stopwatch.GetElapsedTime(started)) { HeldFor = wait };
        }

        for (var attempt = 1; !dryRun && !plan.IsEmpty; attempt++)
        {
            try
            {
                if (attempt == 1)
                {
                    writing?.Invoke(plan);
                }

                await WriteAsync(plan, cancellationToken);
                break;
            }
            catch (FirewallToolException e) when (attempt < WriteAttempts)
            {
                // tailscaled rebuilds its chains with dozens of separate commands; a write planned against
                // a chain it flushed or deleted a moment ago fails as a whole (one transaction) and changes
                // nothing. Read again and re-plan at once rather than waiting for the next trigger.
                _settled = null;
                _log.LogDebug("write raced with another change ({Error}); reading again ({Attempt}/{Attempts})", e.Message, attempt, WriteAttempts);
                snapshot = await ReadAsync(cancellationToken);
                plan = Plan(snapshot, DesiredSets(exemptions), settings, previous);
            }
            catch
            {
                _settled = null; // what the host holds is uncertain now: read everything next time
                throw;
            }
        }

        if (!dryRun)
        {
            // Both back ends were read and planned (or only ours was, and it was settled already).
            _settled = exemptions is null ? null : plan.Backend;
            _settledNative = plan.Runner?.Runner == TailscaleRunner.Nftables;
            _settledPasses = snapshot.Settled is null ? 0 : _settledPasses + 1;
            _previous = new PreviousPass(
                plan.Stateful,
                // Refused is no strategy: taken for InChain, a refused nodivert start looked like a mode-on rebuild and was written.
                // Without tailscaled's chains there is nothing to tell the mode from: what was known before stays.
                exemptions is null || plan.Incompatible is not null ? null
                    : plan.Tailscale.GetValueOrDefault(IpFamily.V4)?.Any == true ? plan.Strategy?.Strategy : _previous.Strategy,
                plan.Runner?.Runner is TailscaleRunner.Unknown or null ? _previous.Runner : plan.Runner.Runner,
                plan.UnhookedSince);
        }

        return new FirewallResult(plan, !dryRun && !plan.IsEmpty, Stopwatch.GetElapsedTime(started));
    }

    /// <summary>The desired sets, kept while the caller passes the same <see cref="Exemptions"/> instance (10,000 CIDRs take milliseconds to render and sort).</summary>
    private IReadOnlyList<DesiredSet>? DesiredSets(Exemptions? exemptions)
    {
        if (exemptions is null)
        {
            return null;
        }

        if (!ReferenceEquals(exemptions, _setsFor))
        {
            (_setsFor, _sets) = (exemptions, IndirectLayout.Sets(exemptions));
        }

        return _sets;
    }

    /// <summary>The chosen back end alone, when that is enough (see <see cref="FullReadEvery"/>); otherwise null.</summary>
    private async Task<HostSnapshot?> ReadSettledAsync(bool applying, FirewallSettings settings, CancellationToken cancellationToken)
    {
        if (!applying || _settled is not { } settled || _settledPasses + 1 >= FullReadEvery
            || (settings.Backend is { } forced && forced != settled.Backend))
        {
            return null;
        }

        if (_settledNative)
        {
            var native = await ReadAsync([], ipset: false, nft: true, cancellationToken);
            var nativeLive = native.Nft is { } nft && TailscaleChainsReader.FromNft(nft, "ip", settings.TailscaleInterface).InputRules > 0;
            return nativeLive ? native with { Settled = settled } : null;
        }

        var snapshot = await ReadAsync([(settled.Backend, IpFamily.V4), (settled.Backend, IpFamily.V6)], ipset: true, nft: false, cancellationToken);
        var live = snapshot.Rulesets.TryGetValue((settled.Backend, IpFamily.V4), out var v4)
            && v4.Table("filter").Rules(Names.TsInput).Any(r => !Names.IsOurRule(r));
        return live ? snapshot with { Settled = settled } : null;
    }

    /// <summary>Writes a plan in the order the kernel needs: sets before the rules that use them, rules before set removal.</summary>
    public async Task WriteAsync(FirewallPlan plan, CancellationToken cancellationToken)
    {
        await IpsetRestoreAsync(plan.IpsetDestroyStaging, cancellationToken);
        await IpsetRestoreAsync(plan.IpsetUpdate, cancellationToken);
        if (plan.NftScript is { } script)
        {
            var output = await runner.RunAsync(Tools.Nft, ["-f", "-"], script, cancellationToken);
            if (!output.Succeeded)
            {
                throw new FirewallToolException($"nft -f failed ({output.ExitCode}): {output.StdErr.Trim()}");
            }
        }

        foreach (var step in plan.Restores)
        {
            await RestoreAsync(step, cancellationToken);
        }

        await IpsetRestoreAsync(plan.IpsetDestroyStale, cancellationToken);
    }

    private async Task IpsetRestoreAsync(string? input, CancellationToken cancellationToken)
    {
        if (input is null)
        {
            return;
        }

        var output = await runner.RunAsync(Tools.Ipset, ["restore"], input, cancellationToken);
        if (!output.Succeeded)
        {
            throw new FirewallToolException($"ipset restore failed ({output.ExitCode}): {output.StdErr.Trim()}");
        }
    }

    private async Task RestoreAsync(RestoreStep step, CancellationToken cancellationToken)
    {
        var tool = Tools.Restore(step.Backend, step.Family);
        for (var attempt = 1; ; attempt++)
        {
            // --noflush: only what we name changes; -w: wait for the xtables lock instead of failing at once.
            var output = await runner.RunAsync(tool, ["--noflush", "-w", "5"], step.Input, cancellationToken);
            if (output.Succeeded)
            {
                return;
            }

            var lockBusy = output.StdErr.Contains("xtables lock", StringComparison.OrdinalIgnoreCase)
                || output.StdErr.Contains("Resource temporarily unavailable", StringComparison.Ordinal);
            if (!lockBusy || attempt >= LockRetries)
            {
                throw new FirewallToolException($"{tool} failed ({output.ExitCode}): {output.StdErr.Trim()}");
            }

            _log.LogWarning("{Tool}: xtables lock busy, retrying ({Attempt}/{Retries})", tool, attempt, LockRetries);
            await Task.Delay(TimeSpan.FromMilliseconds(200 * attempt), cancellationToken);
        }
    }
}
