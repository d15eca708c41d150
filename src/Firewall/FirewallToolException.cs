namespace TsCgnat.Firewall;

/// <summary>Raised when running a firewall tool (iptables, ipset, nft) failed, reading or writing; the message names the tool and what it said.</summary>
public sealed class FirewallToolException(string message) : Exception(message);
