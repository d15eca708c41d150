namespace TsCgnat.TestSupport;

/// <summary>Firewall state that tailscaled leaves, for benchmarks that seed a namespace without running the emulator.</summary>
public static class TailscaledRules
{
    /// <summary>
    /// tailscaled's iptables runner in nodivert, reduced to what the agent looks at (its ts-* chains, the CGNAT drop,
    /// the forward accept and the masquerade), as <c>iptables-restore --noflush</c> input.
    /// </summary>
    public const string NodivertChains = """
        *filter
        :ts-input - [0:0]
        :ts-forward - [0:0]
        -A ts-input ! -i tailscale0 -s 100.64.0.0/10 -j DROP
        -A ts-forward -o tailscale0 -j ACCEPT
        COMMIT
        *nat
        :ts-postrouting - [0:0]
        -A ts-postrouting -m mark --mark 0x40000/0xff0000 -j MASQUERADE
        COMMIT

        """;
}
