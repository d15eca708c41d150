using System.Text.Json.Serialization;

namespace TsCgnat.Api;

/// <summary>
/// Source-generated (NativeAOT-safe) and strict: a field the types do not know is an error, as with
/// a structural CRD schema, so a typo never silently drops an exemption.
/// </summary>
[JsonSourceGenerationOptions(
    UnmappedMemberHandling = JsonUnmappedMemberHandling.Disallow,
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    WriteIndented = true)]
[JsonSerializable(typeof(CgnatAllowPolicy))]
internal sealed partial class ApiJsonContext : JsonSerializerContext;
