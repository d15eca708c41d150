using System.Diagnostics;
using System.Globalization;
using TsCgnat.Api;
using TsCgnat.Firewall.Model;
using TsCgnat.Firewall.Rules;
using TsCgnat.TestSupport;

namespace TsCgnat.Bench.Cli;

/// <summary>One row of the process table: medians over the fresh namespaces of one back end and size.</summary>
internal sealed record Row(string Backend, int N, double VersionMs, double VersionRssMb, double ApplyMs, double FloorMs, double Ratio, double NoopMs, double NoopRssMb)
{
    /// <summary>CPU (user + system) of version, the first apply and a no-op apply: the same work, less sensitive to the machine's load than wall time.</summary>
    public (double Version, double Apply, double Noop) CpuMs { get; init; }

    /// <summary>The ratio on CPU instead of wall: (apply CPU - version CPU) / floor CPU, the apply's children and the floor's processes included.</summary>
    public double CpuRatio { get; init; }
}

/// <summary>The idle agent: the largest VmRSS and RssAnon sampled, and the CPU it used while sampled.</summary>
internal sealed record Idle(string Label, double RssMb, double AnonMb, double FileMb, long CpuTicks);

internal sealed class CliBench(Options options) : IDisposable
{
    private readonly DirectoryInfo _work = Directory.CreateTempSubdirectory("bench-cli-");
    private readonly List<string> _namespaces = [];

    public void Run(TextWriter output)
    {
        var started = DateTimeOffset.Now;
        var agent = new FileInfo(options.Agent);
        output.WriteLine($"bench-cli  {started:yyyy-MM-dd HH:mm:ss zzz}  {Environment.ProcessorCount} cores  kernel {Environment.OSVersion.Version}");
        output.WriteLine($"  agent {agent.FullName} ({agent.Length / 1048576.0:F1} MB, built {agent.LastWriteTime:yyyy-MM-dd HH:mm})");
        output.WriteLine($"  load average at start: {LoadAverage()}");
        output.WriteLine();

        Stages(output);
        var rows = Rows(output);
        var idle = IdleRuns(output);

        output.WriteLine();
        Verdicts(rows, idle, output);
        output.WriteLine();
        output.WriteLine($"finished in {(DateTimeOffset.Now - started).TotalSeconds:F0} s; load average at end: {LoadAverage()}");
        var left = Sh.Run("ip", "netns", "list").StdOut.Split('\n').Select(l => l.Split(' ')[0]).Intersect(_namespaces).ToList();
        if (left.Count > 0)
        {
            throw new BenchException($"namespaces left behind: {string.Join(", ", left)}");
        }

        output.WriteLine($"namespaces: {_namespaces.Count} created, all deleted (ip netns list shows none of them)");
    }

    /// <summary>
    /// The in-process stages of reading policies, through the public API the agent uses: the YAML reader and validator
    /// (<see cref="PolicyDocuments.Parse"/>), then the desired state (<see cref="Exemptions.From"/> and the sets). This
    /// process is JIT-compiled: 5 warm-up runs first, so the code measured is the JIT's optimised tier, not its first
    /// one (one warm-up run measured mostly tier-0 code: 60 ms where the NativeAOT build of bench/PolicyRead takes 16).
    /// </summary>
    private void Stages(TextWriter output)
    {
        const int Warmup = 5;
        output.WriteLine($"policy reading in-process (public API, JIT after {Warmup} warm-up runs), medians of {Math.Max(options.Repeat, 5)}; 10 policy documents per row");
        output.WriteLine("N       parse+validate_ms  desired_state_ms  total_ms");
        foreach (var n in options.Sizes)
        {
            var texts = Enumerable.Range(0, Math.Min(Policies.Count, n)).Select(i => Policies.Yaml(n, i)).ToList();
            var parse = new List<double>();
            var desired = new List<double>();
            for (var run = -Warmup; run < Math.Max(options.Repeat, 5); run++)
            {
                var clock = Stopwatch.StartNew();
                var policies = new List<ValidatedPolicy>();
                foreach (var text in texts)
                {
                    var (parsed, problems) = PolicyDocuments.Parse(text, "bench.yaml");
                    if (problems.Count > 0)
                    {
                        throw new BenchException($"the bench's own policy is invalid: {problems[0]}");
                    }

                    policies.AddRange(parsed.Select(p => p.Valid));
                }

                var parseMs = clock.Elapsed.TotalMilliseconds;
                clock.Restart();
                var sets = IndirectLayout.Sets(Exemptions.From(policies));
                var desiredMs = clock.Elapsed.TotalMilliseconds;
                if (sets.Sum(s => s.Members.Count) != n)
                {
                    throw new BenchException($"the desired sets hold {sets.Sum(s => s.Members.Count)} members, expected {n}");
                }

                if (run >= 0)
                {
                    parse.Add(parseMs);
                    desired.Add(desiredMs);
                }
            }

            output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{n,-7} {Stats.Median(parse),17:F2}  {Stats.Median(desired),16:F2}  {Stats.Median(parse) + Stats.Median(desired),8:F2}"));
            _stageTotals[n] = Stats.Median(parse) + Stats.Median(desired);
        }

        output.WriteLine();
    }

    private readonly Dictionary<int, double> _stageTotals = [];

    private List<Row> Rows(TextWriter output)
    {
        var self = Environment.ProcessPath!;
        string[] prefix = Path.GetFileNameWithoutExtension(self) == "dotnet" ? [self, typeof(Probe).Assembly.Location] : [self];
        output.WriteLine($"whole processes, each row in {options.Repeat} fresh namespaces (medians); in each: {options.Repeat} version, the first apply, {options.Repeat} no-op applies, the floor");
        output.WriteLine("  ratio = (apply wall - version wall) / floor, per namespace; floor = ipset restore of the N members + iptables-restore --noflush of the rule matching the set");
        output.WriteLine("  cpu = user + system CPU of the agent and the processes it started (wait4), version/apply/no-op: what the load average changes least;");
        output.WriteLine("  cpu_ratio = the same ratio on CPU: (apply cpu - version cpu) / (cpu of the floor's two processes)");
        output.WriteLine("backend  N       version_ms  version_MB  apply_ms  floor_ms  ratio  noop_ms  noop_MB  cpu_ms(version/apply/noop)  cpu_ratio  load");
        var rows = new List<Row>();
        foreach (var backend in options.Backends)
        {
            foreach (var n in options.Sizes)
            {
                var policies = Path.Combine(_work.FullName, $"policies-{n}");
                if (!Directory.Exists(policies))
                {
                    Policies.Write(policies, n);
                }

                var results = new List<Dictionary<string, double>>();
                for (var run = 0; run < options.Repeat; run++)
                {
                    var ns = FreshNamespace(backend);
                    try
                    {
                        var state = Directory.CreateTempSubdirectory("bench-cli-state-").FullName;
                        var probe = Sh.Run("ip", ["netns", "exec", ns, .. prefix, Probe.Flag, options.Agent, policies, state,
                            n.ToString(CultureInfo.InvariantCulture), options.Repeat.ToString(CultureInfo.InvariantCulture), backend]);
                        Directory.Delete(state, recursive: true);
                        if (!probe.Succeeded)
                        {
                            throw new BenchException($"probe in {ns} ({backend}, N={n}) failed ({probe.ExitCode}): {probe.StdErr.Trim()}");
                        }

                        var values = probe.StdOut.Trim().Split(' ').Select(kv => kv.Split('=', 2))
                            .ToDictionary(kv => kv[0], kv => double.Parse(kv[1], CultureInfo.InvariantCulture));
                        values["ratio"] = (values["apply_ms"] - values["version_ms"]) / values["floor_ms"];
                        values["cpu_ratio"] = (values["apply_cpu_ms"] - values["version_cpu_ms"]) / values["floor_cpu_ms"];
                        results.Add(values);
                    }
                    finally
                    {
                        DeleteNamespace(ns);
                    }
                }

                double M(string key) => Stats.Median(results.Select(r => r[key]));
                var row = new Row(backend, n, M("version_ms"), M("version_rss_mb"), M("apply_ms"), M("floor_ms"), M("ratio"), M("noop_ms"), M("noop_rss_mb"))
                {
                    CpuMs = (M("version_cpu_ms"), M("apply_cpu_ms"), M("noop_cpu_ms")),
                    CpuRatio = M("cpu_ratio"),
                };
                rows.Add(row);
                output.WriteLine(string.Create(
                    CultureInfo.InvariantCulture,
                    $"{backend,-8} {n,-6} {row.VersionMs,10:F1}  {row.VersionRssMb,10:F1}  {row.ApplyMs,8:F1}  {row.FloorMs,8:F1}  {row.Ratio,5:F2}  {row.NoopMs,7:F1}  {row.NoopRssMb,7:F1}  {$"{row.CpuMs.Version:F1}/{row.CpuMs.Apply:F1}/{row.CpuMs.Noop:F1}",26}  {row.CpuRatio,9:F2}  {LoadAverage().Split(' ')[0]}"));
            }
        }

        return rows;
    }

    /// <summary><c>run</c> in host mode, idle, with --metrics-port off and on (scraped before sampling).</summary>
    private List<Idle> IdleRuns(TextWriter output)
    {
        var n = options.Sizes.Min();
        output.WriteLine();
        output.WriteLine($"idle run, host mode (iptables-nft, N={n}), after the first reconcile and 5 s; largest of {options.IdleSeconds} samples 1 s apart");
        output.WriteLine("metrics        VmRSS_MB  RssAnon_MB  RssFile_MB  cpu_ticks  load");
        var policies = Path.Combine(_work.FullName, $"policies-{n}");
        var results = new List<Idle>();
        foreach (var port in new[] { 0, 9479 })
        {
            var ns = FreshNamespace("nft");
            var state = Directory.CreateTempSubdirectory("bench-cli-state-").FullName;
            Process? agent = null;
            try
            {
                var info = new ProcessStartInfo("ip") { RedirectStandardOutput = true, RedirectStandardError = true };
                foreach (var arg in new[] { "netns", "exec", ns, options.Agent, "run", "--policy-file", policies, "--state-dir", state,
                    "--tailscale-socket", Path.Combine(state, "no-tailscaled.sock"), "--metrics-port", port.ToString(CultureInfo.InvariantCulture) })
                {
                    info.ArgumentList.Add(arg);
                }

                agent = Process.Start(info)!; // ip netns exec execs the agent: this pid is the agent's
                agent.OutputDataReceived += (_, _) => { };
                agent.ErrorDataReceived += (_, _) => { };
                agent.BeginOutputReadLine();
                agent.BeginErrorReadLine();
                var deadline = DateTime.UtcNow.AddSeconds(60);
                while (!Sh.Run("ip", "netns", "exec", ns, "ipset", "list", "-n").StdOut.Contains("TSCGNAT-SRC4", StringComparison.Ordinal))
                {
                    if (agent.HasExited || DateTime.UtcNow > deadline)
                    {
                        throw new BenchException($"the idle agent (metrics port {port}) did not apply its set within 60 s (exited: {agent.HasExited})");
                    }

                    Thread.Sleep(100);
                }

                Thread.Sleep(5000);
                if (port != 0)
                {
                    // A scraped agent, as under Prometheus: the listener's request path has run before memory is sampled.
                    for (var i = 0; i < 3; i++)
                    {
                        var scrape = Sh.Run("ip", "netns", "exec", ns, "bash", "-c",
                            $"exec 3<>/dev/tcp/127.0.0.1/{port}; printf 'GET /metrics HTTP/1.0\\r\\n\\r\\n' >&3; cat <&3");
                        if (!scrape.StdOut.Contains("200 OK", StringComparison.Ordinal))
                        {
                            throw new BenchException($"scraping /metrics on port {port} failed: {scrape.StdOut} {scrape.StdErr}");
                        }
                    }

                    Thread.Sleep(1000);
                }

                var before = CpuTicks(agent.Id);
                var (rss, anon, file) = (0.0, 0.0, 0.0);
                for (var i = 0; i < options.IdleSeconds; i++)
                {
                    Thread.Sleep(1000);
                    var status = Status(agent.Id);
                    if (status["VmRSS"] > rss)
                    {
                        (rss, anon, file) = (status["VmRSS"], status["RssAnon"], status["RssFile"]);
                    }
                }

                var idle = new Idle(port == 0 ? "off" : $"on ({port})", rss / 1024, anon / 1024, file / 1024, CpuTicks(agent.Id) - before);
                results.Add(idle);
                output.WriteLine(string.Create(
                    CultureInfo.InvariantCulture,
                    $"{idle.Label,-13} {idle.RssMb,9:F1}  {idle.AnonMb,10:F1}  {idle.FileMb,10:F1}  {idle.CpuTicks,9}  {LoadAverage().Split(' ')[0]}"));
            }
            finally
            {
                if (agent is not null)
                {
                    if (!agent.HasExited)
                    {
                        Sh.Run("kill", "-TERM", agent.Id.ToString(CultureInfo.InvariantCulture));
                        if (!agent.WaitForExit(TimeSpan.FromSeconds(30)))
                        {
                            agent.Kill();
                        }
                    }

                    agent.Dispose();
                }

                Directory.Delete(state, recursive: true);
                DeleteNamespace(ns);
            }
        }

        return results;
    }

    private void Verdicts(List<Row> rows, List<Idle> idle, TextWriter output)
    {
        static string Verdict(bool pass) => pass ? "PASS" : "MISS";
        output.WriteLine("targets (issue 11's table, design section 10):");
        foreach (var backend in options.Backends)
        {
            var mine = rows.Where(r => r.Backend == backend).ToList();
            var version = Stats.Median(mine.Select(r => r.VersionMs));
            var versionMb = Stats.Median(mine.Select(r => r.VersionRssMb));
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  {backend,-7} version wall <= 15 ms / peak RSS <= 15 MB:  {version:F1} ms / {versionMb:F1} MB  {Verdict(version <= 15 && versionMb <= 15)}"));
            Line(mine, 10000, r => r.Ratio, "first apply N=10000, (wall - version wall) / floor <= 1.5", "", v => v <= 1.5, backend, output);
            Line(mine, 10000, r => r.NoopMs, "no-op apply N=10000 wall <= 100 ms", " ms", v => v <= 100, backend, output);
            Line(mine, 1000, r => r.NoopMs, "no-op apply N=1000 wall <= 50 ms", " ms", v => v <= 50, backend, output);
        }

        foreach (var run in idle)
        {
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  idle run, metrics {run.Label}: VmRSS <= 40 MB (RssAnon <= 15 MB):  {run.RssMb:F1} MB ({run.AnonMb:F1} MB)  {Verdict(run.RssMb <= 40 && run.AnonMb <= 15)}"));
        }

        if (_stageTotals.TryGetValue(10000, out var stages))
        {
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  policy reading N=10000 in-process (YAML, validation, desired state) <= 20 ms:  {stages:F1} ms  {Verdict(stages <= 20)}"));
        }
    }

    private static void Line(List<Row> rows, int n, Func<Row, double> value, string what, string unit, Func<double, bool> pass, string backend, TextWriter output)
    {
        var row = rows.FirstOrDefault(r => r.N == n);
        output.WriteLine(row is null
            ? $"  {backend,-7} {what}:  not measured (N={n} not in --sizes)"
            : string.Create(CultureInfo.InvariantCulture, $"  {backend,-7} {what}:  {value(row):F2}{unit}  {(pass(value(row)) ? "PASS" : "MISS")}"));
    }

    private string FreshNamespace(string backend)
    {
        var ns = UniqueName.For("tscc");
        _namespaces.Add(ns);
        Sh.Ok("ip", "netns", "add", ns);
        try
        {
            Sh.Ok("ip", "netns", "exec", ns, "ip", "link", "set", "lo", "up");
            var chains = Sh.RunWithInput("ip", ["netns", "exec", ns, $"iptables-{backend}-restore", "--noflush"], TailscaledRules.NodivertChains);
            if (!chains.Succeeded)
            {
                throw new BenchException($"creating the ts-* chains with iptables-{backend}-restore in {ns} failed: {chains.StdErr.Trim()}");
            }

            return ns;
        }
        catch
        {
            DeleteNamespace(ns);
            throw;
        }
    }

    private static void DeleteNamespace(string ns) => Sh.Run("ip", "netns", "del", ns);

    private static Dictionary<string, double> Status(int pid) =>
        File.ReadAllLines($"/proc/{pid}/status")
            .Select(l => l.Split(':', 2))
            .Where(kv => kv.Length == 2 && kv[0] is "VmRSS" or "RssAnon" or "RssFile")
            .ToDictionary(kv => kv[0], kv => double.Parse(kv[1].Trim().Split(' ')[0], CultureInfo.InvariantCulture));

    private static long CpuTicks(int pid)
    {
        var stat = File.ReadAllText($"/proc/{pid}/stat");
        var fields = stat[(stat.LastIndexOf(')') + 2)..].Split(' ');
        return long.Parse(fields[11], CultureInfo.InvariantCulture) + long.Parse(fields[12], CultureInfo.InvariantCulture);
    }

    public static string LoadAverage() => File.ReadAllText("/proc/loadavg").Trim();

    public void Dispose() => _work.Delete(recursive: true);
}
