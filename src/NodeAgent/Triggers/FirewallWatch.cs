using System.Text;
using Microsoft.Extensions.Logging;
using TsCgnat.Firewall.Model;
using TsCgnat.Firewall.Processes;

namespace TsCgnat.NodeAgent.Triggers;

/// <summary>Something that may have changed what the host should look like: the loop only looks again.</summary>
/// <param name="Cause">What was seen (<see cref="Causes"/>).</param>
/// <param name="SeenAt">When it was seen (<see cref="TimeProvider.GetTimestamp"/>), for the repair latency.</param>
public sealed record Trigger(string Cause, long SeenAt);

/// <summary>The causes a reconcile can have; repairs are counted by them.</summary>
public static class Causes
{
    public const string Start = "start";
    public const string PolicyChanged = "policy file changed";
    public const string Hangup = "SIGHUP";
    public const string PeriodicResync = "periodic resync";
    public const string Retry = "retry after failure";
    public const string FirewallEvent = "nft ruleset event";
    public const string LegacyPoll = "iptables-legacy poll";
    public const string Tailscale = "tailscaled state or prefs";

    /// <summary>A pass that waited for tailscaled to settle (its jumps gone, its chains still full) looks again.</summary>
    public const string TailscaleSettled = "tailscaled settled";

    /// <summary>A write after one of these repairs drift: someone else changed the firewall (or tailscaled rebuilt it).</summary>
    public static bool IsRepair(string cause) => cause is FirewallEvent or LegacyPoll or Tailscale or PeriodicResync or TailscaleSettled;
}

/// <summary>
/// Notices when anyone changes the firewall, so the agent repairs within milliseconds instead of at the
/// next resync (design section 5): where the rules live in nf_tables (iptables-nft, or tailscaled's
/// nftables runner) <c>nft monitor</c> streams every change as it happens; iptables-legacy has no
/// change events, so there the few chains that matter are polled.
/// </summary>
/// <remarks>
/// Our own writes are seen too; they lead to one more read that finds nothing to do, never to another
/// write, so there is no loop. Filtering them out instead could hide a change tailscaled made at the
/// same moment.
/// </remarks>
public sealed class FirewallWatch(ICommandRunner runner, Action<Trigger> changed, ILogger logger, TimeProvider time)
{
    private static readonly TimeSpan RestartDelay = TimeSpan.FromSeconds(1);
    private volatile bool _pollLegacy;
    private string? _lastLegacy;

    /// <summary>How often iptables-legacy is polled while the rules live there.</summary>
    public TimeSpan PollInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Monitor events seen, for tests and logs.</summary>
    public long Events => Interlocked.Read(ref _events);

    private long _events;

    /// <summary>
    /// Told after every reconcile where the rules live, so that legacy is polled only when it matters: it
    /// stops only once tailscaled is known to write with nf_tables. While tailscaled is down its chains
    /// are gone and a pass may name another back end; stopping then missed the rebuild that followed.
    /// </summary>
    public void RulesLiveIn(string backendName, TailscaleRunner? runner) =>
        _pollLegacy = backendName == "iptables-legacy" || (_pollLegacy && runner is not (TailscaleRunner.IptablesNft or TailscaleRunner.Nftables));

    /// <summary>Runs <c>nft monitor</c> until cancelled, restarting it if it exits; stops for good if nft is not installed.</summary>
    public async Task RunMonitorAsync(CancellationToken cancellationToken)
    {
        if (runner is not ICommandStreamer streamer)
        {
            return;
        }

        while (!cancellationToken.IsCancellationRequested)
        {
            int exit;
            try
            {
                exit = await streamer.StreamAsync(Tools.Nft, ["monitor", "ruleset"], OnEvent, cancellationToken);
            }
            catch (OperationCanceledException)
            {
                return;
            }

            if (exit == 127)
            {
                logger.LogWarning("nft is not installed: changes to nf_tables are caught by the periodic resync only");
                return;
            }

            logger.LogWarning("nft monitor exited ({Exit}); restarting it in {Delay}", exit, RestartDelay);
            await Task.Delay(RestartDelay, time, cancellationToken);
        }
    }

    private void OnEvent(string line)
    {
        if (line.Length == 0 || line.StartsWith('#'))
        {
            return;
        }

        Interlocked.Increment(ref _events);
        changed(new Trigger(Causes.FirewallEvent, time.GetTimestamp()));
    }

    /// <summary>Polls iptables-legacy (IPv4 filter and nat, one process) while the rules live there.</summary>
    public async Task RunLegacyPollAsync(CancellationToken cancellationToken)
    {
        using var timer = new PeriodicTimer(PollInterval, time);
        try
        {
            while (await timer.WaitForNextTickAsync(cancellationToken))
            {
                if (!_pollLegacy)
                {
                    _lastLegacy = null;
                    continue;
                }

                var output = await runner.RunAsync(Tools.Save(IptablesBackend.Legacy, IpFamily.V4), [], null, cancellationToken);
                if (!output.Succeeded)
                {
                    continue;
                }

                var fingerprint = Fingerprint(output.StdOut);
                if (_lastLegacy is { } last && !string.Equals(last, fingerprint, StringComparison.Ordinal))
                {
                    changed(new Trigger(Causes.LegacyPoll, time.GetTimestamp()));
                }

                _lastLegacy = fingerprint;
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>The lines that matter: the built-ins we hook, Tailscale's chains and ours; not counters or other tools' chains.</summary>
    public static string Fingerprint(string save)
    {
        var kept = new StringBuilder();
        foreach (var line in save.Split('\n'))
        {
            if (line.StartsWith("-A INPUT ", StringComparison.Ordinal) || line.StartsWith("-A FORWARD ", StringComparison.Ordinal)
                || line.StartsWith("-A POSTROUTING ", StringComparison.Ordinal) || line.StartsWith("-A ts-", StringComparison.Ordinal)
                || line.StartsWith("-A TSCGNAT-", StringComparison.Ordinal) || line.StartsWith(":ts-", StringComparison.Ordinal)
                || line.StartsWith(":TSCGNAT-", StringComparison.Ordinal) || line.StartsWith('*'))
            {
                kept.Append(line).Append('\n');
            }
        }

        return kept.ToString();
    }
}
