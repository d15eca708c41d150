using System.Runtime.InteropServices;
using System.Threading.Channels;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using TsCgnat.Api;
using TsCgnat.Firewall;
using TsCgnat.Firewall.Model;
using TsCgnat.NodeAgent.Tailscale;
using TsCgnat.NodeAgent.Triggers;

namespace TsCgnat.NodeAgent.HostMode;

/// <summary>Options of <c>ts-cgnat-agent run</c> in host mode.</summary>
/// <param name="Debounce">How long to wait after a firewall change before looking, so a burst of tailscaled's commands is read once.</param>
/// <param name="EnforceNoDivert">Switch tailscaled from mode on to nodivert through the LocalAPI (design section 4, off by default).</param>
public sealed record HostModeOptions(IReadOnlyList<string> PolicyPaths, TimeSpan ResyncInterval, TimeSpan? Debounce = null, bool EnforceNoDivert = false);

/// <summary>
/// <c>run</c> without Kubernetes: restores the cached state, then keeps the host matching the policy
/// files. Inputs (file changes, SIGHUP, the resync timer, a retry after a failure) only mark the host
/// dirty; one reconcile reads everything again, so bursts coalesce and no logic depends on which
/// input fired. Firewall changes (nft monitor, the legacy poll) and tailscaled's state and prefs
/// notifications are inputs too, which is how drift is repaired within milliseconds. Stopping leaves
/// the rules in place.
/// </summary>
public sealed class HostModeAgent(
    Reconciler reconciler,
    HostModeOptions options,
    ILogger<HostModeAgent> logger,
    TimeProvider time,
    RepairStats repairs,
    Func<Action<Trigger>, FirewallWatch>? firewallWatch = null,
    Func<Action<TailscaleView>, TailscaleWatcher>? tailscaleWatcher = null,
    LocalApiClient? localApi = null) : BackgroundService
{
    private int _enforcing;
    private string? _enforceProblem;
    private static readonly TimeSpan FileSettle = TimeSpan.FromMilliseconds(200);

    // One pending trigger is enough (level-triggered): a later one while one waits adds nothing, and the
    // earliest one's time is what the repair latency is measured from.
    private readonly Channel<Trigger> _dirty = Channel.CreateBounded<Trigger>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private FirewallWatch? _firewall;
    private IReadOnlyList<ValidatedPolicy>? _lastGood;
    private string? _lastProblems;
    private string? _fingerprint;

    /// <summary>Completed reconciles, for tests and the log.</summary>
    public int Reconciles { get; private set; }

    protected override async Task ExecuteAsync(CancellationToken stoppingToken)
    {
        using var hangup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, context =>
        {
            context.Cancel = true; // SIGHUP means "read the files again", not "terminate"
            MarkDirty(Causes.Hangup);
        });
        using var watchers = new WatcherSet(WatchedDirectories(options.PolicyPaths), () => MarkDirty(Causes.PolicyChanged));
        _firewall = firewallWatch?.Invoke(t => _dirty.Writer.TryWrite(t));
        if (_firewall is not null)
        {
            _ = _firewall.RunMonitorAsync(stoppingToken);
            _ = _firewall.RunLegacyPollAsync(stoppingToken);
        }

        if (tailscaleWatcher?.Invoke(OnTailscale) is { } tailscale)
        {
            _ = tailscale.RunAsync(stoppingToken);
        }

        try
        {
            await reconciler.ApplyCacheAsync(stoppingToken);
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            // Not fatal: the loop below retries with the policy files (and backs off on failure).
            logger.LogError("restoring the cached state failed: {Error}", e.Message);
        }

        _ = ResyncTimerAsync(stoppingToken);
        MarkDirty(Causes.Start);

        var failures = 0;
        await foreach (var trigger in _dirty.Reader.ReadAllAsync(stoppingToken))
        {
            var reason = trigger.Cause;
            if (reason == Causes.PolicyChanged)
            {
                await Task.Delay(FileSettle, stoppingToken); // let an editor finish its write-rename dance
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
                _ = RetryAsync(retry, stoppingToken);
            }
        }
    }

    private async Task ReconcileOnceAsync(Trigger trigger, CancellationToken cancellationToken)
    {
        var reason = trigger.Cause;
        // A timer resync re-reads the files only when one changed (size, time or the set of files), so
        // an idle pass costs a few stat calls instead of parsing every policy again, and a missed
        // watcher event is still caught. A watcher event or SIGHUP always re-reads.
        var fingerprint = PolicyFiles.Fingerprint(options.PolicyPaths);
        var unchanged = reason is not (Causes.PolicyChanged or Causes.Hangup or Causes.Start);
        if (unchanged && fingerprint == _fingerprint && _lastProblems is null && _lastGood is not null)
        {
            await ApplyAsync(trigger, cancellationToken);
            return;
        }

        _fingerprint = fingerprint;
        var set = PolicyFiles.Load(options.PolicyPaths);
        if (set.IsValid)
        {
            _lastGood = [.. set.Policies.Select(p => p.Valid)];
            if (_lastProblems is not null)
            {
                logger.LogInformation("policy files are valid again");
                _lastProblems = null;
            }
        }
        else
        {
            var problems = string.Join("\n  ", set.Problems);
            if (problems != _lastProblems)
            {
                logger.LogError("policy files are invalid; keeping the last good rules until they are fixed:\n  {Problems}", problems);
                _lastProblems = problems;
            }

            if (_lastGood is null)
            {
                // Nothing good was ever read: keep the cached state (if any) in force, repairing drift.
                await reconciler.ApplyCacheAsync(cancellationToken);
                return;
            }
        }

        await ApplyAsync(trigger, cancellationToken);
    }

    private async Task ApplyAsync(Trigger trigger, CancellationToken cancellationToken)
    {
        var reason = trigger.Cause;
        var result = await reconciler.ApplyAsync(_lastGood!, dryRun: false, cancellationToken);
        Reconciles++;
        _firewall?.RulesLiveIn(result.Plan.BackendName);
        if (result.Wrote && Causes.IsRepair(reason))
        {
            var latency = time.GetElapsedTime(trigger.SeenAt);
            repairs.Record(reason, latency);
            logger.LogInformation("repaired drift ({Reason}): rules back {Latency:F1} ms after the change was seen", reason, latency.TotalMilliseconds);
        }

        foreach (var warning in result.Plan.Warnings)
        {
            logger.LogWarning("{Warning}", warning);
        }

        if (result.Wrote)
        {
            logger.LogInformation(
                "reconciled ({Reason}) in {Elapsed:F1} ms: rules written to {Backend} ({Why}), strategy {Strategy} ({StrategyWhy}); {Policies} policies",
                reason, result.Elapsed.TotalMilliseconds, result.Plan.BackendName, result.Plan.Backend.Reason,
                result.Plan.Strategy?.Strategy, result.Plan.Strategy?.Reason, _lastGood!.Count);
        }
        else
        {
            logger.LogDebug("reconciled ({Reason}) in {Elapsed:F1} ms: in sync, nothing written", reason, result.Elapsed.TotalMilliseconds);
        }
    }

    private void MarkDirty(string reason) => _dirty.Writer.TryWrite(new Trigger(reason, time.GetTimestamp()));

    /// <summary>tailscaled changed state or prefs (or came and went): remember what it says, and look again.</summary>
    private void OnTailscale(TailscaleView view)
    {
        reconciler.Hint = view.Reachable && view.Prefs is { } prefs
            ? new TailscaleHint(
                (TsCgnat.Firewall.Model.NetfilterMode)(int)prefs.NetfilterMode,
                prefs.NetfilterKind,
                prefs.NoStatefulFiltering is null ? null : prefs.StatefulFiltering,
                view.State == BackendState.Running)
            : null;
        MarkDirty(Causes.Tailscale);
        if (options.EnforceNoDivert && localApi is not null && view.Reachable && view.Prefs?.NetfilterMode == Tailscale.NetfilterMode.On
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
            await client.SetNetfilterModeAsync(Tailscale.NetfilterMode.NoDivert, CancellationToken.None);
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
        using var timer = new PeriodicTimer(options.ResyncInterval);
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

    private async Task RetryAsync(TimeSpan delay, CancellationToken cancellationToken)
    {
        try
        {
            await Task.Delay(delay, cancellationToken);
            MarkDirty(Causes.Retry);
        }
        catch (OperationCanceledException)
        {
        }
    }

    private static IEnumerable<string> WatchedDirectories(IEnumerable<string> paths) =>
        paths.Select(p => Directory.Exists(p) ? Path.GetFullPath(p) : Path.GetDirectoryName(Path.GetFullPath(p))!)
            .Where(Directory.Exists)
            .Distinct(StringComparer.Ordinal);

    /// <summary>Watches the directories that hold the policy files (a file replaced by rename is seen too).</summary>
    private sealed class WatcherSet : IDisposable
    {
        private readonly List<FileSystemWatcher> _watchers = [];

        public WatcherSet(IEnumerable<string> directories, Action changed)
        {
            foreach (var directory in directories)
            {
                var watcher = new FileSystemWatcher(directory)
                {
                    NotifyFilter = NotifyFilters.FileName | NotifyFilters.LastWrite | NotifyFilters.Size | NotifyFilters.DirectoryName,
                    IncludeSubdirectories = true, // a ConfigMap mount swaps its ..data directory
                };
                watcher.Changed += (_, _) => changed();
                watcher.Created += (_, _) => changed();
                watcher.Deleted += (_, _) => changed();
                watcher.Renamed += (_, _) => changed();
                watcher.EnableRaisingEvents = true;
                _watchers.Add(watcher);
            }
        }

        public void Dispose()
        {
            foreach (var watcher in _watchers)
            {
                watcher.Dispose();
            }
        }
    }
}
