using k8s;
using k8s.LeaderElection;
using k8s.LeaderElection.ResourceLock;
using k8s.Models;

namespace TsCgnat.TestApiServer.Tests;

/// <summary>Leader election on a Lease with the client's own LeaderElector, and Events as a recorder writes them.</summary>
public sealed class LeaseAndEventTests : ServerTest
{
    private LeaderElector Elector(string identity) => new(new LeaderElectionConfig(new LeaseLock(Client, "ts-cgnat", "operator", identity))
    {
        // Generous against a loaded machine: a renewal slower than the deadline would hand over early.
        LeaseDuration = TimeSpan.FromSeconds(3),
        RenewDeadline = TimeSpan.FromSeconds(2),
        RetryPeriod = TimeSpan.FromMilliseconds(200),
    });

    [Fact]
    public async Task One_of_two_electors_leads_and_the_other_takes_over_when_it_stops_renewing()
    {
        using var first = Elector("first");
        using var second = Elector("second");
        var firstLeads = new TaskCompletionSource();
        var secondLeads = new TaskCompletionSource();
        first.OnStartedLeading += () => firstLeads.TrySetResult();
        second.OnStartedLeading += () => secondLeads.TrySetResult();
        using var stopFirst = CancellationTokenSource.CreateLinkedTokenSource(Guard);
        var firstRun = first.RunUntilLeadershipLostAsync(stopFirst.Token);
        await firstLeads.Task.WaitAsync(Guard);
        var secondRun = second.RunUntilLeadershipLostAsync(Guard);

        // While the first renews (three renewals seen by the server), the second does not lead.
        while (Server.Count("update", "/leases/operator") < 3)
        {
            await Task.Delay(50, Guard);
        }

        Assert.False(secondLeads.Task.IsCompleted);
        Assert.Equal("first", (await Client.CoordinationV1.ReadNamespacedLeaseAsync("operator", "ts-cgnat", cancellationToken: Guard)).Spec.HolderIdentity);

        await stopFirst.CancelAsync();
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => firstRun);
        await secondLeads.Task.WaitAsync(Guard);

        var lease = await Client.CoordinationV1.ReadNamespacedLeaseAsync("operator", "ts-cgnat", cancellationToken: Guard);
        Assert.Equal("second", lease.Spec.HolderIdentity);
        Assert.Equal(1, lease.Spec.LeaseTransitions);
        Assert.False(secondRun.IsCompleted);
    }

    [Fact]
    public async Task Two_electors_racing_for_a_new_lease_get_one_leader()
    {
        using var a = Elector("a");
        using var b = Elector("b");
        var leaders = new System.Collections.Concurrent.ConcurrentBag<string>();
        var someoneLeads = new TaskCompletionSource();
        a.OnStartedLeading += () => { leaders.Add("a"); someoneLeads.TrySetResult(); };
        b.OnStartedLeading += () => { leaders.Add("b"); someoneLeads.TrySetResult(); };
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(Guard);

        var runs = new[] { a.RunUntilLeadershipLostAsync(stop.Token), b.RunUntilLeadershipLostAsync(stop.Token) };
        await someoneLeads.Task.WaitAsync(Guard);
        while (Server.Count("update", "/leases/operator") < 3)
        {
            await Task.Delay(50, Guard);
        }

        var leader = Assert.Single(leaders);
        Assert.Equal(leader, (await Client.CoordinationV1.ReadNamespacedLeaseAsync("operator", "ts-cgnat", cancellationToken: Guard)).Spec.HolderIdentity);
        await stop.CancelAsync();
        await Task.WhenAll(runs.Select(r => r.ContinueWith(_ => { }, TaskScheduler.Default)));
    }

    [Fact]
    public async Task A_PUT_of_a_missing_event_creates_it_as_on_a_real_server()
    {
        var put = await Client.CoreV1.ReplaceNamespacedEventAsync(
            new Corev1Event { Metadata = new V1ObjectMeta { Name = "e1" }, InvolvedObject = new V1ObjectReference { Kind = "Node", Name = "n1" } },
            "e1", "default", cancellationToken: Guard);

        Assert.Equal("default", put.Metadata.NamespaceProperty);
        Assert.NotNull(put.Metadata.Uid);
        Assert.NotNull(Server.Get("events", "e1", "default"));
    }

    [Fact]
    public async Task A_recorder_creates_an_event_then_patches_its_count()
    {
        var created = await Client.CoreV1.CreateNamespacedEventAsync(
            new Corev1Event
            {
                Metadata = new V1ObjectMeta { Name = "n1.repair" },
                InvolvedObject = new V1ObjectReference { Kind = "Node", Name = "n1" },
                Reason = "DriftRepaired",
                Message = "ts-input exemption restored",
                Type = "Normal",
                Count = 1,
                Source = new V1EventSource { Component = "ts-cgnat-agent" },
            },
            "default",
            cancellationToken: Guard);

        var patched = await Client.CoreV1.PatchNamespacedEventAsync(
            new V1Patch("""{"count":2,"lastTimestamp":"2030-01-01T00:00:00Z"}""", V1Patch.PatchType.StrategicMergePatch), "n1.repair", "default", cancellationToken: Guard);

        Assert.Equal(2, patched.Count);
        Assert.Equal("DriftRepaired", patched.Reason);
        Assert.True(Rv(patched) > Rv(created));
        var listed = await Client.CoreV1.ListNamespacedEventAsync("default", fieldSelector: "involvedObject.name=n1,reason=DriftRepaired", cancellationToken: Guard);
        Assert.Equal(2, Assert.Single(listed.Items).Count);
    }

    [Fact]
    public async Task Events_written_as_core_v1_are_served_as_events_k8s_io_v1_and_the_reverse()
    {
        await Client.CoreV1.CreateNamespacedEventAsync(
            new Corev1Event { Metadata = new V1ObjectMeta { Name = "core" }, InvolvedObject = new V1ObjectReference { Kind = "Node", Name = "n1" }, Message = "hello", Count = 3 },
            "default", cancellationToken: Guard);
        await Client.EventsV1.CreateNamespacedEventAsync(
            new Eventsv1Event { Metadata = new V1ObjectMeta { Name = "new" }, Regarding = new V1ObjectReference { Kind = "Node", Name = "n2" }, Note = "world", EventTime = DateTime.UtcNow, ReportingController = "ts-cgnat", ReportingInstance = "op", Action = "Repair", Reason = "Repaired", Type = "Normal" },
            "default", cancellationToken: Guard);

        var asNew = await Client.EventsV1.ReadNamespacedEventAsync("core", "default", cancellationToken: Guard);
        var asCore = await Client.CoreV1.ReadNamespacedEventAsync("new", "default", cancellationToken: Guard);
        var patched = await Client.EventsV1.PatchNamespacedEventAsync(new V1Patch("""{"note":"patched"}""", V1Patch.PatchType.MergePatch), "core", "default", cancellationToken: Guard);

        Assert.Equal(("n1", "hello", 3), (asNew.Regarding.Name, asNew.Note, asNew.DeprecatedCount));
        Assert.Equal(("n2", "world", "ts-cgnat"), (asCore.InvolvedObject.Name, asCore.Message, asCore.ReportingComponent));
        Assert.Equal("patched", patched.Note);
        Assert.Equal("patched", (await Client.CoreV1.ReadNamespacedEventAsync("core", "default", cancellationToken: Guard)).Message);
    }
}
