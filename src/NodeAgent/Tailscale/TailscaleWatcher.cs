using System.Text.Json;
using Microsoft.Extensions.Logging;

namespace TsCgnat.NodeAgent.Tailscale;

/// <summary>
/// What the agent knows of tailscaled at one moment, from the LocalAPI. When tailscaled cannot be
/// reached, <see cref="State"/>, <see cref="Version"/> and <see cref="Prefs"/> are null and the agent
/// falls back to what the firewall alone shows.
/// </summary>
public sealed record TailscaleView(bool Reachable, string? Problem, BackendState? State, string? Version, TailscalePrefs? Prefs)
{
    /// <summary>Before the first connection attempt has ended either way.</summary>
    public static TailscaleView NotYetKnown { get; } = new(false, "not asked yet", null, null, null);

    public static TailscaleView Unreachable(string problem) => new(false, problem, null, null, null);

    /// <summary>One line for the log, the same for the same situation, so repeats can be left out.</summary>
    public override string ToString() => Reachable
        ? $"tailscaled {Version}: state {State?.ToString() ?? "unknown"}, netfilter mode {Prefs?.NetfilterMode.ToString() ?? "unknown"}"
            + (Prefs is null ? "" : $", runner {(Prefs.NetfilterKind.Length == 0 ? "chosen by tailscaled" : Prefs.NetfilterKind)}, stateful filtering {(Prefs.StatefulFiltering ? "on" : "off")}")
        : $"tailscaled not reachable: {Problem}";
}

/// <summary>How fast the watcher tries again after losing tailscaled.</summary>
/// <param name="FirstRetry">Wait after a failure that follows a working connection; doubles on each further failure.</param>
/// <param name="LongestRetry">The cap: a host without tailscaled costs one connect per this interval.</param>
public sealed record TailscaleWatchOptions(TimeSpan FirstRetry, TimeSpan LongestRetry)
{
    /// <summary>tailscaled restarts in about a second; after that the agent also has the firewall events to go on.</summary>
    public static TailscaleWatchOptions Default { get; } = new(TimeSpan.FromMilliseconds(250), TimeSpan.FromSeconds(10));
}

/// <summary>
/// Keeps <see cref="Current"/> up to date from tailscaled's <c>watch-ipn-bus</c> stream (initial state
/// and prefs, then each change), and reconnects with capped exponential backoff whenever tailscaled
/// stops, restarts or is not there. <c>onChange</c> runs on every state or prefs notification and on
/// every change of reachability; the agent only uses it to look again (level-triggered), so it gets
/// the whole view, not a delta. <c>onChange</c> must return quickly: notifications wait for it.
/// </summary>
public sealed class TailscaleWatcher(
    LocalApiClient client,
    Action<TailscaleView> onChange,
    ILogger<TailscaleWatcher> logger,
    TimeProvider time,
    TailscaleWatchOptions? options = null)
{
    /// <summary>Initial state and prefs, then changes (facts 5.4); see <see cref="NotifyWatchOpt.NoPrivateKeys"/>.</summary>
    public const NotifyWatchOpt Mask = NotifyWatchOpt.InitialState | NotifyWatchOpt.InitialPrefs | NotifyWatchOpt.NoPrivateKeys;

    private readonly TailscaleWatchOptions _options = options ?? TailscaleWatchOptions.Default;
    private TailscaleView _current = TailscaleView.NotYetKnown;
    private string? _logged;
    private int _attempts;

    /// <summary>The latest view; safe to read from any thread.</summary>
    public TailscaleView Current => Volatile.Read(ref _current);

    /// <summary>Connections tried so far (tests count them to prove that retries wait).</summary>
    public int ConnectionAttempts => Volatile.Read(ref _attempts);

    /// <summary>Runs until cancelled; never throws for tailscaled's absence or failures, only reports them.</summary>
    public async Task RunAsync(CancellationToken cancellationToken)
    {
        var retry = _options.FirstRetry;
        while (!cancellationToken.IsCancellationRequested)
        {
            Interlocked.Increment(ref _attempts);
            string problem;
            try
            {
                var connected = false;
                await foreach (var notification in client.WatchIpnBusAsync(Mask, cancellationToken))
                {
                    if (!connected)
                    {
                        connected = true;
                        retry = _options.FirstRetry; // the connection worked: the next loss starts the backoff again
                    }

                    Apply(notification);
                }

                problem = connected
                    ? "tailscaled closed the watch stream (stopping or restarting)"
                    : "tailscaled closed the watch stream before its first notification";
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e) when (e is TailscaledUnreachableException or LocalApiException)
            {
                problem = e.Message;
            }
            catch (Exception e) when (e is HttpRequestException or IOException or JsonException or OperationCanceledException)
            {
                // A tailscaled killed mid-stream resets the connection; a half-written object fails to parse;
                // a request timing out is cancelled without our token being cancelled.
                problem = $"the watch stream broke: {e.Message}";
            }

            Publish(TailscaleView.Unreachable(problem));
            try
            {
                await Task.Delay(retry, time, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            retry = TimeSpan.FromTicks(Math.Min(retry.Ticks * 2, _options.LongestRetry.Ticks));
        }
    }

    private void Apply(IpnNotification notification)
    {
        if (notification.ErrMessage is { } error)
        {
            logger.LogWarning("tailscaled reports an error: {Error}", error);
        }

        var before = Current;
        var reachable = before.Reachable ? before : new TailscaleView(true, null, null, null, null);
        var after = reachable with
        {
            Version = notification.Version.Length > 0 ? notification.Version : reachable.Version,
            State = notification.State ?? reachable.State,
            Prefs = notification.Prefs ?? reachable.Prefs,
        };

        // Notifications we did not ask for (engine, netmap) change nothing the agent acts on.
        if (!before.Reachable || notification.State is not null || notification.Prefs is not null)
        {
            Publish(after);
        }
        else
        {
            Volatile.Write(ref _current, after);
        }
    }

    private void Publish(TailscaleView view)
    {
        var before = Current;
        Volatile.Write(ref _current, view);

        // A failure after a failure is no news (only its wording may differ): the callback and the
        // Information log are for the first answer and for changes of reachability, state or prefs.
        var news = view.Reachable || before.Reachable || ReferenceEquals(before, TailscaleView.NotYetKnown);
        var line = view.ToString();
        if (line != _logged)
        {
            logger.Log(news ? LogLevel.Information : LogLevel.Debug, "{TailscaleView}", line);
            _logged = line;
        }

        if (!news)
        {
            return;
        }

        try
        {
            onChange(view);
        }
        catch (Exception e)
        {
            logger.LogError("handling a tailscaled change failed: {Error}", e.Message);
        }
    }
}
