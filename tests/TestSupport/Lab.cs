using TsCgnat.Firewall.Processes;

namespace TsCgnat.TestSupport;

/// <summary>
/// The seed lab (tests/fixtures/lab.sh): u2 the subnet router (100.64.0.2 on its LAN, tailnet address
/// 100.101.102.103 on a veth named tailscale0), u3 on the LAN (100.64.0.3, and 100.64.9.9 which no
/// policy allows), u4 a tailnet peer (100.101.102.104) routing 100.64.0.0/24 through u2.
/// </summary>
public sealed class Lab : IDisposable
{
    public const string U2Lan = "100.64.0.2";
    public const string U3 = "100.64.0.3";
    public const string U3Unlisted = "100.64.9.9";
    public const string U2Tailnet = "100.101.102.103";
    public const string U4Tailnet = "100.101.102.104";

    public Lab()
    {
        Prefix = UniqueName.For("tsl");
        Sh.Ok(Repo.Fixture("lab.sh"), "create", Prefix);
    }

    public string Prefix { get; }

    public string Ns(string node) => $"{Prefix}-{node}";

    public ICommandRunner Runner(string node) => new NetnsRunner(new ProcessRunner(), Ns(node));

    /// <summary>True when <paramref name="address"/> answers an ICMP echo from <paramref name="from"/>.</summary>
    public bool Reaches(string from, string address) => Sh.Run(Repo.Fixture("lab.sh"), "ping", Prefix, from, address).ExitCode == 0;

    public string Exec(string node, params string[] args) => Sh.Ok("ip", ["netns", "exec", Ns(node), .. args]);

    public void Dispose() => Sh.Run(Repo.Fixture("lab.sh"), "destroy", Prefix);
}

/// <summary>The tailscaled emulator (tests/fixtures/tailscaled-emu.sh) driving one namespace's firewall.</summary>
public sealed class TailscaledEmulator(string netns, string backend) : IDisposable
{
    private readonly string _state = Path.Combine(Path.GetTempPath(), UniqueName.For("tsemu") + ".state");

    /// <summary>Runs one emulator command (start on, down, up, restart, crash, set-mode nodivert, ...).</summary>
    public string Run(params string[] command) =>
        Sh.Ok("env", ["TS_EMU_IPTABLES=" + backend, "ip", "netns", "exec", netns, Repo.Fixture("tailscaled-emu.sh"), "--state", _state, .. command]);

    public string Run(IReadOnlyDictionary<string, string> env, params string[] command) =>
        Sh.Ok("env", [.. env.Select(e => $"{e.Key}={e.Value}"), "TS_EMU_IPTABLES=" + backend, "ip", "netns", "exec", netns, Repo.Fixture("tailscaled-emu.sh"), "--state", _state, .. command]);

    public void Dispose() => File.Delete(_state);
}
