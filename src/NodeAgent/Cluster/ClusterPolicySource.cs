using k8s;
using k8s.Models;
using Microsoft.Extensions.Logging;
using TsCgnat.Api;
using TsCgnat.Kube;
using TsCgnat.NodeAgent.HostMode;
using TsCgnat.NodeAgent.Reconciling;
using TsCgnat.NodeAgent.Triggers;

namespace TsCgnat.NodeAgent.Cluster;

/// <summary>Causes of a pass in cluster mode, beside those of <see cref="Causes"/>.</summary>
public static class ClusterCauses
{
    public const string PolicyChanged = "CgnatAllowPolicy changed";
    public const string NodeChanged = "Node labels changed";
    public const string Synced = "first list from the API server";
}

/// <summary>
/// Cluster mode's policies: every CgnatAllowPolicy (watched) whose node selector matches this node's labels
/// (a watch of its own Node, field selector <c>metadata.name</c>), checked by the shared validator and not being
/// deleted. Until both watches have listed once, nothing is known and the loop keeps the cached state in force;
/// after that the caches keep their last good content through every failed list or watch (they only change on
/// what the API server says), so losing the API server never removes a rule. After each pass the report goes to
/// the <see cref="NodeStateWriter"/>.
/// </summary>
public sealed class ClusterPolicySource : IPolicySource
{
    private readonly string _nodeName;
    private readonly NodeStateWriter _writer;
    private readonly RepairStats _repairs;
    private readonly ILogger _logger;
    private readonly ResourceCache<CgnatAllowPolicy> _policies;
    private readonly ResourceCache<V1Node> _nodes;
    private readonly Dictionary<(string? Uid, string? ResourceVersion), (ValidatedPolicy? Valid, string? Problem)> _verdicts = [];
    private IReadOnlyList<ValidatedPolicy>? _applied;
    private string? _appliedKey;
    private (V1Node Node, PolicySelection Selection)? _pending;
    private bool _nodeMissingLogged;

    public ClusterPolicySource(
        IKubernetes client, string nodeName, NodeStateWriter writer, RepairStats repairs, ILogger<ClusterPolicySource> logger,
        TimeProvider time, ResourceCacheOptions? cacheOptions = null)
    {
        ArgumentNullException.ThrowIfNull(client);
        _nodeName = nodeName;
        _writer = writer;
        _repairs = repairs;
        _logger = logger;
        _policies = new ResourceCache<CgnatAllowPolicy>(ListWatch.ClusterCustom<CgnatAllowPolicy>(client), cacheOptions, time, logger);
        _nodes = new ResourceCache<V1Node>(ListWatch.Nodes(client, new ListSelectors(FieldSelector: $"metadata.name={nodeName}")), cacheOptions, time, logger);
    }

    /// <summary>Both watches (policies, this Node) have listed once.</summary>
    public bool HasSynced => _policies.HasSynced && _nodes.HasSynced;

    public IDisposable Start(Action<string> changed, CancellationToken stoppingToken)
    {
        var policies = _policies.Subscribe(_ => changed(ClusterCauses.PolicyChanged));
        var nodes = _nodes.Subscribe(_ => changed(ClusterCauses.NodeChanged));
        _ = _policies.RunAsync(stoppingToken);
        _ = _nodes.RunAsync(stoppingToken);
        _ = _writer.RunAsync(stoppingToken);
        _ = AfterSyncAsync();
        return new Subscriptions(policies, nodes);

        // An empty list notifies nobody; the first pass with what the API server says must not wait for the resync.
        async Task AfterSyncAsync()
        {
            try
            {
                await Task.WhenAll(_policies.WaitForSyncAsync(stoppingToken), _nodes.WaitForSyncAsync(stoppingToken));
                changed(ClusterCauses.Synced);
            }
            catch (OperationCanceledException)
            {
            }
        }
    }

    public TimeSpan SettleTime(string cause) => TimeSpan.Zero;

    public Task<IReadOnlyList<ValidatedPolicy>?> ReadAsync(string cause, CancellationToken cancellationToken)
    {
        _pending = null;
        if (!_policies.HasSynced || !_nodes.HasSynced)
        {
            return Task.FromResult<IReadOnlyList<ValidatedPolicy>?>(_applied);
        }

        if (_nodes.Get(_nodeName) is not { } node)
        {
            if (!_nodeMissingLogged)
            {
                _logger.LogWarning("Node {Node} does not exist (check NODE_NAME or --node-name); keeping the rules in place", _nodeName);
                _nodeMissingLogged = true;
            }

            return Task.FromResult<IReadOnlyList<ValidatedPolicy>?>(_applied);
        }

        _nodeMissingLogged = false;
        var policies = _policies.List();
        ForgetVerdictsOfOtherVersions(policies);
        var selection = PolicySelection.Select(policies, node.Metadata?.Labels, Verdict);
        _pending = (node, selection);

        // The same list instance while the applied policies are the same lets the engine keep its rendered sets.
        var applying = selection.Policies.Where(p => p.Applies).ToList();
        var key = string.Join('\n', applying.Select(p => $"{p.Name}/{p.Uid}/{p.Generation}"));
        if (_applied is null || key != _appliedKey)
        {
            _applied = selection.ToApply();
            _appliedKey = key;
        }

        return Task.FromResult<IReadOnlyList<ValidatedPolicy>?>(_applied);
    }

    public void Completed(PassOutcome outcome)
    {
        ArgumentNullException.ThrowIfNull(outcome);
        if (_pending is not { } pending)
        {
            return; // only the cached state was applied: nothing known to report yet
        }

        _writer.Publish(new NodeReport(pending.Node, pending.Selection, outcome, _repairs.Total));
    }

    /// <summary>The validator runs once per version of a policy, not at every resync.</summary>
    private (ValidatedPolicy? Valid, string? Problem) Verdict(CgnatAllowPolicy policy)
    {
        var key = (policy.Metadata?.Uid, policy.Metadata?.ResourceVersion);
        if (!_verdicts.TryGetValue(key, out var verdict))
        {
            verdict = PolicySelection.Validate(policy);
            _verdicts[key] = verdict;
        }

        return verdict;
    }

    private void ForgetVerdictsOfOtherVersions(IReadOnlyList<CgnatAllowPolicy> policies)
    {
        var current = policies.Select(p => (p.Metadata?.Uid, p.Metadata?.ResourceVersion)).ToHashSet();
        foreach (var stale in _verdicts.Keys.Where(k => !current.Contains(k)).ToList())
        {
            _verdicts.Remove(stale);
        }
    }

    private sealed class Subscriptions(IDisposable policies, IDisposable nodes) : IDisposable
    {
        public void Dispose()
        {
            policies.Dispose();
            nodes.Dispose();
        }
    }
}
