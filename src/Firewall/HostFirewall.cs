using System.Diagnostics;
using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TsCgnat.Firewall.Detection;
using TsCgnat.Firewall.Formats;
using TsCgnat.Firewall.Model;
using TsCgnat.Firewall.Processes;
using TsCgnat.Firewall.Rules;

namespace TsCgnat.Firewall;

/// <summary>How the host is set up, as far as the engine needs to know.</summary>
/// <param name="TailscaleInterface">tailscaled's tun name (<c>tailscaled --tun</c>).</param>
/// <param name="Backend">Force a back end instead of detecting it.</param>
public sealed record FirewallSettings(string TailscaleInterface = "tailscale0", IptablesBackend? Backend = null);

/// <summary>What was read from the host in one pass: the back ends and families read, and our sets.</summary>
/// <param name="Settled">Set when only the back end chosen before was read (see <see cref="HostFirewall.FullReadEvery"/>).</param>
public sealed record HostSnapshot(
    IReadOnlyDictionary<(IptablesBackend Backend, IpFamily Family), SavedRuleset> Rulesets,
    IReadOnlyDictionary<string, SavedSet> Sets,
    IReadOnlyList<string> Notes,
    BackendChoice? Settled = null);

/// <summary>One <c>iptables-restore</c> run.</summary>
public sealed record RestoreStep(IptablesBackend Backend, IpFamily Family, string Input);

/// <summary>The difference between the host and what we want, as the exact input of each write.</summary>
public sealed record FirewallPlan(
    BackendChoice Backend,
    IReadOnlyDictionary<IpFamily, TailscaleChains> Tailscale,
    bool Stateful,
    string? IpsetDestroyStaging,
    string? IpsetUpdate,
    IReadOnlyList<RestoreStep> Restores,
    string? IpsetDestroyStale,
    IReadOnlyList<string> Warnings)
{
    public bool IsEmpty => IpsetDestroyStaging is null && IpsetUpdate is null && Restores.Count == 0 && IpsetDestroyStale is null;

    /// <summary>The plan as a human reads it (apply --dry-run).</summary>
    public string Describe()
    {
        if (IsEmpty)
        {
            return "in sync: nothing to write\n";
        }

        var text = new StringBuilder();
        void Block(string title, string? body)
        {
            if (body is null)
            {
                return;
            }

            text.Append("# ").Append(title).Append('\n').Append(body);
        }

        Block("ipset restore (remove staging sets left by an interrupted run)", IpsetDestroyStaging);
        Block("ipset restore", IpsetUpdate);
        foreach (var step in Restores)
        {
            Block($"{Tools.Restore(step.Backend, step.Family)} --noflush", step.Input);
        }

        Block("ipset restore (remove sets no longer used)", IpsetDestroyStale);
        return text.ToString();
    }
}

/// <summary>What one reconcile found and did.</summary>
public sealed record ReconcileResult(FirewallPlan Plan, bool Wrote, TimeSpan Elapsed);

/// <summary>Raised when a write to the host failed; the message names the tool and what it said.</summary>
public sealed class FirewallWriteException(string message) : Exception(message);

/// <summary>
/// Reads the host, plans the difference to what we want and writes it: the edge between the pure
/// planner and the host's iptables and ipset. One instance per host (or network namespace).
/// </summary>
public sealed class HostFirewall(ICommandRunner runner, ILogger? logger = null)
{
    private const int LockRetries = 3;
    private static readonly (IptablesBackend, IpFamily)[] Everything =
    [
        (IptablesBackend.Legacy, IpFamily.V4), (IptablesBackend.Legacy, IpFamily.V6),
        (IptablesBackend.Nft, IpFamily.V4), (IptablesBackend.Nft, IpFamily.V6),
    ];

    private readonly ILogger _log = logger ?? NullLogger.Instance;
    private BackendChoice? _settled;
    private int _settledPasses;
    private Exemptions? _setsFor;
    private IReadOnlyList<DesiredSet>? _sets;

    /// <summary>
    /// After a pass that read both back ends and left ours only in the chosen one, the next passes read
    /// only the chosen back end (a resync costs 3 processes instead of 5), until this many have gone by
    /// or Tailscale's ts-input there is empty (tailscaled down, restarting, or moving to the other back
    /// end, whose leftover chains our reference keeps alive but empty): then both are read again.
    /// </summary>
    public int FullReadEvery { get; init; } = 10;

    /// <summary>Reads both back ends, both families and our sets, all at once.</summary>
    public Task<HostSnapshot> ReadAsync(CancellationToken cancellationToken) => ReadAsync(Everything, cancellationToken);

    private async Task<HostSnapshot> ReadAsync((IptablesBackend, IpFamily)[] keys, CancellationToken cancellationToken)
    {
        var saves = keys.Select(k => runner.RunAsync(Tools.Save(k.Item1, k.Item2), [], null, cancellationToken)).ToList();
        var ipset = runner.RunAsync(Tools.Ipset, ["save"], null, cancellationToken);
        await Task.WhenAll(saves.Cast<Task>().Append(ipset));

        var notes = new List<string>();
        var rulesets = new Dictionary<(IptablesBackend, IpFamily), SavedRuleset>();
        for (var i = 0; i < keys.Length; i++)
        {
            var output = saves[i].Result;
            if (output.Succeeded)
            {
                rulesets[keys[i]] = SavedRuleset.Parse(output.StdOut);
            }
            else
            {
                notes.Add($"{Tools.Save(keys[i].Item1, keys[i].Item2)} failed ({output.ExitCode}): {output.StdErr.Trim()}");
            }
        }

        var sets = ipset.Result;
        if (!sets.Succeeded)
        {
            throw new FirewallWriteException($"ipset save failed ({sets.ExitCode}): {sets.StdErr.Trim()}; {Remedy(sets)}");
        }

        var ours = IpsetSave.Parse(sets.StdOut, Names.SetPrefix);
        return new HostSnapshot(rulesets, ours, notes);
    }

    /// <summary>What to do about a read that failed, in the reader's terms.</summary>
    private static string Remedy(CommandOutput output) =>
        output.ExitCode == 127 ? "install ipset and iptables (1.8 or later)"
        : output.StdErr.Contains("not permitted", StringComparison.OrdinalIgnoreCase) || output.StdErr.Contains("Permission denied", StringComparison.OrdinalIgnoreCase)
            ? "the agent needs root, or CAP_NET_ADMIN and CAP_NET_RAW"
            : "check that the ip_set and ip_tables/nf_tables kernel modules can load";

    /// <summary>The plan that gives the host exactly <paramref name="exemptions"/> (null: nothing of ours, for cleanup).</summary>
    /// <param name="previousStateful">What we knew of tailscaled's stateful filtering before, used while ts-forward is empty.</param>
    public static FirewallPlan Plan(HostSnapshot snapshot, Exemptions? exemptions, FirewallSettings settings, bool? previousStateful) =>
        Plan(snapshot, exemptions is null ? null : IndirectLayout.Sets(exemptions), settings, previousStateful);

    /// <summary>The plan for sets already computed with <see cref="IndirectLayout.Sets"/> (null: nothing of ours).</summary>
    public static FirewallPlan Plan(HostSnapshot snapshot, IReadOnlyList<DesiredSet>? sets, FirewallSettings settings, bool? previousStateful)
    {
        var warnings = new List<string>(snapshot.Notes);
        var v4 = snapshot.Rulesets.Where(r => r.Key.Family == IpFamily.V4).ToDictionary(r => r.Key.Backend, r => r.Value);
        if (v4.Count == 0)
        {
            throw new FirewallWriteException($"no iptables back end could be read: {string.Join("; ", snapshot.Notes)}");
        }

        var choice = settings.Backend is { } forced
            ? new BackendChoice(forced, $"{Tools.Name(forced)} was chosen with --backend")
            : snapshot.Settled ?? BackendDetector.Detect(v4, SystemIptables.Default);
        if (!snapshot.Rulesets.ContainsKey((choice.Backend, IpFamily.V4)))
        {
            throw new FirewallWriteException($"{Tools.Save(choice.Backend, IpFamily.V4)} could not be run: {string.Join("; ", snapshot.Notes)}");
        }

        var tailscale = new Dictionary<IpFamily, TailscaleChains>();
        foreach (var family in new[] { IpFamily.V4, IpFamily.V6 })
        {
            if (snapshot.Rulesets.TryGetValue((choice.Backend, family), out var ruleset))
            {
                tailscale[family] = BackendDetector.Tailscale(ruleset, settings.TailscaleInterface);
            }
        }

        var stateful = tailscale[IpFamily.V4].Stateful ?? previousStateful ?? false;
        var desired = sets is null
            ? DesiredState.Nothing
            : IndirectLayout.Build(sets, settings.TailscaleInterface, tailscale, stateful);
        if (sets is not null && tailscale[IpFamily.V4].PlainJumps)
        {
            warnings.Add("tailscaled is in netfilter mode \"on\": its own jump at the top of INPUT reaches ts-input before our hook, "
                + "so the exemptions have no effect; run 'tailscale set --netfilter-mode=nodivert'");
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
            warnings);
    }

    /// <summary>Reads, plans and (unless <paramref name="dryRun"/>) writes the difference; writes nothing when in sync.</summary>
    public async Task<ReconcileResult> ReconcileAsync(
        Exemptions? exemptions, FirewallSettings settings, bool? previousStateful, bool dryRun, CancellationToken cancellationToken)
    {
        var started = Stopwatch.GetTimestamp();
        var snapshot = await ReadSettledAsync(exemptions is not null, settings, cancellationToken)
            ?? await ReadAsync(cancellationToken);
        var plan = Plan(snapshot, DesiredSets(exemptions), settings, previousStateful);
        if (!dryRun && !plan.IsEmpty)
        {
            try
            {
                await WriteAsync(plan, cancellationToken);
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
            _settledPasses = snapshot.Settled is null ? 0 : _settledPasses + 1;
        }

        return new ReconcileResult(plan, !dryRun && !plan.IsEmpty, Stopwatch.GetElapsedTime(started));
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

        var snapshot = await ReadAsync([(settled.Backend, IpFamily.V4), (settled.Backend, IpFamily.V6)], cancellationToken);
        var live = snapshot.Rulesets.TryGetValue((settled.Backend, IpFamily.V4), out var v4)
            && v4.Table("filter").Rules(Names.TsInput).Count > 0;
        return live ? snapshot with { Settled = settled } : null;
    }

    /// <summary>Writes a plan in the order the kernel needs: sets before the rules that use them, rules before set removal.</summary>
    public async Task WriteAsync(FirewallPlan plan, CancellationToken cancellationToken)
    {
        await IpsetRestoreAsync(plan.IpsetDestroyStaging, cancellationToken);
        await IpsetRestoreAsync(plan.IpsetUpdate, cancellationToken);
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
            throw new FirewallWriteException($"ipset restore failed ({output.ExitCode}): {output.StdErr.Trim()}");
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
                throw new FirewallWriteException($"{tool} failed ({output.ExitCode}): {output.StdErr.Trim()}");
            }

            _log.LogWarning("{Tool}: xtables lock busy, retrying ({Attempt}/{Retries})", tool, attempt, LockRetries);
            await Task.Delay(TimeSpan.FromMilliseconds(200 * attempt), cancellationToken);
        }
    }
}
