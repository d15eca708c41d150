using System.Text.Json.Nodes;
using TsCgnat.TestSupport;
using Xunit.Abstractions;

namespace TsCgnat.EndToEnd.Tests;

[CollectionDefinition("netns", DisableParallelization = true)]
public class NetnsSerial;

/// <summary>
/// Issue 4, item 6: the operator and two agents over the test API server, each agent driving one lab router
/// with the emulated tailscaled in mode on (so without our exemptions Tailscale's drop cuts the LANs off).
/// Policy "lab" exempts both LANs (100.64.0.0/24 behind u2, 100.64.1.0/24 behind u5) on the Nodes labelled
/// <see cref="LabCluster.LabLabel"/>.
/// </summary>
[Collection("netns")]
public sealed class ClusterEndToEndTests(ITestOutputHelper output)
{
    private const string U2Lan = "100.64.0.0/24";
    private const string U5Lan = "100.64.1.0/24";

    [SkippableFact]
    public async Task A_policy_selecting_both_nodes_becomes_Ready_2_of_2_and_traffic_flows()
    {
        Privileges.RequireNetns();
        await using var cluster = await LabCluster.StartAsync();
        Assert.False(cluster.Lab.Reaches("u2", Lab.U3), "before any policy, Tailscale's drop cuts u2 off from u3");

        await cluster.CreatePolicyAsync("lab", U2Lan, U5Lan);

        cluster.WaitFor(() => cluster.Nodes("lab") == "2/2" && LabCluster.Condition(cluster.Policy("lab"), "Ready") == "True", "policy lab Ready with 2/2");
        Assert.Equal("True", LabCluster.Condition(cluster.Policy("lab"), "Accepted"));
        Assert.Equal("False", LabCluster.Condition(cluster.Policy("lab"), "Degraded"));
        Assert.True(cluster.Lab.Reaches("u2", Lab.U3), "u2 -> u3");
        Assert.True(cluster.Lab.Reaches("u4", Lab.U3), "u4 -> u3 through u2");
        Assert.True(cluster.Lab.Reaches("u5", Lab.U6), "u5 -> u6");
        Assert.True(cluster.Lab.Reaches("u4", Lab.U6), "u4 -> u6 through u5");
        Assert.False(cluster.Lab.Reaches("u2", Lab.U3Unlisted), "a source no policy allows is still dropped");

        foreach (var router in new[] { "u2", "u5" })
        {
            var state = cluster.State(router)!;
            var owner = Assert.Single(state["metadata"]!["ownerReferences"]!.AsArray())!;
            Assert.Equal(("Node", LabCluster.NodeName(router)), ((string?)owner["kind"], (string?)owner["name"]));
            Assert.Equal((string?)cluster.Server.Get("nodes", LabCluster.NodeName(router))!["metadata"]!["uid"], (string?)owner["uid"]);
            Assert.Equal("Applied", cluster.Phase(router, "lab"));
            Assert.Equal("True", LabCluster.Condition(state, "Ready"));
            Assert.Equal("InChain", (string?)state["status"]!["strategy"]);
        }

        Assert.Equal("iptables-nft", (string?)cluster.State("u2")!["status"]!["backend"]);
        Assert.Equal("iptables-legacy", (string?)cluster.State("u5")!["status"]!["backend"]);
        Assert.Equal((string?)cluster.State("u2")!["status"]!["rulesDigest"], (string?)cluster.State("u5")!["status"]!["rulesDigest"]);
    }

    [SkippableFact]
    public async Task Relabelling_a_node_out_of_the_selector_removes_its_rules_and_the_status_says_1_of_1()
    {
        Privileges.RequireNetns();
        await using var cluster = await LabCluster.StartAsync();
        await cluster.CreatePolicyAsync("lab", U2Lan, U5Lan);
        cluster.WaitFor(() => cluster.Nodes("lab") == "2/2", "policy lab 2/2");

        await cluster.LabelAsync("u5", LabCluster.LabLabel, null);

        cluster.WaitFor(() => cluster.Nodes("lab") == "1/1" && !cluster.Exempts("u5", U5Lan), "u5's exemptions gone and policy lab 1/1");
        Assert.Equal("Removed", cluster.Phase("u5", "lab"));
        Assert.False(cluster.Lab.Reaches("u5", Lab.U6), "u5 -> u6 is dropped by Tailscale again");
        Assert.True(cluster.Lab.Reaches("u2", Lab.U3), "u2 keeps its exemptions");
        Assert.Equal("True", LabCluster.Condition(cluster.Policy("lab"), "Ready"));

        await cluster.LabelAsync("u5", LabCluster.LabLabel, "yes");
        cluster.WaitFor(() => cluster.Nodes("lab") == "2/2" && cluster.Lab.Reaches("u5", Lab.U6), "u5 selected again");
    }

    [SkippableFact]
    public async Task An_invalid_policy_stored_directly_is_not_Accepted_and_no_node_applies_it()
    {
        Privileges.RequireNetns();
        await using var cluster = await LabCluster.StartAsync();

        // As an old API server without the CRD's CEL rules would store it.
        cluster.Server.Put(LabCluster.PolicyPlural, new JsonObject
        {
            ["apiVersion"] = $"{LabCluster.Group}/{LabCluster.Version}",
            ["kind"] = "CgnatAllowPolicy",
            ["metadata"] = new JsonObject { ["name"] = "outside" },
            ["spec"] = LabCluster.Spec("10.0.0.0/8"),
        });

        cluster.WaitFor(() => LabCluster.Condition(cluster.Policy("outside"), "Accepted") == "False", "Accepted=False");
        var accepted = LabCluster.ConditionNode(cluster.Policy("outside"), "Accepted")!;
        Assert.Equal("InvalidSpec", (string?)accepted["reason"]);
        Assert.Contains("spec.allowedSources[0].cidr: \"10.0.0.0/8\"", (string?)accepted["message"], StringComparison.Ordinal);
        cluster.WaitFor(() => cluster.Phase("u2", "outside") == "Failed" && cluster.Phase("u5", "outside") == "Failed", "both agents report it Failed");
        Assert.Contains("outside 100.64.0.0/10", (string?)((JsonArray)cluster.State("u2")!["status"]!["policies"]!)[0]!["message"], StringComparison.Ordinal);
        Assert.False(cluster.Exempts("u2", "10.0.0.0/8"));
        Assert.False(cluster.Exempts("u5", "10.0.0.0/8"));
        Assert.Equal("True", LabCluster.Condition(cluster.State("u2"), "Ready"));
        cluster.WaitFor(() => cluster.Server.List("events").Any(e => (string?)e["reason"] == "PolicyInvalid"), "a PolicyInvalid event");
    }

    [SkippableFact]
    public async Task Deleting_a_policy_holds_the_finalizer_until_both_agents_report_the_removal()
    {
        Privileges.RequireNetns();
        await using var cluster = await LabCluster.StartAsync();
        await cluster.CreatePolicyAsync("lab", U2Lan, U5Lan);
        cluster.WaitFor(() => cluster.Nodes("lab") == "2/2", "policy lab 2/2");
        Assert.NotEmpty(cluster.Policy("lab")!["metadata"]!["finalizers"]!.AsArray());

        // u5's agent cannot write its node state for a while (3 failures: about 3.5 s of backoff).
        cluster.Server.FailNext(r => r.Verb == "patch" && r.Path.EndsWith($"/{LabCluster.StatePlural}/{LabCluster.NodeName("u5")}/status", StringComparison.Ordinal), 503, count: 3);
        await cluster.DeletePolicyAsync("lab");

        cluster.WaitFor(() => cluster.Phase("u2", "lab") == "Removed" && !cluster.Exempts("u2", U2Lan), "u2 removed the policy's rules and says so");
        var held = cluster.Policy("lab");
        Assert.NotNull(held);
        Assert.NotNull(held["metadata"]!["deletionTimestamp"]);
        Assert.NotEqual("Removed", cluster.Phase("u5", "lab"));

        cluster.WaitFor(() => cluster.Policy("lab") is null, "the policy goes once u5 reported the removal too");
        Assert.False(cluster.Exempts("u5", U5Lan));
        cluster.WaitFor(() => cluster.Phase("u2", "lab") is null && cluster.Phase("u5", "lab") is null, "the entries go with the policy");
    }

    [SkippableFact]
    public async Task With_one_agent_stopped_the_deletion_times_out_with_a_Warning_event()
    {
        Privileges.RequireNetns();
        await using var cluster = await LabCluster.StartAsync(deletionTimeout: "4s");
        await cluster.CreatePolicyAsync("lab", U2Lan, U5Lan);
        cluster.WaitFor(() => cluster.Nodes("lab") == "2/2", "policy lab 2/2");
        cluster.StopAgent("u5");

        await cluster.DeletePolicyAsync("lab");

        cluster.WaitFor(() => cluster.Phase("u2", "lab") == "Removed", "u2 reports the removal");
        Assert.NotNull(cluster.Policy("lab"));
        cluster.WaitFor(() => cluster.Policy("lab") is null, "the policy goes after the deletion timeout");
        var warning = cluster.Server.List("events").Single(e => (string?)e["reason"] == "DeletionTimedOut");
        Assert.Equal("Warning", (string?)warning["type"]);
        Assert.Contains(LabCluster.NodeName("u5"), (string?)warning["message"], StringComparison.Ordinal);
        Assert.True(cluster.Exempts("u5", U5Lan), "a stopped agent leaves its rules in place (fail-static)");
    }

    [SkippableFact]
    public async Task API_server_restart_and_dropped_watches_lose_no_rule_converge_and_cause_no_busy_loop()
    {
        Privileges.RequireNetns();
        await using var cluster = await LabCluster.StartAsync();
        await cluster.CreatePolicyAsync("lab", U2Lan, U5Lan);
        cluster.WaitFor(() => cluster.Nodes("lab") == "2/2", "policy lab 2/2");

        // Down for 8 s: longer than a resync (5 s), so every agent passes at least once without the API server.
        await cluster.Server.StopAsync();
        await Task.Delay(TimeSpan.FromSeconds(8));
        Assert.True(cluster.Exempts("u2", U2Lan) && cluster.Exempts("u5", U5Lan), $"rules stay while the API server is down\n{cluster.Output}");
        Assert.True(cluster.Lab.Reaches("u4", Lab.U3) && cluster.Lab.Reaches("u4", Lab.U6), "traffic flows while the API server is down");
        await cluster.Server.StartAgainAsync();

        // A spec change while watches drop at random: the new generation reaches both nodes.
        var random = new Random(4);
        await cluster.SetSpecAsync("lab", U2Lan, U5Lan, "100.64.2.0/24");
        for (var i = 0; i < 10; i++)
        {
            await Task.Delay(random.Next(50, 400));
            cluster.Server.DropWatches();
        }

        cluster.WaitFor(
            () => cluster.Exempts("u2", "100.64.2.0/24") && cluster.Exempts("u5", "100.64.2.0/24")
                && cluster.EntryGeneration("u2", "lab") == 2 && cluster.EntryGeneration("u5", "lab") == 2
                && cluster.Nodes("lab") == "2/2" && (long?)cluster.Policy("lab")!["status"]!["observedGeneration"] == 2,
            "generation 2 applied on both nodes and aggregated");
        Assert.True(cluster.Exempts("u2", U2Lan) && cluster.Exempts("u5", U5Lan), "no rule was lost");

        // Every request refused for 5 s: everyone backs off instead of spinning.
        var refusing = true;
        cluster.Server.FailNext(_ => Volatile.Read(ref refusing), 503, count: int.MaxValue);
        cluster.Server.DropWatches();
        var before = cluster.Server.Requests.Count;
        await Task.Delay(TimeSpan.FromSeconds(5));
        var whileRefused = cluster.Server.Requests.Count - before;
        Volatile.Write(ref refusing, false);
        output.WriteLine($"requests in 5 s of 503s (operator and two agents): {whileRefused}");
        Assert.InRange(whileRefused, 1, 120);
        Assert.True(cluster.Exempts("u2", U2Lan) && cluster.Exempts("u5", "100.64.2.0/24"), "rules stay while every request fails");

        // Settled: an idle window costs a handful of requests (watch renewals, no status writes).
        cluster.Server.DropWatches();
        cluster.WaitFor(() => cluster.Nodes("lab") == "2/2" && LabCluster.Condition(cluster.Policy("lab"), "Ready") == "True", "converged again");
        await Task.Delay(TimeSpan.FromSeconds(2));
        before = cluster.Server.Requests.Count;
        await Task.Delay(TimeSpan.FromSeconds(6));
        var idle = cluster.Server.Requests.Skip(before).ToList();
        output.WriteLine($"requests in 6 idle s: {idle.Count}: {string.Join(", ", idle.Select(r => $"{r.Verb} {r.Path}"))}");
        Assert.InRange(idle.Count, 0, 12);
        Assert.DoesNotContain(idle, r => r.Verb == "patch");
    }

    [SkippableFact]
    public async Task A_node_state_reflects_the_emulated_tailscaleds_mode()
    {
        Privileges.RequireNetns();
        await using var cluster = await LabCluster.StartAsync(mode: "nodivert");
        await cluster.CreatePolicyAsync("lab", U2Lan, U5Lan);
        cluster.WaitFor(() => (string?)cluster.State("u2")?["status"]?["tailscale"]?["netfilterMode"] == "nodivert", "u2 reports nodivert");
        Assert.Equal("Indirect", (string?)cluster.State("u2")!["status"]!["strategy"]);
        Assert.Equal("firewall", (string?)cluster.State("u2")!["status"]!["tailscale"]!["learnedFrom"]);
        Assert.Equal("iptables-nft", (string?)cluster.State("u2")!["status"]!["tailscale"]!["runner"]);
        Assert.Equal("True", LabCluster.Condition(cluster.State("u2"), "TailscaleCompatible"));

        cluster.U2.Run("set-mode", "on");

        cluster.WaitFor(() => (string?)cluster.State("u2")?["status"]?["tailscale"]?["netfilterMode"] == "on"
            && (string?)cluster.State("u2")?["status"]?["strategy"] == "InChain", "u2 reports mode on and strategy InChain");
        Assert.True(cluster.Lab.Reaches("u4", Lab.U3), "u4 -> u3 in mode on");
        Assert.Equal("nodivert", (string?)cluster.State("u5")!["status"]!["tailscale"]!["netfilterMode"]);
        Assert.Equal("iptables-legacy", (string?)cluster.State("u5")!["status"]!["tailscale"]!["runner"]);
    }

    [SkippableFact]
    public async Task Drift_is_repaired_counted_in_the_node_state_and_reported_as_an_event()
    {
        Privileges.RequireNetns();
        await using var cluster = await LabCluster.StartAsync();
        await cluster.CreatePolicyAsync("lab", U2Lan, U5Lan);
        cluster.WaitFor(() => cluster.Nodes("lab") == "2/2", "policy lab 2/2");

        cluster.U2.Run("restart"); // tailscaled flushes its chains, and our exemptions in them with them

        cluster.WaitFor(() => (long?)cluster.State("u2")?["status"]?["driftRepairs"] >= 1, "u2 counts the repair");
        cluster.WaitFor(() => cluster.Server.List("events").Any(e => (string?)e["reason"] == "DriftRepaired" && (string?)e["involvedObject"]!["name"] == LabCluster.NodeName("u2")),
            "a DriftRepaired event on u2's Node");
        Assert.True(cluster.Lab.Reaches("u2", Lab.U3), "u2 -> u3 after the repair");
    }

    [SkippableFact]
    public async Task A_rebooted_node_gets_its_cached_rules_back_before_the_API_server_is_reachable()
    {
        Privileges.RequireNetns();
        await using var cluster = await LabCluster.StartAsync();
        await cluster.CreatePolicyAsync("lab", U2Lan, U5Lan);
        cluster.WaitFor(() => cluster.Nodes("lab") == "2/2", "policy lab 2/2");
        cluster.StopAgent("u2");
        cluster.LoseRules("u2");
        Assert.False(cluster.Lab.Reaches("u2", Lab.U3), "without our rules Tailscale's drop cuts u2 off");

        await cluster.Server.StopAsync();
        cluster.StartAgent("u2");

        cluster.WaitFor(() => cluster.Exempts("u2", U2Lan) && cluster.Lab.Reaches("u2", Lab.U3), "the cached rules are back with no API server");
        await cluster.Server.StartAgainAsync();
        cluster.WaitFor(() => cluster.Nodes("lab") == "2/2" && LabCluster.Condition(cluster.State("u2"), "Ready") == "True", "converged once the API server is back");
        Assert.True(cluster.Exempts("u2", U2Lan));
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
