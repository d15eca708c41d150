using System.Buffers;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using Microsoft.AspNetCore.Http;

namespace TsCgnat.TestApiServer;

/// <summary>Where a request points: kind, namespace, name and subresource, parsed from the URL layout of a real API server.</summary>
internal sealed record ApiTarget(ResourceType Type, string? Namespace, string? Name, bool Status);

/// <summary>
/// The HTTP side: routes the URLs KubernetesClient builds (<c>/api/v1/...</c>, <c>/apis/group/version/...</c>,
/// <c>namespaces/{ns}/</c> for namespaced kinds, <c>/status</c>), records every request, applies injected
/// faults, and writes objects, lists, Status bodies and watch streams as a real server does.
/// </summary>
internal sealed class RestApi(ObjectStore store, FakeApiServer server)
{
    private static readonly byte[] NewLine = "\n"u8.ToArray();

    public async Task HandleAsync(HttpContext context)
    {
        var request = context.Request;
        var query = request.Query;
        var watch = query["watch"].ToString() is "true" or "1";
        ApiTarget? target = null;
        ApiError? routeError = null;
        try
        {
            target = Route(request.Path.Value ?? "/");
        }
        catch (ApiError e)
        {
            routeError = e;
        }

        var record = new RequestRecord(
            VerbOf(request.Method, target?.Name is not null, watch),
            request.Path.Value ?? "/",
            Uri.UnescapeDataString(request.QueryString.Value?.TrimStart('?') ?? ""),
            watch,
            server.Time.GetUtcNow());
        server.Record(record);
        try
        {
            if (server.TakeFault(record) is { } fault)
            {
                throw new ApiError(fault, ApiError.ReasonFor(fault), $"injected failure: {fault} for {record.Verb} {record.Path}");
            }

            if (routeError is not null)
            {
                throw routeError;
            }

            await DispatchAsync(context, target!, record.Verb);
        }
        catch (ApiError e) when (!context.Response.HasStarted)
        {
            await WriteJsonAsync(context, e.Code, e.ToStatus());
        }
        catch (Exception e) when (!context.Response.HasStarted && e is not OperationCanceledException)
        {
            // A body this server cannot handle (say, a label value that is a number): a Status that says
            // why, rather than an empty 500, so the failing test shows it.
            await WriteJsonAsync(context, 500, new ApiError(500, "InternalError", $"the fake API server failed: {e.GetType().Name}: {e.Message}").ToStatus());
        }
    }

    private static string VerbOf(string method, bool named, bool watch) => method switch
    {
        "GET" when watch => "watch",
        "GET" => named ? "get" : "list",
        "POST" => "create",
        "PUT" => "update",
        "PATCH" => "patch",
        "DELETE" => named ? "delete" : "deletecollection",
        _ => method.ToLowerInvariant(),
    };

    private static ApiError NotServed() => new(404, "NotFound", "the server could not find the requested resource");

    private static ApiTarget Route(string path)
    {
        var segments = path.Trim('/').Split('/');
        string group, version;
        ArraySegment<string> rest;
        if (segments.Length >= 3 && segments[0] == "api")
        {
            (group, version, rest) = ("", segments[1], segments[2..]);
        }
        else if (segments.Length >= 4 && segments[0] == "apis")
        {
            (group, version, rest) = (segments[1], segments[2], segments[3..]);
        }
        else
        {
            throw NotServed();
        }

        string? ns = null;
        if (rest[0] == "namespaces")
        {
            if (rest.Count < 3)
            {
                throw NotServed();
            }

            ns = rest[1];
            rest = rest[2..];
        }

        if (rest.Count > 3 || rest.Any(s => s.Length == 0))
        {
            throw NotServed();
        }

        var type = ResourceType.Find(group, version, rest[0]) ?? throw NotServed();
        var name = rest.Count > 1 ? rest[1] : null;
        var status = rest.Count > 2;
        if ((status && (rest[2] != "status" || !type.HasStatus)) || (!type.Namespaced && ns is not null) || (type.Namespaced && ns is null && name is not null))
        {
            throw NotServed();
        }

        return new ApiTarget(type, ns, name, status);
    }

    private async Task DispatchAsync(HttpContext context, ApiTarget target, string verb)
    {
        var type = target.Type;
        var name = target.Name;
        switch (verb)
        {
            case "get":
                {
                    var found = store.Find(type.Store, target.Namespace, name!) ?? throw ApiError.NotFound(type, name!);
                    await WriteObjectAsync(context, 200, type, found);
                    return;
                }

            case "list":
                await ListAsync(context, target);
                return;
            case "watch":
                await WatchAsync(context, target);
                return;
            case "create" when name is null:
                {
                    var body = ToStored(type, await ReadObjectAsync(context));
                    await WriteObjectAsync(context, 201, type, store.Create(type, target.Namespace, body));
                    return;
                }

            case "update" when name is not null:
                {
                    var body = ToStored(type, await ReadObjectAsync(context));
                    await WriteObjectAsync(context, 200, type, store.Update(type, target.Namespace, name, body, target.Status));
                    return;
                }

            case "patch" when name is not null:
                {
                    var apply = await ReadPatchAsync(context, type, name);
                    var patched = store.Patch(type, target.Namespace, name, current => ToStoredNode(type, apply(ToView(type, current))), target.Status);
                    await WriteObjectAsync(context, 200, type, patched);
                    return;
                }

            case "delete" when name is not null && !target.Status:
                {
                    var options = await ReadOptionalObjectAsync(context);
                    var (obj, gone) = store.Delete(
                        type, target.Namespace, name,
                        (string?)options?["preconditions"]?["uid"],
                        (string?)options?["preconditions"]?["resourceVersion"]);
                    if (gone && !type.ReturnsDeletedObject)
                    {
                        await WriteJsonAsync(context, 200, new JsonObject
                        {
                            ["kind"] = "Status",
                            ["apiVersion"] = "v1",
                            ["metadata"] = new JsonObject(),
                            ["status"] = "Success",
                            ["details"] = new JsonObject { ["name"] = name, ["group"] = type.Group, ["kind"] = type.Resource, ["uid"] = obj.Uid },
                        });
                    }
                    else
                    {
                        await WriteObjectAsync(context, 200, type, obj);
                    }

                    return;
                }

            default:
                throw new ApiError(405, "MethodNotAllowed", $"the server does not allow this method on the requested resource ({verb})");
        }
    }

    private async Task ListAsync(HttpContext context, ApiTarget target)
    {
        var query = context.Request.Query;
        var type = target.Type;
        var labels = LabelSelector.Parse(query["labelSelector"]);
        var fields = FieldSelector.Parse(query["fieldSelector"], type);
        var limit = int.TryParse(query["limit"], out var l) && l > 0 ? l : int.MaxValue;
        long? at = null;
        string? after = null;
        var continueToken = query["continue"].ToString();
        if (continueToken.Length > 0)
        {
            (at, after) = DecodeContinue(continueToken);
        }
        else if (query["resourceVersionMatch"] == "Exact" && long.TryParse(query["resourceVersion"], out var exact))
        {
            at = exact;
        }

        IReadOnlyList<StoredObject> items;
        long listVersion;
        try
        {
            (items, listVersion) = store.List(type.Store, target.Namespace, at);
        }
        catch (ApiError e) when (e.Code == 410 && continueToken.Length > 0)
        {
            throw ApiError.Expired("The provided continue parameter is too old to display a consistent list result. You can start a new list without the continue parameter.");
        }

        var selected = items
            .Where(o => after is null || string.CompareOrdinal($"{o.Namespace}/{o.Name}", after) > 0)
            .Where(o => labels.Matches(o.Labels) && fields.Matches(o.Fields))
            .ToList();
        var page = selected.Take(limit).ToList();
        var remaining = selected.Count - page.Count;

        context.Response.StatusCode = 200;
        context.Response.ContentType = "application/json";
        using (var writer = new Utf8JsonWriter(context.Response.BodyWriter))
        {
            writer.WriteStartObject();
            writer.WriteString("kind", type.ListKind);
            writer.WriteString("apiVersion", type.ApiVersion);
            writer.WriteStartObject("metadata");
            writer.WriteString("resourceVersion", listVersion.ToString(CultureInfo.InvariantCulture));
            if (remaining > 0)
            {
                var last = page[^1];
                writer.WriteString("continue", EncodeContinue(listVersion, $"{last.Namespace}/{last.Name}"));
                writer.WriteNumber("remainingItemCount", remaining);
            }

            writer.WriteEndObject();
            writer.WriteStartArray("items");
            foreach (var item in page)
            {
                writer.WriteRawValue(Serialized(type, item), skipInputValidation: true);
            }

            writer.WriteEndArray();
            writer.WriteEndObject();
        }

        await context.Response.BodyWriter.FlushAsync(context.RequestAborted);
    }

    private static string EncodeContinue(long resourceVersion, string lastKey) =>
        Convert.ToBase64String(Encoding.UTF8.GetBytes($"{resourceVersion.ToString(CultureInfo.InvariantCulture)}|{lastKey}"));

    private static (long, string) DecodeContinue(string token)
    {
        try
        {
            var text = Encoding.UTF8.GetString(Convert.FromBase64String(token));
            var bar = text.IndexOf('|', StringComparison.Ordinal);
            return (long.Parse(text[..bar], CultureInfo.InvariantCulture), text[(bar + 1)..]);
        }
        catch (Exception e) when (e is FormatException or ArgumentOutOfRangeException)
        {
            throw ApiError.BadRequest($"invalid continue token: {e.Message}");
        }
    }

    private async Task WatchAsync(HttpContext context, ApiTarget target)
    {
        var query = context.Request.Query;
        var type = target.Type;
        var watch = new WatchSubscription(type, target.Namespace, LabelSelector.Parse(query["labelSelector"]), FieldSelector.Parse(query["fieldSelector"], type));
        var bookmarks = query["allowWatchBookmarks"] == "true";
        var sendInitialEvents = query["sendInitialEvents"] == "true";
        long? from = long.TryParse(query["resourceVersion"], out var rv) && rv > 0 ? rv : null;
        if (target.Name is not null)
        {
            throw ApiError.BadRequest("watch of a single object: use a fieldSelector on metadata.name");
        }

        var response = context.Response;
        response.StatusCode = 200;
        response.ContentType = "application/json";
        try
        {
            store.Open(watch, from, sendInitialEvents, bookmarks);
        }
        catch (ApiError e) when (e.Code == 410)
        {
            // A real server accepts the watch and then sends the 410 as an ERROR event.
            await WriteLineAsync(context, new JsonObject { ["type"] = "ERROR", ["object"] = e.ToStatus() });
            return;
        }

        try
        {
            await response.StartAsync(context.RequestAborted);
            await response.Body.FlushAsync(context.RequestAborted);
            using var bookmarkTimer = bookmarks
                ? new Timer(_ => store.Bookmark(watch), null, server.BookmarkInterval, server.BookmarkInterval)
                : null;
            using var timeoutTimer = int.TryParse(query["timeoutSeconds"], out var seconds) && seconds > 0
                ? new Timer(_ => store.End(watch, bookmarks), null, TimeSpan.FromSeconds(seconds), Timeout.InfiniteTimeSpan)
                : null;
            await foreach (var item in watch.Items.ReadAllAsync(context.RequestAborted))
            {
                switch (item)
                {
                    case WatchEventItem e:
                        await WriteEventAsync(context, e.Type, Serialized(type, e.Object));
                        break;
                    case BookmarkItem b:
                        await WriteEventAsync(context, "BOOKMARK", BookmarkObject(type, b));
                        break;
                    case EndItem { Abort: true }:
                        context.Abort();
                        return;
                    case EndItem:
                        return;
                }
            }
        }
        catch (Exception e) when (e is OperationCanceledException or IOException)
        {
            // The client went away.
        }
        finally
        {
            store.Close(watch);
        }
    }

    private static byte[] BookmarkObject(ResourceType type, BookmarkItem bookmark)
    {
        var metadata = new JsonObject { ["resourceVersion"] = bookmark.ResourceVersion.ToString(CultureInfo.InvariantCulture) };
        if (bookmark.InitialEventsEnd)
        {
            metadata["annotations"] = new JsonObject { ["k8s.io/initial-events-end"] = "true" };
        }

        return JsonSerializer.SerializeToUtf8Bytes(new JsonObject { ["kind"] = type.Kind, ["apiVersion"] = type.ApiVersion, ["metadata"] = metadata });
    }

    private static async Task WriteEventAsync(HttpContext context, string type, byte[] obj)
    {
        var buffer = new ArrayBufferWriter<byte>(obj.Length + 32);
        using (var writer = new Utf8JsonWriter(buffer))
        {
            writer.WriteStartObject();
            writer.WriteString("type", type);
            writer.WritePropertyName("object");
            writer.WriteRawValue(obj, skipInputValidation: true);
            writer.WriteEndObject();
        }

        buffer.Write(NewLine);
        await context.Response.Body.WriteAsync(buffer.WrittenMemory, context.RequestAborted);
        await context.Response.Body.FlushAsync(context.RequestAborted);
    }

    private static async Task WriteLineAsync(HttpContext context, JsonObject line)
    {
        var bytes = JsonSerializer.SerializeToUtf8Bytes(line);
        await context.Response.Body.WriteAsync(bytes, context.RequestAborted);
        await context.Response.Body.WriteAsync(NewLine, context.RequestAborted);
    }

    /// <summary>An object as this endpoint serves it: stored bytes as they are, events converted for events.k8s.io.</summary>
    private static byte[] Serialized(ResourceType type, StoredObject obj) =>
        type.IsEventsV1 ? JsonSerializer.SerializeToUtf8Bytes(EventConversion.ToEventsV1(obj.ToNode())) : obj.Json;

    private static JsonObject ToView(ResourceType type, JsonObject stored) => type.IsEventsV1 ? EventConversion.ToEventsV1(stored) : stored;

    private static JsonObject ToStored(ResourceType type, JsonObject body) => type.IsEventsV1 ? EventConversion.ToCore(body) : body;

    private static JsonNode? ToStoredNode(ResourceType type, JsonNode? body) => body is JsonObject o ? ToStored(type, o) : body;

    private static async Task WriteObjectAsync(HttpContext context, int code, ResourceType type, StoredObject obj)
    {
        context.Response.StatusCode = code;
        context.Response.ContentType = "application/json";
        await context.Response.Body.WriteAsync(Serialized(type, obj), context.RequestAborted);
    }

    private static async Task WriteJsonAsync(HttpContext context, int code, JsonObject body)
    {
        context.Response.StatusCode = code;
        context.Response.ContentType = "application/json";
        await context.Response.Body.WriteAsync(JsonSerializer.SerializeToUtf8Bytes(body), context.RequestAborted);
    }

    private static async Task<JsonNode?> ReadJsonAsync(HttpContext context)
    {
        try
        {
            return await JsonNode.ParseAsync(context.Request.Body, cancellationToken: context.RequestAborted);
        }
        catch (JsonException e)
        {
            throw ApiError.BadRequest($"the request body is not valid JSON: {e.Message}");
        }
    }

    private static async Task<JsonObject> ReadObjectAsync(HttpContext context) =>
        await ReadJsonAsync(context) as JsonObject ?? throw ApiError.BadRequest("the request body is not a JSON object");

    private static async Task<JsonObject?> ReadOptionalObjectAsync(HttpContext context)
    {
        using var reader = new StreamReader(context.Request.Body, Encoding.UTF8);
        var text = await reader.ReadToEndAsync(context.RequestAborted);
        if (string.IsNullOrWhiteSpace(text))
        {
            return null;
        }

        try
        {
            return JsonNode.Parse(text) as JsonObject;
        }
        catch (JsonException e)
        {
            throw ApiError.BadRequest($"the request body is not valid JSON: {e.Message}");
        }
    }

    /// <summary>The patch of the request as a function of the current object, by its content type.</summary>
    private static async Task<Func<JsonObject, JsonNode?>> ReadPatchAsync(HttpContext context, ResourceType type, string name)
    {
        var mediaType = MediaTypeHeaderValue.TryParse(context.Request.ContentType, out var parsed) ? parsed.MediaType : null;
        switch (mediaType)
        {
            case "application/merge-patch+json":
            case "application/strategic-merge-patch+json":
                {
                    var patch = await ReadJsonAsync(context) as JsonObject ?? throw ApiError.BadRequest("a merge patch must be a JSON object");
                    return current => MergePatch.Apply(current, patch);
                }

            case "application/json-patch+json":
                {
                    var patch = await ReadJsonAsync(context);
                    return current => JsonPatch.Apply(current, patch, message => ApiError.Invalid(type, name, "patch", message));
                }

            default:
                throw new ApiError(415, "UnsupportedMediaType",
                    $"the body of the request was in an unknown format - accepted media types include: application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json (got {mediaType ?? "none"})");
        }
    }
}
