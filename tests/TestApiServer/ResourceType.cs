namespace TsCgnat.TestApiServer;

/// <summary>
/// One kind the fake server serves, with the storage rules a real API server applies to it.
/// </summary>
/// <param name="Resource">Plural, as in the URL and in the direct-access methods ("nodes").</param>
/// <param name="Group">API group; empty for the core group.</param>
/// <param name="HasStatus">Has a <c>/status</c> subresource, so writes to the main resource keep the stored status.</param>
/// <param name="StatusOnCreate">Create keeps <c>status</c> from the body (a kubelet registers a Node with its status);
/// custom resources with a status subresource drop it.</param>
/// <param name="TracksGeneration">Sets <c>metadata.generation</c> to 1 on create and bumps it when anything but
/// metadata and status changes, as the API server does for custom resources.</param>
/// <param name="UnconditionalUpdate">A PUT without <c>metadata.resourceVersion</c> is accepted (built-in kinds);
/// custom resources refuse it.</param>
/// <param name="CreateOnUpdate">A PUT of a missing object creates it (Events do; most kinds answer 404).</param>
/// <param name="ReturnsDeletedObject">DELETE answers with the object (custom resources) rather than a success Status.</param>
internal sealed record ResourceType(
    string Resource,
    string Group,
    string Version,
    string Kind,
    bool Namespaced,
    bool HasStatus = false,
    bool StatusOnCreate = false,
    bool TracksGeneration = false,
    bool UnconditionalUpdate = true,
    bool CreateOnUpdate = false,
    bool ReturnsDeletedObject = false)
{
    public string ApiVersion => Group.Length == 0 ? Version : $"{Group}/{Version}";

    public string ListKind => Kind + "List";

    /// <summary>The resource as a real server names it in messages: <c>leases.coordination.k8s.io</c>, <c>nodes</c>.</summary>
    public string QualifiedResource => Group.Length == 0 ? Resource : $"{Resource}.{Group}";

    /// <summary>Name of the store this type reads and writes; both Event APIs share one, as on a real server.</summary>
    public string Store => Resource;

    public bool IsEventsV1 => Group == "events.k8s.io";

    public static readonly ResourceType Nodes = new("nodes", "", "v1", "Node", Namespaced: false, HasStatus: true, StatusOnCreate: true);

    public static readonly ResourceType CoreEvents = new("events", "", "v1", "Event", Namespaced: true, CreateOnUpdate: true);

    public static readonly ResourceType Events = new("events", "events.k8s.io", "v1", "Event", Namespaced: true, CreateOnUpdate: true);

    public static readonly ResourceType Leases = new("leases", "coordination.k8s.io", "v1", "Lease", Namespaced: true);

    public static readonly ResourceType Policies = new(
        "cgnatallowpolicies", "tscgnat.io", "v1alpha1", "CgnatAllowPolicy", Namespaced: false,
        HasStatus: true, TracksGeneration: true, UnconditionalUpdate: false, ReturnsDeletedObject: true);

    public static readonly ResourceType NodeStates = new(
        "cgnatnodestates", "tscgnat.io", "v1alpha1", "CgnatNodeState", Namespaced: false,
        HasStatus: true, TracksGeneration: true, UnconditionalUpdate: false, ReturnsDeletedObject: true);

    public static IReadOnlyList<ResourceType> All { get; } = [Nodes, CoreEvents, Events, Leases, Policies, NodeStates];

    /// <summary>The type that owns a store; the direct-access methods use it (core/v1 for events).</summary>
    public static ResourceType ForStore(string resource) =>
        All.FirstOrDefault(t => t.Resource == resource && !t.IsEventsV1)
        ?? throw new ArgumentException(
            $"unknown resource \"{resource}\"; served: {string.Join(", ", All.Where(t => !t.IsEventsV1).Select(t => t.Resource))}",
            nameof(resource));

    public static ResourceType? Find(string group, string version, string resource) =>
        All.FirstOrDefault(t => t.Group == group && t.Version == version && t.Resource == resource);
}
