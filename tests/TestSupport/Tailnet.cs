using System.Text.RegularExpressions;
using TsCgnat.Firewall.Processes;
using Xunit;

namespace TsCgnat.TestSupport;

/// <summary>
/// Where the real tailscaled is: <c>TSCGNAT_TAILSCALE_ASSETS</c> names the folder with <c>tailscaled</c>,
/// <c>tailscale</c> and <c>tsreal-control</c> (.ci/run and scripts/test.sh point it at ../shared/tailscale).
/// </summary>
public static class RealTailscale
{
    public const string Variable = "TSCGNAT_TAILSCALE_ASSETS";

    private static readonly string[] Binaries = ["tailscaled", "tailscale", "tsreal-control"];

    /// <summary>Call first in a test on the real tailscaled: skips outside CI with the reason, fails under CI=true.</summary>
    public static string RequireAssets()
    {
        Privileges.RequireNetns();
        var dir = Environment.GetEnvironmentVariable(Variable);
        var path = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries);
        string? missing = string.IsNullOrEmpty(dir) ? $"{Variable} is not set"
            : Binaries.FirstOrDefault(b => !File.Exists(Path.Combine(dir, b))) is { } absent ? $"{Variable}={dir} has no {absent}"
            : new[] { "socat", "conntrack", "unshare" }.FirstOrDefault(t => !path.Any(d => File.Exists(Path.Combine(d, t)))) is { } tool
                ? $"{tool} is not installed (.ci/run installs it)"
            : null;
        if (missing is null)
        {
            return dir!;
        }

        var why = $"needs the real tailscaled: {missing} (.ci/run sets it to ../shared/tailscale, scripts/test.sh finds it there)";
        if (Privileges.InCi)
        {
            throw new InvalidOperationException($"CI=true but this test cannot run: {why}");
        }

        Skip.If(true, why);
        return dir!;
    }
}

/// <summary>
/// The seed scenario on the real tailscaled (tests/fixtures/tailnet.sh, whose header has the topology): u2 a real
/// subnet router advertising 100.64.0.0/24 with the given runner (<c>legacy</c>, <c>nft</c>: the iptables runner
/// over iptables-legacy or iptables-nft; <c>nftables</c>: the native nftables runner) and netfilter mode, u3 its
/// LAN neighbour, u4 a second real tailscaled, the control server in a namespace of its own.
/// </summary>
public sealed class Tailnet : IDisposable
{
    public const string U2Lan = "100.64.0.254";
    public const string U3 = "100.64.0.3";
    public const string U3Unlisted = "100.64.9.9";

    private static readonly string Script = Repo.Fixture("tailnet.sh");

    public Tailnet(string runner, string mode)
    {
        Runner = runner;
        Prefix = UniqueName.For("tsr");
        Sh.Ok(Script, "create", Prefix, runner, mode, "--owner", Environment.ProcessId.ToString(System.Globalization.CultureInfo.InvariantCulture));
    }

    public string Prefix { get; }

    public string Runner { get; }

    public string Ns(string node) => $"{Prefix}-{node}";

    public ICommandRunner NodeRunner(string node) => new NetnsRunner(new ProcessRunner(), Ns(node));

    /// <summary>The LocalAPI socket of the node's tailscaled (a path: the agent reaches it from the root namespace).</summary>
    public string Socket(string node) => Sh.Ok(Script, "socket", Prefix, node).Trim();

    public string LogPath(string node) => Sh.Ok(Script, "log", Prefix, node).Trim();

    /// <summary>The node's netfilter mode as the last command here set it.</summary>
    public string Mode(string node) => Sh.Ok(Script, "mode", Prefix, node).Trim();

    /// <summary>Runs one lifecycle command (up, down, restart, crash, start, set-mode MODE, settle, ...) on a node.</summary>
    public CommandOutput Step(string node, params string[] command) => Sh.Run(Script, [command[0], Prefix, node, .. command[1..]]);

    public bool Settled(string node) => Sh.Run(Script, "settled-check", Prefix, node).ExitCode == 0;

    public bool DaemonRunning(string node) => Sh.Run(Script, "running", Prefix, node).ExitCode == 0;

    /// <summary>True when <paramref name="address"/> answers an ICMP echo from <paramref name="from"/> (from <paramref name="source"/>).</summary>
    public bool Reaches(string from, string address, string? source = null) =>
        Sh.Run(Script, source is null ? ["ping", Prefix, from, address] : ["ping", Prefix, from, address, source]).ExitCode == 0;

    /// <summary>
    /// True when u2 forwards an echo request from u3 (from <paramref name="source"/>) to u4's tailnet address into
    /// tailscale0: the test control server serves no subnet routes, so this is what can be seen of the path from
    /// the tailnet to the LAN (the script's header says why).
    /// </summary>
    public bool ForwardsIntoTailnet(string source) => Sh.Run(Script, "forwards", Prefix, source).ExitCode == 0;

    /// <summary>The length of the node's tailscaled log now, to read what it logs from here on.</summary>
    public long LogLength(string node) => new FileInfo(LogPath(node)).Length;

    public string LogSince(string node, long offset)
    {
        using var file = new FileStream(LogPath(node), FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        file.Seek(offset, SeekOrigin.Begin);
        using var reader = new StreamReader(file);
        return reader.ReadToEnd();
    }

    /// <summary>u2's firewall as the runner's own tool lists it (both families; nft without counters).</summary>
    public string Firewall() => Runner == "nftables"
        ? Sh.Ok("ip", "netns", "exec", Ns("u2"), "nft", "-s", "list", "ruleset")
        : Sh.Ok("ip", "netns", "exec", Ns("u2"), $"iptables-{Runner}-save") + Sh.Ok("ip", "netns", "exec", Ns("u2"), $"ip6tables-{Runner}-save");

    public void Dispose() => Sh.Run(Script, "destroy", Prefix);
}

/// <summary>
/// What the real tailscaled logs in this lab on its own, without the agent, that looks like an error: each entry
/// says why it is there. Anything else that looks like an error, after a step with the agent, is put down to our
/// rules. Learnt from runs without the agent (every runner, both modes, every lifecycle step three times over, with
/// the probes of the tests: about 2.5 min a runner x mode), and the tests run every step without the agent first and
/// check what it logs against this list.
/// </summary>
public static partial class TailscaledLog
{
    public static IReadOnlyList<(Regex Line, string Why)> Allowed { get; } =
    [
        (new(@"health\(warnable=warming-up\): error: Tailscale is starting"),
            "a health message at every start and `up`, until the first netmap"),
        (new(@"health\(warnable=wantrunning-false\): error: Tailscale is stopped"),
            "a health message after `down`, and at a start before its prefs are read"),
        (new(@"health\(warnable=no-derp-connection\): error: Tailscale could not connect to the 'loopback only \(nothing listens\)' relay server"),
            "the lab's DERP map has one relay where nothing listens (tsreal-control: no DERP here, the daemons talk directly)"),
        (new(@"magicsock: last netcheck reported send error\. Rebinding\."),
            "netcheck has no STUN server to reach (tsreal-control disables STUN)"),
        (new(@"auditlog: \[unexpected\] failed to restore logs: empty key"),
            "at every start: the audit log has no key without a real control plane"),
        (new(@"Received error: .*(use of closed network connection|connection attempts aborted by context|client connection force closed via ClientConn\.Close)"),
            "the control client's request (map poll, key fetch, register) cut short: by a stop or `down`, by the control "
            + "client starting over at a start, or its https attempt on the plain-http control port given up after 10 s"),
        (new(@"health\(warnable=login-state\): error: You are logged out\. The last login error was: .*(use of closed network connection|connection attempts aborted by context)"),
            "the health message of such a cut-short request, cleared once the next one succeeds"),
        (new(@"control: lite map update error after \d+ms: .*use of closed network connection"),
            "an endpoint update to the control server cut short the same way"),
        (new(@"\[RATELIMIT\] format\(""health\(warnable=%s\): error: %s""\)"),
            "the log's rate limiter naming the health message it holds back (the health lines above)"),
        (new(@"magicsock: unable to bind udp[46] port 41641: listen udp[46] :41641: bind: address already in use"),
            "at `up` after `down`, magicsock binding its port again while its previous socket is still open (it takes another "
            + "port); a socket's error, which no firewall rule causes (seen once in the cases with the agent, not in the baseline)"),
        (new(@"peerapi: failed to do peerAPI listen, harmless \(netstack available\) but error was: listen tcp6 \[fd7a:.*bind: cannot assign requested address"),
            "at a start, before the IPv6 tailnet address can be bound to; tailscaled itself calls it harmless"),
    ];

    /// <summary>The lines of <paramref name="log"/> that look like an error (the harness's own markers excluded).</summary>
    public static IReadOnlyList<string> ErrorLike(string log) =>
        [.. log.Split('\n').Where(l => !l.StartsWith("[tailnet.sh ", StringComparison.Ordinal) && ErrorWords().IsMatch(l))];

    /// <summary>The error-like lines of <paramref name="log"/> that no entry of <see cref="Allowed"/> explains.</summary>
    public static IReadOnlyList<string> Unexplained(string log) =>
        [.. ErrorLike(log).Where(l => !Allowed.Any(a => a.Line.IsMatch(l)))];

    [GeneratedRegex(@"error|fail|panic|busy|too many links|chain_del|goroutine|segmentation|nil pointer|invalid|denied|cannot|can't|unable|linuxfw", RegexOptions.IgnoreCase)]
    private static partial Regex ErrorWords();
}
