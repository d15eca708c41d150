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
/// last good policies in force. Only a change of a policy file itself is a policy change (<see cref="IsPolicyChange"/>):
/// any other file written beside them (our own state cache, an editor's swap file, a log) would otherwise label a pass
/// "policy file changed", and a repair made in that pass would not be counted as one.
/// </summary>
public sealed class PolicyFileSource(IReadOnlyList<string> paths, ILogger<PolicyFileSource> logger) : IPolicySource
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
        var full = paths.Select(p => Path.TrimEndingDirectorySeparator(Path.GetFullPath(p))).ToList();
        var watchers = new WatcherSet(WatchedDirectories(paths), path =>
        {
            if (IsPolicyChange(full, path))
            {
                changed(Causes.PolicyChanged);
            }
        });
        return new Inputs(hangup, watchers);
    }

    /// <summary>
    /// Whether a change the watcher saw at <paramref name="changed"/> can change what the policy files say: one of the
    /// files named, a policy file (<c>*.yaml</c>, <c>*.yml</c>, not hidden) directly in a directory named, or the
    /// <c>..data</c>-style entries through which a Kubernetes volume (a ConfigMap) swaps all of its files at once.
    /// </summary>
    /// <param name="paths">The policy paths as given, made full.</param>
    public static bool IsPolicyChange(IReadOnlyList<string> paths, string changed)
    {
        var directory = Path.GetDirectoryName(changed);
        var name = Path.GetFileName(changed);
        foreach (var path in paths)
        {
            if (string.Equals(changed, path, StringComparison.Ordinal))
            {
                return true;
            }

            var swap = name.StartsWith("..", StringComparison.Ordinal);
            var inDirectory = string.Equals(directory, path, StringComparison.Ordinal);
            if (inDirectory && (swap || PolicyFiles.IsPolicyFileName(name)))
            {
                return true;
            }

            if (swap && string.Equals(directory, Path.GetDirectoryName(path), StringComparison.Ordinal))
            {
                return true;
            }
        }

        return false;
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
                    IncludeSubdirectories = false, // a ConfigMap mount swaps its ..data link, an entry of the directory itself
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
