using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using k8s;
using k8s.Autorest;
using k8s.Models;

namespace TsCgnat.TestApiServer.Tests;

/// <summary>A fresh server and a real KubernetesClient for every test.</summary>
public abstract class ServerTest : IAsyncLifetime
{
    protected const string Group = "tscgnat.io";
    protected const string Version = "v1alpha1";
    protected const string Policies = "cgnatallowpolicies";
    protected const string NodeStates = "cgnatnodestates";

    protected FakeApiServer Server { get; private set; } = null!;

    protected Kubernetes Client { get; private set; } = null!;

    /// <summary>Ends any wait that would otherwise hang a broken test; not a measure of speed.</summary>
    protected CancellationToken Guard { get; } = new CancellationTokenSource(TimeSpan.FromSeconds(30)).Token;

    public async Task InitializeAsync()
    {
        Server = await FakeApiServer.StartAsync(Guard);
        Client = new Kubernetes(Server.ClientConfiguration());
    }

    public async Task DisposeAsync()
    {
        Client.Dispose();
        await Server.DisposeAsync();
    }

    protected static V1Node Node(string name, params (string Key, string Value)[] labels) => new()
    {
        Metadata = new V1ObjectMeta { Name = name, Labels = labels.Length == 0 ? null : labels.ToDictionary(l => l.Key, l => l.Value) },
    };

    protected static JsonObject Policy(string name, string cidr = "100.100.0.0/16") => new()
    {
        ["apiVersion"] = $"{Group}/{Version}",
        ["kind"] = "CgnatAllowPolicy",
        ["metadata"] = new JsonObject { ["name"] = name },
        ["spec"] = new JsonObject { ["allowedSources"] = new JsonArray(new JsonObject { ["cidr"] = cidr }) },
    };

    protected static JsonObject NodeState(string name, V1Node owner) => new()
    {
        ["apiVersion"] = $"{Group}/{Version}",
        ["kind"] = "CgnatNodeState",
        ["metadata"] = new JsonObject
        {
            ["name"] = name,
            ["ownerReferences"] = new JsonArray(new JsonObject
            {
                ["apiVersion"] = "v1",
                ["kind"] = "Node",
                ["name"] = owner.Metadata.Name,
                ["uid"] = owner.Metadata.Uid,
            }),
        },
        ["spec"] = new JsonObject(),
    };

    protected async Task<JsonObject> CreateAsync(string plural, JsonObject body) =>
        Json(await Client.CustomObjects.CreateClusterCustomObjectAsync(body, Group, Version, plural, cancellationToken: Guard));

    protected async Task<JsonObject> ReadAsync(string plural, string name) =>
        Json(await Client.CustomObjects.GetClusterCustomObjectAsync(Group, Version, plural, name, Guard));

    protected async Task<JsonObject> ReplaceAsync(string plural, JsonObject body) =>
        Json(await Client.CustomObjects.ReplaceClusterCustomObjectAsync(body, Group, Version, plural, (string)body["metadata"]!["name"]!, cancellationToken: Guard));

    protected async Task<JsonObject> ReplaceStatusAsync(string plural, JsonObject body) =>
        Json(await Client.CustomObjects.ReplaceClusterCustomObjectStatusAsync(body, Group, Version, plural, (string)body["metadata"]!["name"]!, cancellationToken: Guard));

    protected async Task<JsonObject> MergePatchAsync(string plural, string name, JsonObject patch) =>
        Json(await Client.CustomObjects.PatchClusterCustomObjectAsync(new V1Patch(patch.ToJsonString(), V1Patch.PatchType.MergePatch), Group, Version, plural, name, cancellationToken: Guard));

    protected async Task<JsonObject> MergePatchStatusAsync(string plural, string name, JsonObject patch) =>
        Json(await Client.CustomObjects.PatchClusterCustomObjectStatusAsync(new V1Patch(patch.ToJsonString(), V1Patch.PatchType.MergePatch), Group, Version, plural, name, cancellationToken: Guard));

    protected async Task<JsonObject> DeleteAsync(string plural, string name) =>
        Json(await Client.CustomObjects.DeleteClusterCustomObjectAsync(Group, Version, plural, name, cancellationToken: Guard));

    protected async Task<JsonObject> ListAsync(string plural, string? labelSelector = null, string? fieldSelector = null) =>
        Json(await Client.CustomObjects.ListClusterCustomObjectAsync(Group, Version, plural, labelSelector: labelSelector, fieldSelector: fieldSelector, cancellationToken: Guard));

    protected static JsonObject Json(object? result) => JsonSerializer.SerializeToNode(result)!.AsObject();

    protected static string Name(JsonObject obj) => (string)obj["metadata"]!["name"]!;

    protected static long Rv(JsonObject obj) => long.Parse((string)obj["metadata"]!["resourceVersion"]!, System.Globalization.CultureInfo.InvariantCulture);

    protected static long Rv(IKubernetesObject<V1ObjectMeta> obj) => long.Parse(obj.Metadata.ResourceVersion, System.Globalization.CultureInfo.InvariantCulture);

    protected static long Generation(JsonObject obj) => (long)obj["metadata"]!["generation"]!;

    /// <summary>The Status a failed call carried, asserting the HTTP code.</summary>
    protected static async Task<V1Status> FailsWith(int code, Func<Task> call)
    {
        var e = await Assert.ThrowsAsync<HttpOperationException>(call);
        Assert.Equal(code, (int)e.Response.StatusCode);
        var status = KubernetesJson.Deserialize<V1Status>(e.Response.Content);
        Assert.Equal("Status", status.Kind);
        Assert.Equal(code, status.Code);
        return status;
    }

    /// <summary>Reads a watch in the background so a test can take its events one by one.</summary>
    protected WatchRecording<T> Record<T>(Func<Action<Exception>, CancellationToken, IAsyncEnumerable<(WatchEventType, T)>> open) => new(open, Guard);
}

/// <summary>The events of one watch, in arrival order, and how the stream ended.</summary>
public sealed class WatchRecording<T> : IAsyncDisposable
{
    private readonly Channel<(WatchEventType Type, T Object)> events = Channel.CreateUnbounded<(WatchEventType, T)>();
    private readonly CancellationTokenSource stop;
    private readonly List<Exception> errors = [];

    internal WatchRecording(Func<Action<Exception>, CancellationToken, IAsyncEnumerable<(WatchEventType, T)>> open, CancellationToken guard)
    {
        stop = CancellationTokenSource.CreateLinkedTokenSource(guard);
        Completion = Task.Run(async () =>
        {
            try
            {
                await foreach (var e in open(Errors.Add, stop.Token))
                {
                    events.Writer.TryWrite(e);
                }
            }
            finally
            {
                events.Writer.TryComplete();
            }
        }, CancellationToken.None);
    }

    /// <summary>Errors the client reported on the stream (an ERROR event's Status arrives here).</summary>
    public List<Exception> Errors => errors;

    /// <summary>Finishes when the server ends the stream; faults when the connection broke.</summary>
    public Task Completion { get; }

    public async Task<(WatchEventType Type, T Object)> NextAsync()
    {
        try
        {
            return await events.Reader.ReadAsync(stop.Token);
        }
        catch (ChannelClosedException)
        {
            throw new InvalidOperationException("the watch ended before the expected event");
        }
    }

    public async Task<List<(WatchEventType Type, T Object)>> TakeAsync(int count)
    {
        var taken = new List<(WatchEventType, T)>();
        while (taken.Count < count)
        {
            taken.Add(await NextAsync());
        }

        return taken;
    }

    /// <summary>The next event that is not a BOOKMARK.</summary>
    public async Task<(WatchEventType Type, T Object)> NextChangeAsync()
    {
        while (true)
        {
            var e = await NextAsync();
            if (e.Type != WatchEventType.Bookmark)
            {
                return e;
            }
        }
    }

    /// <summary>Whatever arrived and has not been taken, without waiting.</summary>
    public List<(WatchEventType Type, T Object)> Pending()
    {
        var pending = new List<(WatchEventType, T)>();
        while (events.Reader.TryRead(out var e))
        {
            pending.Add(e);
        }

        return pending;
    }

    public async ValueTask DisposeAsync()
    {
        await stop.CancelAsync();
        try
        {
            await Completion;
        }
        catch (Exception)
        {
            // Stopped on purpose, or already failed: tests that care await Completion themselves.
        }

        stop.Dispose();
    }
}
