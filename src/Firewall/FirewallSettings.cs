using System.Diagnostics;
using TsCgnat.Firewall.Model;

namespace TsCgnat.Firewall;

/// <summary>How the host is set up, as far as the engine needs to know.</summary>
/// <param name="TailscaleInterface">tailscaled's tun name (<c>tailscaled --tun</c>).</param>
/// <param name="Backend">Force an iptables back end instead of detecting it.</param>
/// <param name="Strategy">What <c>--strategy</c> asked for.</param>
/// <param name="Hint">What the LocalAPI said about tailscaled, when it was reachable.</param>
public sealed record FirewallSettings(
    string TailscaleInterface = "tailscale0",
    IptablesBackend? Backend = null,
    StrategyRequest Strategy = StrategyRequest.Auto,
    TailscaleHint? Hint = null);

/// <summary>What an earlier pass learned that the next one may need while tailscaled rebuilds its chains.</summary>
/// <param name="UnhookedSince">When (<see cref="Stopwatch.GetTimestamp"/>) ts-input was first seen full without tailscaled's
/// jumps while the strategy was InChain; null when that is not the state.</param>
public sealed record PreviousPass(bool? Stateful, Strategy? Strategy, TailscaleRunner? Runner, long? UnhookedSince = null)
{
    public static readonly PreviousPass None = new(null, null, null);
}
