using System.Text.Json.Nodes;

namespace TsCgnat.TestApiServer;

/// <summary>
/// A real API server keeps one Event store and serves it as core/v1 and as events.k8s.io/v1; so do we:
/// events are stored in core/v1 form and renamed field by field at the events.k8s.io edge (the mapping of
/// Kubernetes' <c>pkg/apis/events/v1</c> conversion).
/// </summary>
internal static class EventConversion
{
    private static readonly (string Core, string EventsV1)[] Renames =
    [
        ("involvedObject", "regarding"),
        ("message", "note"),
        ("reportingComponent", "reportingController"),
        ("source", "deprecatedSource"),
        ("firstTimestamp", "deprecatedFirstTimestamp"),
        ("lastTimestamp", "deprecatedLastTimestamp"),
        ("count", "deprecatedCount"),
    ];

    public static JsonObject ToEventsV1(JsonObject core) => Rename(core, fromCore: true, ResourceType.Events.ApiVersion);

    public static JsonObject ToCore(JsonObject eventsV1) => Rename(eventsV1, fromCore: false, ResourceType.CoreEvents.ApiVersion);

    private static JsonObject Rename(JsonObject source, bool fromCore, string apiVersion)
    {
        var result = new JsonObject();
        foreach (var (key, value) in source)
        {
            var renamed = Renames.FirstOrDefault(r => (fromCore ? r.Core : r.EventsV1) == key);
            var target = renamed == default ? key : fromCore ? renamed.EventsV1 : renamed.Core;
            result[target] = value?.DeepClone();
        }

        result["apiVersion"] = apiVersion;
        result["kind"] = "Event";
        return result;
    }
}
