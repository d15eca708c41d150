namespace TsCgnat.Kube.Tests;

public class BackoffTests
{
    private static readonly BackoffPolicy NoJitter = new(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(8), Factor: 2, Jitter: 0);

    [Fact]
    public void Delay_doubles_with_each_failure_up_to_the_cap()
    {
        var delays = Enumerable.Range(1, 6).Select(n => NoJitter.DelayAfter(n, random: 0.5)).ToList();

        Assert.Equal([1, 2, 4, 8, 8, 8], delays.Select(d => d.TotalSeconds));
    }

    [Fact]
    public void Jitter_only_lengthens_the_delay_and_by_at_most_its_fraction()
    {
        var policy = NoJitter with { Jitter = 0.2 };

        Assert.Equal(TimeSpan.FromSeconds(4), policy.DelayAfter(3, random: 0));
        Assert.Equal(TimeSpan.FromSeconds(4.4), policy.DelayAfter(3, random: 0.5));
        Assert.True(policy.DelayAfter(3, random: 0.999999) < TimeSpan.FromSeconds(4.8));
    }

    [Fact]
    public void Jitter_applies_on_top_of_the_cap()
    {
        var policy = NoJitter with { Jitter = 0.5 };

        Assert.Equal(TimeSpan.FromSeconds(12), policy.DelayAfter(20, random: 1.0));
    }

    [Fact]
    public void A_thousand_failures_do_not_overflow()
    {
        Assert.Equal(TimeSpan.FromSeconds(8), NoJitter.DelayAfter(1000, random: 0));
    }

    [Fact]
    public void Zero_failures_is_refused()
    {
        Assert.Throws<ArgumentOutOfRangeException>(() => NoJitter.DelayAfter(0, random: 0));
    }

    [Fact]
    public void Reset_starts_over_from_the_initial_delay()
    {
        var backoff = new Backoff(NoJitter);

        Assert.Equal(TimeSpan.FromSeconds(1), backoff.NextDelay());
        Assert.Equal(TimeSpan.FromSeconds(2), backoff.NextDelay());
        Assert.Equal(TimeSpan.FromSeconds(4), backoff.NextDelay());
        Assert.Equal(3, backoff.Failures);

        backoff.Reset();

        Assert.Equal(0, backoff.Failures);
        Assert.Equal(TimeSpan.FromSeconds(1), backoff.NextDelay());
    }
}
