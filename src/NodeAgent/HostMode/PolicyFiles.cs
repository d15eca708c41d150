using System.Text;
using TsCgnat.Api;

namespace TsCgnat.NodeAgent.HostMode;

/// <summary>The policies read from every <c>--policy-file</c>, or every problem that stops them being used.</summary>
public sealed record PolicySet(IReadOnlyList<PolicyDocument> Policies, IReadOnlyList<PolicyProblem> Problems)
{
    public bool IsValid => Problems.Count == 0;
}

/// <summary>
/// Reads policy files and directories as host mode uses them. A path may name a file (one or more
/// YAML documents; an empty file is an error) or a directory (every *.yaml/*.yml file in it, in name
/// order, skipping hidden names such as a ConfigMap mount's "..data"; an empty directory is no policy).
/// All or nothing: one bad document makes the whole set invalid, so a half-read set is never applied.
/// </summary>
public static class PolicyFiles
{
    /// <summary>Larger than any sane policy file (4 lists of 1024 entries); refuses accidents such as a log file.</summary>
    public const long MaxFileBytes = 4 * 1024 * 1024;

    public static PolicySet Load(IEnumerable<string> paths)
    {
        // Files are read side by side (issue 11: ten files of 1,000 entries), and their results joined in the order
        // given, so what is read and every message are the same as one after the other.
        var files = paths.SelectMany(path => Directory.Exists(path) ? PolicyFilesIn(path) : [path]).ToList();
        var read = new (List<PolicyDocument> Policies, List<PolicyProblem> Problems)[files.Count];
        Parallel.For(0, files.Count, i =>
        {
            read[i] = ([], []);
            LoadFile(files[i], read[i].Policies, read[i].Problems);
        });
        var policies = read.SelectMany(r => r.Policies).ToList();
        var problems = read.SelectMany(r => r.Problems).ToList();

        foreach (var twin in policies.GroupBy(p => p.Valid.Name, StringComparer.Ordinal).Where(g => g.Count() > 1))
        {
            var places = string.Join(" and ", twin.Select(p => $"{p.Source} document {p.Document}"));
            var first = twin.First();
            problems.Add(new(first.Source, first.Document, null, "metadata.name", $"policy \"{twin.Key}\" is defined more than once: {places}; names must be unique"));
        }

        return new PolicySet(problems.Count == 0 ? policies : [], problems);
    }

    /// <summary>What <see cref="Load"/> would read, as names, sizes and change times: equal fingerprints, same input.</summary>
    public static string Fingerprint(IEnumerable<string> paths)
    {
        var text = new StringBuilder();
        foreach (var path in paths)
        {
            var files = Directory.Exists(path) ? PolicyFilesIn(path) : [path];
            foreach (var file in files)
            {
                var info = new FileInfo(file);
                text.Append(file).Append('|').Append(info.Exists ? info.Length : -1).Append('|')
                    .Append(info.Exists ? info.LastWriteTimeUtc.Ticks : 0).Append('\n');
            }
        }

        return text.ToString();
    }

    /// <summary>A file in a policy directory that is read as policies: <c>*.yaml</c> or <c>*.yml</c>, not hidden.</summary>
    public static bool IsPolicyFileName(string name) =>
        !name.StartsWith('.') && (name.EndsWith(".yaml", StringComparison.Ordinal) || name.EndsWith(".yml", StringComparison.Ordinal));

    private static IEnumerable<string> PolicyFilesIn(string directory) =>
        Directory.EnumerateFiles(directory)
            .Where(f => IsPolicyFileName(Path.GetFileName(f)))
            .Order(StringComparer.Ordinal);

    private static void LoadFile(string path, List<PolicyDocument> policies, List<PolicyProblem> problems)
    {
        byte[] bytes;
        try
        {
            var info = new FileInfo(path);
            if (!info.Exists)
            {
                problems.Add(new(path, null, null, null, "no such file or directory"));
                return;
            }

            if (info.Length > MaxFileBytes)
            {
                problems.Add(new(path, null, null, null, $"is {info.Length} bytes; a policy file has at most {MaxFileBytes}"));
                return;
            }

            bytes = File.ReadAllBytes(path);
        }
        catch (UnauthorizedAccessException)
        {
            problems.Add(new(path, null, null, null, "cannot be read: permission denied"));
            return;
        }
        catch (IOException e)
        {
            problems.Add(new(path, null, null, null, $"cannot be read: {e.Message}"));
            return;
        }

        var text = DecodeText(bytes, out var problem);
        if (text is null)
        {
            problems.Add(new(path, null, null, null, problem!));
            return;
        }

        var (parsed, found) = PolicyDocuments.Parse(text, path);
        policies.AddRange(parsed);
        problems.AddRange(found);
    }

    /// <summary>Strict UTF-8 with no control characters but tab, CR and LF: anything else is not a policy file.</summary>
    private static string? DecodeText(byte[] bytes, out string? problem)
    {
        problem = null;
        if (bytes.Length == 0)
        {
            problem = $"is empty; it must hold at least one {CgnatAllowPolicy.KindName} document";
            return null;
        }

        string text;
        try
        {
            text = new UTF8Encoding(encoderShouldEmitUTF8Identifier: false, throwOnInvalidBytes: true).GetString(bytes);
        }
        catch (DecoderFallbackException e)
        {
            problem = $"is not UTF-8 text (invalid byte at offset {e.Index}); it looks like a binary file";
            return null;
        }

        for (var i = 0; i < text.Length; i++)
        {
            var c = text[i];
            if (char.IsControl(c) && c is not '\t' and not '\n' and not '\r')
            {
                problem = $"is not a text file (control character U+{(int)c:X4} at offset {i})";
                return null;
            }
        }

        return text.TrimStart('\uFEFF');
    }
}
