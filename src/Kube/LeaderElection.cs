using k8s;
using k8s.LeaderElection;
using k8s.LeaderElection.ResourceLock;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace TsCgnat.Kube;

/// <summary>Which Lease, who we are, and client-go's default timings (15 s lease, 10 s renew deadline, 2 s retry).</summary>
public sealed record LeaderElectionOptions(string Namespace, string LeaseName, string Identity)
{
    /// <summary>How long others wait after the last renewal before they take over.</summary>
    public TimeSpan LeaseDuration { get; init; } = TimeSpan.FromSeconds(15);

    /// <summary>How long the leader keeps trying to renew before it gives up leading.</summary>
    public TimeSpan RenewDeadline { get; init; } = TimeSpan.FromSeconds(10);

    public TimeSpan RetryPeriod { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>
    /// On a clean stop, hand the Lease back (empty holder) so another instance takes over at its next retry
    /// instead of after a whole <see cref="LeaseDuration"/> (client-go's ReleaseOnCancel).
    /// </summary>
    public bool ReleaseOnStop { get; init; } = true;
}

/// <summary>
/// Runs work only while this instance holds the Lease, over KubernetesClient's <see cref="LeaderElector"/> and
/// <see cref="LeaseLock"/>. The work's token is cancelled when leadership is lost, and the work has ended
/// before anyone else can lead after a release; after a loss this instance competes again.
/// </summary>
public sealed class LeaderElection
{
    private readonly IKubernetes client;
    private readonly LeaderElectionOptions options;
    private readonly ILogger logger;
    private volatile bool leading;
    private volatile string? leader;

    public LeaderElection(IKubernetes client, LeaderElectionOptions options, ILogger? logger = null)
    {
        this.client = client ?? throw new ArgumentNullException(nameof(client));
        this.options = options ?? throw new ArgumentNullException(nameof(options));
        this.logger = logger ?? NullLogger.Instance;
    }

    public bool IsLeader => leading;

    /// <summary>The holder last observed, this instance or another.</summary>
    public string? Leader => leader;

    /// <summary>
    /// Competes for the Lease until <paramref name="cancellationToken"/> is cancelled, running
    /// <paramref name="whileLeading"/> during each term. If the work fails while leading, leadership is given
    /// up and the failure is thrown, so the process restarts rather than hold a Lease while doing nothing.
    /// </summary>
    public async Task RunAsync(Func<CancellationToken, Task> whileLeading, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(whileLeading);
        var config = new LeaderElectionConfig(new LeaseLock(client, options.Namespace, options.LeaseName, options.Identity))
        {
            LeaseDuration = options.LeaseDuration,
            RenewDeadline = options.RenewDeadline,
            RetryPeriod = options.RetryPeriod,
        };

        while (!cancellationToken.IsCancellationRequested)
        {
            using var term = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            using var elector = new LeaderElector(config);
            Task? work = null;
            using var workStop = new CancellationTokenSource();
            elector.OnStartedLeading += () =>
            {
                leading = true;
                logger.LogInformation("{Identity} leads {Namespace}/{Lease}", options.Identity, options.Namespace, options.LeaseName);
                work = Task.Run(() => whileLeading(workStop.Token), CancellationToken.None);
                // The work ending on its own (a failure) ends the term too.
                _ = work.ContinueWith(_ => CancelQuietly(term), CancellationToken.None, TaskContinuationOptions.ExecuteSynchronously, TaskScheduler.Default);
            };
            elector.OnStoppedLeading += () =>
            {
                leading = false;
                workStop.Cancel();
            };
            elector.OnNewLeader += holder =>
            {
                leader = holder;
                logger.LogInformation("{Namespace}/{Lease} is held by {Holder}", options.Namespace, options.LeaseName, holder);
            };
            elector.OnError += e => logger.LogWarning("leader election on {Namespace}/{Lease}: {Error}", options.Namespace, options.LeaseName, e.Message);

            try
            {
                await elector.RunUntilLeadershipLostAsync(term.Token);
            }
            catch (OperationCanceledException) when (term.IsCancellationRequested)
            {
            }
            catch (Exception e)
            {
                logger.LogWarning("leader election on {Namespace}/{Lease} failed: {Error}", options.Namespace, options.LeaseName, e.Message);
            }
            finally
            {
                leading = false;
                await workStop.CancelAsync();
            }

            if (work is not null)
            {
                try
                {
                    await work;
                }
                catch (OperationCanceledException) when (workStop.IsCancellationRequested)
                {
                }
                finally
                {
                    logger.LogInformation("{Identity} stopped leading {Namespace}/{Lease}", options.Identity, options.Namespace, options.LeaseName);
                    // Only now that the work has ended may another instance lead: release here, not earlier.
                    if (options.ReleaseOnStop && (cancellationToken.IsCancellationRequested || work.IsFaulted))
                    {
                        await ReleaseAsync();
                    }
                }

                if (work.IsCompletedSuccessfully && !cancellationToken.IsCancellationRequested && !workStop.IsCancellationRequested)
                {
                    logger.LogWarning("{Identity}: the work ended while leading; competing again", options.Identity);
                }
            }

            if (!cancellationToken.IsCancellationRequested)
            {
                await Task.Delay(options.RetryPeriod, cancellationToken).ContinueWith(_ => { }, TaskScheduler.Default);
            }
        }
    }

    private static void CancelQuietly(CancellationTokenSource source)
    {
        try
        {
            source.Cancel();
        }
        catch (ObjectDisposedException)
        {
            // The term is already over.
        }
    }

    /// <summary>
    /// Empties the holder of the Lease if it is still ours. The holder must be the empty string, not null:
    /// LeaderElector reads a null holder as "no Lease" and tries to create one, which fails forever.
    /// </summary>
    private async Task ReleaseAsync()
    {
        using var timeout = new CancellationTokenSource(options.RenewDeadline);
        try
        {
            // A renewal the elector had in flight when the term ended can land between our read and our update; the
            // update then conflicts, and the Lease is read again (it failed this way once in a CI rehearsal: the
            // holder stayed ours). A few attempts, all within the renew deadline.
            var lease = new LeaseLock(client, options.Namespace, options.LeaseName, options.Identity);
            var released = false;
            for (var attempt = 1; attempt <= 3 && !released; attempt++)
            {
                var record = await lease.GetAsync(timeout.Token);
                if (record?.HolderIdentity != options.Identity)
                {
                    return;
                }

                released = await lease.UpdateAsync(
                    new LeaderElectionRecord
                    {
                        HolderIdentity = "",
                        LeaseDurationSeconds = 1,
                        AcquireTime = record.AcquireTime,
                        RenewTime = DateTime.UtcNow,
                        LeaderTransitions = record.LeaderTransitions,
                    },
                    timeout.Token);
            }

            logger.LogInformation("{Identity} {Outcome} {Namespace}/{Lease}", options.Identity, released ? "released" : "could not release", options.Namespace, options.LeaseName);
        }
        catch (Exception e)
        {
            // Not fatal: the Lease then simply expires after its duration.
            logger.LogWarning("{Identity} could not release {Namespace}/{Lease}: {Error}", options.Identity, options.Namespace, options.LeaseName, e.Message);
        }
    }
}
