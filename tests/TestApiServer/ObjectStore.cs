using System.Globalization;
using System.Text.Json.Nodes;

namespace TsCgnat.TestApiServer;

/// <summary>What one write did, kept in the history that watches resume from.</summary>
/// <param name="Before">The object before the write; null for a create.</param>
/// <param name="After">The object after it; for a deletion, the last state stamped with the deletion's resourceVersion.</param>
internal sealed record Change(long ResourceVersion, string Type, StoredObject? Before, StoredObject After)
{
    public const string Added = "ADDED";
    public const string Modified = "MODIFIED";
    public const string Deleted = "DELETED";
}

/// <summary>
/// Every object the fake server holds, under one lock and one resourceVersion counter, with the
/// history of changes that watches resume from (etcd's role). The verbs' rules live in
/// <c>ObjectStore.Verbs.cs</c>, watches in <c>ObjectStore.Watch.cs</c>.
/// </summary>
internal sealed partial class ObjectStore(Func<DateTimeOffset> now)
{
    private readonly Lock gate = new();
    private readonly Dictionary<string, SortedDictionary<string, StoredObject>> objects =
        ResourceType.All.Select(t => t.Store).Distinct().ToDictionary(s => s, _ => new SortedDictionary<string, StoredObject>(StringComparer.Ordinal));

    private readonly Dictionary<string, StoredObject> byUid = new(StringComparer.Ordinal);
    private readonly List<Change> history = [];
    private long resourceVersion = 1;

    /// <summary>Changes up to and including this resourceVersion may have been forgotten.</summary>
    private long compactedThrough = 1;

    /// <summary>How many changes are kept before the oldest half is forgotten, as etcd compaction would.</summary>
    public int HistoryLimit { get; set; } = 20_000;

    public long CurrentResourceVersion
    {
        get
        {
            lock (gate)
            {
                return resourceVersion;
            }
        }
    }

    private static string Key(string? ns, string name) => $"{ns}/{name}";

    private string Timestamp() => now().UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss'Z'", CultureInfo.InvariantCulture);

    public StoredObject? Find(string store, string? ns, string name)
    {
        lock (gate)
        {
            return objects[store].GetValueOrDefault(Key(ns, name));
        }
    }

    /// <summary>Forgets the whole history: a watch or an exact list from any older resourceVersion gets 410 Gone.</summary>
    public void Compact()
    {
        lock (gate)
        {
            history.Clear();
            compactedThrough = resourceVersion;
        }
    }

    /// <summary>
    /// The objects of one store (one namespace, or all) as they were at <paramref name="at"/> (null: now),
    /// ordered by namespace and name, with the resourceVersion the list stands for. Older states are
    /// rebuilt by undoing the history, so paged lists stay consistent as on a real server.
    /// </summary>
    public (IReadOnlyList<StoredObject> Items, long ResourceVersion) List(string store, string? ns, long? at)
    {
        lock (gate)
        {
            var current = objects[store];
            if (at is null || at == resourceVersion)
            {
                return (current.Values.Where(o => ns is null || o.Namespace == ns).ToList(), resourceVersion);
            }

            if (at > resourceVersion)
            {
                throw new ApiError(504, "Timeout", $"Too large resource version: {at}, current: {resourceVersion}");
            }

            if (at < compactedThrough)
            {
                throw ApiError.Expired($"The resourceVersion for the provided list is too old: {at} ({compactedThrough})");
            }

            var snapshot = new SortedDictionary<string, StoredObject>(current, StringComparer.Ordinal);
            for (var i = history.Count - 1; i >= 0 && history[i].ResourceVersion > at; i--)
            {
                var change = history[i];
                if (change.After.Store != store)
                {
                    continue;
                }

                var key = Key(change.After.Namespace, change.After.Name);
                if (change.Before is null)
                {
                    snapshot.Remove(key);
                }
                else
                {
                    snapshot[key] = change.Before;
                }
            }

            return (snapshot.Values.Where(o => ns is null || o.Namespace == ns).ToList(), at.Value);
        }
    }

    /// <summary>Stores <paramref name="obj"/> under the next resourceVersion and tells the watches.</summary>
    private StoredObject Commit(ResourceType type, JsonObject obj)
    {
        var metadata = obj["metadata"]!.AsObject();
        var rv = ++resourceVersion;
        metadata["resourceVersion"] = rv.ToString(CultureInfo.InvariantCulture);
        var stored = StoredObject.From(type.Store, obj);
        var map = objects[type.Store];
        var key = Key(stored.Namespace, stored.Name);
        var before = map.GetValueOrDefault(key);
        map[key] = stored;
        if (before is not null)
        {
            byUid.Remove(before.Uid);
        }

        byUid[stored.Uid] = stored;
        Record(new Change(rv, before is null ? Change.Added : Change.Modified, before, stored));
        return stored;
    }

    /// <summary>Removes the object for good (DELETED event), then collects what it owned.</summary>
    /// <param name="last">The state to report, when the deletion comes with a last change (the update that
    /// removed the last finalizer); the API server writes no MODIFIED for that change, only the DELETED.</param>
    private StoredObject RemoveNow(StoredObject current, JsonObject? last = null)
    {
        var rv = ++resourceVersion;
        StoredObject deleted;
        if (last is null)
        {
            deleted = current.WithResourceVersion(rv);
        }
        else
        {
            last["metadata"]!["resourceVersion"] = rv.ToString(CultureInfo.InvariantCulture);
            deleted = StoredObject.From(current.Store, last);
        }

        objects[current.Store].Remove(Key(current.Namespace, current.Name));
        byUid.Remove(current.Uid);
        Record(new Change(rv, Change.Deleted, current, deleted));
        CollectDependents(current.Uid);
        return deleted;
    }

    /// <summary>
    /// The garbage collector's part we need: an object whose owners are all gone is deleted (in the
    /// background, so finalizers still hold it), e.g. a CgnatNodeState whose Node went.
    /// </summary>
    private void CollectDependents(string ownerUid)
    {
        var orphans = objects.Values
            .SelectMany(m => m.Values)
            .Where(o => o.OwnerUids.Contains(ownerUid) && o.OwnerUids.All(uid => !byUid.ContainsKey(uid)))
            .ToList();
        foreach (var orphan in orphans)
        {
            // Re-read: collecting one orphan may already have removed another.
            if (objects[orphan.Store].GetValueOrDefault(Key(orphan.Namespace, orphan.Name)) is { } current)
            {
                BeginDelete(ResourceType.ForStore(current.Store), current);
            }
        }
    }

    private void Record(Change change)
    {
        history.Add(change);
        if (history.Count > HistoryLimit)
        {
            var forget = history.Count - (HistoryLimit / 2);
            compactedThrough = history[forget - 1].ResourceVersion;
            history.RemoveRange(0, forget);
        }

        Notify(change);
    }
}
