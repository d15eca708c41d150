using k8s;
using k8s.Models;
using Microsoft.Extensions.Time.Testing;
using TsCgnat.Api;

namespace TsCgnat.Kube.Tests.OnApiServer;

public sealed class EventRecorderOnApiServerTests : ApiServerTest
{
    private readonly FakeTimeProvider time = new(new DateTimeOffset(2026, 1, 1, 12, 0, 0, TimeSpan.Zero));

    private static CgnatAllowPolicy Policy() => new() { Metadata = new V1ObjectMeta { Name = "lab", Uid = "uid-lab" } };

    private EventRecorder Recorder(Kubernetes client) => new(client, "ts-cgnat-operator", "op-0", time: time);

    [Fact]
    public async Task The_same_event_three_times_is_one_Event_with_count_3()
    {
        using var recorder = Recorder(Client());

        for (var i = 0; i < 3; i++)
        {
            await recorder.WarningAsync(Policy(), "NodeTimeout", "node n2 did not report removal within 5m", CancellationToken.None);
            time.Advance(TimeSpan.FromMinutes(1));
        }

        var stored = Assert.Single(Server.List("events", "default"));
        Assert.Equal(3, (int)stored["count"]!);
        Assert.Equal("2026-01-01T12:00:00Z", (string)stored["firstTimestamp"]!);
        Assert.Equal("2026-01-01T12:02:00Z", (string)stored["lastTimestamp"]!);
        Assert.Equal("Warning", (string)stored["type"]!);
        Assert.Equal("CgnatAllowPolicy", (string)stored["involvedObject"]!["kind"]!);
        Assert.Equal("tscgnat.io/v1alpha1", (string)stored["involvedObject"]!["apiVersion"]!);
        Assert.Equal("lab", (string)stored["involvedObject"]!["name"]!);
        Assert.Equal("ts-cgnat-operator", (string)stored["source"]!["component"]!);
        Assert.Equal(1, Server.Count("create", "/events"));
        Assert.Equal(2, Server.Count("patch", "/events"));
    }

    [Fact]
    public async Task A_different_message_is_another_Event()
    {
        using var recorder = Recorder(Client());

        await recorder.WarningAsync(Policy(), "ApplyFailed", "node n1 failed", CancellationToken.None);
        await recorder.WarningAsync(Policy(), "ApplyFailed", "node n2 failed", CancellationToken.None);

        Assert.Equal(2, Server.List("events", "default").Count);
    }

    [Fact]
    public async Task The_same_event_after_the_window_is_a_new_Event()
    {
        using var recorder = Recorder(Client());

        await recorder.NormalAsync(Policy(), "Ready", "2/2 nodes applied", CancellationToken.None);
        time.Advance(TimeSpan.FromMinutes(11));
        await recorder.NormalAsync(Policy(), "Ready", "2/2 nodes applied", CancellationToken.None);

        Assert.Equal(2, Server.List("events", "default").Count);
    }

    [Fact]
    public async Task An_Event_deleted_meanwhile_is_written_anew()
    {
        using var recorder = Recorder(Client());
        await recorder.NormalAsync(Policy(), "Ready", "2/2 nodes applied", CancellationToken.None);
        Server.Remove("events", (string)Server.List("events", "default")[0]["metadata"]!["name"]!, "default");

        await recorder.NormalAsync(Policy(), "Ready", "2/2 nodes applied", CancellationToken.None);

        var stored = Assert.Single(Server.List("events", "default"));
        Assert.Equal(1, (int)stored["count"]!);
    }

    [Fact]
    public async Task A_namespaced_object_gets_its_Events_in_its_namespace()
    {
        using var recorder = Recorder(Client());
        var lease = new V1Lease { Metadata = new V1ObjectMeta { Name = "ts-cgnat-operator", NamespaceProperty = "kube-system" } };

        await recorder.NormalAsync(lease, "LeaderElected", "op-0 leads", CancellationToken.None);

        var stored = Assert.Single(Server.List("events", "kube-system"));
        Assert.Equal("Lease", (string)stored["involvedObject"]!["kind"]!);
        Assert.Equal("coordination.k8s.io/v1", (string)stored["involvedObject"]!["apiVersion"]!);
        Assert.Empty(Server.List("events", "default"));
    }

    [Fact]
    public async Task A_failed_write_is_not_thrown_at_the_caller()
    {
        using var recorder = Recorder(Client());
        Server.FailNext(r => r.Path.Contains("/events", StringComparison.Ordinal), 500);

        await recorder.NormalAsync(Policy(), "Ready", "2/2 nodes applied", CancellationToken.None);

        Assert.Empty(Server.List("events", "default"));
    }
}
