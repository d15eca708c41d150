using Microsoft.Extensions.Logging.Abstractions;
using TsCgnat.NodeAgent.HostMode;

namespace TsCgnat.NodeAgent.Tests;

/// <summary>What the policy watcher takes for a policy change, with the state directory among the policies.</summary>
public sealed class PolicyWatchTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    [Theory]
    [InlineData(false, true)]
    [InlineData(true, false)]
    public async Task A_write_in_the_state_directory_is_a_policy_change_only_when_the_state_directory_is_not_named(bool named, bool seen)
    {
        var policyFile = _dir.File("seed.yaml", Policies.Seed);
        var state = _dir.Sub("state");
        var source = new PolicyFileSource([policyFile], NullLogger<PolicyFileSource>.Instance, named ? state : null);
        var changes = 0;
        using var inputs = source.Start(_ => Interlocked.Increment(ref changes), CancellationToken.None);

        await File.WriteAllTextAsync(Path.Combine(state, "applied-state.json"), "{}");
        // Long enough for inotify to deliver; the unnamed case shows the write is seen within it.
        await Task.Delay(TimeSpan.FromSeconds(1));

        Assert.Equal(seen, Volatile.Read(ref changes) > 0);
    }

    [Fact]
    public async Task An_edit_of_the_policy_file_is_a_policy_change_with_the_state_directory_named()
    {
        var policyFile = _dir.File("seed.yaml", Policies.Seed);
        var source = new PolicyFileSource([policyFile], NullLogger<PolicyFileSource>.Instance, _dir.Sub("state"));
        var changes = 0;
        using var inputs = source.Start(_ => Interlocked.Increment(ref changes), CancellationToken.None);

        await File.AppendAllTextAsync(policyFile, "# edited\n");
        var deadline = DateTime.UtcNow.AddSeconds(10);
        while (Volatile.Read(ref changes) == 0 && DateTime.UtcNow < deadline)
        {
            await Task.Delay(50);
        }

        Assert.True(Volatile.Read(ref changes) > 0, "the edit was not taken for a policy change");
    }
}
