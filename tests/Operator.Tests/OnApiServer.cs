using System.Text.Json.Nodes;
using k8s;
using k8s.Models;
using TsCgnat.Api;
using TsCgnat.TestApiServer;

namespace TsCgnat.Operator.Tests;

/// <summary>
/// One fake API server per test, operators run in-process against it with the real KubernetesClient, and the
/// objects the agents would write put straight into the server (as an agent's status write would land).
/// </summary>
public abstract class OnApiServer : IAsyncLifetime
{
    private readonly List<(CgnatOperator Operator, CancellationTokenSource Stop, Task Run)> running = [];

    protected FakeApiServer Server { get; private set; } = null!;

    /// <summary>Fast enough for tests; the coalescing is still there to be seen.</summary>
    protected static OperatorOptions FastOptions { get; } = new() { StatusWriteInterval = TimeSpan.FromMilliseconds(200) };

    public async Task InitializeAsync() => Server = await FakeApiServer.StartAsync();

    public async Task DisposeAsync()
    {
        foreach (var (op, _, _) in running.ToList())
        {
            await StopAsync(op);
        }

        await Server.DisposeAsync();
    }

    /// <param name="metrics">Where the operator records (a test listens to it before the operator starts); null: its own.</param>
    /// <param name="readiness">What its /readyz would answer; null: its own.</param>
    protected CgnatOperator Start(OperatorOptions? options = null, TimeProvider? time = null, Telemetry.TsCgnatMetrics? metrics = null, Telemetry.Readiness? readiness = null)
    {
        var op = new CgnatOperator(Server.ClientConfiguration(), options ?? FastOptions, time: time, metrics: metrics, readiness: readiness);
        var stop = new CancellationTokenSource();
        running.Add((op, stop, Task.Run(() => op.RunAsync(stop.Token))));
        return op;
    }

    protected async Task StopAsync(CgnatOperator op)
    {
        var (_, stop, run) = running.Single(r => r.Operator == op);
        running.RemoveAll(r => r.Operator == op);
        await stop.CancelAsync();
        await run.WaitAsync(TimeSpan.FromSeconds(30));
        stop.Dispose();
        op.Dispose();
    }

    protected Kubernetes Client() => new(Server.ClientConfiguration());

    protected void PutNode(string name, string region = "hz") => Server.Put("nodes", new JsonObject
    {
        ["apiVersion"] = "v1",
        ["kind"] = "Node",
        ["metadata"] = new JsonObject { ["name"] = name, ["labels"] = new JsonObject { ["region"] = region } },
    });

    /// <summary>A policy stored as is (no validation: an invalid one is stored too, as on a server without CEL).</summary>
    protected void PutPolicy(string name, string cidr = "100.100.0.0/16", string? region = null) => Server.Put("cgnatallowpolicies", new JsonObject
    {
        ["apiVersion"] = ApiGroup.ApiVersion,
        ["kind"] = CgnatAllowPolicy.KindName,
        ["metadata"] = new JsonObject { ["name"] = name },
        ["spec"] = new JsonObject
        {
            ["nodeSelector"] = region is null ? null : new JsonObject { ["matchLabels"] = new JsonObject { ["region"] = region } },
            ["allowedSources"] = new JsonArray(new JsonObject { ["cidr"] = cidr }),
        },
    });

    /// <summary>What the node's agent would report: the given policies and phases, Ready and TailscaleCompatible.</summary>
    protected void PutState(string node, bool ready = true, long driftRepairs = 0, params NodePolicyState[] policies)
    {
        var state = Objects.State(node, ready, compatible: true, policies: policies);
        state.Status!.DriftRepairs = driftRepairs;
        foreach (var c in state.Status.Conditions!)
        {
            c.LastTransitionTime = Objects.T0.UtcDateTime;
        }

        Server.Put("cgnatnodestates", JsonNode.Parse(KubernetesJson.Serialize(state))!.AsObject());
    }

    protected static NodePolicyState Applied(string policy, long generation = 1) => Objects.Entry(policy, generation, PolicyPhase.Applied);

    protected CgnatAllowPolicy? Policy(string name) =>
        Server.Get("cgnatallowpolicies", name) is { } json ? KubernetesJson.Deserialize<CgnatAllowPolicy>(json.ToJsonString()) : null;

    protected int StatusWrites(string policy) =>
        Server.Requests.Count(r => r.Verb is "patch" or "update" && r.Path.EndsWith($"/cgnatallowpolicies/{policy}/status", StringComparison.Ordinal));

    /// <summary>Waits for <paramref name="condition"/>; the deadline only keeps a broken operator from hanging the run.</summary>
    protected static async Task Eventually(Func<bool> condition, string what)
    {
        var deadline = DateTime.UtcNow.AddSeconds(30);
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"never happened: {what}");
            }

            await Task.Delay(25);
        }
    }

    protected Task PolicyStatus(string name, Func<CgnatAllowPolicy, bool> condition, string what) =>
        Eventually(() => Policy(name) is { } p && condition(p), $"{name}: {what}");

    protected static bool Has(CgnatAllowPolicy p, string type, string status, string? reason = null) =>
        Conditions.Find(p.Status?.Conditions, type) is { } c && c.Status == status && (reason is null || c.Reason == reason) && c.ObservedGeneration == p.Metadata.Generation;

    /// <summary>Waits until <paramref name="op"/> has looked at the policies again after <paramref name="change"/>.</summary>
    protected static async Task AfterReconcile(CgnatOperator op, Action change)
    {
        var before = op.PolicyReconciler.Reconciles;
        change();
        await Eventually(() => op.PolicyReconciler.Reconciles > before, "a reconcile after the change");
    }
}
