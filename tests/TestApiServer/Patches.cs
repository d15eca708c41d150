using System.Text.Json.Nodes;

namespace TsCgnat.TestApiServer;

/// <summary>
/// JSON merge patch (RFC 7386). Hand-written: neither the platform nor KubernetesClient applies patches,
/// they only send them. Strategic merge patches are applied the same way, which is what they do for
/// every field but lists with merge keys (not used by our objects).
/// </summary>
internal static class MergePatch
{
    public static JsonNode? Apply(JsonNode? target, JsonNode? patch)
    {
        if (patch is not JsonObject patchObject)
        {
            return patch?.DeepClone();
        }

        var result = target is JsonObject targetObject ? targetObject.DeepClone().AsObject() : new JsonObject();
        foreach (var (key, value) in patchObject)
        {
            if (value is null)
            {
                result.Remove(key);
            }
            else
            {
                result[key] = Apply(result[key], value);
            }
        }

        return result;
    }
}

/// <summary>
/// JSON patch (RFC 6902): add, remove, replace, move, copy, test. Hand-written for the same reason as
/// <see cref="MergePatch"/>. A failed operation is the 422 a real server answers.
/// </summary>
internal static class JsonPatch
{
    public static JsonNode Apply(JsonNode document, JsonNode? patch, Func<string, ApiError> invalid)
    {
        if (patch is not JsonArray operations)
        {
            throw ApiError.BadRequest("a JSON patch must be an array of operations");
        }

        var root = document.DeepClone();
        foreach (var operation in operations)
        {
            var op = (string?)operation?["op"] ?? throw ApiError.BadRequest("a JSON patch operation has no \"op\"");
            var path = (string?)operation!["path"] ?? throw ApiError.BadRequest($"JSON patch operation \"{op}\" has no \"path\"");
            switch (op)
            {
                case "add":
                    root = Add(root, path, operation["value"]?.DeepClone(), invalid);
                    break;
                case "remove":
                    Remove(root, path, invalid);
                    break;
                case "replace":
                    Remove(root, path, invalid);
                    root = Add(root, path, operation["value"]?.DeepClone(), invalid);
                    break;
                case "move":
                    {
                        var from = (string?)operation["from"] ?? throw ApiError.BadRequest("JSON patch \"move\" has no \"from\"");
                        var value = Remove(root, from, invalid);
                        root = Add(root, path, value, invalid);
                        break;
                    }

                case "copy":
                    {
                        var from = (string?)operation["from"] ?? throw ApiError.BadRequest("JSON patch \"copy\" has no \"from\"");
                        root = Add(root, path, Find(root, from, invalid)?.DeepClone(), invalid);
                        break;
                    }

                case "test":
                    if (!JsonNode.DeepEquals(Find(root, path, invalid), operation["value"]))
                    {
                        throw invalid($"testing value {path} failed");
                    }

                    break;
                default:
                    throw ApiError.BadRequest($"unexpected JSON patch operation \"{op}\"");
            }
        }

        return root;
    }

    private static string[] Tokens(string pointer, Func<string, ApiError> invalid)
    {
        if (pointer.Length == 0)
        {
            return [];
        }

        if (pointer[0] != '/')
        {
            throw invalid($"JSON pointer \"{pointer}\" does not start with /");
        }

        return pointer[1..].Split('/').Select(t => t.Replace("~1", "/", StringComparison.Ordinal).Replace("~0", "~", StringComparison.Ordinal)).ToArray();
    }

    private static JsonNode? Find(JsonNode root, string pointer, Func<string, ApiError> invalid, string? reportAs = null)
    {
        var node = root;
        foreach (var token in Tokens(pointer, invalid))
        {
            node = node switch
            {
                JsonObject o when o.TryGetPropertyValue(token, out var child) => child,
                JsonArray a when int.TryParse(token, out var i) && i >= 0 && i < a.Count => a[i],
                _ => throw invalid($"path {reportAs ?? pointer} does not exist"),
            };
            if (node is null)
            {
                break;
            }
        }

        return node;
    }

    private static (JsonNode Parent, string Last) Parent(JsonNode root, string pointer, Func<string, ApiError> invalid)
    {
        var tokens = Tokens(pointer, invalid);
        var parentPointer = string.Concat(tokens[..^1].Select(t => "/" + t.Replace("~", "~0", StringComparison.Ordinal).Replace("/", "~1", StringComparison.Ordinal)));
        var parent = Find(root, parentPointer, invalid, pointer) ?? throw invalid($"path {pointer} does not exist");
        return (parent, tokens[^1]);
    }

    private static JsonNode Add(JsonNode root, string pointer, JsonNode? value, Func<string, ApiError> invalid)
    {
        if (pointer.Length == 0)
        {
            return value ?? throw invalid("cannot replace the whole document with null");
        }

        var (parent, last) = Parent(root, pointer, invalid);
        switch (parent)
        {
            case JsonObject o:
                o[last] = value;
                break;
            case JsonArray a when last == "-":
                a.Add(value);
                break;
            case JsonArray a when int.TryParse(last, out var i) && i >= 0 && i <= a.Count:
                a.Insert(i, value);
                break;
            default:
                throw invalid($"path {pointer} does not exist");
        }

        return root;
    }

    private static JsonNode? Remove(JsonNode root, string pointer, Func<string, ApiError> invalid)
    {
        var (parent, last) = Parent(root, pointer, invalid);
        switch (parent)
        {
            case JsonObject o when o.TryGetPropertyValue(last, out var value):
                o.Remove(last);
                return value;
            case JsonArray a when int.TryParse(last, out var i) && i >= 0 && i < a.Count:
                var item = a[i];
                a.RemoveAt(i);
                return item;
            default:
                throw invalid($"path {pointer} does not exist");
        }
    }
}
