using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using k8s;
using k8s.Autorest;
using k8s.Models;
using TsCgnat.KubeApiServer;
using TsCgnat.TestApiServer;
using TsCgnat.TestSupport;

namespace TsCgnat.EndToEnd.Tests;

/// <summary>
/// The whole product on one machine: a real kube-apiserver (or, for the fault scenarios only, the fake one) on
/// loopback, the real <c>ts-cgnat-operator</c>, and two real <c>ts-cgnat-agent</c>s in cluster mode for the lab's
/// two subnet routers (u2 and u5), each with the emulated tailscaled in its namespace. The agents stay in the root
/// namespace (so they reach the API server on loopback) and run their firewall commands with <c>--netns</c>
/// (design section 12).
/// </summary>
/// <remarks>
/// On the real server the chart is installed with helm (<see cref="ChartRelease"/>) and every program runs as the
/// chart's service account with a TokenRequest token, each agent's bound to a Pod placed on its Node: the RBAC and
/// the admission policy they meet are the chart's. The programs get the flags and environment the chart's Pod specs
/// give them. Everything is named after <see cref="Id"/> (Nodes, policies, the release and its namespace); the
/// policies select Nodes by <see cref="LabLabel"/> = Id.
/// </remarks>
public sealed class LabCluster : IAsyncDisposable
{
    public const string Group = "tscgnat.io";
    public const string Version = "v1alpha1";
    public const string PolicyPlural = "cgnatallowpolicies";
    public const string StatePlural = "cgnatnodestates";

    /// <summary>The label both Nodes carry at first, with the cluster's <see cref="Id"/>; its policies select it.</summary>
    public const string LabLabel = "e2e.tscgnat.io/lab";

    /// <summary>The Lease the operator replicas elect a leader on (the program's default name).</summary>
    public const string LeaseName = "ts-cgnat-operator";

    /// <summary>The operator's deletion timeout unless a scenario sets another (the program's default).</summary>
    public const string DefaultDeletionTimeout = "5m";

    public static readonly TimeSpan Patience = TimeSpan.FromSeconds(60);

    private static readonly string[] Routers = ["u2", "u5"];

    private readonly string _dir;
    private readonly Dictionary<string, Daemon> _agents = [];
    private readonly Dictionary<string, string> _agentKubeconfigs = [];
    private readonly Dictionary<string, int> _metricsPorts = [];
    private readonly List<Daemon> _operators = [];
    private string _deletionTimeout;
    private int _operatorReplicas;
    private bool _serverStopped;
    private ChartRelease? _release;
    private string _operatorKubeconfig = "";
    private Lab? _lab;
    private TailscaledEmulator? _u2;
    private TailscaledEmulator? _u5;

    private LabCluster(Kubernetes admin, string deletionTimeout)
    {
        Id = UniqueName.For("e2e-");
        _dir = Directory.CreateTempSubdirectory("tscgnat-e2e-").FullName;
        Admin = admin;
        _deletionTimeout = deletionTimeout;
    }

    /// <summary>This cluster's prefix of every name it makes, and the value of <see cref="LabLabel"/> on its Nodes.</summary>
    public string Id { get; }

    /// <summary>The real API server, or null on the fake one.</summary>
    public KubeApiServer.KubeApiServer? Server { get; private set; }

    /// <summary>The fake API server (fault scenarios), or null on the real one.</summary>
    public FakeApiServer? Fake { get; private set; }

    /// <summary>A client as the cluster's administrator, for the test's own reads and writes.</summary>
    public Kubernetes Admin { get; }

    /// <summary>The kubeconfig kubectl runs with (administrator).</summary>
    public string AdminKubeconfig { get; private set; } = "";

    /// <summary>The release namespace: where the operator's Lease lives (POD_NAMESPACE).</summary>
    public string Namespace => _release?.Namespace ?? "ts-cgnat";

    public Lab Lab => _lab!;

    /// <summary>tailscaled on u2, its iptables runner over iptables-nft (changes seen by nft monitor).</summary>
    public TailscaledEmulator U2 => _u2!;

    /// <summary>tailscaled on u5, its iptables runner over iptables-legacy (changes seen by the poll).</summary>
    public TailscaledEmulator U5 => _u5!;

    public IReadOnlyList<Daemon> Operators => _operators;

    /// <summary>
    /// The <c>--metrics-port</c> of each program when started with metrics ("operator", "u2", "u5"); empty
    /// otherwise. The programs listen on every address, so Prometheus scrapes them on 127.0.0.1.
    /// </summary>
    public IReadOnlyDictionary<string, int> MetricsPorts => _metricsPorts;

    /// <summary>Where each wait says how long it took (a scenario's test output), or nowhere.</summary>
    public Action<string>? Trace { get; set; }

    /// <summary>Every node's agent and the operators with what they said, for failure messages.</summary>
    public string Output => string.Join("\n", _operators.Concat(_agents.Values).Select(d => $"--- {d.Name} (last 100 lines):\n{Tail(d.Output, 100)}"));

    /// <summary>
    /// Lab, a real API server of the cluster's own (scenarios stop it; it costs a few seconds to start) with our CRDs,
    /// the chart installed, the two Nodes, tailscaled in <paramref name="mode"/> on both routers,
    /// <paramref name="operators"/> operator replicas and both agents.
    /// </summary>
    public static async Task<LabCluster> StartAsync(string mode = "on", string deletionTimeout = DefaultDeletionTimeout, int operators = 1)
    {
        var server = await KubeApiServer.KubeApiServer.StartAsync();
        var cluster = new LabCluster(server.Client(), deletionTimeout) { Server = server, AdminKubeconfig = server.AdminKubeconfig };
        try
        {
            SharedKubeApiServer.InstallCrds(server, Path.Combine(Repo.Root, "config", "crds"));
            cluster._release = await ChartRelease.InstallAsync(server, cluster.Id, cluster._dir);
            await cluster.StartLabAsync(mode);
            cluster._operatorKubeconfig = cluster._release.Kubeconfig("operator", await cluster._release.OperatorTokenAsync());
            foreach (var router in Routers)
            {
                cluster._agentKubeconfigs[router] = cluster._release.Kubeconfig($"agent-{router}", await cluster._release.AgentTokenAsync(cluster.NodeName(router)));
            }

            cluster._operatorReplicas = operators;
            for (var i = 0; i < operators; i++)
            {
                cluster.StartOperator();
            }

            cluster.StartAgent("u2");
            cluster.StartAgent("u5");
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    /// <summary>The same on the fake API server (no authentication, no admission), for the faults a real server cannot make on demand.</summary>
    /// <param name="mode">tailscaled's netfilter mode on both routers.</param>
    /// <param name="metrics">Give every program a <c>--metrics-port</c> of its own (see <see cref="MetricsPorts"/>).</param>
    public static async Task<LabCluster> StartOnFakeApiServerAsync(string mode = "on", bool metrics = false)
    {
        var fake = await FakeApiServer.StartAsync();
        var cluster = new LabCluster(new Kubernetes(fake.ClientConfiguration()), DefaultDeletionTimeout) { Fake = fake };
        try
        {
            if (metrics)
            {
                foreach (var program in new[] { "operator", "u2", "u5" })
                {
                    cluster._metricsPorts[program] = FreePort.Loopback();
                }
            }

            var kubeconfig = fake.WriteKubeconfig(Path.Combine(cluster._dir, "kubeconfig"));
            cluster.AdminKubeconfig = kubeconfig;
            cluster._operatorKubeconfig = kubeconfig;
            await cluster.StartLabAsync(mode);
            foreach (var router in Routers)
            {
                cluster._agentKubeconfigs[router] = kubeconfig;
            }

            cluster._operatorReplicas = 1;
            cluster.StartOperator();
            cluster.StartAgent("u2");
            cluster.StartAgent("u5");
            return cluster;
        }
        catch
        {
            await cluster.DisposeAsync();
            throw;
        }
    }

    /// <summary>
    /// Before a scenario on a cluster that earlier scenarios used: the API server up, every agent running and as many
    /// operator replicas as the cluster started with (a killed or exited one is replaced, as its DaemonSet or
    /// Deployment would), both Nodes selected.
    /// </summary>
    public async Task EnsureRunningAsync()
    {
        if (_serverStopped)
        {
            await StartServerAgainAsync();
        }

        foreach (var router in Routers.Where(r => _agents[r].HasExited))
        {
            StartAgent(router);
        }

        foreach (var gone in _operators.Where(o => o.HasExited).ToList())
        {
            gone.Dispose();
            _operators.Remove(gone);
        }

        while (_operators.Count < _operatorReplicas)
        {
            StartOperator();
        }

        foreach (var router in Routers)
        {
            await SelectAsync(router, selected: true);
        }
    }

    /// <summary>
    /// After a scenario: its policies deleted and gone (the operator lets go once both agents removed them), so the next
    /// scenario starts with no exemption on either router; the operators back to the default deletion timeout.
    /// </summary>
    public async Task ResetAsync()
    {
        await EnsureRunningAsync();
        foreach (var name in await PolicyNamesAsync())
        {
            await GoneOrDoneAsync(() => Admin.CustomObjects.DeleteClusterCustomObjectAsync(Group, Version, PolicyPlural, name));
        }

        await WaitForAsync(async () => (await PolicyNamesAsync()).Count == 0 && SourceSet("u2").Count == 0 && SourceSet("u5").Count == 0,
            "every policy of the scenario gone and both routers without exemptions");
        if (_deletionTimeout != DefaultDeletionTimeout)
        {
            RestartOperators(DefaultDeletionTimeout);
        }
    }

    /// <summary>Stops every operator replica (SIGTERM: the leader releases the Lease) and starts as many with another deletion timeout.</summary>
    public void RestartOperators(string deletionTimeout)
    {
        foreach (var replica in _operators)
        {
            replica.Stop();
            replica.Dispose();
        }

        _operators.Clear();
        _deletionTimeout = deletionTimeout;
        while (_operators.Count < _operatorReplicas)
        {
            StartOperator();
        }
    }

    /// <summary>Stops the API server (a server of the cluster's own only); etcd keeps the state.</summary>
    public async Task StopServerAsync()
    {
        Assert.NotNull(Server);
        _serverStopped = true;
        await Server!.StopAsync();
    }

    public async Task StartServerAgainAsync()
    {
        await Server!.StartAgainAsync();
        _serverStopped = false;
    }

    /// <summary>The Node name of a lab router.</summary>
    public string NodeName(string router) => $"{Id}-{router}";

    /// <summary>The full name of one of this cluster's policies.</summary>
    public string PolicyName(string policy) => $"{Id}-{policy}";

    public Daemon Agent(string router) => _agents[router];

    /// <summary>
    /// One more operator replica, as the chart's Deployment runs it: <c>run --leader-elect</c> (on the real server),
    /// POD_NAME naming it in the Lease and POD_NAMESPACE the Lease's namespace.
    /// </summary>
    public Daemon StartOperator()
    {
        var name = $"{Id}-operator-{_operators.Count}";
        string[] args = Server is null
            ? ["run", "--deletion-timeout", _deletionTimeout, .. MetricsPortArgs("operator")]
            : ["run", "--leader-elect", "--deletion-timeout", _deletionTimeout, .. MetricsPortArgs("operator")];
        var daemon = new Daemon(name, Programs.Operator, args, _operatorKubeconfig,
            new Dictionary<string, string> { ["POD_NAME"] = name, ["POD_NAMESPACE"] = Namespace, ["NODE_NAME"] = "" });
        _operators.Add(daemon);
        return daemon;
    }

    /// <summary>An agent as the chart's DaemonSet runs it (node name from NODE_NAME, strategy auto), with the lab's paths.</summary>
    public void StartAgent(string router)
    {
        var name = NodeName(router);
        if (_agents.Remove(router, out var earlier))
        {
            earlier.Dispose();
        }

        _agents[router] = new Daemon(name, Programs.Agent,
        [
            "run", "--node-name", name, "--strategy", "auto", "--netns", Lab.Ns(router), "--state-dir", Path.Combine(_dir, router, "state"),
            "--tailscale-socket", Path.Combine(_dir, router, "no-tailscaled.sock"), "--tailscale-interface", "tailscale0",
            "--resync-interval", "5", "--legacy-poll-interval", "0.25", .. MetricsPortArgs(router),
        ], _agentKubeconfigs[router], new Dictionary<string, string> { ["NODE_NAME"] = name, ["POD_NAME"] = $"agent-{name}" });
    }

    private string[] MetricsPortArgs(string program) =>
        _metricsPorts.TryGetValue(program, out var port) ? ["--metrics-port", port.ToString(CultureInfo.InvariantCulture)] : [];

    /// <summary>Stops an agent as a pod's termination does (SIGTERM); its rules stay (fail-static).</summary>
    public void StopAgent(string router) => _agents[router].Stop();

    /// <summary>Removes everything an agent wrote on a router, keeping its cached state: the host as after a reboot.</summary>
    public void LoseRules(string router)
    {
        var elsewhere = Directory.CreateDirectory(Path.Combine(_dir, router, "elsewhere")).FullName;
        Sh.Ok(Programs.Agent, "cleanup", "--netns", Lab.Ns(router), "--state-dir", elsewhere);
    }

    /// <summary>Creates a policy through the API (as kubectl would), selecting this cluster's Nodes.</summary>
    public async Task CreatePolicyAsync(string policy, params string[] cidrs) =>
        await Admin.CustomObjects.CreateClusterCustomObjectAsync(PolicyBody(policy, cidrs), Group, Version, PolicyPlural);

    public JsonObject PolicyBody(string policy, params string[] cidrs) => new()
    {
        ["apiVersion"] = $"{Group}/{Version}",
        ["kind"] = "CgnatAllowPolicy",
        ["metadata"] = new JsonObject { ["name"] = PolicyName(policy) },
        ["spec"] = Spec(cidrs),
    };

    public JsonObject Spec(params string[] cidrs) => new()
    {
        ["nodeSelector"] = new JsonObject { ["matchLabels"] = new JsonObject { [LabLabel] = Id } },
        ["allowedSources"] = new JsonArray([.. cidrs.Select(c => (JsonNode)new JsonObject { ["cidr"] = c })]),
        ["routedSubnets"] = new JsonArray([.. cidrs.Select(c => (JsonNode)new JsonObject { ["cidr"] = c })]),
    };

    public async Task SetSpecAsync(string policy, params string[] cidrs)
    {
        var patch = new JsonObject { ["spec"] = Spec(cidrs) };
        await Admin.CustomObjects.PatchClusterCustomObjectAsync(new V1Patch(patch.ToJsonString(), V1Patch.PatchType.MergePatch), Group, Version, PolicyPlural, PolicyName(policy));
    }

    public async Task DeletePolicyAsync(string policy) =>
        await Admin.CustomObjects.DeleteClusterCustomObjectAsync(Group, Version, PolicyPlural, PolicyName(policy));

    /// <summary>Puts a router's Node into this cluster's selection, or takes it out.</summary>
    public async Task SelectAsync(string router, bool selected)
    {
        var patch = new JsonObject { ["metadata"] = new JsonObject { ["labels"] = new JsonObject { [LabLabel] = selected ? Id : null } } };
        await Admin.CoreV1.PatchNodeAsync(new V1Patch(patch.ToJsonString(), V1Patch.PatchType.MergePatch), NodeName(router));
    }

    public Task<JsonObject?> PolicyAsync(string policy) => GetAsync(PolicyPlural, PolicyName(policy));

    public Task<JsonObject?> StateAsync(string router) => GetAsync(StatePlural, NodeName(router));

    /// <summary>The names of this cluster's policies on the server.</summary>
    public async Task<IReadOnlyList<string>> PolicyNamesAsync()
    {
        var policies = JsonNode.Parse(JsonSerializer.Serialize(await Admin.CustomObjects.ListClusterCustomObjectAsync(Group, Version, PolicyPlural)))!;
        return [.. policies["items"]!.AsArray().Select(p => (string)p!["metadata"]!["name"]!).Where(n => n.StartsWith(Id + "-", StringComparison.Ordinal))];
    }

    /// <summary>Every CgnatNodeState whose name starts with this cluster's <see cref="Id"/>.</summary>
    public async Task<IReadOnlyList<JsonObject>> StatesAsync()
    {
        var list = JsonNode.Parse(JsonSerializer.Serialize(await Admin.CustomObjects.ListClusterCustomObjectAsync(Group, Version, StatePlural)))!;
        return [.. list["items"]!.AsArray().OfType<JsonObject>().Where(o => ((string?)o["metadata"]!["name"])!.StartsWith(Id + "-", StringComparison.Ordinal))];
    }

    /// <summary>An object of one of our kinds as the server has it, or null when it has none.</summary>
    public async Task<JsonObject?> GetAsync(string plural, string name)
    {
        try
        {
            return JsonNode.Parse(JsonSerializer.Serialize(await Admin.CustomObjects.GetClusterCustomObjectAsync(Group, Version, plural, name)))!.AsObject();
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.NotFound)
        {
            return null;
        }
    }

    /// <summary>The events about one object (cluster-scoped objects' events are in "default").</summary>
    public async Task<IReadOnlyList<Corev1Event>> EventsAboutAsync(string name) =>
        (await Admin.CoreV1.ListNamespacedEventAsync("default", fieldSelector: $"involvedObject.name={name}")).Items.ToList();

    /// <summary>The operator replica named in the Lease, or null.</summary>
    public async Task<string?> LeaseHolderAsync()
    {
        try
        {
            return (await Admin.CoordinationV1.ReadNamespacedLeaseAsync(LeaseName, Namespace)).Spec?.HolderIdentity;
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.NotFound)
        {
            return null;
        }
    }

    /// <summary>A condition's status on a stored object ("True", "False", "Unknown"), or null.</summary>
    public static string? Condition(JsonObject? obj, string type) => ConditionNode(obj, type)?["status"]?.GetValue<string>();

    public static JsonObject? ConditionNode(JsonObject? obj, string type) =>
        (obj?["status"]?["conditions"] as JsonArray)?.OfType<JsonObject>().FirstOrDefault(c => (string?)c["type"] == type);

    /// <summary>The entries of a node state for one of this cluster's policies (one, unless something duplicated it).</summary>
    public IEnumerable<JsonObject> Entries(JsonObject? state, string policy) =>
        (state?["status"]?["policies"] as JsonArray)?.OfType<JsonObject>().Where(p => (string?)p["name"] == PolicyName(policy)) ?? [];

    /// <summary>The phase the router's node state reports for a policy, or null when it has no entry.</summary>
    public async Task<string?> PhaseAsync(string router, string policy) =>
        Entries(await StateAsync(router), policy).FirstOrDefault()?["phase"]?.GetValue<string>();

    public async Task<long?> EntryGenerationAsync(string router, string policy) =>
        Entries(await StateAsync(router), policy).FirstOrDefault()?["generation"]?.GetValue<long>();

    /// <summary>The policy's NODES column (applied/target), e.g. "2/2".</summary>
    public async Task<string?> NodesAsync(string policy)
    {
        var status = (await PolicyAsync(policy))?["status"];
        return status?["appliedNodes"] is { } applied && status["targetNodes"] is { } target
            ? $"{applied.GetValue<int>()}/{target.GetValue<int>()}"
            : null;
    }

    /// <summary>True when the router's any-interface source set holds <paramref name="cidr"/>.</summary>
    public bool Exempts(string router, string cidr) => SourceSet(router).Contains(cidr);

    /// <summary>The members of the router's any-interface source set, as ipset lists them (duplicates would show).</summary>
    public IReadOnlyList<string> SourceSet(string router)
    {
        var list = Sh.Run("ip", "netns", "exec", Lab.Ns(router), "ipset", "list", "TSCGNAT-SRC4");
        return list.Succeeded ? [.. list.StdOut.Split('\n').Select(l => l.Trim()).SkipWhile(l => l != "Members:").Skip(1).Where(l => l.Length > 0)] : [];
    }

    public Task WaitForAsync(Func<bool> condition, string what) => WaitForAsync(() => Task.FromResult(condition()), what);

    /// <summary>Polls to a deadline; an API server that cannot be reached counts as "not yet" (a test may have stopped it).</summary>
    public async Task WaitForAsync(Func<Task<bool>> condition, string what, TimeSpan? patience = null)
    {
        var limit = patience ?? Patience;
        var clock = Stopwatch.StartNew();
        string? lastError = null;
        while (true)
        {
            try
            {
                if (await condition())
                {
                    Trace?.Invoke($"[{clock.Elapsed.TotalSeconds,5:F1} s] {what}");
                    return;
                }
            }
            catch (Exception e) when (e is HttpRequestException or HttpOperationException or TaskCanceledException)
            {
                lastError = e.Message;
            }

            if (clock.Elapsed > limit)
            {
                Assert.Fail($"{what}: not seen within {limit.TotalSeconds} s{(lastError is null ? "" : $" (last error: {lastError})")}\n{Output}");
            }

            await Task.Delay(100);
        }
    }

    /// <summary>Stops every process, uninstalls the release, stops the API server, removes the rules and the lab.</summary>
    /// <summary>Every step runs even when an earlier one throws (a lab left behind fails the whole run); the failures are thrown together at the end.</summary>
    public async ValueTask DisposeAsync()
    {
        var failures = new List<Exception>();
        async Task Step(Func<Task> step)
        {
            try
            {
                await step();
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                failures.Add(e);
            }
        }

        Task Sync(Action step) => Step(() => { step(); return Task.CompletedTask; });

        foreach (var daemon in _agents.Values.Concat(_operators))
        {
            await Sync(daemon.Dispose);
        }

        await Step(async () => { if (_release is not null) { await _release.DisposeAsync(); } });
        await Step(async () => { if (Server is not null) { await Server.DisposeAsync(); } });
        await Step(async () => { if (Fake is not null) { await Fake.DisposeAsync(); } });
        await Sync(Admin.Dispose);
        if (_lab is not null)
        {
            foreach (var router in Routers)
            {
                await Sync(() => Sh.Run(Programs.Agent, "cleanup", "--netns", Lab.Ns(router), "--state-dir", Path.Combine(_dir, router, "state")));
            }

            await Sync(_lab.Dispose);
        }

        await Sync(() => _u2?.Dispose());
        await Sync(() => _u5?.Dispose());
        await Sync(() => Directory.Delete(_dir, recursive: true));
        if (failures.Count > 0)
        {
            throw new AggregateException("the lab cluster's clean-up failed in part (every step was tried)", failures);
        }
    }

    private static string Tail(string text, int lines) => string.Join('\n', text.Split('\n').TakeLast(lines));

    private async Task StartLabAsync(string mode)
    {
        _lab = new Lab(secondRouter: true);
        _u2 = new TailscaledEmulator(_lab.Ns("u2"), "nft");
        _u5 = new TailscaledEmulator(_lab.Ns("u5"), "legacy");
        _u2.Run("start", mode);
        _u5.Run(Lab.U5Tailscaled, "start", mode);
        foreach (var router in Routers)
        {
            await Admin.CoreV1.CreateNodeAsync(new V1Node
            {
                Metadata = new V1ObjectMeta { Name = NodeName(router), Labels = new Dictionary<string, string> { [LabLabel] = Id, ["e2e.tscgnat.io/router"] = router } },
            });
        }
    }

    private static async Task GoneOrDoneAsync(Func<Task> request)
    {
        try
        {
            await request();
        }
        catch (HttpOperationException e) when (e.Response.StatusCode == HttpStatusCode.NotFound)
        {
            // Gone already (a policy whose finalizer was dropped meanwhile, a Node never made).
        }
    }
}

/// <summary>Where the programs under test are: each project's own output, built with the tests' configuration.</summary>
public static class Programs
{
    private static readonly string Configuration = new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name;

    public static string Agent { get; } = Path.Combine(Repo.Root, "src", "NodeAgent", "bin", Configuration, "net10.0", "ts-cgnat-agent");

    public static string Operator { get; } = Path.Combine(Repo.Root, "src", "Operator", "bin", Configuration, "net10.0", "ts-cgnat-operator");
}

/// <summary>A program running in the background with <c>KUBECONFIG</c> set, its output collected; killed if a test leaves it running.</summary>
public sealed class Daemon : IDisposable
{
    private readonly StringBuilder _output = new();
    private readonly Process _process;
    private bool _disposed;

    public Daemon(string name, string program, IEnumerable<string> args, string kubeconfig, IReadOnlyDictionary<string, string>? environment = null)
    {
        Name = name;
        var info = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        info.Environment["KUBECONFIG"] = kubeconfig;
        info.Environment.Remove("NODE_NAME");
        foreach (var (key, value) in environment ?? new Dictionary<string, string>())
        {
            info.Environment[key] = value;
        }

        _process = Process.Start(info)!;
        _process.OutputDataReceived += (_, e) => Append(e.Data);
        _process.ErrorDataReceived += (_, e) => Append(e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public string Name { get; }

    /// <summary>The process id (the same after an exec into another program).</summary>
    public int Pid => _process.Id;

    public bool HasExited => _disposed || _process.HasExited;

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>SIGTERM, then waits for the exit.</summary>
    public void Stop()
    {
        if (HasExited)
        {
            return;
        }

        Sh.Run("kill", "-TERM", _process.Id.ToString(CultureInfo.InvariantCulture));
        if (!_process.WaitForExit(10_000))
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
        }
    }

    /// <summary>
    /// SIGKILL (<c>kill -9</c>) to the program and its children (the agent's <c>nft monitor</c>), as when its container
    /// or its systemd unit's control group is killed: no clean-up of any kind. Killed alone, the child would live on.
    /// </summary>
    public void Kill()
    {
        if (!HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
        }
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        _disposed = true;
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
            _process.WaitForExit();
        }

        _process.Dispose();
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            _output.AppendLine(line);
        }
    }
}

/// <summary>A TCP port free on loopback now (the kernel's pick), for a program the test starts next.</summary>
public static class FreePort
{
    public static int Loopback()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }
}
