using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.Json.Serialization;
using System.Text.RegularExpressions;
using k8s.Models;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace TsCgnat.Api.Crds;

/// <summary>Our CRDs, generated from the annotated types (<c>ts-cgnat-operator crds</c>, <c>config/crds/</c>).</summary>
public static partial class ApiCrds
{
    /// <summary>Both kinds, policy first. Listed, not discovered: no assembly scan under NativeAOT.</summary>
    public static IReadOnlyList<V1CustomResourceDefinition> All() =>
    [
        CrdTranspiler.Transpile(ApiJsonContext.Default.CgnatAllowPolicy),
        CrdTranspiler.Transpile(ApiJsonContext.Default.CgnatNodeState),
    ];

    /// <summary>The file a CRD is kept in under <c>config/crds/</c>, e.g. <c>tscgnat.io_cgnatallowpolicies.yaml</c>.</summary>
    public static string FileName(V1CustomResourceDefinition crd)
    {
        ArgumentNullException.ThrowIfNull(crd);
        return $"{crd.Spec.Group}_{crd.Spec.Names.Plural}.yaml";
    }

    /// <summary>One CRD as YAML, as <c>kubectl apply -f</c> reads it.</summary>
    /// <remarks>
    /// Not <c>KubernetesYaml.Serialize</c>: its static constructor reflects over every model type (it
    /// reads metadata tokens, which NativeAOT does not keep) and throws in the NativeAOT operator. So
    /// the CRD goes to JSON through a source-generated context and from there to YamlDotNet's
    /// representation model, which needs no reflection. A test checks that KubernetesYaml reads the
    /// result back to the same definition.
    /// </remarks>
    public static string ToYaml(V1CustomResourceDefinition crd)
    {
        ArgumentNullException.ThrowIfNull(crd);
        var json = JsonSerializer.SerializeToNode(crd, CrdJsonContext.Default.V1CustomResourceDefinition);
        var text = new StringWriter { NewLine = "\n" };
        new YamlStream(new YamlDocument(Yaml(json))).Save(text, assignAnchors: false);
        var yaml = text.ToString().ReplaceLineEndings("\n");
        // The representation model closes each document with "..."; a CRD file is one document.
        return yaml.EndsWith("...\n", StringComparison.Ordinal) ? yaml[..^4] : yaml;
    }

    /// <summary>Several CRDs as one multi-document YAML stream.</summary>
    public static string ToYaml(IEnumerable<V1CustomResourceDefinition> crds)
    {
        ArgumentNullException.ThrowIfNull(crds);
        var text = new StringBuilder();
        foreach (var crd in crds)
        {
            text.Append("---\n").Append(ToYaml(crd));
        }

        return text.ToString();
    }

    private static YamlNode Yaml(JsonNode? node) => node switch
    {
        JsonObject map => new YamlMappingNode(map.Select(p => new KeyValuePair<YamlNode, YamlNode>(Scalar(p.Key), Yaml(p.Value)))),
        JsonArray list => new YamlSequenceNode(list.Select(Yaml)),
        JsonValue value when value.GetValueKind() == JsonValueKind.String => Scalar(value.GetValue<string>()),
        JsonValue value => new YamlScalarNode(value.ToJsonString()) { Style = ScalarStyle.Plain },
        null => new YamlScalarNode("null") { Style = ScalarStyle.Plain },
        _ => throw new NotSupportedException(node.GetType().Name),
    };

    /// <summary>
    /// A string the emitter may write plain unless a YAML reader would take it for something else
    /// ("True", "on", "y", a number, null): those are double-quoted, as KubernetesYaml does.
    /// </summary>
    private static YamlScalarNode Scalar(string text) =>
        new(text) { Style = NotPlainString().IsMatch(text) ? ScalarStyle.DoubleQuoted : ScalarStyle.Any };

    [GeneratedRegex(@"^(|~|null|Null|NULL|y|Y|yes|Yes|YES|n|N|no|No|NO|true|True|TRUE|false|False|FALSE|on|On|ON|off|Off|OFF|[-+.]?[0-9].*|\.(inf|Inf|INF|nan|NaN|NAN))\z", RegexOptions.CultureInvariant | RegexOptions.Singleline)]
    private static partial Regex NotPlainString();
}

/// <summary>The CRD model as JSON, for <see cref="ApiCrds.ToYaml(V1CustomResourceDefinition)"/>.</summary>
[JsonSourceGenerationOptions(DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull)]
[JsonSerializable(typeof(V1CustomResourceDefinition))]
[JsonSerializable(typeof(Dictionary<string, object>))] // the status subresource: an empty object typed object
internal sealed partial class CrdJsonContext : JsonSerializerContext;
