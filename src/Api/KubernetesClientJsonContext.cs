using System.Text.Json;
using System.Text.Json.Serialization;
using k8s.Models;

namespace TsCgnat.Api;

/// <summary>
/// Our kinds as KubernetesClient reads and writes them (custom-object calls, lists and watches, merge patches),
/// source-generated with KubernetesJson's own settings. The programs hand it to KubernetesClient at start
/// (<c>KubeJson.Use</c> in src/Kube), because KubernetesClient would otherwise reach these types by reflection,
/// which fails in the NativeAOT binaries. Unlike <see cref="ApiJsonContext"/> it does not refuse unknown fields:
/// what the API server returns is read as KubernetesClient reads any object.
/// </summary>
[JsonSourceGenerationOptions(
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    UseStringEnumConverter = true)]
[JsonSerializable(typeof(CgnatAllowPolicy))]
[JsonSerializable(typeof(CgnatNodeState))]
[JsonSerializable(typeof(KubernetesList<CgnatAllowPolicy>))]
[JsonSerializable(typeof(KubernetesList<CgnatNodeState>))]
// managedFields[].fieldsV1 is typed object and reads as a JsonElement, which a write of the object then meets.
[JsonSerializable(typeof(JsonElement))]
public sealed partial class KubernetesClientJsonContext : JsonSerializerContext;
