using System.Net;
using System.Threading.Channels;
using k8s;
using k8s.Autorest;
using k8s.Models;
using Microsoft.Extensions.Logging;
using TsCgnat.Api;
using TsCgnat.Kube;
using TsCgnat.NodeAgent.HostMode;
using TsCgnat.NodeAgent.Reconciling;
using TsCgnat.Telemetry;

namespace TsCgnat.NodeAgent.Cluster;

/// <summary>
/// Keeps this node's CgnatNodeState current on its own loop, so the firewall loop never waits for the API
/// server: each pass hands over its <see cref="NodeReport"/> and goes on; the writer creates the object when it is
/// missing (named after the node, owned by its Node, so it goes with the node), then writes the status only when
/// it changed (<see cref="StatusWriter"/>). While the API server cannot be reached it retries with backoff, always
/// with the latest report; reports that were overtaken meanwhile are never sent. Events about repairs and errors go
/// out the same way, de-duplicated by <see cref="EventRecorder"/>.
/// </summary>
/// <remarks>Each status write counts in <c>tscgnat.status.writes</c> (kind CgnatNodeState), each failed attempt in
/// <c>tscgnat.apply.errors</c> (stage status): the reconcile span has ended by then.</remarks>
public sealed class NodeStateWriter(
    IKubernetes client, string nodeName, EventRecorder events, ILogger<NodeStateWriter> logger, TimeProvider time, BackoffPolicy? backoff = null, TsCgnatMetrics? metrics = null)
{
    private static readonly ApiResource Resource = ApiResource.Of<CgnatNodeState>();
    private readonly Channel<bool> _wake = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
    private readonly Channel<(V1Node Node, string Type, string Reason, string Message)> _events =
        Channel.CreateBounded<(V1Node, string, string, string)>(new BoundedChannelOptions(64) { FullMode = BoundedChannelFullMode.DropOldest });

    private readonly StatusWriter _status = new(client, logger: logger);
    private NodeReport? _latest;
    private CgnatNodeState? _state;
    private string? _lastError;
    private HashSet<string> _invalidReported = [];

    /// <summary>Status writes sent (those that changed something), for tests and logs.</summary>
    public int Writes => Volatile.Read(ref _writes);

    private int _writes;

    /// <summary>Takes the latest report; returns at once.</summary>
    public void Publish(NodeReport report)
    {
        ArgumentNullException.ThrowIfNull(report);
        Volatile.Write(ref _latest, report);
        QueueEvents(report);
        _wake.Writer.TryWrite(true);
    }

    public Task RunAsync(CancellationToken cancellationToken) => Task.WhenAll(WriteLoopAsync(cancellationToken), EventLoopAsync(cancellationToken));

    private async Task WriteLoopAsync(CancellationToken cancellationToken)
    {
        var retry = new Backoff(backoff ?? BackoffPolicy.Watch);
        try
        {
            await foreach (var _ in _wake.Reader.ReadAllAsync(cancellationToken))
            {
                while (Volatile.Read(ref _latest) is { } report)
                {
                    try
                    {
                        await WriteAsync(report, cancellationToken);
                        retry.Reset();
                        if (ReferenceEquals(report, Volatile.Read(ref _latest)))
                        {
                            break;
                        }
                    }
                    catch (Exception e) when (e is not OperationCanceledException || !cancellationToken.IsCancellationRequested)
                    {
                        metrics?.RecordApplyError(ApplyStages.Status);
                        var delay = retry.NextDelay();
                        logger.LogWarning("writing CgnatNodeState {Node} failed ({Failures} in a row), retrying in {Delay}: {Error}", nodeName, retry.Failures, delay, e.Message);
                        await Task.Delay(delay, time, cancellationToken);
                    }
                }
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }

    private async Task WriteAsync(NodeReport report, CancellationToken cancellationToken)
    {
        var state = _state ?? await GetOrCreateAsync(report.Node, cancellationToken);
        var desired = NodeStatus.Compute(state.Status, report, state.Metadata?.Generation, time);
        try
        {
            var outcome = await _status.WriteAsync<CgnatNodeState, CgnatNodeStateStatus>(state, desired, cancellationToken);
            _state = outcome.Current;
            if (outcome.Written)
            {
                Interlocked.Increment(ref _writes);
                metrics?.RecordStatusWrite(CgnatNodeState.KindName);
            }
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.NotFound)
        {
            // Deleted meanwhile (by hand, or collected with a Node that was replaced): create it again next time.
            _state = null;
            throw;
        }
    }

    private async Task<CgnatNodeState> GetOrCreateAsync(V1Node node, CancellationToken cancellationToken)
    {
        try
        {
            return await client.CustomObjects.GetClusterCustomObjectAsync<CgnatNodeState>(
                Resource.Group, Resource.Version, Resource.Plural, nodeName, cancellationToken);
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.NotFound)
        {
        }

        var fresh = new CgnatNodeState
        {
            Metadata = new V1ObjectMeta
            {
                Name = nodeName,
                OwnerReferences =
                [
                    new V1OwnerReference { ApiVersion = "v1", Kind = "Node", Name = node.Metadata.Name, Uid = node.Metadata.Uid },
                ],
            },
            Spec = new CgnatNodeStateSpec { NodeName = nodeName },
        };
        try
        {
            var created = await client.CustomObjects.CreateClusterCustomObjectAsync<CgnatNodeState>(
                fresh, Resource.Group, Resource.Version, Resource.Plural, cancellationToken: cancellationToken);
            logger.LogInformation("created CgnatNodeState {Node}, owned by its Node (uid {Uid})", nodeName, node.Metadata.Uid);
            return created;
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.Conflict)
        {
            // Created meanwhile (an earlier attempt whose answer was lost): read it.
            return await client.CustomObjects.GetClusterCustomObjectAsync<CgnatNodeState>(
                Resource.Group, Resource.Version, Resource.Plural, nodeName, cancellationToken);
        }
    }

    /// <summary>
    /// Events for what a person should notice: each repair, a failing apply (once per distinct error, not per
    /// retry), an invalid policy (once per generation). Repeats within the recorder's window only bump a count.
    /// </summary>
    private void QueueEvents(NodeReport report)
    {
        var outcome = report.Outcome;
        if (outcome.Repaired)
        {
            _events.Writer.TryWrite((report.Node, EventTypes.Normal, NodeReasons.DriftRepaired, $"put back the ts-cgnat exemptions after a change was seen ({outcome.Cause})"));
        }

        var error = outcome.Error?.Message;
        if (error is not null && error != _lastError)
        {
            _events.Writer.TryWrite((report.Node, EventTypes.Warning, NodeReasons.ApplyFailed, error));
        }

        if (outcome.Error is not null || outcome.Result is not null)
        {
            _lastError = error;
        }

        var invalid = report.Selection.Policies.Where(p => p.Problem is not null).ToList();
        var keys = invalid.Select(p => $"{p.Uid}/{p.Generation}").ToHashSet(StringComparer.Ordinal);
        foreach (var policy in invalid.Where(p => !_invalidReported.Contains($"{p.Uid}/{p.Generation}")))
        {
            _events.Writer.TryWrite((report.Node, EventTypes.Warning, NodeReasons.PolicyInvalid, $"CgnatAllowPolicy {policy.Name} selects this node but is not applied: {policy.Problem}"));
        }

        _invalidReported = keys;
    }

    private async Task EventLoopAsync(CancellationToken cancellationToken)
    {
        try
        {
            await foreach (var (node, type, reason, message) in _events.Reader.ReadAllAsync(cancellationToken))
            {
                await events.RecordAsync(node, type, reason, message, cancellationToken);
            }
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
        }
    }
}
