using System.Net;
using System.Text.Json;
using System.Text.Json.Serialization;
using TsCgnat.Api;
using TsCgnat.Firewall.Model;

namespace TsCgnat.NodeAgent.State;

/// <summary>The last desired state this node applied, as kept on disk for the fail-static start.</summary>
public sealed class AppliedState
{
    public int Version { get; set; } = 1;

    public List<AppliedPolicy> Policies { get; set; } = [];

    public List<AppliedSource> AllowedSources { get; set; } = [];

    public List<string> RoutedSubnets { get; set; } = [];

    /// <summary>tailscaled's stateful filtering as last seen, for the moments its chains are empty.</summary>
    public bool? Stateful { get; set; }

    public DateTimeOffset AppliedAt { get; set; }

    public static AppliedState From(IReadOnlyList<ValidatedPolicy> policies, Exemptions exemptions, bool? stateful, DateTimeOffset now) => new()
    {
        Policies = [.. policies.Select(p => new AppliedPolicy { Name = p.Name, Generation = p.Generation })],
        AllowedSources = [.. exemptions.Sources.Select(s => new AppliedSource { Cidr = s.Cidr.ToString(), Interfaces = [.. s.Interfaces] })],
        RoutedSubnets = [.. exemptions.RoutedSubnets.Select(s => s.ToString())],
        Stateful = stateful,
        AppliedAt = now,
    };

    /// <summary>Checks the cached entries again: the file is input like any other and is not trusted.</summary>
    public Exemptions ToExemptions()
    {
        var sources = new List<SourceExemption>();
        foreach (var source in AllowedSources ?? throw new InvalidDataException("allowedSources is null"))
        {
            var prefix = Checked(source?.Cidr);
            foreach (var name in source!.Interfaces ?? throw new InvalidDataException("allowedSources interfaces is null"))
            {
                if (name is null)
                {
                    throw new InvalidDataException("allowedSources interface is null");
                }

                if (PolicyValidator.CheckInterfaceName(name) is { } problem)
                {
                    throw new InvalidDataException($"allowedSources interface {problem}");
                }
            }

            sources.Add(new SourceExemption(prefix, source.Interfaces));
        }

        return new Exemptions(sources, [.. (RoutedSubnets ?? throw new InvalidDataException("routedSubnets is null")).Select(Checked)]);
    }

    /// <summary>JSON null is allowed by the types (System.Text.Json does not enforce non-nullable references), so it is checked here.</summary>
    private static IPNetwork Checked(string? cidr) =>
        cidr is null ? throw new InvalidDataException("a CIDR is null")
        : CgnatPrefix.Check(cidr, allowBroad: true, out var prefix) is { } problem ? throw new InvalidDataException(problem) : prefix;
}

public sealed class AppliedPolicy
{
    public string Name { get; set; } = "";

    public long Generation { get; set; }
}

public sealed class AppliedSource
{
    public string Cidr { get; set; } = "";

    public List<string> Interfaces { get; set; } = [];
}

/// <summary>
/// The cache file as it is on disk, read without checking its entries: what <see cref="AppliedStateCache.Peek"/>
/// gives a pass that only needs to know whether the file already says what it would write, and the stateful
/// filtering it recorded. Reading the whole file as objects and checking every CIDR again is for the fail-static
/// start (<see cref="AppliedStateCache.Load"/>); at 10,000 entries it cost a no-op <c>apply</c> about a tenth of its time.
/// </summary>
public sealed record SavedStateFile(byte[] Bytes, DateTimeOffset AppliedAt, bool? Stateful)
{
    /// <summary>Whether the file says exactly <paramref name="state"/>, written at the file's own time.</summary>
    public bool Holds(AppliedState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        var when = state.AppliedAt;
        try
        {
            state.AppliedAt = AppliedAt;
            return AppliedStateCache.Serialize(state).AsSpan().SequenceEqual(Bytes);
        }
        finally
        {
            state.AppliedAt = when;
        }
    }

    /// <summary>The top-level appliedAt and stateful of a cache file; null when it is not a JSON object that has appliedAt.</summary>
    public static SavedStateFile? From(byte[] bytes)
    {
        ArgumentNullException.ThrowIfNull(bytes);
        try
        {
            var reader = new Utf8JsonReader(bytes);
            if (!reader.Read() || reader.TokenType != JsonTokenType.StartObject)
            {
                return null;
            }

            DateTimeOffset? appliedAt = null;
            bool? stateful = null;
            while (reader.Read() && reader.TokenType == JsonTokenType.PropertyName)
            {
                var name = reader.ValueTextEquals("appliedAt") ? 1 : reader.ValueTextEquals("stateful") ? 2 : 0;
                reader.Read();
                if (name == 1 && reader.TokenType == JsonTokenType.String && reader.TryGetDateTimeOffset(out var at))
                {
                    appliedAt = at;
                }
                else if (name == 2 && reader.TokenType is JsonTokenType.True or JsonTokenType.False)
                {
                    stateful = reader.GetBoolean();
                }
                else
                {
                    reader.Skip();
                }
            }

            return appliedAt is { } time ? new SavedStateFile(bytes, time, stateful) : null;
        }
        catch (JsonException)
        {
            return null;
        }
    }
}

[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true)]
[JsonSerializable(typeof(AppliedState))]
internal sealed partial class StateJsonContext : JsonSerializerContext;

/// <summary>
/// Keeps <see cref="AppliedState"/> in the state directory, so a node that reboots gets its last rules
/// back before it can reach anything (on Alibaba Cloud the DNS it needs is itself in 100.100.0.0/16).
/// </summary>
public sealed class AppliedStateCache(string stateDirectory)
{
    public const string FileName = "applied-state.json";

    /// <summary>Far above what 10,000 policies of 4 full lists would write; a larger file is not ours.</summary>
    public const long MaxFileBytes = 64 * 1024 * 1024;

    public string Path { get; } = System.IO.Path.Combine(stateDirectory, FileName);

    /// <summary>The cached state, or null when there is none; throws <see cref="InvalidDataException"/> when it is damaged.</summary>
    public AppliedState? Load()
    {
        if (!File.Exists(Path))
        {
            return null;
        }

        try
        {
            if (new FileInfo(Path).Length > MaxFileBytes)
            {
                throw new InvalidDataException($"it is {new FileInfo(Path).Length} bytes; the cache has at most {MaxFileBytes}");
            }

            var state = JsonSerializer.Deserialize(File.ReadAllText(Path), StateJsonContext.Default.AppliedState)
                ?? throw new InvalidDataException("the file holds null");
            _ = state.ToExemptions();
            return state;
        }
        catch (Exception e) when (e is JsonException or InvalidDataException)
        {
            throw new InvalidDataException($"{Path}: damaged cache ({e.Message}); it is ignored and will be rewritten after the next apply", e);
        }
    }

    /// <summary>The file's bytes with its appliedAt and stateful, unchecked; null when there is none or it is not ours (see <see cref="SavedStateFile"/>).</summary>
    public SavedStateFile? Peek()
    {
        try
        {
            var info = new FileInfo(Path);
            return info.Exists && info.Length <= MaxFileBytes ? SavedStateFile.From(File.ReadAllBytes(Path)) : null;
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            return null;
        }
    }

    /// <summary>The bytes <see cref="Save"/> writes for <paramref name="state"/>.</summary>
    public static byte[] Serialize(AppliedState state) => JsonSerializer.SerializeToUtf8Bytes(state, StateJsonContext.Default.AppliedState);

    /// <summary>Writes atomically: a temp file beside it, fsync, rename. A crash leaves the old or the new file, never half of one.</summary>
    public SavedStateFile Save(AppliedState state) => Commit(Stage(state));

    /// <summary>
    /// The first half of <see cref="Save"/>: the temp file written and synced, the old file untouched. The agent stages
    /// while the firewall writes run, and commits only once they succeeded (issue 11: the fsync is then off the
    /// path of an <c>apply</c>).
    /// </summary>
    public SavedStateFile Stage(AppliedState state)
    {
        ArgumentNullException.ThrowIfNull(state);
        var bytes = Serialize(state);
        Directory.CreateDirectory(System.IO.Path.GetDirectoryName(Path)!);
        var temp = Path + ".tmp";
        var options = new FileStreamOptions
        {
            Mode = FileMode.Create,
            Access = FileAccess.Write,
            UnixCreateMode = UnixFileMode.UserRead | UnixFileMode.UserWrite,
        };
        using (var stream = new FileStream(temp, options))
        {
            stream.Write(bytes);
            stream.Flush(flushToDisk: true);
        }

        return new SavedStateFile(bytes, state.AppliedAt, state.Stateful);
    }

    /// <summary>The second half of <see cref="Save"/>: the staged file replaces the cache.</summary>
    public SavedStateFile Commit(SavedStateFile staged)
    {
        File.Move(Path + ".tmp", Path, overwrite: true);
        return staged;
    }

    /// <summary>Drops what <see cref="Stage"/> wrote (the firewall write it was for failed).</summary>
    public void Discard() => File.Delete(Path + ".tmp");

    /// <summary>Removes the cache and a temp file a crash may have left; nothing to do when the state directory
    /// itself is missing (File.Delete throws for a missing directory, which made <c>cleanup</c> fail after it had
    /// already removed the rules).</summary>
    public void Delete()
    {
        if (!Directory.Exists(System.IO.Path.GetDirectoryName(Path)))
        {
            return;
        }

        File.Delete(Path);
        File.Delete(Path + ".tmp");
    }
}
