using TsCgnat.TestSupport;

namespace TsCgnat.Firewall.Tests;

/// <summary>
/// The emulator every lab test relies on, checked against the facts (tailscale-netfilter.md section 1.5 and 1.6
/// listings, lifecycle section 2, the variants) by its own self-test: one named case per lifecycle step, under
/// each back end it applies to (legacy and nft = tailscaled's iptables runner, nftables = its native runner).
/// </summary>
[Collection("netns")]
public class TailscaledEmulatorTests
{
    /// <summary>Exit status of the self-test when this machine cannot run a case (not root, a tool missing).</summary>
    private const int CannotRun = 77;

    public static TheoryData<string, string> Cases()
    {
        var data = new TheoryData<string, string>();
        foreach (var (step, backend) in ListedCases())
        {
            data.Add(step, backend);
        }

        return data;
    }

    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void Emulated_tailscaled_matches_the_facts(string step, string backend)
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
    public void The_self_test_refuses_a_case_under_a_back_end_it_does_not_apply_to()
    {
        var run = Sh.Run(Repo.Fixture("tailscaled-emu.test.sh"), "run", "restart-nodivert-with-indirect-reference", "nftables");

        Assert.Equal(2, run.ExitCode);
        Assert.Contains("does not run under nftables", run.StdErr, StringComparison.Ordinal);
    }

    /// <summary>The self-test's own list: one "CASE BACKEND" pair per line.</summary>
    private static IEnumerable<(string Step, string Backend)> ListedCases()
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
