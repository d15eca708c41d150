using TsCgnat.TestSupport;
using Xunit.Abstractions;

namespace TsCgnat.EndToEnd.Tests;

/// <summary>
/// The one end-to-end scenario left on the fake API server (tests/TestApiServer): faults a real kube-apiserver cannot
/// make on demand, watches dropped at random and every request answered 503 for a while, and the count of requests
/// each program makes meanwhile and when idle (a real server does not tell us what it was asked). Everything else
/// runs on the real server (<see cref="ClusterEndToEndTests"/>).
/// </summary>
[Collection("netns")]
public sealed class ClusterFaultsOnFakeApiServerTests(ITestOutputHelper output)
{
    private const string U2Lan = "100.64.0.0/24";
    private const string U5Lan = "100.64.1.0/24";
    private const string Third = "100.64.2.0/24";

    [SkippableFact]
    public async Task Dropped_watches_and_a_storm_of_503s_lose_no_rule_converge_and_cause_no_busy_loop()
    {
        Privileges.RequireNetns();
        await using var cluster = await LabCluster.StartOnFakeApiServerAsync();
        var server = cluster.Fake!;
        await cluster.CreatePolicyAsync("lab", U2Lan, U5Lan);
        await cluster.WaitForAsync(async () => await cluster.NodesAsync("lab") == "2/2", "policy lab 2/2");

        // A spec change while watches drop at random: the new generation reaches both nodes.
        var random = new Random(4);
        await cluster.SetSpecAsync("lab", U2Lan, U5Lan, Third);
        for (var i = 0; i < 10; i++)
        {
            await Task.Delay(random.Next(50, 400));
            server.DropWatches();
        }

        await cluster.WaitForAsync(
            async () => cluster.Exempts("u2", Third) && cluster.Exempts("u5", Third)
                && await cluster.EntryGenerationAsync("u2", "lab") == 2 && await cluster.EntryGenerationAsync("u5", "lab") == 2
                && await cluster.NodesAsync("lab") == "2/2" && (long?)(await cluster.PolicyAsync("lab"))!["status"]!["observedGeneration"] == 2,
            "generation 2 applied on both nodes and aggregated");
        Assert.True(cluster.Exempts("u2", U2Lan) && cluster.Exempts("u5", U5Lan), "no rule was lost");

        // Every request refused for 5 s: everyone backs off instead of spinning.
        var refusing = true;
        server.FailNext(_ => Volatile.Read(ref refusing), 503, count: int.MaxValue);
        server.DropWatches();
        var before = server.Requests.Count;
        await Task.Delay(TimeSpan.FromSeconds(5));
        var whileRefused = server.Requests.Count - before;
        Volatile.Write(ref refusing, false);
        output.WriteLine($"requests in 5 s of 503s (operator and two agents): {whileRefused}");
        Assert.InRange(whileRefused, 1, 120);
        Assert.True(cluster.Exempts("u2", U2Lan) && cluster.Exempts("u5", Third), "rules stay while every request fails");

        // Settled: an idle window costs a handful of requests (watch renewals, no status writes).
        server.DropWatches();
        await cluster.WaitForAsync(async () => await cluster.NodesAsync("lab") == "2/2" && LabCluster.Condition(await cluster.PolicyAsync("lab"), "Ready") == "True", "converged again");
        await Task.Delay(TimeSpan.FromSeconds(2));
        before = server.Requests.Count;
        await Task.Delay(TimeSpan.FromSeconds(6));
        var idle = server.Requests.Skip(before).ToList();
        output.WriteLine($"requests in 6 idle s: {idle.Count}: {string.Join(", ", idle.Select(r => $"{r.Verb} {r.Path}"))}");
        Assert.InRange(idle.Count, 0, 12);
        Assert.DoesNotContain(idle, r => r.Verb == "patch");
    }
}
