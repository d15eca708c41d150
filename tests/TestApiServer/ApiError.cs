using System.Text.Json.Nodes;

namespace TsCgnat.TestApiServer;

/// <summary>
/// A failed request, answered with a <c>Status</c> body the way a real API server answers it, so the
/// client's <c>HttpOperationException</c> and <c>KubernetesException</c> carry the same code, reason and
/// message our controllers branch on.
/// </summary>
internal sealed class ApiError(int code, string reason, string message, string? name = null, ResourceType? type = null)
    : Exception(message)
{
    public int Code { get; } = code;

    public string Reason { get; } = reason;

    public JsonObject ToStatus()
    {
        var status = new JsonObject
        {
            ["kind"] = "Status",
            ["apiVersion"] = "v1",
            ["metadata"] = new JsonObject(),
            ["status"] = "Failure",
            ["message"] = Message,
            ["reason"] = Reason,
        };
        if (name is not null || type is not null)
        {
            var details = new JsonObject();
            if (name is not null)
            {
                details["name"] = name;
            }

            if (type is not null)
            {
                if (type.Group.Length > 0)
                {
                    details["group"] = type.Group;
                }

                details["kind"] = type.Resource;
            }

            status["details"] = details;
        }

        status["code"] = Code;
        return status;
    }

    public static ApiError NotFound(ResourceType type, string name) =>
        new(404, "NotFound", $"{type.QualifiedResource} \"{name}\" not found", name, type);

    public static ApiError AlreadyExists(ResourceType type, string name) =>
        new(409, "AlreadyExists", $"{type.QualifiedResource} \"{name}\" already exists", name, type);

    public static ApiError Conflict(ResourceType type, string name) =>
        new(409, "Conflict",
            $"Operation cannot be fulfilled on {type.QualifiedResource} \"{name}\": the object has been modified; please apply your changes to the latest version and try again",
            name, type);

    public static ApiError Invalid(ResourceType type, string name, string field, string detail) =>
        new(422, "Invalid", $"{type.Kind}{(type.Group.Length > 0 ? "." + type.Group : "")} \"{name}\" is invalid: {field}: {detail}", name, type);

    public static ApiError BadRequest(string message) => new(400, "BadRequest", message);

    public static ApiError Expired(string message) => new(410, "Expired", message);

    /// <summary>The reason a real server puts beside a code, for injected faults.</summary>
    public static string ReasonFor(int code) => code switch
    {
        400 => "BadRequest",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "NotFound",
        405 => "MethodNotAllowed",
        409 => "Conflict",
        410 => "Expired",
        415 => "UnsupportedMediaType",
        422 => "Invalid",
        429 => "TooManyRequests",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        504 => "Timeout",
        _ => "Unknown",
    };
}
