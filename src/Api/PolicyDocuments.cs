using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.RegularExpressions;
using YamlDotNet.Core;

namespace TsCgnat.Api;

/// <summary>One problem in policy input, located as precisely as we can: source, document, line, field.</summary>
public sealed record PolicyProblem(string Source, int? Document, int? Line, string? Path, string Message)
{
    public override string ToString()
    {
        var where = new StringBuilder(Source);
        if (Document is not null)
        {
            where.Append(CultureInfo.InvariantCulture, $": document {Document}");
        }

        if (Line is not null)
        {
            where.Append(CultureInfo.InvariantCulture, $" (line {Line})");
        }

        return Path is null ? $"{where}: {Message}" : $"{where}: {Path}: {Message}";
    }
}

/// <summary>A policy read from text and validated, with where it came from.</summary>
public sealed record PolicyDocument(string Source, int Document, CgnatAllowPolicy Policy, ValidatedPolicy Valid);

/// <summary>A policy object read from YAML and bound to its type, not yet validated.</summary>
/// <param name="Line">The line of the document's root, where a problem with no better place is reported.</param>
public sealed record UnvalidatedPolicy(string Source, int Document, int Line, CgnatAllowPolicy Policy);

/// <summary>
/// Reads the YAML a user would <c>kubectl apply</c>: one or more <c>CgnatAllowPolicy</c> documents.
/// </summary>
/// <remarks>
/// KubernetesYaml ignores unknown fields, which for a firewall policy turns a typo into a silently
/// missing exemption. So YAML is turned into JSON here and bound with the strict, source-generated
/// <see cref="ApiJsonContext"/>: unknown fields fail, as the API server does with a structural schema and
/// strict field validation. The YAML is read event by event within the limits below (<see cref="PolicyYaml"/>):
/// a policy file is outside text, and may be hostile (issue 10). docs/limits.md lists every limit.
/// </remarks>
public static partial class PolicyDocuments
{
    /// <summary>YAML documents in one text (one file): far more policies than anyone keeps in one file.</summary>
    public const int MaxDocuments = 1024;

    /// <summary>Lists and maps inside each other: a policy needs 6 (spec.nodeSelector.matchExpressions[0].values[0]).</summary>
    public const int MaxDepth = 32;

    /// <summary>Keys and values in one text: a full policy (4 lists of 1024 entries, 16 interfaces each) has about 100,000.</summary>
    public const int MaxNodes = 1_000_000;

    /// <summary>Items in one list or map: above the validator's 1024 entries, so that limit is the one users meet.</summary>
    public const int MaxCollectionItems = 65_536;

    /// <summary>Characters in one key or value: the longest field of ours (a description) has 256, a label value 63.</summary>
    public const int MaxScalarLength = 65_536;

    private static readonly string[] RequiredTopLevel = ["apiVersion", "kind", "metadata", "spec"];

    /// <summary>Reads and validates: the policies, or every problem found (never an exception).</summary>
    public static (IReadOnlyList<PolicyDocument> Policies, IReadOnlyList<PolicyProblem> Problems) Parse(string text, string source)
    {
        var (read, readProblems) = Read(text, source);
        var policies = new List<PolicyDocument>(read.Count);
        var invalid = new List<(UnvalidatedPolicy Item, IReadOnlyList<FieldError> Errors)>();
        foreach (var item in read)
        {
            var errors = PolicyValidator.Validate(item.Policy, out var valid);
            if (errors.Count > 0)
            {
                invalid.Add((item, errors));
            }

            if (valid is not null)
            {
                policies.Add(new PolicyDocument(source, item.Document, item.Policy, valid));
            }
        }

        var problems = new List<PolicyProblem>(readProblems);
        if (invalid.Count > 0)
        {
            var lines = Lines(text, invalid.SelectMany(i => i.Errors.Select(e => (i.Item.Document, (string?)e.Path))));
            problems.AddRange(invalid.SelectMany(i => i.Errors.Select(e =>
                new PolicyProblem(source, i.Item.Document, LineOf(i.Item.Document, e.Path, lines) ?? i.Item.Line, e.Path, e.Message))));
        }

        return (policies, [.. problems.OrderBy(p => p.Document ?? 0)]); // stable: each document's problems in field order
    }

    /// <summary>
    /// The first stage of <see cref="Parse"/>: YAML to policy objects, with every YAML limit applied, not
    /// yet validated. A syntax error or a broken limit refuses the whole text (one problem); a document
    /// that is not a policy object is one problem, and the others are still read.
    /// </summary>
    public static (IReadOnlyList<UnvalidatedPolicy> Policies, IReadOnlyList<PolicyProblem> Problems) Read(string text, string source)
    {
        var policies = new List<UnvalidatedPolicy>();
        var problems = new List<PolicyProblem>();
        var unplaced = new List<int>(); // problems whose line is found once the text has been read
        var documents = 0;
        try
        {
            PolicyYaml.Read(text.TrimStart('\uFEFF'), document =>
            {
                documents++;
                if (document.Problem is not null)
                {
                    problems.Add(new(source, document.Number, document.Line, null, document.Problem));
                    return;
                }

                // Required at the top level: a default would make a file cut short after its metadata a
                // valid policy with no exemptions, and a missing kind would accept any object.
                var missing = RequiredTopLevel.Where(k => !document.TopLevelKeys.Contains(k)).ToList();
                if (missing.Count > 0)
                {
                    problems.AddRange(missing.Select(k => new PolicyProblem(source, document.Number, document.Line, k, "is required")));
                    return;
                }

                var policy = Bind(source, document, problems, unplaced);
                if (policy is not null)
                {
                    policies.Add(new UnvalidatedPolicy(source, document.Number, document.Line, policy));
                }
            });
        }
        catch (PolicyYamlException e)
        {
            return ([], [new(source, e.Document, e.Line, null, e.Message)]);
        }
        catch (YamlException e)
        {
            return ([], [new(source, null, (int)Math.Min(e.Start.Line, int.MaxValue), null, $"YAML syntax error at column {e.Start.Column}: {Innermost(e).Message}")]);
        }
        catch (InvalidOperationException e)
        {
            // YamlDotNet 18 throws this instead of a YamlException for some unclosed flow collections.
            return ([], [new(source, null, null, null, $"YAML syntax error (an unclosed [ or {{?): {e.Message}")]);
        }

        if (unplaced.Count > 0)
        {
            var lines = Lines(text, unplaced.Select(i => (problems[i].Document!.Value, problems[i].Path)));
            foreach (var i in unplaced)
            {
                problems[i] = problems[i] with { Line = LineOf(problems[i].Document!.Value, problems[i].Path, lines) ?? problems[i].Line };
            }
        }

        if (policies.Count == 0 && problems.Count == 0)
        {
            problems.Add(new(source, null, null, null, $"holds no {CgnatAllowPolicy.KindName} document; an empty policy file is refused so that a truncated write never removes exemptions (to remove them all, delete the file from a policy directory, or run cleanup)"));
        }

        return (policies, problems);
    }

    /// <summary>Serialises a policy the way <see cref="Parse"/> reads it.</summary>
    public static string ToJson(CgnatAllowPolicy policy) => JsonSerializer.Serialize(policy, ApiJsonContext.Default.CgnatAllowPolicy);

    private static CgnatAllowPolicy? Bind(string source, PolicyYaml.Document document, List<PolicyProblem> problems, List<int> unplaced)
    {
        CgnatAllowPolicy? policy;
        try
        {
            policy = JsonSerializer.Deserialize(document.Json.Span, ApiJsonContext.Default.CgnatAllowPolicy);
        }
        catch (JsonException e)
        {
            var path = FieldPath(e.Path);
            unplaced.Add(problems.Count);
            problems.Add(new(source, document.Number, document.Line, path, DescribeJsonError(e, path)));
            return null;
        }

        if (policy is null)
        {
            problems.Add(new(source, document.Number, document.Line, null, $"is empty, not a {CgnatAllowPolicy.KindName} object"));
        }

        return policy;
    }

    private static Exception Innermost(Exception e) => e.InnerException is null ? e : Innermost(e.InnerException);

    /// <summary>"$.spec.allowedSources[0].cidr" → "spec.allowedSources[0].cidr".</summary>
    private static string? FieldPath(string? jsonPath) =>
        jsonPath is null ? null : jsonPath.TrimStart('$').TrimStart('.').Replace("['", ".", StringComparison.Ordinal).Replace("']", "", StringComparison.Ordinal);

    /// <summary>The lines of these fields and of every field above them (a problem with no line of its own takes its parent's).</summary>
    private static Dictionary<(int Document, string Path), int> Lines(string text, IEnumerable<(int Document, string? Path)> fields)
    {
        var wanted = new Dictionary<int, HashSet<string>>();
        foreach (var (document, path) in fields)
        {
            if (!wanted.TryGetValue(document, out var paths))
            {
                wanted[document] = paths = new HashSet<string>(StringComparer.Ordinal);
            }

            for (var p = path; !string.IsNullOrEmpty(p); p = Parent(p))
            {
                paths.Add(p);
            }
        }

        return wanted.Count == 0 ? [] : PolicyYaml.LinesOf(text, wanted);
    }

    private static int? LineOf(int document, string? path, Dictionary<(int Document, string Path), int> lines)
    {
        for (var p = path; !string.IsNullOrEmpty(p); p = Parent(p))
        {
            if (lines.TryGetValue((document, p), out var line))
            {
                return line;
            }
        }

        return null;
    }

    private static string? Parent(string path)
    {
        var cut = Math.Max(path.LastIndexOf('.'), path.LastIndexOf('['));
        return cut > 0 ? path[..cut] : null;
    }

    private static string DescribeJsonError(JsonException e, string? path)
    {
        // System.Text.Json names the .NET type in its messages; say it in the user's terms.
        var message = e.Message;
        if (message.Contains("could not be mapped to any .NET member", StringComparison.Ordinal))
        {
            var field = UnmappedField().Match(message);
            return field.Success
                ? $"unknown field \"{field.Groups[1].Value}\"; check the spelling against the {CgnatAllowPolicy.KindName} schema"
                : "unknown field; check the spelling against the schema";
        }

        if (message.Contains("could not be converted", StringComparison.Ordinal))
        {
            return $"has the wrong type (expected {ExpectedType(message)})";
        }

        return message;
    }

    private static string ExpectedType(string message) => message switch
    {
        _ when message.Contains("System.String", StringComparison.Ordinal) && message.Contains("IList", StringComparison.Ordinal) => "a list of strings",
        _ when message.Contains("IList", StringComparison.Ordinal) => "a list",
        _ when message.Contains("IDictionary", StringComparison.Ordinal) => "a map of strings",
        _ when message.Contains("System.String", StringComparison.Ordinal) => "a string",
        _ when message.Contains("System.Boolean", StringComparison.Ordinal) => "true or false",
        _ when message.Contains("System.Int", StringComparison.Ordinal) => "a whole number",
        _ => "an object",
    };

    [GeneratedRegex(@"property '([^']*)'", RegexOptions.CultureInvariant)]
    private static partial Regex UnmappedField();
}
