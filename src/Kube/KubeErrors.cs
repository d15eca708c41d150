using System.Net;
using k8s;
using k8s.Autorest;

namespace TsCgnat.Kube;

/// <summary>
/// The HTTP status an API call failed with, whichever way KubernetesClient reported it: an
/// <see cref="HttpOperationException"/> for a failed request, a <see cref="KubernetesException"/> for an
/// ERROR event inside a watch stream.
/// </summary>
internal static class KubeErrors
{
    public static HttpStatusCode? StatusOf(Exception exception) => exception switch
    {
        HttpOperationException { Response: { } response } => response.StatusCode,
        KubernetesException { Status.Code: { } code } => (HttpStatusCode)code,
        _ => null,
    };

    public static bool IsGone(Exception exception) => StatusOf(exception) == HttpStatusCode.Gone;

    public static bool IsConflict(Exception exception) => StatusOf(exception) == HttpStatusCode.Conflict;

    public static bool IsNotFound(Exception exception) => StatusOf(exception) == HttpStatusCode.NotFound;
}
