using System.Runtime.InteropServices;
using Microsoft.Extensions.Logging;
using TsCgnat.Api;
using TsCgnat.NodeAgent.Reconciling;
using TsCgnat.NodeAgent.Triggers;

namespace TsCgnat.NodeAgent.HostMode;

/// <summary>
/// Host mode's policies: the policy files. A file watcher and SIGHUP say "look again"; a timer resync re-reads
/// the files only when one changed (size, time or the set of files), so an idle pass costs a few stat calls
/// instead of parsing every policy again, and a missed watcher event is still caught. A bad edit keeps the
/// last good policies in force. Changes under <paramref name="stateDirectory"/> are not policy changes: the
/// watcher covers the policy directories with their subdirectories, and without this a state directory kept
/// among the policies would turn each write of our own cache into another pass (under the wrong cause).
/// </summary>
public sealed class PolicyFileSource(IReadOnlyList<string> paths, ILogger<PolicyFileSource> logger, string? stateDirectory = null) : IPolicySource
{
    private static readonly TimeSpan FileSettle = TimeSpan.FromMilliseconds(200);
    private IReadOnlyList<ValidatedPolicy>? _lastGood;
    private string? _lastProblems;
    private string? _fingerprint;

    public IReadOnlyList<string> Paths => paths;

    /// <summary>The files are read at every pass: nothing to wait for.</summary>
    public bool HasSynced => true;

    public IDisposable Start(Action<string> changed, CancellationToken stoppingToken)
    {
        var hangup = PosixSignalRegistration.Create(PosixSignal.SIGHUP, context =>
        {
            context.Cancel = true; // SIGHUP means "read the files again", not "terminate"
            changed(Causes.Hangup);
        });
        var ignored = stateDirectory is null ? null : Path.TrimEndingDirectorySeparator(Path.GetFullPath(stateDirectory)) + Path.DirectorySeparatorChar;
        var watchers = new WatcherSet(WatchedDirectories(paths), path =>
        {
            if (ignored is null || !(path + Path.DirectorySeparatorChar).StartsWith(ignored, StringComparison.Ordinal))
            {
                changed(Causes.PolicyChanged);
            }
        });
        return new Inputs(hangup, watchers);
    }

    /// <summary>Let an editor finish its write-rename dance before reading.</summary>
    public TimeSpan SettleTime(string cause) => cause == Causes.PolicyChanged ? FileSettle : TimeSpan.Zero;

    public Task<IReadOnlyList<ValidatedPolicy>?> ReadAsync(string cause, CancellationToken cancellationToken)
    {
        var fingerprint = PolicyFiles.Fingerprint(paths);
        var unchanged = cause is not (Causes.PolicyChanged or Causes.Hangup or Causes.Start);
        if (unchanged && fingerprint == _fingerprint && _lastProblems is null && _lastGood is not null)
        {
            return Task.FromResult<IReadOnlyList<ValidatedPolicy>?>(_lastGood);
        }

        _fingerprint = fingerprint;
        var set = PolicyFiles.Load(paths);
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
        }

        return Task.FromResult<IReadOnlyList<ValidatedPolicy>?>(_lastGood);
    }

    /// <summary>Host mode reports through its log only (the loop writes it).</summary>
    public void Completed(PassOutcome outcome)
    {
    }

    private sealed class Inputs(PosixSignalRegistration hangup, WatcherSet watchers) : IDisposable
    {
        public void Dispose()
        {
            watchers.Dispose();
            hangup.Dispose();
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

        public WatcherSet(IEnumerable<string> directories, Action<string> changed)
        {
            foreach (var directory in directories)
            {
                var watcher = new FileSystemWatcher(directory)
                {
                    NotifyFilter = NotifyFilters.FileName | NotifyFilters.LastWrite | NotifyFilters.Size | NotifyFilters.DirectoryName,
                    IncludeSubdirectories = true, // a ConfigMap mount swaps its ..data directory
                };
                watcher.Changed += (_, e) => changed(e.FullPath);
                watcher.Created += (_, e) => changed(e.FullPath);
                watcher.Deleted += (_, e) => changed(e.FullPath);
                watcher.Renamed += (_, e) => changed(e.FullPath);
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
