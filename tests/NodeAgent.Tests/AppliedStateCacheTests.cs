using System.Net;
using TsCgnat.Api;
using TsCgnat.Firewall.Model;
using TsCgnat.NodeAgent.State;

namespace TsCgnat.NodeAgent.Tests;

/// <summary>The fail-static cache: written atomically, read back exactly, and never trusted blindly.</summary>
public sealed class AppliedStateCacheTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private static readonly Exemptions Seed = new(
        [new SourceExemption(IPNetwork.Parse("100.100.0.0/16"), ["eth0"])], [IPNetwork.Parse("100.64.0.0/24")]);

    /// <summary>The one policy of <see cref="Seed"/>, generation 3.</summary>
    private static readonly ValidatedPolicy SeedPolicy = new("seed", 3, null, Seed.Sources, Seed.RoutedSubnets);

    [Fact]
    public void Deleting_when_the_state_directory_does_not_exist_is_nothing_to_do()
    {
        var cache = new AppliedStateCache(Path.Combine(_dir.Path, "never-created"));

        var error = Record.Exception(cache.Delete);

        Assert.Null(error);
        Assert.False(Directory.Exists(Path.Combine(_dir.Path, "never-created")));
    }

    [Fact]
    public void What_is_saved_comes_back_the_same_and_the_file_is_private()
    {
        var cache = new AppliedStateCache(Path.Combine(_dir.Path, "state"));

        cache.Save(AppliedState.From([SeedPolicy], Seed, stateful: true, DateTimeOffset.UnixEpoch));
        var loaded = cache.Load()!;

        Assert.Equal("seed", loaded.Policies.Single().Name);
        Assert.Equal(3, loaded.Policies.Single().Generation);
        Assert.True(loaded.Stateful);
        var exemptions = loaded.ToExemptions();
        Assert.Equal(["100.100.0.0/16,eth0"], exemptions.InterfaceSources());
        Assert.Equal(["100.64.0.0/24"], exemptions.Subnets());
        Assert.False(File.Exists(cache.Path + ".tmp"));
        Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite, File.GetUnixFileMode(cache.Path));
    }

    [Fact]
    public void A_staged_state_replaces_the_cache_only_when_committed_and_a_discarded_one_leaves_it_as_it_was()
    {
        var cache = new AppliedStateCache(Path.Combine(_dir.Path, "state"));
        var old = cache.Save(AppliedState.From([SeedPolicy], Seed, stateful: false, DateTimeOffset.UnixEpoch));
        var before = File.ReadAllBytes(cache.Path);

        var staged = cache.Stage(AppliedState.From([SeedPolicy with { Generation = 4 }], Seed, stateful: false, DateTimeOffset.UnixEpoch));
        Assert.Equal(before, File.ReadAllBytes(cache.Path)); // staged beside it, the cache untouched
        cache.Discard();
        Assert.Equal(before, File.ReadAllBytes(cache.Path));
        Assert.False(File.Exists(cache.Path + ".tmp"));

        staged = cache.Stage(AppliedState.From([SeedPolicy with { Generation = 4 }], Seed, stateful: false, DateTimeOffset.UnixEpoch));
        cache.Commit(staged);
        Assert.Equal(4, cache.Load()!.Policies.Single().Generation);
        Assert.NotEqual(old.Bytes, staged.Bytes);
    }

    [Fact]
    public void The_saved_file_says_whether_it_holds_a_state_whatever_the_time_it_was_written()
    {
        var cache = new AppliedStateCache(Path.Combine(_dir.Path, "state"));
        cache.Save(AppliedState.From([SeedPolicy], Seed, stateful: true, DateTimeOffset.UnixEpoch));

        var saved = cache.Peek()!;

        Assert.True(saved.Stateful);
        Assert.Equal(DateTimeOffset.UnixEpoch, saved.AppliedAt);
        Assert.True(saved.Holds(AppliedState.From([SeedPolicy], Seed, stateful: true, DateTimeOffset.UtcNow)));
        Assert.False(saved.Holds(AppliedState.From([SeedPolicy], Seed, stateful: false, DateTimeOffset.UtcNow)));
        Assert.False(saved.Holds(AppliedState.From([SeedPolicy with { Generation = 4 }], Seed, stateful: true, DateTimeOffset.UtcNow)));
        Assert.False(saved.Holds(AppliedState.From([SeedPolicy], new Exemptions(Seed.Sources, []), stateful: true, DateTimeOffset.UtcNow)));
    }

    [Theory]
    [InlineData("not json at all")]
    [InlineData("[]")]
    [InlineData("""{"version":1}""")]
    [InlineData("""{"appliedAt":"yesterday"}""")]
    [InlineData("""{"appliedAt":"1970-01-01T00:00:00+00:00","policies":[""")]
    public void A_file_that_is_not_a_cache_with_a_time_is_no_saved_state(string content)
    {
        var cache = new AppliedStateCache(_dir.Path);
        File.WriteAllText(cache.Path, content);

        Assert.Null(cache.Peek());
    }

    [Fact]
    public void No_file_means_no_cached_state()
    {
        Assert.Null(new AppliedStateCache(_dir.Path).Load());
    }

    [Theory]
    [InlineData("not json at all", "damaged cache")]
    [InlineData("""{"version":1,"allowedSources":[{"cidr":"10.0.0.0/8","interfaces":[]}],"routedSubnets":[]}""", "is outside 100.64.0.0/10")]
    [InlineData("""{"version":1,"allowedSources":[{"cidr":"100.100.0.0/16","interfaces":["eth0;reboot"]}],"routedSubnets":[]}""", "not a valid Linux interface name")]
    [InlineData("""{"version":1,"allowedSources":[],"routedSubnets":["100.64.0.1/24"]}""", "has host bits set")]
    [InlineData("""{"version":1,"allowedSources":[{"cidr":"100.64""", "damaged cache")] // cut short
    [InlineData("""{"version":1,"allowedSources":null,"routedSubnets":[]}""", "allowedSources is null")] // JSON null is no exception of ours (issue 10)
    [InlineData("""{"version":1,"allowedSources":[null],"routedSubnets":[]}""", "a CIDR is null")]
    [InlineData("""{"version":1,"allowedSources":[{"cidr":"100.64.0.0/24","interfaces":null}],"routedSubnets":[]}""", "interfaces is null")]
    [InlineData("""{"version":1,"allowedSources":[{"cidr":"100.64.0.0/24","interfaces":[null]}],"routedSubnets":[]}""", "interface is null")]
    [InlineData("""{"version":1,"allowedSources":[],"routedSubnets":null}""", "routedSubnets is null")]
    [InlineData("""{"version":1,"allowedSources":[],"routedSubnets":[null]}""", "a CIDR is null")]
    public void A_damaged_or_tampered_cache_is_refused_with_the_reason(string content, string reason)
    {
        File.WriteAllText(Path.Combine(_dir.Path, AppliedStateCache.FileName), content);

        var error = Assert.Throws<InvalidDataException>(() => new AppliedStateCache(_dir.Path).Load());

        Assert.Contains(reason, error.Message, StringComparison.Ordinal);
        Assert.Contains("it is ignored and will be rewritten", error.Message, StringComparison.Ordinal);
    }
}
