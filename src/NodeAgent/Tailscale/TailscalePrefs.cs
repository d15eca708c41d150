using System.Net;
using System.Text.Json.Serialization;
using TsCgnat.Firewall.Model;

namespace TsCgnat.NodeAgent.Tailscale;

/// <summary>tailscaled's backend state (<c>ipn.State</c>); a number in notifications, a name in /status.</summary>
public enum BackendState
{
    NoState = 0,
    InUseOtherUser = 1,
    NeedsLogin = 2,
    NeedsMachineAuth = 3,
    Stopped = 4,
    Starting = 5,
    Running = 6,
}

/// <summary>
/// The bits of <c>ipn.NotifyWatchOpt</c> this agent uses (facts 5.4); <c>mask</c> is their sum in decimal.
/// </summary>
[Flags]
public enum NotifyWatchOpt : ulong
{
    None = 0,
    InitialState = 2,
    InitialPrefs = 4,

    /// <summary>
    /// Changes nothing for us (prefs are sanitized anyway), but current tailscaled refuses a peer
    /// without write access that leaves it out (403, <c>serveWatchIPNBus</c>), so the watcher always
    /// sets it: the agent then also works as a user who may only read.
    /// </summary>
    NoPrivateKeys = 16,
}

/// <summary>
/// The part of <c>ipn.Prefs</c> (<c>GET /localapi/v0/prefs</c>, and <c>Prefs</c> in notifications)
/// that decides what tailscaled does to the firewall. Keys are Go field names; every other field
/// tailscaled sends is ignored.
/// </summary>
public sealed record TailscalePrefs
{
    public NetfilterMode NetfilterMode { get; init; }

    /// <summary><c>""</c> (tailscaled decides, facts 3), <c>"iptables"</c> or <c>"nftables"</c>.</summary>
    public string NetfilterKind { get; init => field = value ?? ""; } = "";

    /// <summary>An <c>opt.Bool</c>: <c>null</c> when never set, which means the default (stateful filtering off).</summary>
    public bool? NoStatefulFiltering { get; init; }

    /// <summary>Subnets (and <c>0.0.0.0/0</c>, <c>::/0</c> for an exit node) this node advertises; JSON <c>null</c> reads as none.</summary>
    public IReadOnlyList<IPNetwork> AdvertiseRoutes { get; init => field = value ?? []; } = [];

    public bool WantRunning { get; init; }

    /// <summary>Whether tailscaled adds its stateful <c>ts-forward</c> rule: only when explicitly <c>false</c>.</summary>
    [JsonIgnore]
    public bool StatefulFiltering => NoStatefulFiltering == false;
}

/// <summary>
/// One object of the <c>watch-ipn-bus</c> stream (<c>ipn.Notify</c>). Only <see cref="Version"/> is in
/// every message; the others are <c>null</c> unless this message carries them.
/// </summary>
public sealed record IpnNotification
{
    public string Version { get; init => field = value ?? ""; } = "";

    public BackendState? State { get; init; }

    public TailscalePrefs? Prefs { get; init; }

    public string? ErrMessage { get; init; }
}

/// <summary>The part of <c>ipnstate.Status</c> (<c>GET /localapi/v0/status</c>) the agent reads.</summary>
public sealed record TailscaleStatus
{
    public string Version { get; init => field = value ?? ""; } = "";

    /// <summary>The state's name, e.g. <c>"Running"</c>: here it is a string, unlike in notifications.</summary>
    [JsonPropertyName("BackendState")]
    public string BackendStateName { get; init => field = value ?? ""; } = "";

    /// <summary>The state, or <c>null</c> for a name this agent does not know.</summary>
    [JsonIgnore]
    public BackendState? State =>
        Enum.TryParse<BackendState>(BackendStateName, out var state) && state.ToString() == BackendStateName ? state : null;
}
