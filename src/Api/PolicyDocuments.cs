using System.Globalization;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

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

/// <summary>
/// Reads the YAML a user would <c>kubectl apply</c>: one or more <c>CgnatAllowPolicy</c> documents.
/// </summary>
/// <remarks>
/// KubernetesYaml ignores unknown fields, which for a firewall policy turns a typo into a silently
/// missing exemption. So YAML is turned into a JSON tree here (remembering each field's line) and
/// bound with the strict, source-generated <see cref="ApiJsonContext"/>: unknown fields fail, as the
/// API server does with a structural schema and strict field validation.
/// </remarks>
public static partial class PolicyDocuments
{
    private static readonly string[] RequiredTopLevel = ["apiVersion", "kind", "metadata", "spec"];

    public static (IReadOnlyList<PolicyDocument> Policies, IReadOnlyList<PolicyProblem> Problems) Parse(string text, string source)
    {
        var policies = new List<PolicyDocument>();
        var problems = new List<PolicyProblem>();
        var stream = new YamlStream();
        try
        {
            stream.Load(new StringReader(text.TrimStart('\uFEFF')));
        }
        catch (YamlException e)
        {
            problems.Add(new(source, null, (int)e.Start.Line, null, $"YAML syntax error at column {e.Start.Column}: {Innermost(e).Message}"));
            return (policies, problems);
        }
        catch (InvalidOperationException e)
        {
            // YamlDotNet 18 throws this instead of a YamlException for some unclosed flow collections.
            problems.Add(new(source, null, null, null, $"YAML syntax error (an unclosed [ or {{?): {e.Message}"));
            return (policies, problems);
        }

        var number = 0;
        foreach (var document in stream.Documents)
        {
            number++;
            var root = document.RootNode;
            if (root is YamlScalarNode { Value: null or "" } || root is YamlScalarNode { Style: ScalarStyle.Plain, Value: "~" or "null" })
            {
                continue; // an empty document, e.g. after a trailing "---", as kubectl skips it
            }

            var line = (int)root.Start.Line;
            if (root is not YamlMappingNode)
            {
                problems.Add(new(source, number, line, null, $"is a YAML {Describe(root)}, not a {CgnatAllowPolicy.KindName} object"));
                continue;
            }

            var lines = new Dictionary<string, int>(StringComparer.Ordinal);
            JsonNode? json;
            try
            {
                json = ToJson(root, "", lines);
            }
            catch (FormatException e)
            {
                problems.Add(new(source, number, line, null, e.Message));
                continue;
            }

            // Required at the top level: a default would make a file cut short after its metadata a
            // valid policy with no exemptions, and a missing kind would accept any object.
            var missing = RequiredTopLevel.Where(k => json is JsonObject o && !o.ContainsKey(k)).ToList();
            if (missing.Count > 0)
            {
                problems.AddRange(missing.Select(k => new PolicyProblem(source, number, line, k, "is required")));
                continue;
            }

            CgnatAllowPolicy? policy;
            try
            {
                policy = json.Deserialize(ApiJsonContext.Default.CgnatAllowPolicy);
            }
            catch (JsonException e)
            {
                var path = FieldPath(e.Path);
                problems.Add(new(source, number, LineOf(path, lines) ?? line, path, DescribeJsonError(e, path)));
                continue;
            }

            if (policy is null)
            {
                problems.Add(new(source, number, line, null, $"is empty, not a {CgnatAllowPolicy.KindName} object"));
                continue;
            }

            var errors = PolicyValidator.Validate(policy, out var valid);
            foreach (var error in errors)
            {
                problems.Add(new(source, number, LineOf(error.Path, lines) ?? line, error.Path, error.Message));
            }

            if (valid is not null)
            {
                policies.Add(new PolicyDocument(source, number, policy, valid));
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

    private static Exception Innermost(Exception e) => e.InnerException is null ? e : Innermost(e.InnerException);

    private static string Describe(YamlNode node) => node switch
    {
        YamlSequenceNode => "list",
        YamlScalarNode => "plain value",
        _ => "node",
    };

    private static JsonNode? ToJson(YamlNode node, string path, Dictionary<string, int> lines)
    {
        lines.TryAdd(path, (int)node.Start.Line);
        switch (node)
        {
            case YamlMappingNode map:
                var obj = new JsonObject();
                foreach (var (keyNode, valueNode) in map.Children)
                {
                    if (keyNode is not YamlScalarNode { Value: { } key })
                    {
                        throw new FormatException($"line {keyNode.Start.Line}: a mapping key must be a plain string");
                    }

                    var childPath = path.Length == 0 ? key : $"{path}.{key}";
                    if (obj.ContainsKey(key))
                    {
                        throw new FormatException($"{childPath}: the key \"{key}\" appears twice");
                    }

                    obj[key] = ToJson(valueNode, childPath, lines);
                }

                return obj;
            case YamlSequenceNode seq:
                var array = new JsonArray();
                var i = 0;
                foreach (var item in seq.Children)
                {
                    array.Add(ToJson(item, $"{path}[{i++}]", lines));
                }

                return array;
            case YamlScalarNode scalar:
                return Scalar(scalar);
            default:
                throw new FormatException($"{path}: unsupported YAML node");
        }
    }

    /// <summary>YAML 1.2 core schema for plain scalars; quoted scalars are always strings.</summary>
    private static JsonValue? Scalar(YamlScalarNode scalar)
    {
        var value = scalar.Value ?? "";
        if (scalar.Style is not ScalarStyle.Plain)
        {
            return JsonValue.Create(value);
        }

        if (value is "" or "~" or "null" or "Null" or "NULL")
        {
            return null;
        }

        if (value is "true" or "True" or "TRUE")
        {
            return JsonValue.Create(true);
        }

        if (value is "false" or "False" or "FALSE")
        {
            return JsonValue.Create(false);
        }

        if (IntegerPattern().IsMatch(value) && long.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var integer))
        {
            return JsonValue.Create(integer);
        }

        if (FloatPattern().IsMatch(value) && double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var real))
        {
            return JsonValue.Create(real);
        }

        return JsonValue.Create(value);
    }

    /// <summary>"$.spec.allowedSources[0].cidr" → "spec.allowedSources[0].cidr".</summary>
    private static string? FieldPath(string? jsonPath) =>
        jsonPath is null ? null : jsonPath.TrimStart('$').TrimStart('.').Replace("['", ".", StringComparison.Ordinal).Replace("']", "", StringComparison.Ordinal);

    private static int? LineOf(string? path, Dictionary<string, int> lines)
    {
        while (!string.IsNullOrEmpty(path))
        {
            if (lines.TryGetValue(path, out var line))
            {
                return line;
            }

            var cut = Math.Max(path.LastIndexOf('.'), path.LastIndexOf('['));
            path = cut > 0 ? path[..cut] : null;
        }

        return null;
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

    [GeneratedRegex(@"^[-+]?[0-9]+$", RegexOptions.CultureInvariant)]
    private static partial Regex IntegerPattern();

    [GeneratedRegex(@"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$", RegexOptions.CultureInvariant)]
    private static partial Regex FloatPattern();

    [GeneratedRegex(@"property '([^']*)'", RegexOptions.CultureInvariant)]
    private static partial Regex UnmappedField();
}
