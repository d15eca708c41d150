namespace TsCgnat.TestApiServer;

/// <summary>One request the fake server saw.</summary>
/// <param name="Verb">The Kubernetes verb: get, list, watch, create, update, patch, delete (deletecollection for a DELETE without a name).</param>
/// <param name="Path">The URL path, e.g. <c>/apis/tscgnat.io/v1alpha1/cgnatnodestates/n1/status</c>.</param>
/// <param name="Query">The query string, decoded, without the leading <c>?</c>.</param>
/// <param name="Watch">True for <c>watch=true</c> (or <c>watch=1</c>).</param>
/// <param name="At">When it arrived, by <see cref="FakeApiServer.Time"/>.</param>
public sealed record RequestRecord(string Verb, string Path, string Query, bool Watch, DateTimeOffset At);
