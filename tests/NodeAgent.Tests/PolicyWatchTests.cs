using Microsoft.Extensions.Logging.Abstractions;
using TsCgnat.NodeAgent.HostMode;
using TsCgnat.NodeAgent.Reconciling;

namespace TsCgnat.NodeAgent.Tests;

/// <summary>What the policy watcher takes for a policy change, with the state directory among the policies.</summary>
public sealed class PolicyWatchTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Fact]
    public async Task A_write_in_the_state_directory_is_a_policy_change_when_the_state_directory_is_not_named()
    {
        var policyFile = _dir.File("seed.yaml", Policies.Seed);
        var state = _dir.Sub("state");
        var source = new PolicyFileSource([policyFile], NullLogger<PolicyFileSource>.Instance);
        var changes = 0;
        using var inputs = source.Start(_ => Interlocked.Increment(ref changes), CancellationToken.None);

        await File.WriteAllTextAsync(Path.Combine(state, "applied-state.json"), "{}");

        await SeenWithin(() => Volatile.Read(ref changes) > 0, "the state write was not taken for a policy change");
    }

    [Fact]
    public async Task A_write_in_the_state_directory_is_not_a_policy_change_when_the_state_directory_is_named()
    {
        var policyFile = _dir.File("seed.yaml", Policies.Seed);
        var state = _dir.Sub("state");
        var source = new PolicyFileSource([policyFile], NullLogger<PolicyFileSource>.Instance, state);
        var changes = 0;
        using var inputs = source.Start(_ => Interlocked.Increment(ref changes), CancellationToken.None);

        await File.WriteAllTextAsync(Path.Combine(state, "applied-state.json"), "{}");
        // That nothing comes can only be watched for a while: 1 s, far longer than inotify takes to deliver on an
        // idle machine. A correct watcher passes however loaded the machine is; only a wrong one could slip through.
        await Task.Delay(TimeSpan.FromSeconds(1));

        Assert.Equal(0, Volatile.Read(ref changes));
    }

    [Fact]
    public async Task An_edit_of_the_policy_file_is_a_policy_change_with_the_state_directory_named()
    {
        var policyFile = _dir.File("seed.yaml", Policies.Seed);
        var source = new PolicyFileSource([policyFile], NullLogger<PolicyFileSource>.Instance, _dir.Sub("state"));
        var changes = 0;
        using var inputs = source.Start(_ => Interlocked.Increment(ref changes), CancellationToken.None);

        await File.AppendAllTextAsync(policyFile, "# edited\n");

        await SeenWithin(() => Volatile.Read(ref changes) > 0, "the edit was not taken for a policy change");
    }

    /// <summary>Polls <paramref name="condition"/>; the deadline only keeps a broken watcher from hanging the run.</summary>
    private static async Task SeenWithin(Func<bool> condition, string failure)
    {
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (!condition() && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50);
        }

        Assert.True(condition(), failure);
    }
}
