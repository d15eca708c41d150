using TsCgnat.TestSupport;

namespace TsCgnat.Firewall.Tests;

/// <summary>
/// The emulator against the real code: tests/fixtures/emu-vs-real.sh drives one lifecycle through the emulator and
/// through tailscale's real Linux router v1.90.4 (tsrouterctl, from TSCGNAT_TAILSCALE_ASSETS), each in a fresh
/// namespace, and fails when, after any step, their rulesets, their nf_tables transactions, whether tailscaled
/// still runs or the errors it logs differ. One class per runner, so that a run can pick one by name.
/// </summary>
public abstract class EmulatorMatchesRealRouterCases
{
    /// <summary>Exit status of the fixture when this machine cannot run a case (not root, a tool missing).</summary>
    private const int CannotRun = 77;

    public static TheoryData<string, string> Cases(string runner)
    {
        var data = new TheoryData<string, string>();
        foreach (var line in Sh.Ok(Repo.Fixture("emu-vs-real.sh"), "list").Split('\n', StringSplitOptions.RemoveEmptyEntries))
        {
            var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (fields.Length == 2 && fields[1] == runner)
            {
                data.Add(fields[0], fields[1]);
            }
        }

        return data;
    }

    protected static void Run(string lifecycle, string runner)
    {
        Privileges.RequireNetns();
        var assets = RequireRouterAssets();

        // The fixture names and deletes its namespaces itself; the same names are deleted here too, for a run
        // that was cut short.
        var netns = UniqueName.For("tsemu");
        try
        {
            var run = Sh.Run("env", $"TSCGNAT_TAILSCALE_ASSETS={assets}", Repo.Fixture("emu-vs-real.sh"), "run", lifecycle, runner, netns);
            if (run.ExitCode == CannotRun)
            {
                Assert.False(Privileges.InCi, $"CI=true but the comparison {lifecycle} under {runner} cannot run here:\n{run.StdErr}");
                Skip.If(true, run.StdErr.Trim());
            }

            Assert.True(
                run.ExitCode == 0,
                $"the emulator and the real router differ in {lifecycle} under {runner} (exit {run.ExitCode}):\n{run.StdOut}\n{run.StdErr}");
        }
        finally
        {
            Sh.Run("ip", "netns", "del", netns + "-emu");
            Sh.Run("ip", "netns", "del", netns + "-real");
        }
    }

    /// <summary>
    /// The folder with tsrouterctl (../shared/tailscale beside the clone; .ci/run and scripts/test.sh set the
    /// variable): a failure under CI=true when it is missing, else a skip that says how to get it.
    /// </summary>
    private static string RequireRouterAssets()
    {
        var assets = Environment.GetEnvironmentVariable("TSCGNAT_TAILSCALE_ASSETS");
        if (!string.IsNullOrEmpty(assets) && File.Exists(Path.Combine(assets, "tsrouterctl")))
        {
            return assets;
        }

        var why = string.IsNullOrEmpty(assets)
            ? "TSCGNAT_TAILSCALE_ASSETS is not set"
            : $"TSCGNAT_TAILSCALE_ASSETS={assets} has no tsrouterctl";
        Assert.False(Privileges.InCi, $"CI=true but {why}: .ci/run must point it at ../shared/tailscale");
        Skip.If(true, $"{why} (the folder with the real tailscale router, ../shared/tailscale; scripts/test.sh finds it there)");
        return "";
    }
}

/// <summary>tailscaled's iptables runner over iptables-legacy, emulated and real.</summary>
[Collection("netns")]
public sealed class LegacyEmulatorMatchesRealRouterTests : EmulatorMatchesRealRouterCases
{
    [SkippableTheory]
    [MemberData(nameof(Cases), "legacy")]
    public void The_emulator_writes_what_the_real_router_writes_after_every_step(string lifecycle, string runner) => Run(lifecycle, runner);
}

/// <summary>tailscaled's iptables runner over iptables-nft, emulated and real.</summary>
[Collection("netns")]
public sealed class NftEmulatorMatchesRealRouterTests : EmulatorMatchesRealRouterCases
{
    [SkippableTheory]
    [MemberData(nameof(Cases), "nft")]
    public void The_emulator_writes_what_the_real_router_writes_after_every_step(string lifecycle, string runner) => Run(lifecycle, runner);
}

/// <summary>tailscaled's native nftables runner, emulated and real.</summary>
[Collection("netns")]
public sealed class NftablesEmulatorMatchesRealRouterTests : EmulatorMatchesRealRouterCases
{
    [SkippableTheory]
    [MemberData(nameof(Cases), "nftables")]
    public void The_emulator_writes_what_the_real_router_writes_after_every_step(string lifecycle, string runner) => Run(lifecycle, runner);
}

/// <summary>The comparison's list itself.</summary>
public class EmulatorMatchesRealRouterListTests
{
    [Fact]
    public void Every_runner_is_compared_through_every_lifecycle_step_and_with_a_foreign_reference()
    {
        var listed = Sh.Ok(Repo.Fixture("emu-vs-real.sh"), "list")
            .Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .ToHashSet();

        foreach (var runner in new[] { "legacy", "nft", "nftables" })
        {
            foreach (var lifecycle in new[] { "lifecycle-on", "lifecycle-nodivert", "indirect-reference-nodivert", "indirect-reference-on", "port-learned-late" })
            {
                Assert.Contains($"{lifecycle} {runner}", listed);
            }
        }
    }
}
