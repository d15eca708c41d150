using System.Text.Json.Nodes;
using k8s;

namespace TsCgnat.Kube;

/// <summary>
/// JSON merge patches (RFC 7386) computed from two documents. Hand-written because neither the platform nor
/// KubernetesClient creates merge patches, only sends them; the rules are few: objects merge key by key, a key
/// to drop is sent as null, anything else (arrays included) is replaced whole.
/// </summary>
public static class JsonMergePatch
{
    /// <summary>The patch that turns <paramref name="from"/> into <paramref name="to"/>.</summary>
    public static JsonNode? Create(JsonNode? from, JsonNode? to)
    {
        if (from is not JsonObject before || to is not JsonObject after)
        {
            return to?.DeepClone();
        }

        var patch = new JsonObject();
        foreach (var (name, _) in before)
        {
            if (!after.ContainsKey(name))
            {
                patch[name] = null;
            }
        }

        foreach (var (name, value) in after)
        {
            if (!before.TryGetPropertyValue(name, out var old))
            {
                patch[name] = value?.DeepClone();
            }
            else if (!JsonNode.DeepEquals(old, value))
            {
                patch[name] = Create(old, value);
            }
        }

        return patch;
    }

    /// <summary>
    /// The JSON form of a model as the API server would store it (KubernetesJson: its names, its date format,
    /// nulls left out), so that two values compare by meaning rather than by C# reference or property order.
    /// </summary>
    public static JsonNode? ToJson(object? value) =>
        value is null ? null : JsonNode.Parse(KubernetesJson.Serialize(value));

    /// <summary>Whether two models have the same JSON form (a missing and a null field are the same).</summary>
    public static bool SameJson(object? a, object? b) => JsonNode.DeepEquals(ToJson(a), ToJson(b));
}
