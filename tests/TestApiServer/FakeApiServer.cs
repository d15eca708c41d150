using System.Globalization;
using System.Net;
using System.Text.Json.Nodes;
using k8s;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.Extensions.DependencyInjection;

namespace TsCgnat.TestApiServer;

/// <summary>
/// An in-process Kubernetes API server on loopback for tests and benchmarks: the real KubernetesClient
/// talks to it over HTTP, and it behaves like a real server where our controllers depend on it
/// (resourceVersions, list and watch with bookmarks and 410 Gone, conflicts, status subresource,
/// generation, finalizers, selectors, patches, the garbage collection of a Node's dependents). Tests can
/// stop and restart it, drop its watches, inject failures and read what was asked of it.
/// </summary>
public sealed class FakeApiServer : IAsyncDisposable
{
    private readonly ObjectStore store;
    private readonly RestApi api;
    private readonly Lock gate = new();
    private readonly List<RequestRecord> requests = [];
    private readonly List<Fault> faults = [];
    private WebApplication? app;
    private int port;

    private FakeApiServer()
    {
        store = new ObjectStore(() => Time.GetUtcNow());
        api = new RestApi(store, this);
    }

    /// <summary>Starts a server on 127.0.0.1 on a free port.</summary>
    public static async Task<FakeApiServer> StartAsync(CancellationToken ct = default)
    {
        var server = new FakeApiServer();
        await server.ListenAsync(ct);
        return server;
    }

    /// <summary><c>http://127.0.0.1:port/</c>; the port stays the same across <see cref="StopAsync"/> and <see cref="StartAgainAsync"/>.</summary>
    public Uri BaseAddress => new($"http://127.0.0.1:{port.ToString(CultureInfo.InvariantCulture)}/");

    /// <summary>The clock for creationTimestamp, deletionTimestamp and <see cref="RequestRecord.At"/>; set it to a fake
    /// one when a test compares those with a controller's clock. Watch timing uses the real clock.</summary>
    public TimeProvider Time { get; set; } = TimeProvider.System;

    /// <summary>How often a watch with <c>allowWatchBookmarks=true</c> gets a BOOKMARK (a real server: about a minute).</summary>
    public TimeSpan BookmarkInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Changes kept for watches to resume from; beyond it the oldest half is forgotten, as etcd compaction would.</summary>
    public int HistoryLimit
    {
        get => store.HistoryLimit;
        set => store.HistoryLimit = value;
    }

    /// <summary>The current (last written) resourceVersion.</summary>
    public long ResourceVersion => store.CurrentResourceVersion;

    /// <summary>Configuration for <c>new Kubernetes(...)</c>: this server, no authentication.</summary>
    public KubernetesClientConfiguration ClientConfiguration() => new() { Host = BaseAddress.ToString() };

    /// <summary>Writes a kubeconfig pointing at this server (for <c>KUBECONFIG</c>) and returns its path. It carries a
    /// token nobody checks, because KubernetesClient refuses a kubeconfig user without credentials.</summary>
    public string WriteKubeconfig(string path)
    {
        File.WriteAllText(path, $$"""
            apiVersion: v1
            kind: Config
            clusters:
            - name: fake
              cluster:
                server: {{BaseAddress.ToString().TrimEnd('/')}}
            users:
            - name: fake
              user:
                token: unchecked
            contexts:
            - name: fake
              context:
                cluster: fake
                user: fake
            current-context: fake

            """);
        return path;
    }

    /// <summary>Stops listening and drops every open connection (watches included); the objects, the
    /// resourceVersion, the history and the request log stay.</summary>
    public async Task StopAsync()
    {
        WebApplication? running;
        lock (gate)
        {
            running = app;
            app = null;
        }

        if (running is null)
        {
            return;
        }

        store.DropWatches();
        using (var now = new CancellationTokenSource())
        {
            // A cancelled token makes Kestrel abort the connections it would otherwise drain.
            await now.CancelAsync();
            try
            {
                await running.StopAsync(now.Token);
            }
            catch (OperationCanceledException)
            {
                // Expected: nothing is drained.
            }
        }

        await running.DisposeAsync();
    }

    /// <summary>Listens again on the same port, with the same state; nothing to do while it is listening.</summary>
    public Task StartAgainAsync()
    {
        lock (gate)
        {
            if (app is not null)
            {
                return Task.CompletedTask;
            }
        }

        return ListenAsync(CancellationToken.None);
    }

    /// <summary>Abruptly ends every open watch stream (the connection is aborted, as when a network path breaks).</summary>
    public void DropWatches() => store.DropWatches();

    /// <summary>
    /// The next <paramref name="count"/> requests that <paramref name="match"/> selects are answered with
    /// <paramref name="statusCode"/> and a Status body, before anything else happens (a watch is refused
    /// before it opens).
    /// </summary>
    public void FailNext(Func<RequestRecord, bool> match, int statusCode, int count = 1)
    {
        ArgumentNullException.ThrowIfNull(match);
        ArgumentOutOfRangeException.ThrowIfLessThan(statusCode, 400);
        ArgumentOutOfRangeException.ThrowIfLessThan(count, 1);
        lock (gate)
        {
            faults.Add(new Fault(match, statusCode) { Remaining = count });
        }
    }

    /// <summary>Forgets the watch history: a watch from an older resourceVersion gets 410 Gone (reason Expired).</summary>
    public void CompactHistory() => store.Compact();

    /// <summary>Every request seen, in order.</summary>
    public IReadOnlyList<RequestRecord> Requests
    {
        get
        {
            lock (gate)
            {
                return requests.ToArray();
            }
        }
    }

    /// <summary>How many requests had this verb (null: any) and a path containing <paramref name="pathContains"/> (null: any).</summary>
    public int Count(string? verb = null, string? pathContains = null)
    {
        lock (gate)
        {
            return requests.Count(r => (verb is null || r.Verb == verb) && (pathContains is null || r.Path.Contains(pathContains, StringComparison.Ordinal)));
        }
    }

    /// <summary>A copy of a stored object, in API form (events in core/v1 form); null when absent.</summary>
    public JsonObject? Get(string resource, string name, string? ns = null)
    {
        var type = ResourceType.ForStore(resource);
        return store.Find(type.Store, type.Namespaced ? ns : null, name)?.ToNode();
    }

    /// <summary>
    /// Creates or replaces an object, bypassing validation and admission (e.g. an invalid policy, as an old
    /// API server without CEL would store it; status is kept as given). Bumps the resourceVersion and
    /// emits the watch event; returns the stored copy.
    /// </summary>
    public JsonObject Put(string resource, JsonObject obj)
    {
        ArgumentNullException.ThrowIfNull(obj);
        return store.Put(ResourceType.ForStore(resource), obj).ToNode();
    }

    /// <summary>Removes an object at once (finalizers ignored, DELETED emitted, dependents collected); absent is fine.</summary>
    public void Remove(string resource, string name, string? ns = null) => store.Remove(ResourceType.ForStore(resource), ns, name);

    /// <summary>Copies of the stored objects of one kind, in one namespace or all.</summary>
    public IReadOnlyList<JsonObject> List(string resource, string? ns = null) =>
        store.List(ResourceType.ForStore(resource).Store, ns, null).Items.Select(o => o.ToNode()).ToList();

    public async ValueTask DisposeAsync() => await StopAsync();

    internal void Record(RequestRecord request)
    {
        lock (gate)
        {
            requests.Add(request);
        }
    }

    /// <summary>The status code to fail this request with, if a <see cref="FailNext"/> rule takes it.</summary>
    internal int? TakeFault(RequestRecord request)
    {
        lock (gate)
        {
            var fault = faults.FirstOrDefault(f => f.Remaining > 0 && f.Match(request));
            if (fault is null)
            {
                return null;
            }

            if (--fault.Remaining == 0)
            {
                faults.Remove(fault);
            }

            return fault.StatusCode;
        }
    }

    private async Task ListenAsync(CancellationToken ct)
    {
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.WebHost.UseKestrelCore().ConfigureKestrel(options =>
        {
            options.AddServerHeader = false;
            options.Listen(IPAddress.Loopback, port);
        });
        var started = builder.Build();
        started.Run(api.HandleAsync);
        await started.StartAsync(ct);
        var address = started.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        lock (gate)
        {
            port = new Uri(address).Port;
            app = started;
        }
    }

    private sealed class Fault(Func<RequestRecord, bool> match, int statusCode)
    {
        public Func<RequestRecord, bool> Match { get; } = match;

        public int StatusCode { get; } = statusCode;

        public int Remaining { get; set; }
    }
}
