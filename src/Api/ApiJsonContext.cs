using System.Text.Json;
using System.Text.Json.Serialization;

namespace TsCgnat.Api;

/// <summary>
/// Source-generated (NativeAOT-safe) and strict: a field the types do not know is an error, as with
/// a structural CRD schema, so a typo never silently drops an exemption. Objects as the API server
/// returns them (managedFields, uid, resourceVersion, finalizers, status) read through it too, since
/// KubernetesClient's <c>V1ObjectMeta</c> knows every metadata field. The CRD generator walks this
/// contract (<see cref="Crds.ApiCrds"/>), so the schema and the JSON agree field for field.
/// </summary>
[JsonSourceGenerationOptions(
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    WriteIndented = true)]
[JsonSerializable(typeof(CgnatAllowPolicy))]
[JsonSerializable(typeof(CgnatNodeState))]
// managedFields[].fieldsV1 is typed object in KubernetesClient's model and reads as a JsonElement, so
// writing an object back (an update with the metadata the API server returned) needs its metadata too.
[JsonSerializable(typeof(JsonElement))]
public sealed partial class ApiJsonContext : JsonSerializerContext;
