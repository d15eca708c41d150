using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging.Abstractions;
using TsCgnat.Firewall;
using TsCgnat.Firewall.Processes;
using TsCgnat.NodeAgent.HostMode;
using TsCgnat.NodeAgent.Reconciling;
using TsCgnat.NodeAgent.State;
using TsCgnat.NodeAgent.Triggers;
using TsCgnat.Telemetry;
using TsCgnat.TestSupport;

namespace TsCgnat.NodeAgent.Tests;

/// <summary>
/// What the agent's loop records (design section 8) when its firewall cannot even be read: no root needed, the
/// firewall's tools answer "not found" through a fake runner.
/// </summary>
public sealed class AgentTelemetryTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task A_pass_whose_firewall_cannot_be_read_counts_a_firewall_error_records_outcome_failed_and_leaves_the_agent_alive_but_not_ready()
    {
        var node = UniqueName.For("node-");
        using var metrics = new TsCgnatMetrics();
        using var measured = new Measured(metrics.Meter);
        using var spans = new Spans("node", node);
        var readiness = new Readiness(TimeSpan.FromMinutes(3));
        var loop = AgentLoops.Create(new ToolsMissing(), [_dir.File("seed.yaml", Policies.Seed)], _dir.Sub("state"), node, metrics, readiness);

        await loop.StartAsync(CancellationToken.None);
        try
        {
            await Wait.Until(() => measured.Sum("tscgnat.apply.errors", ("stage", "firewall")) >= 1, "an apply error in stage firewall");
        }
        finally
        {
            await loop.StopAsync(CancellationToken.None);
        }

        Assert.NotEmpty(measured.Values("tscgnat.reconcile.duration", ("outcome", "failed")));
        Assert.Empty(measured.Values("tscgnat.reconcile.duration", ("outcome", "written")));
        Assert.Equal(0, measured.Sum("tscgnat.apply.errors", ("stage", "policy")));
        Assert.Equal(new HealthState(false, "first reconcile not done yet"), readiness.Ready());
        Assert.True(readiness.Liveness().Ok);

        var span = spans.Stopped[0];
        Assert.Equal(TsCgnatTracing.ReconcileActivity, span.OperationName);
        Assert.Equal(Causes.Start, span.GetTagItem("cause"));
        Assert.Equal("firewall", span.GetTagItem("stage"));
        Assert.Equal(ActivityStatusCode.Error, span.Status);
        Assert.Contains("ipset save failed (127)", span.StatusDescription, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("70000")]
    [InlineData("-1")]
    public void Run_refuses_a_metrics_port_outside_0_to_65535(string port)
    {
        var output = Agent.Run("run", "--policy-file", _dir.File("seed.yaml", Policies.Seed), "--metrics-port", port);

        Assert.Equal(2, output.ExitCode);
        Assert.Contains("--metrics-port must be a port between 0 (off) and 65535", output.StdErr, StringComparison.Ordinal);
    }

    [Fact]
    public void Run_exits_1_before_touching_the_firewall_when_the_metrics_port_is_taken()
    {
        using var taken = new TcpListener(IPAddress.Any, 0);
        taken.Start();
        var port = ((IPEndPoint)taken.LocalEndpoint).Port.ToString(CultureInfo.InvariantCulture);

        // A namespace that does not exist: had the agent gone on, every firewall command would fail harmlessly.
        var output = Agent.Run("run", "--policy-file", _dir.File("seed.yaml", Policies.Seed), "--netns", UniqueName.For("missing-"),
            "--state-dir", _dir.Sub("state"), "--metrics-port", port);

        Assert.Equal(1, output.ExitCode);
        Assert.Contains($"--metrics-port {port}: cannot listen", output.StdOut + output.StdErr, StringComparison.Ordinal);
        Assert.DoesNotContain("restored the cached state", output.StdOut + output.StdErr, StringComparison.Ordinal);
    }

    /// <summary>Every tool is missing: exit 127, as a shell says.</summary>
    private sealed class ToolsMissing : ICommandRunner
    {
        public Task<CommandOutput> RunAsync(string program, IReadOnlyList<string> arguments, string? standardInput, CancellationToken cancellationToken) =>
            Task.FromResult(new CommandOutput(127, "", $"{program}: not found"));
    }
}

/// <summary>The agent's telemetry against a real firewall in a network namespace: the loop in-process, and the program.</summary>
[Collection("netns")]
public sealed class AgentTelemetryOnHostTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [SkippableFact]
    public async Task The_first_pass_records_written_the_rules_and_set_sizes_on_the_host_and_makes_the_agent_ready_and_a_repair_records_its_cause_and_latency()
    {
        Privileges.RequireNetns();
        using var ns = new Netns();
        using var tailscaled = new TailscaledEmulator(ns.Name, "legacy");
        tailscaled.Run("start", "nodivert");
        using var metrics = new TsCgnatMetrics();
        using var measured = new Measured(metrics.Meter);
        var readiness = new Readiness(TimeSpan.FromMinutes(3));
        var repairs = new RepairStats();
        // The policy file in a directory of its own: the policy watcher covers the file's directory and its
        // subdirectories, and a state directory in there would turn each cache write into a policy re-read, which
        // then does the repair below under its own cause (seen in CI: the test flaked that way).
        var policyFile = Path.Combine(_dir.Sub("policies"), "seed.yaml");
        File.WriteAllText(policyFile, Policies.Seed);
        var loop = AgentLoops.Create(ns.Runner, [policyFile], _dir.Sub("state"), "node-a", metrics, readiness, repairs);
        Assert.Equal(new HealthState(false, "first reconcile not done yet"), readiness.Ready());

        await loop.StartAsync(CancellationToken.None);
        try
        {
            await Wait.Until(() => readiness.Ready().Ok, "ready after the first reconcile");

            Assert.Single(measured.Values("tscgnat.reconcile.duration", ("outcome", "written")));
            Assert.Equal(OurRulesOnHost(ns), measured.Gauge("tscgnat.rules", ("strategy", "Indirect")));
            Assert.Equal(1, measured.Gauge("tscgnat.set.members", ("set", "TSCGNAT-SRC4")));
            Assert.Equal(0, measured.Gauge("tscgnat.set.members", ("set", "TSCGNAT-SRCIF4")));
            Assert.Equal(1, measured.Gauge("tscgnat.set.members", ("set", "TSCGNAT-FWD4")));
            Assert.Equal(0, measured.Sum("tscgnat.drift.repairs", ("cause", Causes.PeriodicResync)));

            // Someone empties our set: the next periodic resync puts it back, and counts it as RepairStats does.
            ns.Exec("ipset", "flush", "TSCGNAT-SRC4");
            await Wait.Until(() => repairs.Total == 1, "the repair at the next resync");
        }
        finally
        {
            await loop.StopAsync(CancellationToken.None);
        }

        Assert.Equal(1, measured.Sum("tscgnat.drift.repairs", ("cause", Causes.PeriodicResync)));
        var latency = Assert.Single(measured.Values("tscgnat.repair.latency", ("cause", Causes.PeriodicResync)));
        Assert.Equal(repairs.LatenciesMs().Single() / 1000, latency, 9);
        Assert.Equal(2, measured.Values("tscgnat.reconcile.duration", ("outcome", "written")).Count);
        Assert.Equal(0, measured.Sum("tscgnat.apply.errors", ("stage", "firewall")));
    }

    [SkippableFact]
    public async Task Run_with_a_metrics_port_answers_readyz_503_until_the_first_reconcile_then_200_and_serves_the_instruments()
    {
        Privileges.RequireNetns();
        using var ns = new Netns();
        using var tailscaled = new TailscaledEmulator(ns.Name, "legacy");
        tailscaled.Run("start", "nodivert");
        var policies = _dir.Sub("policies.d");
        File.WriteAllText(Path.Combine(policies, "seed.yaml"), Policies.Seed.Replace("100.64.0.0/24", "10.0.0.0/24", StringComparison.Ordinal));
        var port = FreePort();
        using var agent = new RunningAgent("run", "--policy-file", policies, "--netns", ns.Name, "--state-dir", _dir.Sub("state"),
            "--resync-interval", "60", "--metrics-port", port.ToString(CultureInfo.InvariantCulture));
        using var http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{port}/") };

        // An invalid policy and no cached state: alive, but nothing applied yet.
        agent.WaitFor(() => agent.Output.Contains("keeping the last good rules", StringComparison.Ordinal), "invalid policy reported", TimeSpan.FromSeconds(20));
        Assert.Equal((HttpStatusCode.OK, "ok\n"), await Get(http, "healthz"));
        Assert.Equal((HttpStatusCode.ServiceUnavailable, "first reconcile not done yet\n"), await Get(http, "readyz"));

        File.WriteAllText(Path.Combine(policies, "seed.yaml"), Policies.Seed);
        await Wait.Until(async () => (await Get(http, "readyz")).Status == HttpStatusCode.OK, "readyz 200 after the first reconcile", agent);

        var (status, scrape) = await Get(http, "metrics");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Matches("""tscgnat_reconcile_duration_seconds_count\{[^}]*outcome="written"[^}]*\} 1""", scrape);
        Assert.Matches($$"""tscgnat_rules\{[^}]*strategy="Indirect"[^}]*\} {{OurRulesOnHost(ns)}}""", scrape);
        Assert.Matches("""tscgnat_set_members\{[^}]*set="TSCGNAT-SRC4"[^}]*\} 1""", scrape);
    }

    /// <summary>Our rules as the kernel holds them: rules in our chains, and our tagged hooks and exemptions elsewhere, every back end and family.</summary>
    private static long OurRulesOnHost(Netns ns) =>
        new[] { "iptables-legacy-save", "ip6tables-legacy-save", "iptables-nft-save", "ip6tables-nft-save" }
            .SelectMany(save => ns.Try(save).StdOut.Split('\n'))
            .LongCount(line => line.StartsWith("-A ", StringComparison.Ordinal)
                && (line.StartsWith("-A TSCGNAT-", StringComparison.Ordinal) || line.Contains("--comment \"ts-cgnat ", StringComparison.Ordinal)));

    private static async Task<(HttpStatusCode Status, string Body)> Get(HttpClient http, string path)
    {
        using var response = await http.GetAsync(new Uri(path, UriKind.Relative));
        return (response.StatusCode, await response.Content.ReadAsStringAsync());
    }

    private static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }
}

internal static class AgentLoops
{
    /// <summary>The loop <c>run</c> builds in host mode, with its telemetry, over <paramref name="runner"/>; no watchers, a 1 s resync.</summary>
    public static AgentLoop Create(
        ICommandRunner runner, IReadOnlyList<string> policyFiles, string stateDir, string node, TsCgnatMetrics metrics, Readiness readiness, RepairStats? repairs = null)
    {
        var reconciler = new Reconciler(new HostFirewall(runner), new FirewallSettings(), new AppliedStateCache(stateDir), TimeProvider.System, NullLogger.Instance);
        return new AgentLoop(
            new PolicyFileSource(policyFiles, NullLogger<PolicyFileSource>.Instance),
            reconciler,
            new AgentLoopOptions(TimeSpan.FromSeconds(1), NodeName: node),
            NullLogger<AgentLoop>.Instance,
            TimeProvider.System,
            repairs ?? new RepairStats(),
            metrics: metrics,
            readiness: readiness);
    }
}

internal static class Wait
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);

    /// <summary>Polls <paramref name="condition"/>; the deadline only keeps a broken agent from hanging the run.</summary>
    public static Task Until(Func<bool> condition, string what) => Until(() => Task.FromResult(condition()), what);

    public static async Task Until(Func<Task<bool>> condition, string what, RunningAgent? agent = null)
    {
        var clock = Stopwatch.StartNew();
        while (!await Safely(condition))
        {
            if (clock.Elapsed > Patience)
            {
                Assert.Fail($"{what}: not seen within {Patience.TotalSeconds} s" + (agent is null ? "" : $"; agent said:\n{agent.Output}"));
            }

            await Task.Delay(50);
        }
    }

    private static async Task<bool> Safely(Func<Task<bool>> condition)
    {
        try
        {
            return await condition();
        }
        catch (HttpRequestException)
        {
            return false; // the listener is not up yet
        }
    }
}
