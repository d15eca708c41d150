using System.Net;
using k8s;
using k8s.Autorest;
using TsCgnat.KubeApiServer;
using TsCgnat.TestSupport;
using Xunit.Abstractions;

namespace TsCgnat.EndToEnd.Tests;

[CollectionDefinition("netns", DisableParallelization = true)]
public class NetnsSerial;

/// <summary>
/// Issue 9, item 4: two operator replicas and two cluster-mode agents on a real kube-apiserver (v1.36 in CI), as the
/// chart's service accounts with TokenRequest tokens (each agent's bound to a Pod on its Node), so the RBAC and the
/// admission policy they meet are the chart's own (<see cref="LabCluster"/>). Each agent drives one lab router with
/// the emulated tailscaled in mode on (so without our exemptions Tailscale's drop cuts the LANs off). The scenarios
/// share one cluster (<see cref="LabClusterFixture"/>); each names its own policy, which exempts both LANs
/// (100.64.0.0/24 behind u2, 100.64.1.0/24 behind u5) on the cluster's two Nodes, and leaves no policy behind.
/// </summary>
[Collection("netns")]
public sealed class ClusterEndToEndTests(LabClusterFixture lab, ITestOutputHelper output) : IClassFixture<LabClusterFixture>, IAsyncLifetime
{
    private const string U2Lan = "100.64.0.0/24";
    private const string U5Lan = "100.64.1.0/24";
    private const string Third = "100.64.2.0/24";
    private LabCluster? _cluster;

    public Task InitializeAsync() => Task.CompletedTask;

    /// <summary>After every scenario, passed or failed: its policies gone, so the next one starts clean.</summary>
    public async Task DisposeAsync()
    {
        if (_cluster is not null)
        {
            await _cluster.ResetAsync();
            _cluster.Trace = null;
        }
    }

    [SkippableFact]
    public async Task A_policy_selecting_both_nodes_becomes_Ready_2_of_2_and_traffic_flows()
    {
        var cluster = await ClusterAsync();
        Assert.False(cluster.Lab.Reaches("u2", Lab.U3), "before any policy, Tailscale's drop cuts u2 off from u3");

        await cluster.CreatePolicyAsync("ready", U2Lan, U5Lan);

        await cluster.WaitForAsync(async () => await cluster.NodesAsync("ready") == "2/2" && LabCluster.Condition(await cluster.PolicyAsync("ready"), "Ready") == "True", "policy ready Ready with 2/2");
        var policy = await cluster.PolicyAsync("ready");
        Assert.Equal("True", LabCluster.Condition(policy, "Accepted"));
        Assert.Equal("False", LabCluster.Condition(policy, "Degraded"));
        Assert.True(cluster.Lab.Reaches("u2", Lab.U3), "u2 -> u3");
        Assert.True(cluster.Lab.Reaches("u4", Lab.U3), "u4 -> u3 through u2");
        Assert.True(cluster.Lab.Reaches("u5", Lab.U6), "u5 -> u6");
        Assert.True(cluster.Lab.Reaches("u4", Lab.U6), "u4 -> u6 through u5");
        Assert.False(cluster.Lab.Reaches("u2", Lab.U3Unlisted), "a source no policy allows is still dropped");

        foreach (var router in new[] { "u2", "u5" })
        {
            var state = (await cluster.StateAsync(router))!;
            var owner = Assert.Single(state["metadata"]!["ownerReferences"]!.AsArray())!;
            Assert.Equal(("Node", cluster.NodeName(router)), ((string?)owner["kind"], (string?)owner["name"]));
            Assert.Equal((await cluster.Admin.CoreV1.ReadNodeAsync(cluster.NodeName(router))).Metadata.Uid, (string?)owner["uid"]);
            Assert.Equal("Applied", await cluster.PhaseAsync(router, "ready"));
            Assert.Equal("True", LabCluster.Condition(state, "Ready"));
            Assert.Equal("InChain", (string?)state["status"]!["strategy"]);
        }

        var u2 = (await cluster.StateAsync("u2"))!;
        var u5 = (await cluster.StateAsync("u5"))!;
        Assert.Equal("iptables-nft", (string?)u2["status"]!["backend"]);
        Assert.Equal("iptables-legacy", (string?)u5["status"]!["backend"]);
        Assert.Equal((string?)u2["status"]!["rulesDigest"], (string?)u5["status"]!["rulesDigest"]);

        var table = KubeTools.Ok(cluster.AdminKubeconfig, KubeTools.Kubectl, "get", "cgap,cgns", "-o", "wide");
        output.WriteLine($"$ kubectl get cgap,cgns -o wide\n{table}");
        Assert.Contains(cluster.PolicyName("ready"), table, StringComparison.Ordinal);
    }

    [SkippableFact]
    public async Task Relabelling_a_node_out_of_the_selector_removes_its_rules_and_the_status_says_1_of_1()
    {
        var cluster = await ClusterAsync();
        await cluster.CreatePolicyAsync("relabel", U2Lan, U5Lan);
        await cluster.WaitForAsync(async () => await cluster.NodesAsync("relabel") == "2/2", "policy relabel 2/2");

        await cluster.SelectAsync("u5", selected: false);

        await cluster.WaitForAsync(async () => await cluster.NodesAsync("relabel") == "1/1" && !cluster.Exempts("u5", U5Lan), "u5's exemptions gone and policy relabel 1/1");
        Assert.Equal("Removed", await cluster.PhaseAsync("u5", "relabel"));
        Assert.False(cluster.Lab.Reaches("u5", Lab.U6), "u5 -> u6 is dropped by Tailscale again");
        Assert.True(cluster.Lab.Reaches("u2", Lab.U3), "u2 keeps its exemptions");
        Assert.Equal("True", LabCluster.Condition(await cluster.PolicyAsync("relabel"), "Ready"));

        await cluster.SelectAsync("u5", selected: true);
        await cluster.WaitForAsync(async () => await cluster.NodesAsync("relabel") == "2/2" && cluster.Lab.Reaches("u5", Lab.U6), "u5 selected again");
    }

    [SkippableFact]
    public async Task An_invalid_policy_is_refused_by_the_server_and_an_invalid_change_leaves_the_applied_policy_as_it_was()
    {
        var cluster = await ClusterAsync();
        await cluster.CreatePolicyAsync("invalid", U2Lan, U5Lan);
        await cluster.WaitForAsync(async () => await cluster.NodesAsync("invalid") == "2/2", "policy invalid 2/2");

        // As a user meets it: kubectl apply of a policy outside 100.64.0.0/10 fails with the CRD's CEL message.
        var file = Path.Combine(Path.GetTempPath(), UniqueName.For("outside-") + ".json");
        File.WriteAllText(file, cluster.PolicyBody("outside", "10.0.0.0/8").ToJsonString());
        try
        {
            var applied = KubeTools.Run(cluster.AdminKubeconfig, KubeTools.Kubectl, "apply", "-f", file);
            output.WriteLine($"$ kubectl apply -f outside.json\n{applied.StdOut}{applied.StdErr}");
            Assert.False(applied.Succeeded);
            Assert.Contains("spec.allowedSources[0].cidr", applied.StdErr, StringComparison.Ordinal);
            Assert.Contains("is outside 100.64.0.0/10; Tailscale does not drop it", applied.StdErr, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(file);
        }

        Assert.Null(await cluster.PolicyAsync("outside"));

        // A change to the applied policy that puts host bits into a CIDR: refused, generation 1 stays applied.
        var change = await Assert.ThrowsAsync<HttpOperationException>(() => cluster.SetSpecAsync("invalid", U2Lan, "100.64.1.1/24"));
        Assert.Equal(HttpStatusCode.UnprocessableEntity, change.Response.StatusCode);
        Assert.Contains("has host bits set", change.Response.Content, StringComparison.Ordinal);
        var policy = await cluster.PolicyAsync("invalid");
        Assert.Equal(1, (long?)policy!["metadata"]!["generation"]);
        Assert.Equal("True", LabCluster.Condition(policy, "Ready"));
        Assert.True(cluster.Exempts("u5", U5Lan) && cluster.Lab.Reaches("u4", Lab.U6), "u5 keeps the applied rules");
        Assert.Equal(1, await cluster.EntryGenerationAsync("u5", "invalid"));
    }

    [SkippableFact]
    public async Task Deleting_a_policy_holds_the_finalizer_until_both_agents_report_the_removal()
    {
        var cluster = await ClusterAsync();
        await cluster.CreatePolicyAsync("finalizer", U2Lan, U5Lan);
        await cluster.WaitForAsync(async () => await cluster.NodesAsync("finalizer") == "2/2", "policy finalizer 2/2");
        Assert.NotEmpty((await cluster.PolicyAsync("finalizer"))!["metadata"]!["finalizers"]!.AsArray());

        // u5's agent is down (a rolling update): it cannot report the removal until it is back.
        cluster.StopAgent("u5");
        await cluster.DeletePolicyAsync("finalizer");

        await cluster.WaitForAsync(async () => await cluster.PhaseAsync("u2", "finalizer") == "Removed" && !cluster.Exempts("u2", U2Lan), "u2 removed the policy's rules and says so");
        var held = await cluster.PolicyAsync("finalizer");
        Assert.NotNull(held);
        Assert.NotNull(held["metadata"]!["deletionTimestamp"]);
        Assert.Equal("Applied", await cluster.PhaseAsync("u5", "finalizer"));
        Assert.True(cluster.Exempts("u5", U5Lan), "a stopped agent leaves its rules in place (fail-static)");

        cluster.StartAgent("u5");

        await cluster.WaitForAsync(async () => await cluster.PolicyAsync("finalizer") is null, "the policy goes once u5 reported the removal too");
        Assert.False(cluster.Exempts("u5", U5Lan));
        await cluster.WaitForAsync(async () => await cluster.PhaseAsync("u2", "finalizer") is null && await cluster.PhaseAsync("u5", "finalizer") is null, "the entries go with the policy");
    }

    [SkippableFact]
    public async Task With_one_agent_stopped_the_deletion_times_out_with_a_Warning_event()
    {
        var cluster = await ClusterAsync();
        cluster.RestartOperators(deletionTimeout: "4s");
        await cluster.CreatePolicyAsync("timeout", U2Lan, U5Lan);
        await cluster.WaitForAsync(async () => await cluster.NodesAsync("timeout") == "2/2", "policy timeout 2/2");
        cluster.StopAgent("u5");

        await cluster.DeletePolicyAsync("timeout");

        await cluster.WaitForAsync(async () => await cluster.PhaseAsync("u2", "timeout") == "Removed", "u2 reports the removal");
        await cluster.WaitForAsync(async () => await cluster.PolicyAsync("timeout") is null, "the policy goes after the deletion timeout");
        var warning = Assert.Single(await cluster.EventsAboutAsync(cluster.PolicyName("timeout")), e => e.Reason == "DeletionTimedOut");
        output.WriteLine($"{warning.Type} {warning.Reason}: {warning.Message}");
        Assert.Equal("Warning", warning.Type);
        Assert.Contains(cluster.NodeName("u5"), warning.Message, StringComparison.Ordinal);
        Assert.Equal("Applied", await cluster.PhaseAsync("u5", "timeout"));
        Assert.True(cluster.Exempts("u5", U5Lan), "a stopped agent leaves its rules in place (fail-static)");
    }

    [SkippableFact]
    public async Task A_node_state_follows_tailscaleds_netfilter_mode_and_the_strategy_with_it()
    {
        var cluster = await ClusterAsync();
        await cluster.CreatePolicyAsync("mode", U2Lan, U5Lan);
        await cluster.WaitForAsync(async () => await cluster.NodesAsync("mode") == "2/2" && await ModeAsync(cluster, "u2") == ("on", "InChain"), "policy mode 2/2, u2 in mode on with InChain");

        cluster.U2.Run("set-mode", "nodivert");
        try
        {
            await cluster.WaitForAsync(async () => await ModeAsync(cluster, "u2") == ("nodivert", "Indirect"), "u2 reports nodivert and strategy Indirect");
            var u2 = (await cluster.StateAsync("u2"))!;
            Assert.Equal("firewall", (string?)u2["status"]!["tailscale"]!["learnedFrom"]);
            Assert.Equal("iptables-nft", (string?)u2["status"]!["tailscale"]!["runner"]);
            Assert.Equal("True", LabCluster.Condition(u2, "TailscaleCompatible"));
            await cluster.WaitForAsync(() => cluster.Lab.Reaches("u4", Lab.U3), "u4 -> u3 in mode nodivert");
        }
        finally
        {
            cluster.U2.Run("set-mode", "on");
        }

        await cluster.WaitForAsync(async () => await ModeAsync(cluster, "u2") == ("on", "InChain"), "u2 reports mode on and strategy InChain again");
        await cluster.WaitForAsync(() => cluster.Lab.Reaches("u4", Lab.U3), "u4 -> u3 in mode on");
        Assert.Equal(("on", "InChain"), await ModeAsync(cluster, "u5"));
        Assert.Equal("iptables-legacy", (string?)(await cluster.StateAsync("u5"))!["status"]!["tailscale"]!["runner"]);
    }

    [SkippableFact]
    public async Task Drift_is_repaired_counted_in_the_node_state_and_reported_as_an_event()
    {
        var cluster = await ClusterAsync();
        await cluster.CreatePolicyAsync("drift", U2Lan, U5Lan);
        await cluster.WaitForAsync(async () => await cluster.NodesAsync("drift") == "2/2", "policy drift 2/2");

        var repairs = (long?)(await cluster.StateAsync("u2"))!["status"]!["driftRepairs"] ?? 0;
        var events = await RepairEventsAsync(cluster);

        cluster.U2.Run("restart"); // tailscaled flushes its chains, and our exemptions in them with them

        await cluster.WaitForAsync(async () => (long?)(await cluster.StateAsync("u2"))?["status"]?["driftRepairs"] > repairs, "u2 counts the repair");
        await cluster.WaitForAsync(async () => await RepairEventsAsync(cluster) > events, "a DriftRepaired event on u2's Node");
        var repaired = (await cluster.EventsAboutAsync(cluster.NodeName("u2"))).First(e => e.Reason == "DriftRepaired");
        output.WriteLine($"{repaired.Type} {repaired.Reason} on {repaired.InvolvedObject.Kind} {repaired.InvolvedObject.Name} (count {repaired.Count}): {repaired.Message}");
        Assert.Equal("Node", repaired.InvolvedObject.Kind);
        Assert.True(cluster.Lab.Reaches("u2", Lab.U3), "u2 -> u3 after the repair");
    }

    [SkippableFact]
    public async Task Agents_killed_with_SIGKILL_restart_and_converge_without_duplicate_state()
    {
        var cluster = await ClusterAsync();
        await cluster.CreatePolicyAsync("kill", U2Lan, U5Lan);
        await cluster.WaitForAsync(async () => await cluster.NodesAsync("kill") == "2/2", "policy kill 2/2");
        var uids = new Dictionary<string, string?>();
        var rules = new Dictionary<string, string[]>();
        foreach (var router in new[] { "u2", "u5" })
        {
            uids[router] = (string?)(await cluster.StateAsync(router))!["metadata"]!["uid"];
            rules[router] = OurRules(cluster, router);
            Assert.NotEmpty(rules[router]);
        }

        cluster.Agent("u2").Kill();
        cluster.Agent("u5").Kill();
        await cluster.SetSpecAsync("kill", U2Lan, U5Lan, Third); // generation 2 arrives while no agent runs
        cluster.StartAgent("u2");
        cluster.StartAgent("u5");

        await cluster.WaitForAsync(
            async () => await cluster.EntryGenerationAsync("u2", "kill") == 2 && await cluster.EntryGenerationAsync("u5", "kill") == 2
                && await cluster.NodesAsync("kill") == "2/2" && (long?)(await cluster.PolicyAsync("kill"))!["status"]!["observedGeneration"] == 2,
            "generation 2 applied by the restarted agents and aggregated");
        var states = await cluster.StatesAsync();
        Assert.Equal([cluster.NodeName("u2"), cluster.NodeName("u5")], states.Select(s => (string)s["metadata"]!["name"]!).Order());
        foreach (var router in new[] { "u2", "u5" })
        {
            var state = (await cluster.StateAsync(router))!;
            Assert.Equal(uids[router], (string?)state["metadata"]!["uid"]); // the same object, not a new one
            Assert.Single(state["status"]!["policies"]!.AsArray());
            Assert.Single(cluster.Entries(state, "kill"));
            Assert.Equal(["100.64.0.0/24", "100.64.1.0/24", "100.64.2.0/24"], cluster.SourceSet(router).Order());
            Assert.Equal(rules[router], OurRules(cluster, router)); // the same rules, none twice
        }
    }

    [SkippableFact]
    public async Task Two_operator_replicas_hand_the_Lease_over_when_the_leader_is_killed_and_the_status_still_converges()
    {
        var cluster = await ClusterAsync();
        await cluster.CreatePolicyAsync("lease", U2Lan, U5Lan);
        await cluster.WaitForAsync(async () => await cluster.NodesAsync("lease") == "2/2" && LabCluster.Condition(await cluster.PolicyAsync("lease"), "Ready") == "True", "policy lease Ready with 2/2");
        var leader = await cluster.LeaseHolderAsync();
        var replica = Assert.Single(cluster.Operators, o => o.Name == leader);
        var standby = Assert.Single(cluster.Operators, o => o.Name != leader);

        replica.Kill();
        await cluster.SetSpecAsync("lease", U2Lan, U5Lan, Third);

        await cluster.WaitForAsync(async () => await cluster.LeaseHolderAsync() == standby.Name, $"the Lease passes from {leader} to {standby.Name}");
        await cluster.WaitForAsync(
            async () => (await cluster.PolicyAsync("lease"))!["status"] is { } status && (long?)status["observedGeneration"] == 2
                && await cluster.NodesAsync("lease") == "2/2" && LabCluster.Condition(await cluster.PolicyAsync("lease"), "Ready") == "True",
            "generation 2 aggregated by the new leader");
        Assert.False(standby.HasExited);
        Assert.True(cluster.Exempts("u2", Third) && cluster.Exempts("u5", Third));
    }

    [SkippableFact]
    public async Task With_the_API_server_gone_no_rule_is_lost_a_rebooted_node_gets_its_cached_rules_back_and_all_converge_when_it_returns()
    {
        var cluster = await ClusterAsync();
        await cluster.CreatePolicyAsync("gone", U2Lan, U5Lan);
        await cluster.WaitForAsync(async () => await cluster.NodesAsync("gone") == "2/2", "policy gone 2/2");

        // u2 reboots: its agent is down and its rules are gone, as after a power cycle.
        cluster.StopAgent("u2");
        cluster.LoseRules("u2");
        Assert.False(cluster.Lab.Reaches("u2", Lab.U3), "without our rules Tailscale's drop cuts u2 off");

        await cluster.StopServerAsync();
        // Everyone still running has noticed the loss (a failed watch or write) before the rules are checked.
        await cluster.WaitForAsync(() => cluster.Agent("u5").Output.Contains("Connection refused", StringComparison.Ordinal)
            && cluster.Operators.All(o => o.Output.Contains("Connection refused", StringComparison.Ordinal)), "u5's agent and the operators notice the API server is gone");
        Assert.True(cluster.Exempts("u5", U5Lan) && cluster.Lab.Reaches("u4", Lab.U6), $"u5 keeps its rules and traffic flows while the API server is down\n{cluster.Output}");

        cluster.StartAgent("u2");

        await cluster.WaitForAsync(() => cluster.Exempts("u2", U2Lan) && cluster.Lab.Reaches("u2", Lab.U3), "u2's cached rules are back with no API server");
        Assert.True(cluster.Exempts("u5", U5Lan), "no rule lost on u5");

        await cluster.StartServerAgainAsync();
        await cluster.SetSpecAsync("gone", U2Lan, U5Lan, Third);

        await cluster.WaitForAsync(
            async () => cluster.Exempts("u2", Third) && cluster.Exempts("u5", Third)
                && await cluster.EntryGenerationAsync("u2", "gone") == 2 && await cluster.EntryGenerationAsync("u5", "gone") == 2
                && await cluster.NodesAsync("gone") == "2/2" && LabCluster.Condition(await cluster.PolicyAsync("gone"), "Ready") == "True",
            "generation 2 applied on both nodes and aggregated once the API server is back");
        Assert.True(cluster.Exempts("u2", U2Lan) && cluster.Exempts("u5", U5Lan), "no rule was lost");
    }

    private async Task<LabCluster> ClusterAsync()
    {
        Privileges.RequireNetns();
        _cluster = await lab.GetAsync();
        if (lab.TakeStartTime() is { } startedIn)
        {
            output.WriteLine($"the class's lab cluster started in {startedIn.TotalSeconds:F1} s");
        }

        _cluster.Trace = output.WriteLine;
        await _cluster.EnsureRunningAsync();
        return _cluster;
    }

    private static async Task<(string?, string?)> ModeAsync(LabCluster cluster, string router) =>
        (await cluster.StateAsync(router))?["status"] is { } status ? ((string?)status["tailscale"]?["netfilterMode"], (string?)status["strategy"]) : (null, null);

    /// <summary>DriftRepaired events on u2's Node, counted as the recorder counts repeats.</summary>
    private static async Task<int> RepairEventsAsync(LabCluster cluster) =>
        (await cluster.EventsAboutAsync(cluster.NodeName("u2"))).Where(e => e.Reason == "DriftRepaired").Sum(e => e.Count ?? 1);

    /// <summary>Our rules in the router's iptables (the back end tailscaled writes with there), in order.</summary>
    private static string[] OurRules(LabCluster cluster, string router)
    {
        var save = router == "u2" ? "iptables-nft-save" : "iptables-legacy-save";
        var text = cluster.Lab.Exec(router, save);
        return [.. text.Split('\n').Where(l => l.StartsWith("-A ", StringComparison.Ordinal) && (l.Contains("TSCGNAT", StringComparison.Ordinal) || l.Contains("ts-cgnat", StringComparison.Ordinal)))];
    }
}

/// <summary><c>ts-cgnat-agent run</c> without <c>--policy-file</c>: what cluster mode needs before it starts.</summary>
public sealed class ClusterModeCommandTests
{
    [Fact]
    public void Run_without_policy_files_and_without_a_node_name_exits_2_and_says_what_is_missing()
    {
        var info = new System.Diagnostics.ProcessStartInfo(Programs.Agent) { RedirectStandardError = true, RedirectStandardOutput = true };
        info.ArgumentList.Add("run");
        info.Environment.Remove("NODE_NAME");
        using var agent = System.Diagnostics.Process.Start(info)!;
        var error = agent.StandardError.ReadToEnd();
        agent.WaitForExit();

        Assert.Equal(2, agent.ExitCode);
        Assert.Equal("error: cluster mode (run without --policy-file) needs this node's name: set NODE_NAME or give --node-name\n", error);
    }

    [Fact]
    public void Run_in_cluster_mode_without_a_kubeconfig_exits_1_and_says_where_it_looked()
    {
        var info = new System.Diagnostics.ProcessStartInfo(Programs.Agent) { RedirectStandardError = true, RedirectStandardOutput = true };
        info.ArgumentList.Add("run");
        info.ArgumentList.Add("--node-name");
        info.ArgumentList.Add("n1");
        info.Environment["KUBECONFIG"] = Path.Combine(Path.GetTempPath(), UniqueName.For("missing-kubeconfig-"));
        info.Environment.Remove("KUBERNETES_SERVICE_HOST");
        using var agent = System.Diagnostics.Process.Start(info)!;
        var error = agent.StandardError.ReadToEnd();
        agent.WaitForExit();

        Assert.Equal(1, agent.ExitCode);
        Assert.StartsWith("error: cluster mode (run without --policy-file) found no API server to talk to: ", error, StringComparison.Ordinal);
        Assert.Contains("set KUBECONFIG", error, StringComparison.Ordinal);
    }
}
