using TsCgnat.TestSupport;

namespace TsCgnat.NodeAgent.Tests;

/// <summary>
/// <c>run --enforce-nodivert</c> against a fake LocalAPI whose prefs edits drive the tailscaled emulator, as
/// a real tailscaled applies a NetfilterMode edit to its firewall before it notifies (facts 5.3).
/// </summary>
[Collection("netns")]
public sealed class EnforceNoDivertTests : IDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(30);
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [SkippableFact]
    public async Task Enforce_nodivert_switches_tailscaled_from_on_to_nodivert_and_the_agent_then_uses_Indirect()
    {
        Privileges.RequireNetns();
        using var lab = new Lab();
        using var tailscaled = new TailscaledEmulator(lab.Ns("u2"), "legacy");
        tailscaled.Run("start", "on");
        await using var localApi = new FakeTailscaled(Path.Combine(_dir.Path, "tailscaled.sock"))
        {
            OnPrefsPatched = (patch, _) =>
            {
                if (patch.Changed("NetfilterMode"))
                {
                    tailscaled.Run("set-mode", patch.NetfilterMode);
                }

                return Task.CompletedTask;
            },
        };
        await localApi.StartAsync();

        using var agent = Start(lab, localApi.SocketPath, "--enforce-nodivert");

        agent.WaitFor(() => tailscaled.Run("status").Contains("mode=nodivert", StringComparison.Ordinal), "tailscaled switched to nodivert", Patience);
        agent.WaitFor(() => lab.Exec("u2", "iptables-legacy-save").Contains("-A TSCGNAT-INPUT -s 100.64.0.0/10 ! -i tailscale0 -j DROP", StringComparison.Ordinal)
            && !lab.Exec("u2", "iptables-legacy-save").Contains("ts-cgnat exemption", StringComparison.Ordinal), "Indirect in place, no InChain rule left", Patience);
        // Logged when the LocalAPI call returns, which may come after the rules the mode change led to.
        agent.WaitFor(() => agent.Output.Contains("switched tailscaled from netfilter mode on to nodivert", StringComparison.Ordinal), "the switch logged", Patience);
        Assert.Equal(1, localApi.Prefs["NetfilterMode"]!.GetValue<int>());
        Assert.True(lab.Reaches("u2", Lab.U3));
        Assert.True(lab.Reaches("u4", Lab.U3));
    }

    [SkippableFact]
    public async Task When_tailscaled_refuses_because_its_config_file_is_locked_the_agent_says_so_and_keeps_InChain()
    {
        Privileges.RequireNetns();
        using var lab = new Lab();
        using var tailscaled = new TailscaledEmulator(lab.Ns("u2"), "nft");
        tailscaled.Run("start", "on");
        await using var localApi = new FakeTailscaled(Path.Combine(_dir.Path, "tailscaled.sock")) { ConfigLocked = true };
        await localApi.StartAsync();

        using var agent = Start(lab, localApi.SocketPath, "--enforce-nodivert");

        agent.WaitFor(() => agent.Output.Contains("tailscaled refused to switch to nodivert", StringComparison.Ordinal), "the refusal reported", Patience);
        Assert.Contains("config file", agent.Output, StringComparison.Ordinal);
        agent.WaitFor(() => lab.Exec("u2", "iptables-nft-save").Contains("ts-cgnat exemption", StringComparison.Ordinal), "InChain in place", Patience);
        Assert.Contains("mode=on", tailscaled.Run("status"), StringComparison.Ordinal);
        Assert.True(lab.Reaches("u2", Lab.U3));
    }

    private RunningAgent Start(Lab lab, string socket, params string[] extra) => new(
    [
        "run", "--policy-file", _dir.File("seed.yaml", Policies.Seed), "--netns", lab.Ns("u2"), "--state-dir", _dir.Sub("state"),
        "--tailscale-socket", socket, "--resync-interval", "300", .. extra,
    ]);
}
