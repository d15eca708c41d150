using k8s.Models;
using Microsoft.Extensions.Time.Testing;

namespace TsCgnat.Api.Tests;

/// <summary>metav1.Condition conventions (design section 3), shared by the operator and the agent.</summary>
public class ConditionsTests
{
    private static readonly DateTimeOffset Start = new(2026, 3, 1, 12, 0, 0, TimeSpan.Zero);

    private readonly FakeTimeProvider time = new(Start);
    private readonly List<V1Condition> conditions = [];

    [Fact]
    public void New_condition_is_added_with_the_current_time_and_generation()
    {
        var changed = Set(ConditionStatus.True, "Applied", "rules match", generation: 3);

        Assert.True(changed);
        var ready = Assert.Single(conditions);
        Assert.Equal(ConditionTypes.Ready, ready.Type);
        Assert.Equal(ConditionStatus.True, ready.Status);
        Assert.Equal("Applied", ready.Reason);
        Assert.Equal("rules match", ready.Message);
        Assert.Equal(3, ready.ObservedGeneration);
        Assert.Equal(Start.UtcDateTime, ready.LastTransitionTime);
        Assert.Equal(DateTimeKind.Utc, ready.LastTransitionTime.Kind);
    }

    [Fact]
    public void Same_condition_again_changes_nothing_and_keeps_the_transition_time()
    {
        Set(ConditionStatus.True, "Applied", "rules match", generation: 3);
        time.Advance(TimeSpan.FromMinutes(5));

        var changed = Set(ConditionStatus.True, "Applied", "rules match", generation: 3);

        Assert.False(changed);
        Assert.Equal(Start.UtcDateTime, Assert.Single(conditions).LastTransitionTime);
    }

    [Fact]
    public void New_reason_and_message_with_the_same_status_keep_the_transition_time()
    {
        Set(ConditionStatus.False, "ApplyFailed", "iptables-restore: exit 4", generation: 3);
        time.Advance(TimeSpan.FromMinutes(5));

        var changed = Set(ConditionStatus.False, "TailscaleNotRunning", "ts-input is missing", generation: 3);

        Assert.True(changed);
        var ready = Assert.Single(conditions);
        Assert.Equal("TailscaleNotRunning", ready.Reason);
        Assert.Equal("ts-input is missing", ready.Message);
        Assert.Equal(Start.UtcDateTime, ready.LastTransitionTime);
    }

    [Fact]
    public void Status_flip_moves_the_transition_time()
    {
        Set(ConditionStatus.False, "ApplyFailed", "iptables-restore: exit 4", generation: 3);
        time.Advance(TimeSpan.FromMinutes(5));

        var changed = Set(ConditionStatus.True, "Applied", "rules match", generation: 3);

        Assert.True(changed);
        Assert.Equal(Start.UtcDateTime.AddMinutes(5), Assert.Single(conditions).LastTransitionTime);
    }

    [Fact]
    public void New_generation_alone_is_a_change_and_keeps_the_transition_time()
    {
        Set(ConditionStatus.True, "Applied", "rules match", generation: 3);
        time.Advance(TimeSpan.FromMinutes(5));

        var changed = Set(ConditionStatus.True, "Applied", "rules match", generation: 4);

        Assert.True(changed);
        var ready = Assert.Single(conditions);
        Assert.Equal(4, ready.ObservedGeneration);
        Assert.Equal(Start.UtcDateTime, ready.LastTransitionTime);
    }

    [Fact]
    public void Transition_time_is_whole_seconds_as_metav1_Time_stores_it()
    {
        time.Advance(TimeSpan.FromMilliseconds(1750));

        Set(ConditionStatus.True, "Applied", "rules match", generation: 1);

        Assert.Equal(Start.UtcDateTime.AddSeconds(1), Assert.Single(conditions).LastTransitionTime);
    }

    [Fact]
    public void Other_condition_types_are_left_alone()
    {
        Conditions.Set(conditions, ConditionTypes.TailscaleCompatible, ConditionStatus.True, "Nodivert", "", 1, time);
        time.Advance(TimeSpan.FromMinutes(5));

        Set(ConditionStatus.False, "ApplyFailed", "exit 4", generation: 1);

        Assert.Equal([ConditionTypes.TailscaleCompatible, ConditionTypes.Ready], conditions.Select(c => c.Type));
        Assert.Equal(Start.UtcDateTime, Conditions.Find(conditions, ConditionTypes.TailscaleCompatible)!.LastTransitionTime);
        Assert.True(Conditions.IsTrue(conditions, ConditionTypes.TailscaleCompatible));
        Assert.False(Conditions.IsTrue(conditions, ConditionTypes.Ready));
    }

    [Fact]
    public void Missing_condition_is_not_true()
    {
        Assert.False(Conditions.IsTrue(conditions, ConditionTypes.Ready));
        Assert.False(Conditions.IsTrue(null, ConditionTypes.Ready));
        Assert.Null(Conditions.Find(null, ConditionTypes.Ready));
    }

    [Fact]
    public void Remove_says_whether_there_was_one()
    {
        Set(ConditionStatus.True, "Applied", "rules match", generation: 1);

        Assert.True(Conditions.Remove(conditions, ConditionTypes.Ready));
        Assert.False(Conditions.Remove(conditions, ConditionTypes.Ready));
        Assert.Empty(conditions);
    }

    [Theory]
    [InlineData("applied failed")]
    [InlineData("Applied.")]
    [InlineData("1Applied")]
    [InlineData("Applied\n")]
    [InlineData("")]
    public void Reason_that_is_not_CamelCase_is_refused_as_the_API_server_would(string reason)
    {
        var e = Assert.Throws<ArgumentException>(() => Set(ConditionStatus.True, reason, "", generation: 1));

        Assert.Contains("is not CamelCase", e.Message, StringComparison.Ordinal);
        Assert.Empty(conditions);
    }

    [Theory]
    [InlineData("true")]
    [InlineData("Yes")]
    public void Status_other_than_True_False_Unknown_is_refused(string status)
    {
        var e = Assert.Throws<ArgumentException>(() => Set(status, "Applied", "", generation: 1));

        Assert.Contains("is not True, False or Unknown", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Message_longer_than_the_API_server_allows_is_cut_to_its_bound()
    {
        Set(ConditionStatus.False, "ApplyFailed", "iptables-restore: " + new string('x', 40000), generation: 1);

        var message = Assert.Single(conditions).Message;
        Assert.Equal(Conditions.MaxMessageLength, message.Length);
        Assert.StartsWith("iptables-restore: xxx", message, StringComparison.Ordinal);
        Assert.EndsWith("…", message, StringComparison.Ordinal);
    }

    [Fact]
    public void Unknown_status_is_accepted()
    {
        Assert.True(Set(ConditionStatus.Unknown, "Pending", "no node has reported yet", generation: 1));
    }

    private bool Set(string status, string reason, string message, long generation) =>
        Conditions.Set(conditions, ConditionTypes.Ready, status, reason, message, generation, time);
}
