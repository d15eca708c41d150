using System.Diagnostics;
using System.Globalization;
using TsCgnat.TestSupport;

namespace TsCgnat.Bench.Lifecycle;

/// <summary>
/// bench-lifecycle: the agent on the lab's subnet router through many cycles of tailscaled's rebuilds in mode on
/// (every step of <see cref="TailscaleLifecycle.Steps"/> in turn), per runner, with a ping every 10 ms counting
/// the packets lost per step and cycle. The soak form of tests/NodeAgent.Tests/TailscaleLifecycleTests.cs, which
/// runs a few rounds of each step in CI. See README.md.
/// </summary>
internal static class Program
{
    private const string Usage = "usage: bench-lifecycle [--cycles N (20)] [--backends legacy,nft,nftables] [--agent PATH]";

    private const string SeedPolicy = """
        apiVersion: tscgnat.io/v1alpha1
        kind: CgnatAllowPolicy
        metadata:
          name: seed-lan
        spec:
          allowedSources:
            - cidr: 100.64.0.0/24
          routedSubnets:
            - cidr: 100.64.0.0/24

        """;

    private static int Main(string[] args)
    {
        var cycles = 20;
        string[] backends = ["legacy", "nft", "nftables"];
        var agent = Path.Combine(Repo.Root, "src", "NodeAgent", "bin", "Release", "net10.0", "ts-cgnat-agent");
        for (var i = 0; i < args.Length; i++)
        {
            var value = i + 1 < args.Length ? args[i + 1] : null;
            switch (args[i])
            {
                case "--cycles" when int.TryParse(value, CultureInfo.InvariantCulture, out var n) && n > 0: cycles = n; i++; break;
                case "--backends" when value is not null: backends = value.Split(','); i++; break;
                case "--agent" when value is not null: agent = Path.GetFullPath(value); i++; break;
                default: Console.Error.WriteLine(Usage); return 64;
            }
        }

        if (!Environment.IsPrivilegedProcess)
        {
            Console.Error.WriteLine("bench-lifecycle: must run as root (it creates network namespaces and runs the agent in them)");
            return 1;
        }

        if (!File.Exists(agent))
        {
            Console.Error.WriteLine($"bench-lifecycle: no agent at {agent}; build it with `dotnet build src/NodeAgent -c Release` or pass --agent");
            return 1;
        }

        Console.WriteLine($"bench-lifecycle  {DateTimeOffset.UtcNow:yyyy-MM-dd HH:mm:ss} UTC  {Environment.ProcessorCount} cores  agent {agent}");
        Console.WriteLine($"  {cycles} cycles of {string.Join(", ", TailscaleLifecycle.Steps.Select(s => s.Name))} per runner (tailscaled in mode on); "
            + $"each step must give u2 -> u3 back within {TailscaleLifecycle.BackWithin.TotalSeconds} s of tailscaled's last command");
        Console.WriteLine($"  load average at start: {LoadAverage()}");
        var failures = 0;
        foreach (var backend in backends)
        {
            try
            {
                failures += Soak(backend, cycles, agent);
            }
            catch (Exception e) when (e is InvalidOperationException or TimeoutException)
            {
                Console.WriteLine($"{backend}: FAILED: {e.Message}");
                failures++;
            }

            Console.WriteLine($"  load average after {backend}: {LoadAverage()}");
        }

        Console.WriteLine(failures == 0 ? "every step of every cycle came back within the bound" : $"{failures} failure(s)");
        return failures == 0 ? 0 : 1;
    }

    /// <summary>One runner: the agent through <paramref name="cycles"/> cycles; returns the number of failed checks.</summary>
    private static int Soak(string backend, int cycles, string agentProgram)
    {
        var dir = Directory.CreateTempSubdirectory("tscgnat-bench-lifecycle-");
        try
        {
            using var lab = new Lab();
            using var tailscaled = new TailscaledEmulator(lab.Ns("u2"), backend);
            tailscaled.Run("start", "on");
            if (lab.Reaches("u2", Lab.U3))
            {
                throw new InvalidOperationException("u2 reaches u3 before the agent runs: the emulated drop is missing");
            }

            var policy = Path.Combine(dir.FullName, "seed.yaml");
            File.WriteAllText(policy, SeedPolicy);
            using var agent = new AgentProcess(agentProgram,
            [
                "run", "--policy-file", policy, "--netns", lab.Ns("u2"), "--state-dir", Path.Combine(dir.FullName, "state"),
                "--tailscale-socket", Path.Combine(dir.FullName, "no-tailscaled.sock"), "--resync-interval", "300", "--legacy-poll-interval", "0.25",
            ]);
            agent.WaitFor(() => lab.Reaches("u2", Lab.U3), "u2 -> u3 once the agent runs");

            var failures = 0;
            var steps = new List<TimedStep>();
            var backAfter = new List<double>();
            var clock = Stopwatch.StartNew();
            using var pinger = new Pinger(lab.Ns("u2"), Lab.U3);
            for (var cycle = 1; cycle <= cycles; cycle++)
            {
                foreach (var (step, commands) in TailscaleLifecycle.Steps)
                {
                    var start = DateTimeOffset.UtcNow;
                    foreach (var command in commands)
                    {
                        tailscaled.Run(command);
                    }

                    var done = Stopwatch.StartNew();
                    if (!TailscaleLifecycle.Probe(lab.Ns("u2"), Lab.U3, TailscaleLifecycle.BackWithin))
                    {
                        failures++;
                        Console.WriteLine($"{backend} cycle {cycle} {step}: FAILED: u3 did not answer within {TailscaleLifecycle.BackWithin.TotalSeconds} s; agent's last lines:\n{agent.Tail}");
                        agent.WaitFor(() => lab.Reaches("u2", Lab.U3), $"cycle {cycle} {step}: u2 -> u3 at all");
                    }

                    backAfter.Add(done.Elapsed.TotalMilliseconds);
                    steps.Add(new TimedStep($"{cycle} {step}", start, DateTimeOffset.UtcNow));
                }

                if (!lab.Reaches("u4", Lab.U3))
                {
                    failures++;
                    Console.WriteLine($"{backend} cycle {cycle}: FAILED: u4 -> u3 through u2");
                }
            }

            var lost = pinger.LostPer(steps);
            Console.WriteLine($"{backend}: echo requests from u2 to u3 (every 10 ms) lost per cycle ({TailscaleLifecycle.Steps.Count} steps each), "
                + $"and ms from tailscaled's last command to u3's first answer:");
            for (var cycle = 0; cycle < cycles; cycle++)
            {
                var row = Enumerable.Range(cycle * TailscaleLifecycle.Steps.Count, TailscaleLifecycle.Steps.Count).ToList();
                Console.WriteLine($"  cycle {cycle + 1,2}: lost {row.Sum(i => lost[i].Lost),4}  ("
                    + string.Join(", ", row.Select(i => $"{TailscaleLifecycle.Steps[i % TailscaleLifecycle.Steps.Count].Name} {lost[i].Lost} lost, back in {backAfter[i]:F0} ms")) + ")");
            }

            Console.WriteLine($"{backend}: {pinger.Replies} replies, {lost.Sum(s => s.Lost)} lost in all, {cycles} cycles in {clock.Elapsed.TotalSeconds:F0} s; "
                + $"repairs the agent logged: {agent.Repairs}");
            if (lab.Reaches("u2", Lab.U3Unlisted))
            {
                failures++;
                Console.WriteLine($"{backend}: FAILED: 100.64.9.9, which no policy allows, is reachable from u2");
            }

            return failures;
        }
        finally
        {
            dir.Delete(recursive: true);
        }
    }

    private static string LoadAverage() => File.ReadAllText("/proc/loadavg").Trim();
}

/// <summary>The real <c>ts-cgnat-agent run</c> as a child process, its last lines kept for a failure message.</summary>
internal sealed class AgentProcess : IDisposable
{
    private static readonly TimeSpan Patience = TimeSpan.FromSeconds(20);
    private readonly Process _process;
    private readonly Queue<string> _tail = new();
    private int _repairs;

    public AgentProcess(string program, IEnumerable<string> arguments)
    {
        var start = new ProcessStartInfo(program) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in arguments)
        {
            start.ArgumentList.Add(arg);
        }

        _process = Process.Start(start) ?? throw new InvalidOperationException($"could not start {program}");
        _process.OutputDataReceived += (_, e) => OnLine(e.Data);
        _process.ErrorDataReceived += (_, e) => OnLine(e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
    }

    public int Repairs => Volatile.Read(ref _repairs);

    public string Tail
    {
        get
        {
            lock (_tail)
            {
                return string.Join('\n', _tail);
            }
        }
    }

    /// <summary>Waits for a condition to a deadline; throws with the agent's last lines when it does not come or the agent died.</summary>
    public void WaitFor(Func<bool> condition, string what)
    {
        var clock = Stopwatch.StartNew();
        while (!condition())
        {
            if (_process.HasExited || clock.Elapsed > Patience)
            {
                throw new TimeoutException($"{what}: not seen within {Patience.TotalSeconds} s (agent {(_process.HasExited ? "exited" : "running")}); agent's last lines:\n{Tail}");
            }

            Thread.Sleep(50);
        }
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            _process.WaitForExit();
        }

        _process.Dispose();
    }

    private void OnLine(string? line)
    {
        if (line is null)
        {
            return;
        }

        if (line.Contains("repaired drift", StringComparison.Ordinal))
        {
            Interlocked.Increment(ref _repairs);
        }

        lock (_tail)
        {
            if (_tail.Count == 40)
            {
                _tail.Dequeue();
            }

            _tail.Enqueue(line);
        }
    }
}
