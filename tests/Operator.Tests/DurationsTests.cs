namespace TsCgnat.Operator.Tests;

/// <summary>--deletion-timeout takes durations as Kubernetes tools write them.</summary>
public class DurationsTests
{
    [Theory]
    [InlineData("300s", 300_000)]
    [InlineData("5m", 300_000)]
    [InlineData("1h30m", 5_400_000)]
    [InlineData("1m30s", 90_000)]
    [InlineData("500ms", 500)]
    [InlineData("1.5s", 1_500)]
    public void Valid_durations_are_read(string text, long milliseconds)
    {
        Assert.True(Durations.TryParse(text, out var value));
        Assert.Equal(TimeSpan.FromMilliseconds(milliseconds), value);
    }

    [Theory]
    [InlineData("")]
    [InlineData("300")]
    [InlineData("5x")]
    [InlineData("-5s")]
    [InlineData("00:05:00")]
    [InlineData("5m\n")]
    public void Anything_else_is_refused(string text) => Assert.False(Durations.TryParse(text, out _));
}
