using TsCgnat.Firewall.Detection;
using TsCgnat.Firewall.Model;
using TsCgnat.Firewall.Processes;

namespace TsCgnat.Firewall.Tests;

/// <summary>How writes behave when the tools fail; a scripted runner stands in for the processes.</summary>
public class WriteRetryTests
{
    private static FirewallPlan PlanWithOneRestore() => new(
        new BackendChoice(IptablesBackend.Legacy, "test"),
        new Dictionary<IpFamily, TailscaleChains>(),
        false,
        null,
        null,
        [new RestoreStep(IptablesBackend.Legacy, IpFamily.V4, "*filter\n:TSCGNAT-INPUT - [0:0]\nCOMMIT\n")],
        null,
        []);

    [Fact]
    public async Task A_busy_xtables_lock_is_retried_and_then_succeeds()
    {
        var runner = new ScriptedRunner(
            new CommandOutput(4, "", "Another app is currently holding the xtables lock. Stopped waiting after 5s."),
            new CommandOutput(0, "", ""));

        await new HostFirewall(runner).WriteAsync(PlanWithOneRestore(), CancellationToken.None);

        Assert.Equal(2, runner.Calls.Count);
        Assert.All(runner.Calls, c => Assert.Equal("iptables-legacy-restore --noflush -w 5", c));
    }

    [Fact]
    public async Task A_lock_that_stays_busy_fails_after_three_attempts_with_the_tools_words()
    {
        var busy = new CommandOutput(4, "", "Another app is currently holding the xtables lock.");
        var runner = new ScriptedRunner(busy, busy, busy, busy);

        var error = await Assert.ThrowsAsync<FirewallToolException>(() => new HostFirewall(runner).WriteAsync(PlanWithOneRestore(), CancellationToken.None));

        Assert.Equal(3, runner.Calls.Count);
        Assert.Contains("iptables-legacy-restore failed (4): Another app is currently holding the xtables lock.", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Any_other_failure_is_not_retried()
    {
        var runner = new ScriptedRunner(new CommandOutput(2, "", "iptables-restore v1.8.9 (legacy): Couldn't load target `ts-input'"));

        var error = await Assert.ThrowsAsync<FirewallToolException>(() => new HostFirewall(runner).WriteAsync(PlanWithOneRestore(), CancellationToken.None));

        Assert.Single(runner.Calls);
        Assert.Contains("Couldn't load target", error.Message, StringComparison.Ordinal);
    }

    /// <summary>Answers each call with the next scripted output and records what was run.</summary>
    private sealed class ScriptedRunner(params CommandOutput[] outputs) : ICommandRunner
    {
        private int _next;

        public List<string> Calls { get; } = [];

        public Task<CommandOutput> RunAsync(string program, IReadOnlyList<string> arguments, string? standardInput, CancellationToken cancellationToken)
        {
            Calls.Add($"{program} {string.Join(' ', arguments)}");
            return Task.FromResult(outputs[_next++]);
        }
    }
}
