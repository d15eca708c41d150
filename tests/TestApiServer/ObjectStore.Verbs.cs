using System.Globalization;
using System.Text.Json.Nodes;

namespace TsCgnat.TestApiServer;

/// <summary>The rules of the write verbs, as a real API server applies them to our kinds.</summary>
internal sealed partial class ObjectStore
{
    private const string GenerateNameAlphabet = "bcdfghjklmnpqrstvwxz2456789";

    /// <summary>POST: a new object with uid, creationTimestamp, generation and resourceVersion.</summary>
    public StoredObject Create(ResourceType type, string? ns, JsonObject body)
    {
        var obj = Normalize(type, body);
        var metadata = obj["metadata"]!.AsObject();
        if (type.Namespaced)
        {
            var given = (string?)metadata["namespace"];
            if (!string.IsNullOrEmpty(given) && given != ns)
            {
                throw ApiError.BadRequest("the namespace of the provided object does not match the namespace sent on the request");
            }

            metadata["namespace"] = ns;
        }
        else
        {
            metadata.Remove("namespace");
        }

        lock (gate)
        {
            var name = (string?)metadata["name"];
            if (string.IsNullOrEmpty(name))
            {
                var prefix = (string?)metadata["generateName"];
                if (string.IsNullOrEmpty(prefix))
                {
                    throw ApiError.Invalid(type, "", "metadata.name", "Required value: name or generateName is required");
                }

                do
                {
                    name = prefix + string.Concat(Enumerable.Range(0, 5).Select(_ => GenerateNameAlphabet[Random.Shared.Next(GenerateNameAlphabet.Length)]));
                }
                while (objects[type.Store].ContainsKey(Key(ns, name)));
                metadata["name"] = name;
            }

            if (objects[type.Store].ContainsKey(Key(type.Namespaced ? ns : null, name)))
            {
                throw ApiError.AlreadyExists(type, name);
            }

            metadata["uid"] = Guid.NewGuid().ToString();
            metadata["creationTimestamp"] = Timestamp();
            metadata.Remove("deletionTimestamp");
            metadata.Remove("deletionGracePeriodSeconds");
            if (type.TracksGeneration)
            {
                metadata["generation"] = 1;
            }

            if (type.HasStatus && !type.StatusOnCreate)
            {
                obj.Remove("status");
            }

            return Commit(type, obj);
        }
    }

    /// <summary>PUT of the object or of its <c>/status</c>.</summary>
    public StoredObject Update(ResourceType type, string? ns, string name, JsonObject body, bool status)
    {
        var given = (string?)body["metadata"]?["name"];
        if (!string.IsNullOrEmpty(given) && given != name)
        {
            throw ApiError.BadRequest($"the name of the object ({given}) does not match the name on the URL ({name})");
        }

        lock (gate)
        {
            var current = objects[type.Store].GetValueOrDefault(Key(ns, name));
            if (current is null)
            {
                if (type.CreateOnUpdate && !status)
                {
                    body["metadata"] ??= new JsonObject();
                    body["metadata"]!["name"] = name;
                    return Create(type, ns, body);
                }

                throw ApiError.NotFound(type, name);
            }

            var precondition = (string?)body["metadata"]?["resourceVersion"];
            if (string.IsNullOrEmpty(precondition))
            {
                if (!type.UnconditionalUpdate)
                {
                    throw ApiError.Invalid(type, name, "metadata.resourceVersion", "Invalid value: 0x0: must be specified for an update");
                }
            }
            else if (precondition != current.ResourceVersion.ToString(CultureInfo.InvariantCulture))
            {
                throw ApiError.Conflict(type, name);
            }

            return Write(type, current, Normalize(type, body), status);
        }
    }

    /// <summary>PATCH: <paramref name="patch"/> turns the current object into the body of an update.
    /// A resourceVersion the patch sets is a precondition, as on a real server.</summary>
    public StoredObject Patch(ResourceType type, string? ns, string name, Func<JsonObject, JsonNode?> patch, bool status)
    {
        lock (gate)
        {
            var current = objects[type.Store].GetValueOrDefault(Key(ns, name)) ?? throw ApiError.NotFound(type, name);
            if (patch(current.ToNode()) is not JsonObject patched)
            {
                throw ApiError.BadRequest("the patch does not leave an object");
            }

            var version = (string?)patched["metadata"]?["resourceVersion"];
            if (!string.IsNullOrEmpty(version) && version != current.ResourceVersion.ToString(CultureInfo.InvariantCulture))
            {
                throw ApiError.Conflict(type, name);
            }

            return Write(type, current, Normalize(type, patched), status);
        }
    }

    /// <summary>DELETE: with finalizers the object stays, marked with a deletionTimestamp; without, it goes.</summary>
    /// <returns>The object as it is after the call, and whether it is gone.</returns>
    public (StoredObject Object, bool Gone) Delete(ResourceType type, string? ns, string name, string? uidPrecondition, string? versionPrecondition)
    {
        lock (gate)
        {
            var current = objects[type.Store].GetValueOrDefault(Key(ns, name)) ?? throw ApiError.NotFound(type, name);
            if (!string.IsNullOrEmpty(uidPrecondition) && uidPrecondition != current.Uid)
            {
                throw new ApiError(409, "Conflict",
                    $"Operation cannot be fulfilled on {type.QualifiedResource} \"{name}\": Precondition failed: UID in precondition: {uidPrecondition}, UID in object meta: {current.Uid}",
                    name, type);
            }

            if (!string.IsNullOrEmpty(versionPrecondition) && versionPrecondition != current.ResourceVersion.ToString(CultureInfo.InvariantCulture))
            {
                throw new ApiError(409, "Conflict",
                    $"Operation cannot be fulfilled on {type.QualifiedResource} \"{name}\": Precondition failed: ResourceVersion in precondition: {versionPrecondition}, ResourceVersion in meta: {current.ResourceVersion}",
                    name, type);
            }

            return BeginDelete(type, current);
        }
    }

    private (StoredObject Object, bool Gone) BeginDelete(ResourceType type, StoredObject current)
    {
        if (!current.HasFinalizers)
        {
            return (RemoveNow(current), true);
        }

        if (current.Deleting)
        {
            return (current, false);
        }

        var obj = current.ToNode();
        obj["metadata"]!["deletionTimestamp"] = Timestamp();
        obj["metadata"]!["deletionGracePeriodSeconds"] = 0;
        return (Commit(type, obj), false);
    }

    /// <summary>
    /// The common end of PUT and PATCH: the fields this endpoint may not change come from the stored
    /// object, generation follows spec, a no-op writes nothing (as etcd's guaranteed update), and an
    /// object being deleted goes when its last finalizer does.
    /// </summary>
    private StoredObject Write(ResourceType type, StoredObject current, JsonObject body, bool status)
    {
        var old = current.ToNode();
        JsonObject next;
        if (status)
        {
            next = old.DeepClone().AsObject();
            Replace(next, "status", body["status"]);
        }
        else
        {
            next = body;
            var metadata = next["metadata"]!.AsObject();
            var oldMetadata = old["metadata"]!.AsObject();
            foreach (var field in new[] { "name", "namespace", "uid", "creationTimestamp", "deletionTimestamp", "deletionGracePeriodSeconds", "generation" })
            {
                Replace(metadata, field, oldMetadata[field]);
            }

            if (type.HasStatus)
            {
                Replace(next, "status", old["status"]);
            }

            if (type.TracksGeneration && !JsonNode.DeepEquals(WithoutMetadataAndStatus(old), WithoutMetadataAndStatus(next)))
            {
                metadata["generation"] = ((long?)oldMetadata["generation"] ?? 0) + 1;
            }

            if (current.Deleting)
            {
                var before = Finalizers(oldMetadata);
                var added = Finalizers(metadata).Except(before).ToList();
                if (added.Count > 0)
                {
                    throw ApiError.Invalid(type, current.Name, "metadata.finalizers",
                        $"Forbidden: no new finalizers can be added if the object is being deleted, found new finalizers []string{{\"{string.Join("\", \"", added)}\"}}");
                }
            }
        }

        next["metadata"]!["resourceVersion"] = old["metadata"]!["resourceVersion"]?.DeepClone();
        if (JsonNode.DeepEquals(old, next))
        {
            return current;
        }

        return current.Deleting && !Finalizers(next["metadata"]!.AsObject()).Any()
            ? RemoveNow(current, next)
            : Commit(type, next);
    }

    private static IEnumerable<string> Finalizers(JsonObject metadata) =>
        metadata["finalizers"] is JsonArray list ? list.Select(f => (string?)f ?? "") : [];

    private static JsonObject WithoutMetadataAndStatus(JsonObject obj)
    {
        var copy = obj.DeepClone().AsObject();
        copy.Remove("metadata");
        copy.Remove("status");
        return copy;
    }

    private static void Replace(JsonObject obj, string field, JsonNode? value)
    {
        if (value is null)
        {
            obj.Remove(field);
        }
        else
        {
            obj[field] = value.DeepClone();
        }
    }

    /// <summary>A copy with the type's apiVersion and kind (a body may leave them out, as typed clients do) and a metadata object.</summary>
    private static JsonObject Normalize(ResourceType type, JsonObject body)
    {
        var obj = body.DeepClone().AsObject();
        obj["apiVersion"] = type.ApiVersion;
        obj["kind"] = type.Kind;
        if (obj["metadata"] is not JsonObject)
        {
            obj["metadata"] = new JsonObject();
        }

        return obj;
    }

    /// <summary>Direct store write for tests: no validation, no admission, status kept; bookkeeping the
    /// server would do (uid, creationTimestamp, generation) filled in where the object leaves it out.</summary>
    public StoredObject Put(ResourceType type, JsonObject body)
    {
        var obj = Normalize(type, body);
        var metadata = obj["metadata"]!.AsObject();
        var name = (string?)metadata["name"];
        if (string.IsNullOrEmpty(name))
        {
            throw new ArgumentException("the object has no metadata.name", nameof(body));
        }

        var ns = (string?)metadata["namespace"];
        if (type.Namespaced && string.IsNullOrEmpty(ns))
        {
            throw new ArgumentException($"{type.Resource} are namespaced and the object has no metadata.namespace", nameof(body));
        }

        if (!type.Namespaced)
        {
            metadata.Remove("namespace");
            ns = null;
        }

        lock (gate)
        {
            var current = objects[type.Store].GetValueOrDefault(Key(ns, name));
            var old = current?.ToNode();
            metadata["uid"] ??= (string?)old?["metadata"]?["uid"] ?? Guid.NewGuid().ToString();
            metadata["creationTimestamp"] ??= (string?)old?["metadata"]?["creationTimestamp"] ?? Timestamp();
            if (type.TracksGeneration && metadata["generation"] is null)
            {
                var generation = (long?)old?["metadata"]?["generation"] ?? 0;
                metadata["generation"] = old is not null && JsonNode.DeepEquals(WithoutMetadataAndStatus(old), WithoutMetadataAndStatus(obj)) ? generation : generation + 1;
            }

            return Commit(type, obj);
        }
    }

    /// <summary>Direct removal for tests: finalizers ignored, dependents collected.</summary>
    public void Remove(ResourceType type, string? ns, string name)
    {
        lock (gate)
        {
            if (objects[type.Store].GetValueOrDefault(Key(type.Namespaced ? ns : null, name)) is { } current)
            {
                RemoveNow(current);
            }
        }
    }
}
