using System.Text.Json;
using System.Text.Json.Nodes;

namespace TsCgnat.TestApiServer;

/// <summary>
/// One version of one object, frozen: its JSON bytes as served, plus what selectors and the garbage
/// collector look at. Kept as bytes so a list of thousands of objects is a copy, not a serialization,
/// and so no caller can mutate what the store holds.
/// </summary>
internal sealed record StoredObject(
    string Store,
    string? Namespace,
    string Name,
    string Uid,
    long ResourceVersion,
    byte[] Json,
    IReadOnlyDictionary<string, string> Labels,
    IReadOnlyDictionary<string, string> Fields,
    IReadOnlyList<string> OwnerUids,
    bool HasFinalizers,
    bool Deleting)
{
    public (string? Namespace, string Name) Key => (Namespace, Name);

    public JsonObject ToNode() => JsonNode.Parse(Json)!.AsObject();

    public static StoredObject From(string store, JsonObject obj)
    {
        var metadata = obj["metadata"]?.AsObject() ?? new JsonObject();
        var labels = new Dictionary<string, string>(StringComparer.Ordinal);
        if (metadata["labels"] is JsonObject labelObject)
        {
            foreach (var (key, value) in labelObject)
            {
                labels[key] = value?.GetValue<string>() ?? "";
            }
        }

        var owners = metadata["ownerReferences"] is JsonArray refs
            ? refs.Select(r => (string?)r?["uid"]).OfType<string>().ToList()
            : [];
        return new StoredObject(
            store,
            (string?)metadata["namespace"],
            (string?)metadata["name"] ?? "",
            (string?)metadata["uid"] ?? "",
            long.TryParse((string?)metadata["resourceVersion"], out var rv) ? rv : 0,
            JsonSerializer.SerializeToUtf8Bytes(obj),
            labels,
            ObjectFields.Of(store, obj),
            owners,
            metadata["finalizers"] is JsonArray { Count: > 0 },
            metadata["deletionTimestamp"] is not null);
    }

    /// <summary>The same object stamped with another resourceVersion (a deletion, or a DELETED sent
    /// to a watcher whose selector the object left).</summary>
    public StoredObject WithResourceVersion(long resourceVersion)
    {
        var node = ToNode();
        node["metadata"]!["resourceVersion"] = resourceVersion.ToString(System.Globalization.CultureInfo.InvariantCulture);
        return this with { ResourceVersion = resourceVersion, Json = JsonSerializer.SerializeToUtf8Bytes(node) };
    }
}

/// <summary>The field-selector fields each kind supports, as the API server's field label conversions define them.</summary>
internal static class ObjectFields
{
    private static readonly string[] EventFields =
    [
        "involvedObject.kind", "involvedObject.namespace", "involvedObject.name", "involvedObject.uid",
        "involvedObject.apiVersion", "involvedObject.resourceVersion", "involvedObject.fieldPath",
        "reason", "reportingComponent", "source", "type",
    ];

    public static IReadOnlySet<string> Supported(ResourceType type) => type.Store switch
    {
        "nodes" => new HashSet<string> { "metadata.name", "spec.unschedulable" },
        "events" => new HashSet<string>(EventFields) { "metadata.name", "metadata.namespace" },
        _ => type.Namespaced ? new HashSet<string> { "metadata.name", "metadata.namespace" } : new HashSet<string> { "metadata.name" },
    };

    /// <summary>events.k8s.io names the involved object <c>regarding</c>; both spellings select the same field.</summary>
    public static string Canonical(string field, ResourceType type) =>
        type.Store == "events" && field.StartsWith("regarding.", StringComparison.Ordinal)
            ? "involvedObject." + field["regarding.".Length..]
            : type.Store == "events" && field == "reportingController" ? "reportingComponent" : field;

    public static IReadOnlyDictionary<string, string> Of(string store, JsonObject obj)
    {
        var fields = new Dictionary<string, string>(StringComparer.Ordinal)
        {
            ["metadata.name"] = (string?)obj["metadata"]?["name"] ?? "",
            ["metadata.namespace"] = (string?)obj["metadata"]?["namespace"] ?? "",
        };
        switch (store)
        {
            case "nodes":
                fields["spec.unschedulable"] = obj["spec"]?["unschedulable"]?.GetValue<bool>() == true ? "true" : "false";
                break;
            case "events":
                foreach (var name in new[] { "kind", "namespace", "name", "uid", "apiVersion", "resourceVersion", "fieldPath" })
                {
                    fields["involvedObject." + name] = Text(obj["involvedObject"]?[name]);
                }

                fields["reason"] = Text(obj["reason"]);
                fields["reportingComponent"] = Text(obj["reportingComponent"]);
                fields["source"] = Text(obj["source"]?["component"]);
                fields["type"] = Text(obj["type"]);
                break;
        }

        return fields;
    }

    private static string Text(JsonNode? node) => node is JsonValue value ? value.ToString() : "";
}
