namespace TsCgnat.Kube;

/// <summary>
/// Exponential backoff with jitter and a cap, as client-go's wait.Backoff: the n-th consecutive
/// failure waits <c>Initial * Factor^(n-1)</c>, capped at <see cref="Max"/>, then stretched by up to
/// <see cref="Jitter"/> so that many clients failing together (an API server restart) do not retry in step.
/// </summary>
public sealed record BackoffPolicy(TimeSpan Initial, TimeSpan Max, double Factor = 2.0, double Jitter = 0.2)
{
    /// <summary>Watches and lists: first retry after 0.5 s, at most every 30 s.</summary>
    public static BackoffPolicy Watch { get; } = new(TimeSpan.FromMilliseconds(500), TimeSpan.FromSeconds(30));

    /// <summary>Failed reconciles: first retry after 50 ms, at most every 5 min (client-go's item rate limiter caps at 1000 s).</summary>
    public static BackoffPolicy Reconcile { get; } = new(TimeSpan.FromMilliseconds(50), TimeSpan.FromMinutes(5));

    /// <summary>The delay after <paramref name="failures"/> consecutive failures (1 or more).</summary>
    /// <param name="random">A number in [0, 1) that picks the jitter.</param>
    public TimeSpan DelayAfter(int failures, double random)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(failures, 1);
        // Exponent clamped: 2^64 overflows a TimeSpan long before it matters, and the cap applies anyway.
        var exponent = Math.Min(failures - 1, 62);
        var ticks = Math.Min(Initial.Ticks * Math.Pow(Factor, exponent), Max.Ticks);
        return TimeSpan.FromTicks((long)(ticks * (1 + (Jitter * random))));
    }
}

/// <summary>
/// One retrying thing's failure count against a <see cref="BackoffPolicy"/>. Not thread-safe: each
/// loop owns its own.
/// </summary>
public sealed class Backoff(BackoffPolicy policy, Random? random = null)
{
    private readonly Random random = random ?? Random.Shared;

    public BackoffPolicy Policy { get; } = policy;

    /// <summary>Consecutive failures since the last <see cref="Reset"/>.</summary>
    public int Failures { get; private set; }

    /// <summary>Counts one more failure and says how long to wait before the next attempt.</summary>
    public TimeSpan NextDelay() => Policy.DelayAfter(++Failures, random.NextDouble());

    /// <summary>After a success: the next failure starts from <see cref="BackoffPolicy.Initial"/> again.</summary>
    public void Reset() => Failures = 0;
}
