using System.Globalization;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace TsCgnat.Chart.Tests;

/// <summary>Reading YAML documents, and turning them into JSON for the schema validator.</summary>
internal static partial class Yaml
{
    public static IReadOnlyList<YamlNode> Documents(string text)
    {
        var stream = new YamlStream();
        stream.Load(new StringReader(text));
        return [.. stream.Documents.Select(d => d.RootNode)];
    }

    public static YamlNode Document(string text) => Documents(text).Single();

    /// <summary>
    /// The JSON value helm sees for a YAML node. Hand-written (a few lines) rather than another
    /// package: YamlDotNet's representation model keeps scalars as text, so plain scalars are
    /// resolved here by the YAML core schema (null, booleans, integers, floats), quoted ones stay strings.
    /// </summary>
    public static JsonNode? ToJson(YamlNode node) => node switch
    {
        YamlMappingNode map => new JsonObject(map.Children.Select(kv =>
            KeyValuePair.Create(((YamlScalarNode)kv.Key).Value ?? "", ToJson(kv.Value)))),
        YamlSequenceNode seq => new JsonArray([.. seq.Children.Select(ToJson)]),
        YamlScalarNode scalar => Scalar(scalar),
        _ => throw new NotSupportedException(node.NodeType.ToString()),
    };

    /// <summary>The node at a path of mapping keys, or null when a key is missing.</summary>
    public static YamlNode? At(YamlNode node, params string[] keys)
    {
        var current = node;
        foreach (var key in keys)
        {
            if (current is not YamlMappingNode map || !map.Children.TryGetValue(new YamlScalarNode(key), out current))
            {
                return null;
            }
        }

        return current;
    }

    public static string? Text(YamlNode node, params string[] keys) => (At(node, keys) as YamlScalarNode)?.Value;

    public static IReadOnlyList<YamlNode> Items(YamlNode node, params string[] keys) =>
        At(node, keys) is YamlSequenceNode seq ? [.. seq.Children] : [];

    public static IReadOnlyList<string> Strings(YamlNode node, params string[] keys) =>
        [.. Items(node, keys).Select(n => ((YamlScalarNode)n).Value ?? "")];

    private static JsonValue? Scalar(YamlScalarNode scalar)
    {
        var value = scalar.Value ?? "";
        if (scalar.Style is not ScalarStyle.Plain and not ScalarStyle.Any)
        {
            return JsonValue.Create(value);
        }

        if (value is "" or "~" or "null" or "Null" or "NULL")
        {
            return null;
        }

        if (value is "true" or "True" or "TRUE" or "false" or "False" or "FALSE")
        {
            return JsonValue.Create(value.Equals("true", StringComparison.OrdinalIgnoreCase));
        }

        if (IntegerPattern().IsMatch(value) && long.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var integer))
        {
            return JsonValue.Create(integer);
        }

        return FloatPattern().IsMatch(value) && double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var number)
            ? JsonValue.Create(number)
            : JsonValue.Create(value);
    }

    [GeneratedRegex(@"^[-+]?[0-9]+$")]
    private static partial Regex IntegerPattern();

    [GeneratedRegex(@"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$")]
    private static partial Regex FloatPattern();
}
