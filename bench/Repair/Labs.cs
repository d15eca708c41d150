using TsCgnat.TestSupport;

namespace TsCgnat.Bench.Repair;

/// <summary>
/// A subnet router u2 with its LAN neighbour u3 (100.64.0.3, allowed by the policy) and tailscaled on u2, real or
/// emulated, for one runner and netfilter mode. The lifecycle steps are the same words for both.
/// </summary>
internal interface ITailscaledLab : IDisposable
{
    /// <summary>"real" or "emulator".</summary>
    string Kind { get; }

    /// <summary>u2's namespace: tailscaled's firewall, the agent and the pings from there.</summary>
    string Router { get; }

    /// <summary>Every namespace the lab made, for the leftover check.</summary>
    IReadOnlyList<string> Namespaces { get; }

    /// <summary>tailscaled's LocalAPI socket, or a path where none is (the emulator has no LocalAPI).</summary>
    string Socket { get; }

    /// <summary>Runs one lifecycle command on u2's tailscaled: restart, down, up, crash, start.</summary>
    void Run(string command);

    /// <summary>The length of tailscaled's log now (0 where there is none).</summary>
    long LogLength { get; }

    /// <summary>What tailscaled logged from <paramref name="offset"/> on ("" where there is no log).</summary>
    string LogSince(long offset);

    /// <summary>The log file to keep with --log-dir, if any.</summary>
    string? LogPath { get; }
}

/// <summary>The real tailscaled v1.82.0 on u2 (tests/fixtures/tailnet.sh, through TestSupport's <see cref="Tailnet"/>).</summary>
internal sealed class RealLab : ITailscaledLab
{
    private readonly Tailnet _tailnet;

    public RealLab(string runner, string mode)
    {
        try
        {
            _tailnet = new Tailnet(runner, mode);
        }
        catch (InvalidOperationException e)
        {
            throw new BenchException($"the real-tailscaled lab ({runner}, mode {mode}) could not be built: {e.Message}");
        }

        Socket = _tailnet.Socket("u2");
        LogPath = _tailnet.LogPath("u2");
    }

    public string Kind => "real";

    public string Router => _tailnet.Ns("u2");

    public IReadOnlyList<string> Namespaces => [_tailnet.Ns("ctl"), _tailnet.Ns("u2"), _tailnet.Ns("u3"), _tailnet.Ns("u4")];

    public string Socket { get; }

    public string? LogPath { get; }

    public long LogLength => _tailnet.LogLength("u2");

    public string LogSince(long offset) => _tailnet.LogSince("u2", offset);

    public void Run(string command)
    {
        var result = _tailnet.Step("u2", command);
        if (!result.Succeeded)
        {
            throw new BenchException($"tailnet.sh {command} on the real tailscaled failed (exit {result.ExitCode}):\n{result.StdErr}");
        }
    }

    public void Dispose() => _tailnet.Dispose();
}

/// <summary>
/// The tailscaled emulator (tests/fixtures/tailscaled-emu.sh) on u2 of the emulated seed lab (tests/fixtures/lab.sh:
/// u2's LAN address 100.64.0.2, u3 100.64.0.3 as in the real lab). Its crash is a kill -9 followed by what systemd's
/// ExecStopPost runs (the clean-up); tailnet.sh's crash runs no clean-up, the next start does it.
/// </summary>
internal sealed class EmulatorLab : ITailscaledLab
{
    private readonly Lab _lab;
    private readonly TailscaledEmulator _tailscaled;
    private readonly string _mode;

    public EmulatorLab(string runner, string mode)
    {
        _mode = mode;
        _lab = new Lab();
        _tailscaled = new TailscaledEmulator(_lab.Ns("u2"), runner);
        try
        {
            _tailscaled.Run("start", mode);
        }
        catch (InvalidOperationException e)
        {
            Dispose();
            throw new BenchException($"the tailscaled emulator did not start ({runner}, mode {mode}): {e.Message}");
        }
    }

    public string Kind => "emulator";

    public string Router => _lab.Ns("u2");

    public IReadOnlyList<string> Namespaces => [_lab.Ns("u2"), _lab.Ns("u3"), _lab.Ns("u4")];

    public string Socket => "/nonexistent";

    public string? LogPath => null;

    public long LogLength => 0;

    public string LogSince(long offset) => "";

    public void Run(string command)
    {
        try
        {
            _ = command == "start" ? _tailscaled.Run("start", _mode) : _tailscaled.Run(command);
        }
        catch (InvalidOperationException e)
        {
            throw new BenchException($"the tailscaled emulator failed on '{command}': {e.Message}");
        }
    }

    public void Dispose()
    {
        _tailscaled.Dispose();
        _lab.Dispose();
    }
}
