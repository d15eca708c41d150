using System.Text.Json.Nodes;
using k8s;
using k8s.Models;
using TsCgnat.TestApiServer;

namespace TsCgnat.Kube.Tests.OnApiServer;

/// <summary>
/// One fake API server per test, and real KubernetesClient clients to it; every request a client sends
/// is counted on the client side too, so attempts against a stopped server are seen.
/// </summary>
public abstract class ApiServerTest : IAsyncLifetime
{
    private readonly List<IDisposable> owned = [];

    protected FakeApiServer Server { get; private set; } = null!;

    protected CancellationTokenSource Stop { get; } = new();

    protected List<Task> Running { get; } = [];

    public async Task InitializeAsync() => Server = await FakeApiServer.StartAsync();

    public async Task DisposeAsync()
    {
        await Stop.CancelAsync();
        await Task.WhenAll(Running).WaitAsync(TimeSpan.FromSeconds(30));
        await Server.DisposeAsync();
        owned.ForEach(o => o.Dispose());
        Stop.Dispose();
    }

    protected Kubernetes Client(CountingHandler? counter = null)
    {
        var client = counter is null
            ? new Kubernetes(Server.ClientConfiguration())
            : new Kubernetes(Server.ClientConfiguration(), counter);
        owned.Add(client);
        return client;
    }

    protected static JsonObject NodeJson(string name, Dictionary<string, string>? labels = null) => new()
    {
        ["apiVersion"] = "v1",
        ["kind"] = "Node",
        ["metadata"] = new JsonObject
        {
            ["name"] = name,
            ["labels"] = labels is null ? null : new JsonObject(labels.Select(l => KeyValuePair.Create(l.Key, (JsonNode?)l.Value))),
        },
    };

    protected static JsonObject PolicyJson(string name, params string[] finalizers) => new()
    {
        ["apiVersion"] = "tscgnat.io/v1alpha1",
        ["kind"] = "CgnatAllowPolicy",
        ["metadata"] = new JsonObject
        {
            ["name"] = name,
            ["finalizers"] = finalizers.Length == 0 ? null : new JsonArray([.. finalizers.Select(f => (JsonNode)JsonValue.Create(f))]),
        },
        ["spec"] = new JsonObject { ["routedSubnets"] = new JsonArray(new JsonObject { ["cidr"] = "100.64.0.0/24" }) },
    };

    protected static V1Node Node(string name) => new() { Metadata = new V1ObjectMeta { Name = name } };
}

/// <summary>Counts the requests a client sends, whether or not they reach a server.</summary>
public sealed class CountingHandler : DelegatingHandler
{
    private int sent;

    public int Sent => Volatile.Read(ref sent);

    protected override Task<HttpResponseMessage> SendAsync(HttpRequestMessage request, CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref sent);
        return base.SendAsync(request, cancellationToken);
    }
}
