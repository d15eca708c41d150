using System.Threading.Channels;
using k8s;
using k8s.Models;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TsCgnat.Api;
using TsCgnat.Kube;
using TsCgnat.Telemetry;

namespace TsCgnat.Operator;

/// <summary>What <c>ts-cgnat-operator run</c> takes; the defaults are the command line's.</summary>
public sealed record OperatorOptions
{
    /// <summary>Reconcile only while holding the Lease (more than one replica).</summary>
    public bool LeaderElect { get; init; }

    /// <summary>The Lease's namespace: the pod's own (POD_NAMESPACE), where the chart grants Lease access.</summary>
    public string LeaseNamespace { get; init; } = "ts-cgnat";

    public string LeaseName { get; init; } = "ts-cgnat-operator";

    /// <summary>This replica's name in the Lease (POD_NAME in the chart).</summary>
    public string Identity { get; init; } = $"{Environment.MachineName}-{Guid.NewGuid().ToString("N")[..8]}";

    /// <summary>Lease timings; client-go's defaults unless a test needs a faster hand-over.</summary>
    public TimeSpan LeaseDuration { get; init; } = TimeSpan.FromSeconds(15);

    public TimeSpan RenewDeadline { get; init; } = TimeSpan.FromSeconds(10);

    public TimeSpan RetryPeriod { get; init; } = TimeSpan.FromSeconds(2);

    /// <summary>How long a deleted policy waits for its target nodes to confirm the removal (design section 6: 5 min).</summary>
    public TimeSpan DeletionTimeout { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>
    /// The least time between two status writes of one policy: changes within it are folded into the next
    /// write. One second keeps kubectl current and turns a rollout over 5,000 nodes into a few writes.
    /// </summary>
    public TimeSpan StatusWriteInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Policies reconciled at the same time.</summary>
    public int Workers { get; init; } = 2;

    /// <summary>
    /// How often the gauges are refreshed from the caches when nothing changes, and the liveness heartbeat of a
    /// replica with nothing to reconcile (the chart's liveness bound is 3x this). Changes refresh them sooner, at
    /// most once per second.
    /// </summary>
    public TimeSpan TelemetryInterval { get; init; } = TimeSpan.FromSeconds(30);
}

/// <summary>
/// The operator, startable and stoppable in-process (tests and the benchmark run it against a fake API
/// server): caches of policies, node states and Nodes (labels only) that run all the time, and two controllers
/// that run only while this instance leads, the policy controller (<see cref="PolicyReconciler"/>) and the
/// clean-up of node states whose Node is gone (<see cref="NodeStateCleanup"/>).
/// </summary>
/// <remarks>
/// Readiness (<see cref="Readiness"/>, what <c>/readyz</c> answers): every cache has listed once and then either
/// this replica leads and has reconciled every policy once, or it stands by while another replica holds the
/// Lease. A standby has nothing to reconcile; waiting for a reconcile would keep it unready for ever and stall a
/// rolling update, which waits for the new pod while the old one leads. Only the leader reports the gauges
/// (<c>tscgnat.policies</c>, <c>tscgnat.nodes</c>), so a sum over replicas counts each policy once.
/// </remarks>
public sealed class CgnatOperator : IDisposable
{
    private readonly Kubernetes client;
    private readonly OperatorOptions options;
    private readonly ILoggerFactory loggers;
    private readonly ILogger logger;
    private readonly EventRecorder events;
    private readonly Controller policyController;
    private readonly Controller cleanupController;
    private readonly TimeProvider time;
    private readonly bool ownsMetrics;
    private readonly Channel<bool> refresh = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private LeaderElection? election;
    private volatile bool leading;

    /// <param name="metrics">Where to record; null: an instance of its own (disposed with the operator).</param>
    /// <param name="readiness">What <c>/healthz</c> and <c>/readyz</c> answer; null: one with a bound of 3x <see cref="OperatorOptions.TelemetryInterval"/>.</param>
    public CgnatOperator(
        KubernetesClientConfiguration configuration, OperatorOptions? options = null, ILoggerFactory? loggers = null, TimeProvider? time = null,
        TsCgnatMetrics? metrics = null, Readiness? readiness = null)
    {
        ArgumentNullException.ThrowIfNull(configuration);
        this.options = options ?? new OperatorOptions();
        this.loggers = loggers ?? NullLoggerFactory.Instance;
        this.time = time ??= TimeProvider.System;
        ownsMetrics = metrics is null;
        Metrics = metrics ?? new TsCgnatMetrics(time);
        Readiness = readiness ?? new Readiness(3 * this.options.TelemetryInterval, requireCachesSynced: true, time);
        logger = this.loggers.CreateLogger<CgnatOperator>();
        client = new Kubernetes(configuration);

        Policies = new ResourceCache<CgnatAllowPolicy>(ListWatch.ClusterCustom<CgnatAllowPolicy>(client), logger: this.loggers.CreateLogger("cache.policies"));
        States = new ResourceCache<CgnatNodeState>(ListWatch.ClusterCustom<CgnatNodeState>(client), logger: this.loggers.CreateLogger("cache.nodestates"));
        Nodes = new ResourceCache<V1Node>(new NodeLabels(client), logger: this.loggers.CreateLogger("cache.nodes"));

        events = new EventRecorder(client, "ts-cgnat-operator", this.options.Identity, time: time, logger: this.loggers.CreateLogger<EventRecorder>());
        PolicyReconciler = new PolicyReconciler(
            Policies, States, Nodes,
            new StatusWriter(client, logger: this.loggers.CreateLogger<StatusWriter>()),
            new Finalizers(client),
            events, this.options, time, this.loggers.CreateLogger<PolicyReconciler>(), Metrics);
        PolicyReconciler.Reconciled += () =>
        {
            SettleReadiness(); // at once: a probe right after the first status write finds the replica ready
            Refresh();
        };
        Cleanup = new NodeStateCleanup(client, States, Nodes, this.loggers.CreateLogger<NodeStateCleanup>());

        var keys = new PolicyKeys(Policies, States, Nodes);
        policyController = new Controller("policies", PolicyReconciler.ReconcileAsync, new ControllerOptions { Workers = this.options.Workers }, time, this.loggers.CreateLogger("controller.policies"))
            .Watches(Policies)
            .Watches(States, keys.ForNodeState)
            .Watches(Nodes, keys.ForNode);
        cleanupController = new Controller("node-state-cleanup", Cleanup.ReconcileAsync, time: time, logger: this.loggers.CreateLogger("controller.cleanup"))
            .Watches(States)
            .Watches(Nodes);
    }

    public TsCgnatMetrics Metrics { get; }

    public Readiness Readiness { get; }

    public ResourceCache<CgnatAllowPolicy> Policies { get; }

    public ResourceCache<CgnatNodeState> States { get; }

    public ResourceCache<V1Node> Nodes { get; }

    public PolicyReconciler PolicyReconciler { get; }

    public NodeStateCleanup Cleanup { get; }

    /// <summary>True while the controllers run: always without leader election, while holding the Lease with it.</summary>
    public bool IsLeader => leading;

    /// <summary>Every cache has listed once (what <c>/readyz</c> reports).</summary>
    public bool HasSynced => Policies.HasSynced && States.HasSynced && Nodes.HasSynced;

    /// <summary>
    /// Runs until <paramref name="cancellationToken"/> is cancelled. Throws when leading fails (the work
    /// broke), so the process exits non-zero and is restarted rather than hold a Lease while doing nothing.
    /// </summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        logger.LogInformation(
            "ts-cgnat-operator starting: leader election {LeaderElect}, identity {Identity}, deletion timeout {DeletionTimeout}",
            options.LeaderElect, options.Identity, options.DeletionTimeout);
        using var stopCaches = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        Task[] caches = [
            Task.Run(() => Policies.RunAsync(stopCaches.Token), CancellationToken.None),
            Task.Run(() => States.RunAsync(stopCaches.Token), CancellationToken.None),
            Task.Run(() => Nodes.RunAsync(stopCaches.Token), CancellationToken.None),
            Task.Run(() => ObserveAsync(stopCaches.Token), CancellationToken.None),
        ];
        try
        {
            if (options.LeaderElect)
            {
                election = new LeaderElection(
                    client,
                    new LeaderElectionOptions(options.LeaseNamespace, options.LeaseName, options.Identity)
                    {
                        LeaseDuration = options.LeaseDuration,
                        RenewDeadline = options.RenewDeadline,
                        RetryPeriod = options.RetryPeriod,
                    },
                    loggers.CreateLogger<LeaderElection>());
                await election.RunAsync(LeadAsync, cancellationToken);
            }
            else
            {
                await LeadAsync(cancellationToken);
            }
        }
        finally
        {
            await stopCaches.CancelAsync();
            await Task.WhenAll(caches);
            logger.LogInformation("ts-cgnat-operator stopped");
        }
    }

    private async Task LeadAsync(CancellationToken cancellationToken)
    {
        leading = true;
        Refresh();
        try
        {
            await Task.WhenAll(policyController.RunAsync(cancellationToken), cleanupController.RunAsync(cancellationToken));
        }
        finally
        {
            leading = false;
            Refresh();
        }
    }

    private void Refresh() => refresh.Writer.TryWrite(true);

    /// <summary>
    /// The telemetry pass, on every replica: once the caches listed, refresh the gauges (leader) or clear them
    /// (standby), settle readiness, and beat the heart; again on each change, at most once a second, and at least
    /// every <see cref="OperatorOptions.TelemetryInterval"/>.
    /// </summary>
    private async Task ObserveAsync(CancellationToken cancellationToken)
    {
        var subscriptions = new[] { Policies.Subscribe(_ => Refresh()), States.Subscribe(_ => Refresh()), Nodes.Subscribe(_ => Refresh()) };
        try
        {
            await Task.WhenAll(Policies.WaitForSyncAsync(cancellationToken), States.WaitForSyncAsync(cancellationToken), Nodes.WaitForSyncAsync(cancellationToken));
            Readiness.MarkCachesSynced();
            _ = TickAsync(cancellationToken);
            Refresh();
            await foreach (var _ in refresh.Reader.ReadAllAsync(cancellationToken))
            {
                Observe();
                await Task.Delay(TimeSpan.FromSeconds(1), time, cancellationToken);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
        finally
        {
            foreach (var subscription in subscriptions)
            {
                subscription.Dispose();
            }
        }
    }

    private void Observe()
    {
        if (leading)
        {
            var policies = Policies.List();
            Metrics.SetPolicyConditions(ClusterGauges.Policies(policies));
            Metrics.SetPolicyNodes(ClusterGauges.PolicyNodes(policies));
            var states = States.List();
            Metrics.SetNodes(ClusterGauges.Nodes(states, Nodes.List(), policies));
            Metrics.SetNodeConditions(ClusterGauges.NodeConditions(states, name => Nodes.Get(name) is not null));
        }
        else
        {
            Metrics.SetPolicyConditions([]);
            Metrics.SetNodes([]);
            Metrics.SetNodeConditions([]);
            Metrics.SetPolicyNodes([]);
        }

        SettleReadiness();
        Readiness.Heartbeat();
    }

    /// <summary>Marks the replica ready when it is: the leader once every policy was reconciled, a standby once it saw another holder.</summary>
    private void SettleReadiness()
    {
        if (!HasSynced || Readiness.Ready().Ok)
        {
            return;
        }

        var ready = leading
            ? PolicyReconciler.EveryPolicyReconciled
            : election?.Leader is { Length: > 0 } holder && holder != options.Identity; // standing by while another replica leads
        if (ready)
        {
            Readiness.MarkReconciled();
        }
    }

    /// <summary>Refreshes every <see cref="OperatorOptions.TelemetryInterval"/>; until ready, every Lease retry period, since nothing else says when a standby saw the holder.</summary>
    private async Task TickAsync(CancellationToken cancellationToken)
    {
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                await Task.Delay(Readiness.Ready().Ok ? options.TelemetryInterval : options.RetryPeriod, time, cancellationToken);
                Refresh();
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    public void Dispose()
    {
        events.Dispose();
        client.Dispose();
        if (ownsMetrics)
        {
            Metrics.Dispose();
        }
    }
}
