using System.Threading.Channels;

namespace TsCgnat.TestApiServer;

/// <summary>What a watch stream writes next, in order.</summary>
internal abstract record WatchItem;

internal sealed record WatchEventItem(string Type, StoredObject Object) : WatchItem;

/// <summary>A BOOKMARK: every change up to <paramref name="ResourceVersion"/> that matches has been sent.</summary>
internal sealed record BookmarkItem(long ResourceVersion, bool InitialEventsEnd = false) : WatchItem;

/// <summary>The end of the stream: a clean end (timeout) or an abrupt one (dropped connection).</summary>
internal sealed record EndItem(bool Abort) : WatchItem;

/// <summary>One open watch: what it selects and the queue its stream drains.</summary>
internal sealed class WatchSubscription(ResourceType view, string? ns, LabelSelector labels, FieldSelector fields)
{
    private readonly Channel<WatchItem> queue = Channel.CreateUnbounded<WatchItem>(new UnboundedChannelOptions { SingleReader = true });

    public ResourceType View { get; } = view;

    public ChannelReader<WatchItem> Items => queue.Reader;

    internal ChannelWriter<WatchItem> Writer => queue.Writer;

    public bool Selects(StoredObject obj) =>
        obj.Store == View.Store && (ns is null || obj.Namespace == ns) && labels.Matches(obj.Labels) && fields.Matches(obj.Fields);
}

internal sealed partial class ObjectStore
{
    private readonly List<WatchSubscription> watches = [];

    /// <summary>
    /// Opens a watch. From a resourceVersion it replays the kept history after it (410 Expired when that
    /// history is forgotten); without one, or with <paramref name="sendInitialEvents"/>, it starts with a
    /// synthetic ADDED per current object. Everything is queued under the store's lock, so no change is
    /// missed or repeated between the replay and the live events.
    /// </summary>
    public void Open(WatchSubscription watch, long? from, bool sendInitialEvents, bool bookmarks)
    {
        lock (gate)
        {
            if (from is null || sendInitialEvents)
            {
                foreach (var obj in objects[watch.View.Store].Values.Where(watch.Selects))
                {
                    watch.Writer.TryWrite(new WatchEventItem(Change.Added, obj));
                }

                if (sendInitialEvents && bookmarks)
                {
                    watch.Writer.TryWrite(new BookmarkItem(resourceVersion, InitialEventsEnd: true));
                }
            }
            else
            {
                if (from < compactedThrough)
                {
                    throw ApiError.Expired($"too old resource version: {from} ({compactedThrough})");
                }

                foreach (var change in history.SkipWhile(c => c.ResourceVersion <= from))
                {
                    Deliver(watch, change);
                }
            }

            watches.Add(watch);
        }
    }

    public void Close(WatchSubscription watch)
    {
        lock (gate)
        {
            watches.Remove(watch);
        }
    }

    /// <summary>Queues a BOOKMARK at the current resourceVersion; in queue order, so it never runs ahead of an event.</summary>
    public void Bookmark(WatchSubscription watch)
    {
        lock (gate)
        {
            watch.Writer.TryWrite(new BookmarkItem(resourceVersion));
        }
    }

    /// <summary>Ends a watch after what is already queued (with a last BOOKMARK if asked), as a timeout does.</summary>
    public void End(WatchSubscription watch, bool bookmark)
    {
        lock (gate)
        {
            if (bookmark)
            {
                watch.Writer.TryWrite(new BookmarkItem(resourceVersion));
            }

            watch.Writer.TryWrite(new EndItem(Abort: false));
            watch.Writer.TryComplete();
        }
    }

    /// <summary>Cuts every open watch off: their connections are aborted, not ended cleanly.</summary>
    public void DropWatches()
    {
        lock (gate)
        {
            foreach (var watch in watches)
            {
                watch.Writer.TryWrite(new EndItem(Abort: true));
                watch.Writer.TryComplete();
            }

            watches.Clear();
        }
    }

    private void Notify(Change change)
    {
        foreach (var watch in watches)
        {
            Deliver(watch, change);
        }
    }

    /// <summary>
    /// A change as this watch sees it through its selectors: an object that starts matching is ADDED, one
    /// that stops matching is DELETED (its last matching state, stamped with the change's
    /// resourceVersion), as the API server's watch cache does.
    /// </summary>
    private static void Deliver(WatchSubscription watch, Change change)
    {
        if (change.After.Store != watch.View.Store)
        {
            return;
        }

        var now = change.Type != Change.Deleted && watch.Selects(change.After);
        var before = change.Type switch
        {
            Change.Added => false,
            Change.Deleted => watch.Selects(change.After),
            _ => watch.Selects(change.Before!),
        };
        WatchItem? item = (before, now) switch
        {
            (false, true) => new WatchEventItem(Change.Added, change.After),
            (true, true) => new WatchEventItem(Change.Modified, change.After),
            (true, false) when change.Type == Change.Deleted => new WatchEventItem(Change.Deleted, change.After),
            (true, false) => new WatchEventItem(Change.Deleted, change.Before!.WithResourceVersion(change.ResourceVersion)),
            _ => null,
        };
        if (item is not null)
        {
            watch.Writer.TryWrite(item);
        }
    }
}
