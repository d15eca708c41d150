using k8s.Models;
using TsCgnat.Api;

namespace TsCgnat.Kube.Tests;

/// <summary>What counts as "the same event" and for how long: the pure half of the event recorder.</summary>
public class EventHistoryTests
{
    private static readonly DateTimeOffset T0 = new(2026, 1, 1, 12, 0, 0, TimeSpan.Zero);

    private static CgnatAllowPolicy Policy(string name = "lab", string uid = "u-1") => new()
    {
        Metadata = new V1ObjectMeta { Name = name, Uid = uid },
    };

    private static EventKey Key(string message = "node n1 failed", string reason = "ApplyFailed", string type = EventTypes.Warning, CgnatAllowPolicy? policy = null) =>
        EventKey.For(policy ?? Policy(), type, reason, message);

    [Fact]
    public void Key_names_the_involved_object_from_its_type_when_the_object_does_not_say()
    {
        var node = new V1Node { Metadata = new V1ObjectMeta { Name = "n1", Uid = "u-9" } };

        var key = EventKey.For(node, EventTypes.Normal, "Repaired", "rules restored");

        Assert.Equal(new EventKey("v1", "Node", null, "n1", "u-9", "Normal", "Repaired", "rules restored"), key);
    }

    [Fact]
    public void Key_of_a_custom_object_carries_its_group_version()
    {
        var key = Key();

        Assert.Equal("tscgnat.io/v1alpha1", key.ApiVersion);
        Assert.Equal("CgnatAllowPolicy", key.Kind);
    }

    [Fact]
    public void Same_object_type_reason_and_message_is_the_same_key()
    {
        Assert.Equal(Key(), Key());
    }

    [Theory]
    [InlineData("message")]
    [InlineData("reason")]
    [InlineData("type")]
    [InlineData("object")]
    [InlineData("uid")]
    public void Any_difference_makes_another_key(string differs)
    {
        var other = differs switch
        {
            "message" => Key(message: "node n2 failed"),
            "reason" => Key(reason: "Other"),
            "type" => Key(type: EventTypes.Normal),
            "object" => Key(policy: Policy(name: "other")),
            _ => Key(policy: Policy(uid: "u-2")),
        };

        Assert.NotEqual(Key(), other);
    }

    [Fact]
    public void An_event_seen_within_the_window_is_recent_and_one_seen_before_is_not()
    {
        var history = new EventHistory(TimeSpan.FromMinutes(10), capacity: 10);
        var recorded = new RecordedEvent("default", "lab.1", 1, T0, T0);
        history.Remember(Key(), recorded, T0);

        Assert.Equal(recorded, history.Recent(Key(), T0 + TimeSpan.FromMinutes(9)));
        Assert.Null(history.Recent(Key(), T0 + TimeSpan.FromMinutes(10)));
        Assert.Null(history.Recent(Key(message: "other"), T0));
    }

    [Fact]
    public void The_window_runs_from_the_last_time_the_event_was_seen()
    {
        var history = new EventHistory(TimeSpan.FromMinutes(10), capacity: 10);
        history.Remember(Key(), new RecordedEvent("default", "lab.1", 2, T0, T0 + TimeSpan.FromMinutes(8)), T0);

        Assert.NotNull(history.Recent(Key(), T0 + TimeSpan.FromMinutes(17)));
    }

    [Fact]
    public void Beyond_capacity_the_least_recently_seen_are_forgotten()
    {
        var history = new EventHistory(TimeSpan.FromMinutes(10), capacity: 2);
        history.Remember(Key("a"), new RecordedEvent("default", "a", 1, T0, T0), T0);
        history.Remember(Key("b"), new RecordedEvent("default", "b", 1, T0, T0.AddSeconds(1)), T0);
        history.Remember(Key("c"), new RecordedEvent("default", "c", 1, T0, T0.AddSeconds(2)), T0.AddSeconds(2));

        Assert.Equal(2, history.Count);
        Assert.Null(history.Recent(Key("a"), T0.AddSeconds(3)));
        Assert.NotNull(history.Recent(Key("c"), T0.AddSeconds(3)));
    }
}
