using System.Diagnostics;

namespace TsCgnat.TestSupport;

/// <summary>Waits for a condition with a deadline, polling: never a fixed sleep, never an assumed order.</summary>
public static class Eventually
{
    public static readonly TimeSpan DefaultPatience = TimeSpan.FromSeconds(60);

    /// <summary>Polls <paramref name="read"/> until <paramref name="done"/> holds; fails with the last value otherwise.</summary>
    public static async Task<T> ValueAsync<T>(Func<Task<T>> read, Func<T, bool> done, string what, TimeSpan? patience = null)
    {
        var deadline = Stopwatch.StartNew();
        var limit = patience ?? DefaultPatience;
        while (true)
        {
            var value = await read();
            if (done(value))
            {
                return value;
            }

            if (deadline.Elapsed > limit)
            {
                throw new TimeoutException($"{what}: not seen within {limit.TotalSeconds} s; last seen: {value}");
            }

            await Task.Delay(200);
        }
    }

    public static Task<T> ValueAsync<T>(Func<T> read, Func<T, bool> done, string what, TimeSpan? patience = null) =>
        ValueAsync(() => Task.FromResult(read()), done, what, patience);

    public static Task TrueAsync(Func<bool> condition, string what, TimeSpan? patience = null) =>
        ValueAsync(condition, c => c, what, patience);
}
