using System.Diagnostics;
using System.Text.Json.Nodes;
using k8s;
using k8s.Models;
using TsCgnat.TestApiServer;
using TsCgnat.TestSupport;

namespace TsCgnat.EndToEnd.Tests;

/// <summary>
/// Issue 5, item 3: the NativeAOT binaries on their Kubernetes paths, where trimming and reflection-free code
/// can break what the JIT build does: reading a kubeconfig, list and watch of Nodes and of both custom kinds,
/// custom objects read as our types, merge patches of status and finalizers, the create of a CgnatNodeState,
/// leader election on a Lease, and events. <c>scripts/aot-check.sh</c> publishes both programs and names their
/// folder in <c>TSCGNAT_AOT_DIR</c>; without it the test is skipped, and under CI=true it fails.
/// </summary>
[Collection("netns")]
public sealed class AotBinaryTests
{
    private const string Node = "node-aot";
    private const string Cidr = "100.64.7.0/24";
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);

    [SkippableFact]
    public async Task The_AOT_operator_and_a_cluster_mode_AOT_agent_take_a_policy_to_Ready_1_of_1_and_through_its_deletion()
    {
        var (agentBinary, operatorBinary) = AotBinaries.Require();
        Privileges.RequireNetns();
        var dir = Directory.CreateTempSubdirectory("tscgnat-aot-");
        await using var server = await FakeApiServer.StartAsync();
        using var client = new Kubernetes(server.ClientConfiguration());
        using var ns = new Netns();
        using var tailscaled = new TailscaledEmulator(ns.Name, "nft");
        try
        {
            var kubeconfig = server.WriteKubeconfig(Path.Combine(dir.FullName, "kubeconfig"));
            await client.CoreV1.CreateNodeAsync(new V1Node { Metadata = new V1ObjectMeta { Name = Node, Labels = new Dictionary<string, string> { ["aot"] = "yes" } } });
            tailscaled.Run("start", "on");
            using var @operator = new Daemon("AOT operator", operatorBinary, ["run", "--leader-elect"], kubeconfig);
            using var agent = new Daemon("AOT agent", agentBinary,
            [
                "run", "--node-name", Node, "--netns", ns.Name, "--state-dir", Path.Combine(dir.FullName, "state"),
                "--tailscale-socket", Path.Combine(dir.FullName, "no-tailscaled.sock"), "--resync-interval", "5",
            ], kubeconfig);
            void WaitFor(Func<bool> condition, string what) => Wait(condition, what, @operator, agent);

            await client.CustomObjects.CreateClusterCustomObjectAsync(Policy("aot", Cidr), LabCluster.Group, LabCluster.Version, LabCluster.PolicyPlural);

            WaitFor(() => Status(server.Get(LabCluster.PolicyPlural, "aot"), "appliedNodes") == 1
                && LabCluster.Condition(server.Get(LabCluster.PolicyPlural, "aot"), "Ready") == "True", "policy aot Ready with 1/1");
            var policy = server.Get(LabCluster.PolicyPlural, "aot")!;
            Assert.Equal("True", LabCluster.Condition(policy, "Accepted"));
            Assert.Equal(1, Status(policy, "targetNodes"));
            Assert.NotEmpty(policy["metadata"]!["finalizers"]!.AsArray());
            var state = server.Get(LabCluster.StatePlural, Node)!;
            Assert.Equal("True", LabCluster.Condition(state, "Ready"));
            Assert.Equal("InChain", (string?)state["status"]!["strategy"]);
            Assert.Equal("Node", (string?)state["metadata"]!["ownerReferences"]![0]!["kind"]);
            Assert.Contains(Cidr, ns.Exec("ipset", "list", "TSCGNAT-SRC4"), StringComparison.Ordinal);
            // The small ts-cgnat-agent handed cluster mode to ts-cgnat-agent-cluster by exec: same process, other program.
            Assert.Equal(Path.Combine(Path.GetDirectoryName(agentBinary)!, "ts-cgnat-agent-cluster"), new FileInfo($"/proc/{agent.Pid}/exe").LinkTarget);
            var lease = Assert.Single(server.List("leases", "ts-cgnat"));
            Assert.False(string.IsNullOrEmpty((string?)lease["spec"]!["holderIdentity"]), "the operator holds its Lease");

            // An invalid policy stored directly: the operator says why, and an event is written.
            server.Put(LabCluster.PolicyPlural, Policy("outside", "10.0.0.0/8"));
            WaitFor(() => LabCluster.Condition(server.Get(LabCluster.PolicyPlural, "outside"), "Accepted") == "False", "policy outside Accepted=False");
            WaitFor(() => server.List("events").Any(e => (string?)e["reason"] == "PolicyInvalid"), "a PolicyInvalid event");

            await client.CustomObjects.DeleteClusterCustomObjectAsync(LabCluster.Group, LabCluster.Version, LabCluster.PolicyPlural, "aot");

            WaitFor(() => server.Get(LabCluster.PolicyPlural, "aot") is null, "policy aot gone once the agent reported the removal");
            Assert.DoesNotContain(Cidr, ns.Exec("ipset", "list", "TSCGNAT-SRC4"), StringComparison.Ordinal);
            Assert.False(@operator.HasExited, $"the operator is still running\n{@operator.Output}");
            Assert.False(agent.HasExited, $"the agent is still running\n{agent.Output}");
        }
        finally
        {
            Sh.Run(agentBinary, "cleanup", "--netns", ns.Name, "--state-dir", Path.Combine(dir.FullName, "state"));
            dir.Delete(recursive: true);
        }
    }

    [SkippableFact]
    public void The_AOT_agent_without_its_cluster_binary_beside_it_refuses_cluster_mode_and_says_where_it_looked()
    {
        var (agentBinary, _) = AotBinaries.Require();
        var dir = Directory.CreateTempSubdirectory("tscgnat-aot-alone-");
        try
        {
            var alone = Path.Combine(dir.FullName, "ts-cgnat-agent");
            File.Copy(agentBinary, alone);
            var refused = Sh.Run(alone, "run", "--node-name", Node);
            Assert.Equal(1, refused.ExitCode);
            Assert.Contains($"{Path.Combine(dir.FullName, "ts-cgnat-agent-cluster")} does not exist", refused.StdErr, StringComparison.Ordinal);
            Assert.Equal("", refused.StdOut);

            // Host mode and every other command need no second binary.
            var version = Sh.Ok(alone, "version");
            Assert.StartsWith("ts-cgnat-agent ", version, StringComparison.Ordinal);
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    private static JsonObject Policy(string name, string cidr) => new()
    {
        ["apiVersion"] = $"{LabCluster.Group}/{LabCluster.Version}",
        ["kind"] = "CgnatAllowPolicy",
        ["metadata"] = new JsonObject { ["name"] = name },
        ["spec"] = new JsonObject
        {
            ["nodeSelector"] = new JsonObject { ["matchLabels"] = new JsonObject { ["aot"] = "yes" } },
            ["allowedSources"] = new JsonArray(new JsonObject { ["cidr"] = cidr }),
        },
    };

    private static int? Status(JsonObject? policy, string field) => policy?["status"]?[field]?.GetValue<int>();

    private static void Wait(Func<bool> condition, string what, params Daemon[] daemons)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (clock.Elapsed > Patience || daemons.Any(d => d.HasExited))
            {
                Assert.Fail($"{what}: not seen within {Patience.TotalSeconds} s"
                    + string.Concat(daemons.Select(d => $"\n--- {d.Name}{(d.HasExited ? " (exited)" : "")}:\n{d.Output}")));
            }

            Thread.Sleep(100);
        }
    }
}

/// <summary>The NativeAOT binaries under test, from the folder <c>TSCGNAT_AOT_DIR</c> names.</summary>
public static class AotBinaries
{
    public const string Variable = "TSCGNAT_AOT_DIR";

    public static (string Agent, string Operator) Require()
    {
        var dir = Environment.GetEnvironmentVariable(Variable);
        string[] binaries = string.IsNullOrEmpty(dir) ? []
            : [Path.Combine(dir, "ts-cgnat-agent"), Path.Combine(dir, "ts-cgnat-operator"), Path.Combine(dir, "ts-cgnat-agent-cluster")];
        var missing = binaries.Length == 0
            ? $"{Variable} is not set (scripts/aot-check.sh publishes the NativeAOT binaries and sets it)"
            : binaries.FirstOrDefault(b => !File.Exists(b)) is { } absent ? $"{absent} does not exist" : null;
        if (missing is null)
        {
            return (binaries[0], binaries[1]);
        }

        if (Privileges.InCi)
        {
            throw new InvalidOperationException($"CI=true but the NativeAOT binaries are not there: {missing}. .ci/run must run scripts/aot-check.sh first.");
        }

        Skip.If(true, missing);
        return default;
    }
}
