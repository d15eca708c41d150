using TsCgnat.Firewall.Processes;

namespace TsCgnat.TestSupport;

/// <summary>
/// The seed lab (tests/fixtures/lab.sh): u2 the subnet router (100.64.0.2 on its LAN, tailnet address
/// 100.101.102.103 on a veth named tailscale0), u3 on the LAN (100.64.0.3, and 100.64.9.9 which no
/// policy allows), u4 a tailnet peer (100.101.102.104) routing 100.64.0.0/24 through u2.
/// With a second router (for tests with two nodes): u5 the second subnet router (100.64.1.5 on its own
/// LAN, tailnet address 100.101.102.105 on its tailscale0), u6 on that LAN (100.64.1.6), and u4 routing
/// 100.64.1.0/24 through u5 over its second link, tailscale1.
/// </summary>
public sealed class Lab : IDisposable
{
    public const string U2Lan = "100.64.0.2";
    public const string U3 = "100.64.0.3";
    public const string U3Unlisted = "100.64.9.9";
    public const string U2Tailnet = "100.101.102.103";
    public const string U4Tailnet = "100.101.102.104";
    public const string U5Lan = "100.64.1.5";
    public const string U6 = "100.64.1.6";
    public const string U5Tailnet = "100.101.102.105";
    public const string U5Tailnet6 = "fd7a:115c:a1e0::1235";

    /// <summary>
    /// The emulator parameters for u5's tailscaled (its own tailnet addresses); pass them with the first command,
    /// the emulator keeps them.
    /// </summary>
    public static IReadOnlyDictionary<string, string> U5Tailscaled { get; } =
        new Dictionary<string, string> { ["IP4"] = U5Tailnet, ["IP6"] = U5Tailnet6 };

    /// <param name="secondRouter">Also builds u5 and u6 (<c>lab.sh create PREFIX --second-router</c>).</param>
    public Lab(bool secondRouter = false)
    {
        Prefix = UniqueName.For("tsl");
        HasSecondRouter = secondRouter;
        Sh.Ok(Repo.Fixture("lab.sh"), secondRouter ? ["create", Prefix, "--second-router"] : ["create", Prefix]);
    }

    public string Prefix { get; }

    public bool HasSecondRouter { get; }

    public string Ns(string node) => $"{Prefix}-{node}";

    public ICommandRunner Runner(string node) => new NetnsRunner(new ProcessRunner(), Ns(node));

    /// <summary>True when <paramref name="address"/> answers an ICMP echo from <paramref name="from"/>.</summary>
    public bool Reaches(string from, string address) => Sh.Run(Repo.Fixture("lab.sh"), "ping", Prefix, from, address).ExitCode == 0;

    public string Exec(string node, params string[] args) => Sh.Ok("ip", ["netns", "exec", Ns(node), .. args]);

    public void Dispose() => Sh.Run(Repo.Fixture("lab.sh"), "destroy", Prefix);
}

/// <summary>
/// The tailscaled emulator (tests/fixtures/tailscaled-emu.sh) driving one namespace's firewall.
/// <paramref name="backend"/> picks tailscaled's runner: <c>legacy</c> or <c>nft</c> (the iptables runner over
/// iptables-legacy or iptables-nft) or <c>nftables</c> (the native nftables runner); <paramref name="version"/>
/// another release such as <c>1.100</c> (code reading; default: 1.90, what the real code here does, compared with
/// it by tests/Firewall.Tests/EmulatorMatchesRealRouterTests.cs). A command that makes tailscaled panic (the
/// native runner meeting a ts-* chain that something else still jumps to) exits 3: <see cref="Run(string[])"/>
/// throws, <see cref="TryRun"/> returns it.
/// </summary>
public sealed class TailscaledEmulator(string netns, string backend, string? version = null) : IDisposable
{
    private readonly string _state = Path.Combine(Path.GetTempPath(), UniqueName.For("tsemu") + ".state");

    /// <summary>Runs one emulator command (start on, down, up, restart, crash, set-mode nodivert, ...).</summary>
    public string Run(params string[] command) => Sh.Ok("env", [.. Env(), .. Command(command)]);

    public string Run(IReadOnlyDictionary<string, string> env, params string[] command) =>
        Sh.Ok("env", [.. env.Select(e => $"{e.Key}={e.Value}"), .. Env(), .. Command(command)]);

    /// <summary>
    /// Runs one command that may fail, for tests that assert on the failure (with the native nftables runner a
    /// leftover ts-* chain makes tailscaled panic at start: exit 3, the panic on stderr, status running=0).
    /// </summary>
    public CommandOutput TryRun(params string[] command) => Sh.Run("env", [.. Env(), .. Command(command)]);

    public void Dispose() => File.Delete(_state);

    private string[] Env() => version is null
        ? ["TS_EMU_IPTABLES=" + backend]
        : ["TS_EMU_IPTABLES=" + backend, "TS_EMU_VERSION=" + version];

    private string[] Command(string[] command) =>
        ["ip", "netns", "exec", netns, Repo.Fixture("tailscaled-emu.sh"), "--state", _state, .. command];
}
