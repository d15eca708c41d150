using TsCgnat.TestSupport;

namespace TsCgnat.Firewall.Tests;

/// <summary>
/// The emulator every lab test relies on, checked against the facts (tailscale-netfilter.md section
/// 1.5 listings, lifecycle section 2) by its own self-test, one named case per lifecycle step.
/// </summary>
[Collection("netns")]
public class TailscaledEmulatorTests
{
    public static TheoryData<string, string> Cases()
    {
        var data = new TheoryData<string, string>();
        var list = Sh.Run(Repo.Fixture("tailscaled-emu.test.sh"), "list");
        foreach (var name in list.StdOut.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            data.Add(name, "legacy");
            data.Add(name, "nft");
        }

        return data;
    }

    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void Emulated_tailscaled_matches_the_facts(string step, string backend)
    {
        Privileges.RequireNetns();

        var run = Sh.Run(Repo.Fixture("tailscaled-emu.test.sh"), "run", step, backend);

        Assert.True(run.ExitCode == 0, $"emulator case {step} under {backend} exited {run.ExitCode}:\n{run.StdOut}\n{run.StdErr}");
    }

    [Fact]
    public void The_self_test_lists_the_lifecycle_cases()
    {
        var names = Cases().Select(row => (string)row[0]).ToHashSet();

        Assert.Superset(new HashSet<string> { "start-on", "start-nodivert", "down-up", "stop", "crash", "restart-nodivert-with-indirect-reference", "set-mode-on-nodivert-on" }, names);
    }
}
