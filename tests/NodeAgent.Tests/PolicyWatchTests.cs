using Microsoft.Extensions.Logging.Abstractions;
using TsCgnat.NodeAgent.HostMode;
using TsCgnat.NodeAgent.Reconciling;

namespace TsCgnat.NodeAgent.Tests;

/// <summary>What the policy watcher takes for a policy change: the policy files themselves, nothing else beside them.</summary>
public sealed class PolicyWatchTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    public static TheoryData<string, string, bool> Changes { get; } = new()
    {
        // named path (relative to the temp dir), changed path, is it a policy change
        { "seed.yaml", "seed.yaml", true },
        { "seed.yaml", "other.yaml", false },
        { "seed.yaml", "state/applied-state.json", false },
        { "seed.yaml", ".seed.yaml.swp", false },
        { "seed.yaml", "..data", true }, // a ConfigMap mount swapping its files
        { "policies", "policies/a.yaml", true },
        { "policies", "policies/b.yml", true },
        { "policies", "policies/notes.txt", false },
        { "policies", "policies/.a.yaml.swp", false },
        { "policies", "policies/..data", true },
        { "policies", "policies/state/applied-state.json", false },
        { "policies", "elsewhere.yaml", false },
    };

    [Theory]
    [MemberData(nameof(Changes))]
    public void Only_a_change_of_a_policy_file_is_a_policy_change(string named, string changed, bool policyChange)
    {
        var root = _dir.Path;
        Assert.Equal(policyChange, PolicyFileSource.IsPolicyChange([Path.Combine(root, named)], Path.Combine(root, changed)));
    }

    [Fact]
    public async Task An_edit_of_the_policy_file_is_seen_by_the_watcher()
    {
        var policyFile = _dir.File("seed.yaml", Policies.Seed);
        var source = new PolicyFileSource([policyFile], NullLogger<PolicyFileSource>.Instance);
        var changes = 0;
        using var inputs = source.Start(_ => Interlocked.Increment(ref changes), CancellationToken.None);

        await File.AppendAllTextAsync(policyFile, "# edited\n");

        await SeenWithin(() => Volatile.Read(ref changes) > 0, "the edit was not taken for a policy change");
    }

    [Fact]
    public async Task A_file_replaced_by_rename_is_seen_by_the_watcher()
    {
        var policyFile = _dir.File("seed.yaml", Policies.Seed);
        var source = new PolicyFileSource([policyFile], NullLogger<PolicyFileSource>.Instance);
        var changes = 0;
        using var inputs = source.Start(_ => Interlocked.Increment(ref changes), CancellationToken.None);

        var next = _dir.File(".seed.yaml.tmp", Policies.Seed + "# replaced\n");
        File.Move(next, policyFile, overwrite: true);

        await SeenWithin(() => Volatile.Read(ref changes) > 0, "the rename onto the policy file was not taken for a policy change");
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
