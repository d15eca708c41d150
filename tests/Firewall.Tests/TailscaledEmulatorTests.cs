using TsCgnat.TestSupport;

namespace TsCgnat.Firewall.Tests;

/// <summary>
/// The emulator every lab test relies on, checked against the facts (docs/tailscale.md section 1.5 and 1.6
/// listings, lifecycle section 2, the variants) by its own self-test: one named case per lifecycle step, under
/// each back end it applies to (legacy and nft = tailscaled's iptables runner, nftables = its native runner).
/// One class per back end, so that a run can pick one by name; all stay in the serial "netns" collection (side by
/// side on two cores they were not faster: the emulator is bound by process starts on the CPU).
/// </summary>
public abstract class TailscaledEmulatorCases
{
    /// <summary>Exit status of the self-test when this machine cannot run a case (not root, a tool missing).</summary>
    private const int CannotRun = 77;

    /// <summary>The self-test's cases under one back end.</summary>
    public static TheoryData<string, string> Cases(string backend)
    {
        var data = new TheoryData<string, string>();
        foreach (var (step, listedBackend) in TailscaledEmulatorTests.ListedCases().Where(c => c.Backend == backend))
        {
            data.Add(step, listedBackend);
        }

        return data;
    }

    protected static void Run(string step, string backend)
    {
        Privileges.RequireNetns();

        var run = Sh.Run(Repo.Fixture("tailscaled-emu.test.sh"), "run", step, backend);

        if (run.ExitCode == CannotRun)
        {
            Assert.False(Privileges.InCi, $"CI=true but emulator case {step} under {backend} cannot run here:\n{run.StdErr}");
            Skip.If(true, run.StdErr.Trim());
        }

        Assert.True(run.ExitCode == 0, $"emulator case {step} under {backend} exited {run.ExitCode}:\n{run.StdOut}\n{run.StdErr}");
    }
}

/// <summary>The self-test's cases under iptables-legacy (tailscaled's iptables runner).</summary>
[Collection("netns")]
public sealed class LegacyEmulatorTests : TailscaledEmulatorCases
{
    [SkippableTheory]
    [MemberData(nameof(Cases), "legacy")]
    public void Emulated_tailscaled_matches_the_facts(string step, string backend) => Run(step, backend);
}

/// <summary>The self-test's cases under iptables-nft (tailscaled's iptables runner).</summary>
[Collection("netns")]
public sealed class NftEmulatorTests : TailscaledEmulatorCases
{
    [SkippableTheory]
    [MemberData(nameof(Cases), "nft")]
    public void Emulated_tailscaled_matches_the_facts(string step, string backend) => Run(step, backend);
}

/// <summary>The self-test's cases under tailscaled's native nftables runner.</summary>
[Collection("netns")]
public sealed class NftablesEmulatorTests : TailscaledEmulatorCases
{
    [SkippableTheory]
    [MemberData(nameof(Cases), "nftables")]
    public void Emulated_tailscaled_matches_the_facts(string step, string backend) => Run(step, backend);
}

/// <summary>The self-test's list itself.</summary>
public class TailscaledEmulatorTests
{
    [Fact]
    public void The_self_test_lists_the_lifecycle_cases_for_every_runner()
    {
        var listed = ListedCases().ToHashSet();

        Assert.Superset(
            new HashSet<(string, string)>
            {
                ("start-on", "legacy"), ("start-on", "nft"), ("start-on", "nftables"),
                ("start-nodivert", "nftables"), ("down-up", "nftables"), ("stop", "nftables"), ("crash", "nftables"),
                ("set-mode-on-nodivert-on", "nftables"), ("set-port", "nftables"), ("stateful", "nftables"),
                ("restart-nodivert-with-indirect-reference", "legacy"),
                ("stop-with-referenced-ts-input-start-fails", "nftables"),
                ("crash-with-referenced-ts-input-start-fails", "nftables"),
                ("v1.96-start-on", "legacy"), ("v1.96-start-on", "nftables"),
            },
            listed);
    }

    [Fact]
    public void Every_listed_case_runs_under_one_of_the_three_back_ends_so_the_split_by_back_end_drops_none()
    {
        var outside = ListedCases().Where(c => c.Backend is not ("legacy" or "nft" or "nftables")).ToList();

        Assert.Empty(outside);
    }

    [Fact]
    public void The_self_test_refuses_a_case_under_a_back_end_it_does_not_apply_to()
    {
        var run = Sh.Run(Repo.Fixture("tailscaled-emu.test.sh"), "run", "restart-nodivert-with-indirect-reference", "nftables");

        Assert.Equal(2, run.ExitCode);
        Assert.Contains("does not run under nftables", run.StdErr, StringComparison.Ordinal);
    }

    /// <summary>The self-test's own list: one "CASE BACKEND" pair per line.</summary>
    internal static IEnumerable<(string Step, string Backend)> ListedCases()
    {
        var list = Sh.Ok(Repo.Fixture("tailscaled-emu.test.sh"), "list");
        foreach (var line in list.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var fields = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            Assert.True(fields.Length == 2, $"unexpected line in the case list: '{line}'");
            yield return (fields[0], fields[1]);
        }
    }
}
