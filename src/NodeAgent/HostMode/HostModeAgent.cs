using System.Runtime.InteropServices;
using System.Threading.Channels;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using TsCgnat.Api;
using TsCgnat.Firewall;

namespace TsCgnat.NodeAgent.HostMode;

/// <summary>Options of <c>ts-cgnat-agent run</c> in host mode.</summary>
public sealed record HostModeOptions(IReadOnlyList<string> PolicyPaths, TimeSpan ResyncInterval);

/// <summary>
/// <c>run</c> without Kubernetes: restores the cached state, then keeps the host matching the policy
/// files. Inputs (file changes, SIGHUP, the resync timer, a retry after a failure) only mark the host
/// dirty; one reconcile reads everything again, so bursts coalesce and no logic depends on which
/// input fired. Stopping leaves the rules in place.
/// </summary>
public sealed class HostModeAgent(Reconciler reconciler, HostModeOptions options, ILogger<HostModeAgent> logger) : BackgroundService
{
    private const string PeriodicResync = "periodic resync";
    private const string RetryAfterFailure = "retry after failure";
    private static readonly TimeSpan FileSettle = TimeSpan.FromMilliseconds(200);
    private readonly Channel<string> _dirty = Channel.CreateBounded<string>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
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
            MarkDirty("SIGHUP");
        });
        using var watchers = new WatcherSet(WatchedDirectories(options.PolicyPaths), () => MarkDirty("policy file changed"));

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
        MarkDirty("start");

        var failures = 0;
        await foreach (var reason in _dirty.Reader.ReadAllAsync(stoppingToken))
        {
            if (reason == "policy file changed")
            {
                await Task.Delay(FileSettle, stoppingToken); // let an editor finish its write-rename dance
                _dirty.Reader.TryRead(out _);
            }

            try
            {
                await ReconcileOnceAsync(reason, stoppingToken);
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

    private async Task ReconcileOnceAsync(string reason, CancellationToken cancellationToken)
    {
        // A timer resync re-reads the files only when one changed (size, time or the set of files), so
        // an idle pass costs a few stat calls instead of parsing every policy again, and a missed
        // watcher event is still caught. A watcher event or SIGHUP always re-reads.
        var fingerprint = PolicyFiles.Fingerprint(options.PolicyPaths);
        var timer = reason is PeriodicResync or RetryAfterFailure;
        if (timer && fingerprint == _fingerprint && _lastProblems is null && _lastGood is not null)
        {
            await ApplyAsync(reason, cancellationToken);
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

        await ApplyAsync(reason, cancellationToken);
    }

    private async Task ApplyAsync(string reason, CancellationToken cancellationToken)
    {
        var result = await reconciler.ApplyAsync(_lastGood!, dryRun: false, cancellationToken);
        Reconciles++;
        foreach (var warning in result.Plan.Warnings)
        {
            logger.LogWarning("{Warning}", warning);
        }

        if (result.Wrote)
        {
            logger.LogInformation(
                "reconciled ({Reason}) in {Elapsed:F1} ms: rules written to {Backend} ({Why}); {Policies} policies",
                reason, result.Elapsed.TotalMilliseconds, result.Plan.Backend.Backend, result.Plan.Backend.Reason, _lastGood!.Count);
        }
        else
        {
            logger.LogDebug("reconciled ({Reason}) in {Elapsed:F1} ms: in sync, nothing written", reason, result.Elapsed.TotalMilliseconds);
        }
    }

    private void MarkDirty(string reason) => _dirty.Writer.TryWrite(reason);

    private async Task ResyncTimerAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(options.ResyncInterval);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken))
            {
                MarkDirty(PeriodicResync);
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
            MarkDirty(RetryAfterFailure);
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
