using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using k8s;
using k8s.Models;
using TsCgnat.TestApiServer;
using TsCgnat.TestSupport;

namespace TsCgnat.EndToEnd.Tests;

/// <summary>
/// The whole product on one machine: the test API server on loopback, the real <c>ts-cgnat-operator</c>, and
/// two real <c>ts-cgnat-agent</c>s in cluster mode for the lab's two subnet routers (u2 and u5), each with the
/// emulated tailscaled in its namespace. The agents stay in the root namespace (so they reach the API server on
/// loopback) and run their firewall commands with <c>--netns</c> (design section 12).
/// </summary>
public sealed class LabCluster : IAsyncDisposable
{
    public const string Group = "tscgnat.io";
    public const string Version = "v1alpha1";
    public const string PolicyPlural = "cgnatallowpolicies";
    public const string StatePlural = "cgnatnodestates";

    /// <summary>The label both Nodes carry at first; the e2e policy selects it.</summary>
    public const string LabLabel = "e2e.tscgnat.io/lab";

    public static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    private readonly string _dir = Path.Combine(Path.GetTempPath(), UniqueName.For("tscgnat-e2e-"));
    private readonly Dictionary<string, Daemon> _agents = [];
    private readonly string _deletionTimeout;
    private readonly Dictionary<string, int> _metricsPorts = [];

    private LabCluster(FakeApiServer server, string deletionTimeout, bool metrics)
    {
        Server = server;
        _deletionTimeout = deletionTimeout;
        if (metrics)
        {
            foreach (var program in new[] { "operator", "u2", "u5" })
            {
                _metricsPorts[program] = FreePort.Loopback();
            }
        }

        Directory.CreateDirectory(_dir);
        Kubeconfig = server.WriteKubeconfig(Path.Combine(_dir, "kubeconfig"));
        Client = new Kubernetes(server.ClientConfiguration());
        Lab = new Lab(secondRouter: true);
        U2 = new TailscaledEmulator(Lab.Ns("u2"), "nft");
        U5 = new TailscaledEmulator(Lab.Ns("u5"), "legacy");
    }

    public FakeApiServer Server { get; }

    public Kubernetes Client { get; }

    public Lab Lab { get; }

    /// <summary>tailscaled on u2, its iptables runner over iptables-nft (changes seen by nft monitor).</summary>
    public TailscaledEmulator U2 { get; }

    /// <summary>tailscaled on u5, its iptables runner over iptables-legacy (changes seen by the poll).</summary>
    public TailscaledEmulator U5 { get; }

    public string Kubeconfig { get; }

    public Daemon? Operator { get; private set; }

    /// <summary>Every node's agent and the operator with what they said, for failure messages.</summary>
    public string Output => string.Join("\n", new[] { Operator }.Concat(_agents.Values).OfType<Daemon>().Select(d => $"--- {d.Name}:\n{d.Output}"));

    /// <summary>
    /// The <c>--metrics-port</c> of each program when started with metrics ("operator", "u2", "u5"); empty
    /// otherwise. The programs listen on every address, so Prometheus scrapes them on 127.0.0.1.
    /// </summary>
    public IReadOnlyDictionary<string, int> MetricsPorts => _metricsPorts;

    /// <summary>Lab, API server with the two Nodes, tailscaled in <paramref name="mode"/> on both routers, the operator and both agents.</summary>
    /// <param name="metrics">Give every program a <c>--metrics-port</c> of its own (see <see cref="MetricsPorts"/>).</param>
    public static async Task<LabCluster> StartAsync(string mode = "on", string deletionTimeout = "5m", bool metrics = false)
    {
        var server = await FakeApiServer.StartAsync();
        var cluster = new LabCluster(server, deletionTimeout, metrics);
        try
        {
            cluster.U2.Run("start", mode);
            cluster.U5.Run(Lab.U5Tailscaled, "start", mode);
            foreach (var node in new[] { "u2", "u5" })
            {
                await cluster.Client.CoreV1.CreateNodeAsync(new V1Node
                {
                    Metadata = new V1ObjectMeta { Name = NodeName(node), Labels = new Dictionary<string, string> { [LabLabel] = "yes", ["e2e.tscgnat.io/router"] = node } },
                });
            }

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

    /// <summary>The Node name of a lab router.</summary>
    public static string NodeName(string router) => $"node-{router}";

    public Daemon Agent(string router) => _agents[router];

    public void StartOperator() =>
        Operator = new Daemon("operator", Programs.Operator, ["run", "--deletion-timeout", _deletionTimeout, .. MetricsPortArgs("operator")], Kubeconfig);

    public void StartAgent(string router)
    {
        var name = NodeName(router);
        if (_agents.Remove(router, out var earlier))
        {
            earlier.Dispose();
        }

        _agents[router] = new Daemon(name, Programs.Agent,
        [
            "run", "--node-name", name, "--netns", Lab.Ns(router), "--state-dir", Path.Combine(_dir, router, "state"),
            "--tailscale-socket", Path.Combine(_dir, router, "no-tailscaled.sock"), "--resync-interval", "5", "--legacy-poll-interval", "0.25",
            .. MetricsPortArgs(router),
        ], Kubeconfig);
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

    /// <summary>Creates a policy through the API (as kubectl would), selecting the Nodes labelled <see cref="LabLabel"/>.</summary>
    public async Task CreatePolicyAsync(string name, params string[] cidrs)
    {
        var body = new JsonObject
        {
            ["apiVersion"] = $"{Group}/{Version}",
            ["kind"] = "CgnatAllowPolicy",
            ["metadata"] = new JsonObject { ["name"] = name },
            ["spec"] = Spec(cidrs),
        };
        await Client.CustomObjects.CreateClusterCustomObjectAsync(body, Group, Version, PolicyPlural);
    }

    public static JsonObject Spec(params string[] cidrs) => new()
    {
        ["nodeSelector"] = new JsonObject { ["matchLabels"] = new JsonObject { [LabLabel] = "yes" } },
        ["allowedSources"] = new JsonArray([.. cidrs.Select(c => (JsonNode)new JsonObject { ["cidr"] = c })]),
        ["routedSubnets"] = new JsonArray([.. cidrs.Select(c => (JsonNode)new JsonObject { ["cidr"] = c })]),
    };

    public async Task SetSpecAsync(string name, params string[] cidrs)
    {
        var patch = new JsonObject { ["spec"] = Spec(cidrs) };
        await Client.CustomObjects.PatchClusterCustomObjectAsync(new V1Patch(patch.ToJsonString(), V1Patch.PatchType.MergePatch), Group, Version, PolicyPlural, name);
    }

    public async Task DeletePolicyAsync(string name) =>
        await Client.CustomObjects.DeleteClusterCustomObjectAsync(Group, Version, PolicyPlural, name);

    /// <summary>Sets (or with null removes) a label of a router's Node.</summary>
    public async Task LabelAsync(string router, string key, string? value)
    {
        var patch = new JsonObject { ["metadata"] = new JsonObject { ["labels"] = new JsonObject { [key] = value } } };
        await Client.CoreV1.PatchNodeAsync(new V1Patch(patch.ToJsonString(), V1Patch.PatchType.MergePatch), NodeName(router));
    }

    public JsonObject? Policy(string name) => Server.Get(PolicyPlural, name);

    public JsonObject? State(string router) => Server.Get(StatePlural, NodeName(router));

    /// <summary>A condition's status on a stored object ("True", "False", "Unknown"), or null.</summary>
    public static string? Condition(JsonObject? obj, string type) => ConditionNode(obj, type)?["status"]?.GetValue<string>();

    public static JsonObject? ConditionNode(JsonObject? obj, string type) =>
        (obj?["status"]?["conditions"] as JsonArray)?.OfType<JsonObject>().FirstOrDefault(c => (string?)c["type"] == type);

    /// <summary>The phase the router's node state reports for a policy, or null when it has no entry.</summary>
    public string? Phase(string router, string policy) =>
        ((State(router)?["status"]?["policies"] as JsonArray)?.OfType<JsonObject>().FirstOrDefault(p => (string?)p["name"] == policy))?["phase"]?.GetValue<string>();

    public long? EntryGeneration(string router, string policy) =>
        ((State(router)?["status"]?["policies"] as JsonArray)?.OfType<JsonObject>().FirstOrDefault(p => (string?)p["name"] == policy))?["generation"]?.GetValue<long>();

    /// <summary>The policy's NODES column (applied/target), e.g. "2/2".</summary>
    public string? Nodes(string policy)
    {
        var status = Policy(policy)?["status"];
        return status?["appliedNodes"] is { } applied && status["targetNodes"] is { } target
            ? $"{applied.GetValue<int>()}/{target.GetValue<int>()}"
            : null;
    }

    /// <summary>True when the router's any-interface source set holds <paramref name="cidr"/>.</summary>
    public bool Exempts(string router, string cidr)
    {
        var list = Sh.Run("ip", "netns", "exec", Lab.Ns(router), "ipset", "list", "TSCGNAT-SRC4");
        return list.Succeeded && list.StdOut.Split('\n').Any(l => l.Trim() == cidr);
    }

    public void WaitFor(Func<bool> condition, string what) => WaitFor(condition, what, Patience);

    public void WaitFor(Func<bool> condition, string what, TimeSpan patience)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > patience)
            {
                Assert.Fail($"{what}: not seen within {patience.TotalSeconds} s\n{Output}");
            }

            Thread.Sleep(100);
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var daemon in _agents.Values)
        {
            daemon.Dispose();
        }

        Operator?.Dispose();
        await Server.DisposeAsync();
        Client.Dispose();
        foreach (var router in new[] { "u2", "u5" })
        {
            Sh.Run(Programs.Agent, "cleanup", "--netns", Lab.Ns(router), "--state-dir", Path.Combine(_dir, router, "state"));
        }

        U2.Dispose();
        U5.Dispose();
        Lab.Dispose();
        Directory.Delete(_dir, recursive: true);
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

    public Daemon(string name, string program, IEnumerable<string> args, string kubeconfig)
    {
        Name = name;
        var info = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        info.Environment["KUBECONFIG"] = kubeconfig;
        info.Environment.Remove("NODE_NAME");
        _process = Process.Start(info)!;
        _process.OutputDataReceived += (_, e) => Append(e.Data);
        _process.ErrorDataReceived += (_, e) => Append(e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public string Name { get; }

    public bool HasExited => _process.HasExited;

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
        if (_process.HasExited)
        {
            return;
        }

        Sh.Run("kill", "-TERM", _process.Id.ToString(CultureInfo.InvariantCulture));
        if (!_process.WaitForExit(10_000))
        {
            _process.Kill();
            _process.WaitForExit();
        }
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
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
