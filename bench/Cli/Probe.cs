using System.Globalization;
using System.Text;

namespace TsCgnat.Bench.Cli;

/// <summary>
/// One measurement row, run inside a fresh namespace (the parent starts it there with <c>ip netns exec</c>), so the
/// agent and the floor are plain process launches, as on a node where the agent shares the host's namespace.
/// In this order: <c>version</c>, the first <c>apply</c>, the no-op <c>apply</c>s, then the floor (after the agent, so
/// the agent's reads never see the floor's set). Prints one line of <c>key=value</c> for the parent.
/// </summary>
internal static class Probe
{
    public const string Flag = "--probe";

    /// <summary><c>--probe AGENT POLICY_DIR STATE_DIR N REPEAT BACKEND</c></summary>
    public static int Run(string[] args)
    {
        if (args is not [_, var agent, var policies, var state, var nText, var repeatText, var backend]
            || !int.TryParse(nText, CultureInfo.InvariantCulture, out var n)
            || !int.TryParse(repeatText, CultureInfo.InvariantCulture, out var repeat) || repeat < 1
            || backend is not ("legacy" or "nft"))
        {
            Console.Error.WriteLine("usage: bench-cli --probe AGENT POLICY_DIR STATE_DIR N REPEAT legacy|nft (run inside a prepared namespace)");
            return 64;
        }

        var version = new List<Finished>();
        for (var i = 0; i < repeat; i++)
        {
            version.Add(Expect(Spawn.Run(agent, ["version"]), "ts-cgnat-agent ", "version"));
        }

        string[] apply = ["apply", "--policy-file", policies, "--state-dir", state, "--backend", backend];
        var first = Expect(Spawn.Run(agent, apply), "applied: ", "first apply");
        var noops = new List<Finished>();
        for (var i = 0; i < repeat; i++)
        {
            noops.Add(Expect(Spawn.Run(agent, apply), "in sync: nothing written", "no-op apply"));
        }

        // Peak RSS through GNU time, separately from the timed runs above: ru_maxrss of a child spawned by this (large)
        // process starts at this process's own peak (the kernel carries the old address space's high-water mark across
        // exec, and posix_spawn's child shares this address space until it execs), so wait4's figure would be ours.
        // time is small, and the agent it forks starts from time's mark.
        var versionRss = Enumerable.Range(0, repeat).Select(_ => Spawn.PeakRssMb(agent, ["version"], "ts-cgnat-agent ")).ToList();
        var noopRss = Spawn.PeakRssMb(agent, apply, "in sync: nothing written");
        var floor = Floor(n, backend);
        var line = new StringBuilder();
        line.Append(CultureInfo.InvariantCulture, $"version_ms={Stats.Median(version.Select(v => v.WallMs)):F2} ");
        line.Append(CultureInfo.InvariantCulture, $"version_rss_mb={Stats.Median(versionRss):F2} ");
        line.Append(CultureInfo.InvariantCulture, $"version_cpu_ms={Stats.Median(version.Select(v => v.CpuMs)):F2} apply_cpu_ms={first.CpuMs:F2} ");
        line.Append(CultureInfo.InvariantCulture, $"noop_cpu_ms={Stats.Median(noops.Select(v => v.CpuMs)):F2} ");
        line.Append(CultureInfo.InvariantCulture, $"apply_ms={first.WallMs:F2} ");
        line.Append(CultureInfo.InvariantCulture, $"noop_ms={Stats.Median(noops.Select(v => v.WallMs)):F2} noop_rss_mb={noopRss:F2} ");
        line.Append(CultureInfo.InvariantCulture, $"floor_ms={floor.WallMs:F2} floor_cpu_ms={floor.CpuMs:F2}");
        Console.WriteLine(line.ToString());
        return 0;
    }

    /// <summary>
    /// The floor of the issue: one <c>ipset restore</c> of the N members, then one <c>iptables-restore --noflush</c> of the
    /// rule that matches the set; the two processes one after the other, as the agent's writes are.
    /// </summary>
    private static (double WallMs, double CpuMs) Floor(int n, string backend)
    {
        var members = Path.GetTempFileName();
        var rule = Path.GetTempFileName();
        try
        {
            var text = new StringBuilder("create TSCBFLOOR hash:net family inet\n");
            foreach (var cidr in Policies.Cidrs(n))
            {
                text.Append("add TSCBFLOOR ").Append(cidr).Append('\n');
            }

            File.WriteAllText(members, text.ToString());
            File.WriteAllText(rule, "*filter\n-A INPUT ! -i tailscale0 -m set --match-set TSCBFLOOR src -j ACCEPT\nCOMMIT\n");
            var ipset = Expect(Spawn.Run("ipset", ["restore"], members), "", "floor ipset restore");
            var restore = Expect(Spawn.Run($"iptables-{backend}-restore", ["--noflush"], rule), "", "floor iptables-restore");
            return (ipset.WallMs + restore.WallMs, ipset.CpuMs + restore.CpuMs);
        }
        finally
        {
            File.Delete(members);
            File.Delete(rule);
        }
    }

    private static Finished Expect(Finished run, string output, string what) =>
        run.Succeeded && run.StdOut.Contains(output, StringComparison.Ordinal)
            ? run
            : throw new BenchException($"{what} exited {run.ExitCode} without '{output}': {run.StdOut.Trim()} {run.StdErr.Trim()}");
}
