using System.Diagnostics;
using System.Globalization;
using System.Text.Json.Nodes;
using TsCgnat.TestApiServer;
using TsCgnat.TestSupport;

// ts-cgnat-operator at the scale of design section 10: 5,000 Nodes with node states and 50 policies on the fake
// API server (in this process), the real operator binary as a child process (so its resident memory is its own,
// not the fake server's). Measures time to converge after start and after a burst in which every policy gets a new
// generation and every agent reports it, the status writes that took, and the operator's resident memory.
const int Nodes = 5000;
const int Policies = 50;
const int Zones = 10;
const int EveryNodePolicies = 10;   // the first 10 policies select every node; the other 40 one zone each
var idle = TimeSpan.FromSeconds(10);
string? operatorPath = null;
var limitMb = 200.0;
var arguments = new BenchArguments("bench-operator-scale", """
    usage: bench-operator-scale [--operator PATH]
      --operator  the ts-cgnat-operator to run; a NativeAOT binary (dotnet publish src/Operator -c Release -r linux-x64
                  -p:PublishAot=true -o DIR) is held to design section 10's 120 MB, the JIT build (the default,
                  src/Operator/bin/Release) to 200 MB
    """).Option("--operator", path => operatorPath = File.Exists(path) ? Path.GetFullPath(path) : throw new FormatException($"--operator: no file {path}"));
if (!arguments.TryParse(args, Console.Error))
{
    return 64;
}

var loadBefore = LoadAverage();
await using var server = await FakeApiServer.StartAsync();
server.HistoryLimit = 200_000;
server.BookmarkInterval = TimeSpan.FromSeconds(30);

var clock = Stopwatch.StartNew();
for (var p = 0; p < Policies; p++)
{
    server.Put("cgnatallowpolicies", Policy(p, cidrs: 1));
}

for (var n = 0; n < Nodes; n++)
{
    server.Put("nodes", Node(n));
    server.Put("cgnatnodestates", State(n, generation: 1));
}

Console.WriteLine($"seeded {Nodes} nodes, {Nodes} node states, {Policies} policies in {clock.Elapsed.TotalSeconds:F1} s");

var kubeconfig = server.WriteKubeconfig(Path.Combine(Path.GetTempPath(), $"bench-operator-{Environment.ProcessId}.kubeconfig"));
var program = operatorPath ?? Path.Combine(AppContext.BaseDirectory, "ts-cgnat-operator");
if (!File.Exists(program))
{
    program = Path.Combine(Repo.Root, "src", "Operator", "bin", "Release", "net10.0", "ts-cgnat-operator");
}

// A NativeAOT binary stands alone; the JIT build has its ts-cgnat-operator.dll beside it.
var nativeAot = !File.Exists(Path.ChangeExtension(program, ".dll"));
if (nativeAot)
{
    limitMb = 120;
}

Console.WriteLine($"operator {program} ({(nativeAot ? "NativeAOT" : "JIT")}), memory target under {limitMb:F0} MB");

var info = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
foreach (var arg in new[] { "run", "--metrics-port", "0" })
{
    info.ArgumentList.Add(arg);
}

info.Environment["KUBECONFIG"] = kubeconfig;
var lines = 0;
using var child = Process.Start(info)!;
child.OutputDataReceived += (_, _) => Interlocked.Increment(ref lines);
child.ErrorDataReceived += (_, _) => Interlocked.Increment(ref lines);
child.BeginOutputReadLine();
child.BeginErrorReadLine();
using var sampling = new CancellationTokenSource();
var peakRss = 0.0;
var sampler = Task.Run(async () =>
{
    while (!sampling.IsCancellationRequested && !child.HasExited)
    {
        peakRss = Math.Max(peakRss, RssMb(child.Id));
        await Task.Delay(100, CancellationToken.None);
    }
});

try
{
    clock.Restart();
    var startWrites = StatusWrites(server);
    await Converged(server, generation: 1, child);
    var startTime = clock.Elapsed;
    var writesAtStart = StatusWrites(server) - startWrites;
    var rssAfterStart = RssMb(child.Id);
    Console.WriteLine($"converged after start in {startTime.TotalSeconds:F2} s with {writesAtStart} status writes; RSS {rssAfterStart:F0} MB");

    // The burst: every policy gets generation 2, then every agent reports it applied.
    var beforeBurst = StatusWrites(server);
    clock.Restart();
    for (var p = 0; p < Policies; p++)
    {
        var current = server.Get("cgnatallowpolicies", $"policy-{p:00}")!;
        current["spec"] = Policy(p, cidrs: 2)["spec"]!.DeepClone();
        current["metadata"]!.AsObject().Remove("generation");   // Put bumps it when the spec changed, as a real update would
        server.Put("cgnatallowpolicies", current);
    }

    for (var n = 0; n < Nodes; n++)
    {
        server.Put("cgnatnodestates", State(n, generation: 2));
    }

    var burstWritten = clock.Elapsed;
    await Converged(server, generation: 2, child);
    var burstTime = clock.Elapsed;
    var burstWrites = StatusWrites(server) - beforeBurst;
    var changes = Nodes + Policies;
    Console.WriteLine($"burst of {changes} changes written in {burstWritten.TotalSeconds:F2} s; converged {burstTime.TotalSeconds:F2} s after its start with {burstWrites} status writes");

    var beforeIdle = StatusWrites(server);
    var requestsBeforeIdle = server.Requests.Count;
    await Task.Delay(idle);
    var idleWrites = StatusWrites(server) - beforeIdle;
    var idleRequests = server.Requests.Count - requestsBeforeIdle;
    var rssEnd = RssMb(child.Id);
    await sampling.CancelAsync();
    await sampler;
    var loadAfter = LoadAverage();

    var memoryOk = peakRss < limitMb;
    var coalesced = burstWrites <= changes / 10 && idleWrites == 0;
    Console.WriteLine();
    Console.WriteLine("| measure | value | target | result |");
    Console.WriteLine("| --- | --- | --- | --- |");
    Console.WriteLine($"| time to converge after start ({Nodes} nodes, {Policies} policies) | {startTime.TotalSeconds:F2} s | (reported) | |");
    Console.WriteLine($"| status writes to converge after start | {writesAtStart} | (reported) | |");
    Console.WriteLine($"| time to converge after a burst of {changes} changes | {burstTime.TotalSeconds:F2} s | (reported) | |");
    Console.WriteLine($"| status writes for the burst | {burstWrites} | coalesced: at most 1 per 10 changes ({changes / 10}) | {(burstWrites <= changes / 10 ? "PASS" : "MISS")} |");
    Console.WriteLine($"| status writes in {idle.TotalSeconds:F0} s idle | {idleWrites} ({idleRequests} requests of any kind) | 0 | {(idleWrites == 0 ? "PASS" : "MISS")} |");
    Console.WriteLine($"| operator resident memory, peak (child process VmRSS) | {peakRss:F0} MB (end {rssEnd:F0} MB) | under {limitMb:F0} MB | {(memoryOk ? "PASS" : "MISS")} |");
    Console.WriteLine();
    Console.WriteLine($"load average before: {loadBefore}; after: {loadAfter}; {Environment.ProcessorCount} CPU(s); operator log lines: {lines}");
    return memoryOk && coalesced ? 0 : 1;
}
finally
{
    if (!child.HasExited)
    {
        child.Kill();
    }

    File.Delete(kubeconfig);
}

static async Task Converged(FakeApiServer server, int generation, Process child)
{
    var deadline = Stopwatch.StartNew();
    while (true)
    {
        var done = server.List("cgnatallowpolicies").Count(p => IsConverged(p, generation));
        if (done == Policies)
        {
            return;
        }

        if (child.HasExited)
        {
            throw new InvalidOperationException($"the operator exited with {child.ExitCode}");
        }

        if (deadline.Elapsed > TimeSpan.FromMinutes(10))
        {
            throw new TimeoutException($"only {done}/{Policies} policies converged to generation {generation} in 10 minutes");
        }

        await Task.Delay(50);
    }
}

static bool IsConverged(JsonObject policy, int generation)
{
    var index = int.Parse(((string)policy["metadata"]!["name"]!)["policy-".Length..], CultureInfo.InvariantCulture);
    var targets = index < EveryNodePolicies ? Nodes : Nodes / Zones;
    var status = policy["status"];
    var ready = (status?["conditions"] as JsonArray)?.FirstOrDefault(c => (string?)c?["type"] == "Ready");
    return (long?)policy["metadata"]!["generation"] == generation
        && (long?)status?["observedGeneration"] == generation
        && (string?)status?["nodes"] == $"{targets}/{targets}"
        && (string?)ready?["status"] == "True";
}

static int StatusWrites(FakeApiServer server) =>
    server.Requests.Count(r => r.Verb is "patch" or "update" && r.Path.Contains("/cgnatallowpolicies/", StringComparison.Ordinal) && r.Path.EndsWith("/status", StringComparison.Ordinal));

static bool Selects(int policy, int node) => policy < EveryNodePolicies || policy % Zones == node % Zones;

static JsonObject Policy(int p, int cidrs) => new()
{
    ["apiVersion"] = "tscgnat.io/v1alpha1",
    ["kind"] = "CgnatAllowPolicy",
    ["metadata"] = new JsonObject { ["name"] = $"policy-{p:00}" },
    ["spec"] = new JsonObject
    {
        ["nodeSelector"] = p < EveryNodePolicies ? null : new JsonObject { ["matchLabels"] = new JsonObject { ["zone"] = $"z{p % Zones}" } },
        ["allowedSources"] = new JsonArray([.. Enumerable.Range(0, cidrs).Select(i => (JsonNode)new JsonObject { ["cidr"] = $"100.{100 + i}.{p}.0/24" })]),
    },
};

static JsonObject Node(int n) => new()
{
    ["apiVersion"] = "v1",
    ["kind"] = "Node",
    ["metadata"] = new JsonObject
    {
        ["name"] = $"node-{n:0000}",
        ["labels"] = new JsonObject { ["zone"] = $"z{n % Zones}", ["kubernetes.io/hostname"] = $"node-{n:0000}" },
    },
    // A realistic Node carries a status several kilobytes long; the operator's cache keeps labels only.
    ["status"] = new JsonObject
    {
        ["addresses"] = new JsonArray(new JsonObject { ["type"] = "InternalIP", ["address"] = $"10.{n / 250}.{n % 250}.10" }),
        ["images"] = new JsonArray([.. Enumerable.Range(0, 20).Select(i => (JsonNode)new JsonObject
        {
            ["names"] = new JsonArray($"registry.example.com/team/image-{i}@sha256:{new string((char)('a' + (i % 6)), 64)}"),
            ["sizeBytes"] = 100_000_000 + i,
        })]),
    },
};

static JsonObject State(int n, int generation) => new()
{
    ["apiVersion"] = "tscgnat.io/v1alpha1",
    ["kind"] = "CgnatNodeState",
    ["metadata"] = new JsonObject { ["name"] = $"node-{n:0000}" },
    ["spec"] = new JsonObject { ["nodeName"] = $"node-{n:0000}" },
    ["status"] = new JsonObject
    {
        ["policies"] = new JsonArray([.. Enumerable.Range(0, Policies).Where(p => Selects(p, n)).Select(p => (JsonNode)new JsonObject
        {
            ["name"] = $"policy-{p:00}",
            ["generation"] = generation,
            ["phase"] = "Applied",
        })]),
        ["backend"] = "iptables-nft",
        ["strategy"] = "Indirect",
        ["rulesDigest"] = new string('0', 63) + (generation % 10).ToString(CultureInfo.InvariantCulture),
        ["conditions"] = new JsonArray(
            new JsonObject { ["type"] = "Ready", ["status"] = "True", ["reason"] = "RulesInPlace", ["message"] = "", ["lastTransitionTime"] = "2030-01-01T00:00:00Z" },
            new JsonObject { ["type"] = "TailscaleCompatible", ["status"] = "True", ["reason"] = "Nodivert", ["message"] = "", ["lastTransitionTime"] = "2030-01-01T00:00:00Z" }),
    },
};

static double RssMb(int pid)
{
    try
    {
        var line = File.ReadLines($"/proc/{pid}/status").FirstOrDefault(l => l.StartsWith("VmRSS:", StringComparison.Ordinal));
        return line is null ? 0 : double.Parse(line.Split(' ', StringSplitOptions.RemoveEmptyEntries)[1], CultureInfo.InvariantCulture) / 1024;
    }
    catch (IOException)
    {
        return 0;
    }
}

static string LoadAverage() => string.Join(' ', File.ReadAllText("/proc/loadavg").Split(' ').Take(3));
