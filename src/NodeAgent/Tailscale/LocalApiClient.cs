using System.Net;
using System.Net.Http.Headers;
using System.Net.Sockets;
using System.Runtime.CompilerServices;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using TsCgnat.Firewall.Model;

namespace TsCgnat.NodeAgent.Tailscale;

/// <summary>
/// tailscaled's LocalAPI: plain HTTP/1.1 over its unix socket (facts 5.1). Reads prefs and status,
/// watches the IPN bus, and changes the netfilter mode. No Tailscale client library exists for .NET;
/// this is HttpClient with a unix-socket connect, nothing more.
/// </summary>
public sealed class LocalApiClient : IDisposable
{
    /// <summary>Where tailscaled listens on Linux unless started with <c>--socket</c>.</summary>
    public const string DefaultSocketPath = "/var/run/tailscale/tailscaled.sock";

    /// <summary>The only Host (besides none) tailscaled accepts; any other gets 403 "invalid localapi request".</summary>
    public const string Host = "local-tailscaled.sock";

    /// <summary>
    /// Bounds a single request, not the watch stream. A prefs edit waits for tailscaled to rewrite the
    /// firewall (facts 5.3), which can take seconds on a busy host.
    /// </summary>
    private static readonly TimeSpan RequestTimeout = TimeSpan.FromSeconds(30);

    private readonly HttpClient _http;

    public LocalApiClient(string socketPath = DefaultSocketPath)
    {
        SocketPath = socketPath;
        var handler = new SocketsHttpHandler
        {
            ConnectCallback = ConnectAsync,
            UseProxy = false,
            UseCookies = false,
            AllowAutoRedirect = false,
        };

        // The base address sets Host: local-tailscaled.sock. HttpClient adds no Referer or Origin,
        // either of which tailscaled refuses (its guard against browsers reaching the socket).
        _http = new HttpClient(handler) { BaseAddress = new Uri($"http://{Host}/"), Timeout = Timeout.InfiniteTimeSpan };
    }

    public string SocketPath { get; }

    /// <summary><c>GET /localapi/v0/prefs</c>.</summary>
    public Task<TailscalePrefs> GetPrefsAsync(CancellationToken cancellationToken) =>
        SendAsync(HttpMethod.Get, "localapi/v0/prefs", null, TailscaleJsonContext.Default.TailscalePrefs, "read its prefs", cancellationToken);

    /// <summary><c>GET /localapi/v0/status?peers=false</c>: the peer list can be large and says nothing we use.</summary>
    public Task<TailscaleStatus> GetStatusAsync(CancellationToken cancellationToken) =>
        SendAsync(HttpMethod.Get, "localapi/v0/status?peers=false", null, TailscaleJsonContext.Default.TailscaleStatus, "report its status", cancellationToken);

    /// <summary>
    /// <c>PATCH /localapi/v0/prefs</c> with <c>{"NetfilterMode":N,"NetfilterModeSet":true}</c>; returns the
    /// prefs tailscaled holds afterwards. tailscaled has rewritten its firewall when this returns.
    /// </summary>
    /// <exception cref="LocalApiException">tailscaled refused; the message says why and what to do.</exception>
    public Task<TailscalePrefs> SetNetfilterModeAsync(NetfilterMode mode, CancellationToken cancellationToken)
    {
        var body = new ByteArrayContent(JsonSerializer.SerializeToUtf8Bytes(new NetfilterModeEdit(mode), TailscaleJsonContext.Default.NetfilterModeEdit));
        body.Headers.ContentType = new MediaTypeHeaderValue("application/json");
        return SendAsync(HttpMethod.Patch, "localapi/v0/prefs", body, TailscaleJsonContext.Default.TailscalePrefs,
            $"set its netfilter mode to {mode}", cancellationToken);
    }

    /// <summary>
    /// <c>GET /localapi/v0/watch-ipn-bus?mask=N</c>: one notification per JSON object, as tailscaled
    /// sends them, until tailscaled closes the stream (it stops or restarts) or the token is cancelled.
    /// </summary>
    /// <exception cref="TailscaledUnreachableException">No tailscaled listens on the socket.</exception>
    public async IAsyncEnumerable<IpnNotification> WatchIpnBusAsync(NotifyWatchOpt mask, [EnumeratorCancellation] CancellationToken cancellationToken)
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, $"localapi/v0/watch-ipn-bus?mask={(ulong)mask}");
        using var response = await SendRawAsync(request, HttpCompletionOption.ResponseHeadersRead, cancellationToken);
        if (!response.IsSuccessStatusCode)
        {
            throw await RefusalAsync(response, "let us watch its notifications", cancellationToken);
        }

        await using var stream = await response.Content.ReadAsStreamAsync(cancellationToken);

        // tailscaled writes one json.Encoder value per line; top-level values read the same stream.
        var notifications = JsonSerializer.DeserializeAsyncEnumerable(
            stream, TailscaleJsonContext.Default.IpnNotification, topLevelValues: true, cancellationToken);
        await foreach (var notification in notifications)
        {
            if (notification is not null)
            {
                yield return notification;
            }
        }
    }

    public void Dispose() => _http.Dispose();

    private async Task<T> SendAsync<T>(HttpMethod method, string path, HttpContent? body, JsonTypeInfo<T> reply, string action, CancellationToken cancellationToken)
        where T : class
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(RequestTimeout);
        using var request = new HttpRequestMessage(method, path) { Content = body };
        using var response = await SendRawAsync(request, HttpCompletionOption.ResponseContentRead, timeout.Token);
        if (!response.IsSuccessStatusCode)
        {
            throw await RefusalAsync(response, action, timeout.Token);
        }

        await using var stream = await response.Content.ReadAsStreamAsync(timeout.Token);
        return await JsonSerializer.DeserializeAsync(stream, reply, timeout.Token)
            ?? throw new LocalApiException(response.StatusCode, "null", $"tailscaled answered null when asked to {action}");
    }

    private async Task<HttpResponseMessage> SendRawAsync(HttpRequestMessage request, HttpCompletionOption completion, CancellationToken cancellationToken)
    {
        try
        {
            return await _http.SendAsync(request, completion, cancellationToken);
        }
        catch (HttpRequestException e) when (e.InnerException is TailscaledUnreachableException unreachable)
        {
            // Unwrapped so callers can tell "no tailscaled here" (normal) from a failing tailscaled.
            throw new TailscaledUnreachableException(unreachable.Message, e);
        }
    }

    private async ValueTask<Stream> ConnectAsync(SocketsHttpConnectionContext context, CancellationToken cancellationToken)
    {
        var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        try
        {
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(SocketPath), cancellationToken);
            return new NetworkStream(socket, ownsSocket: true);
        }
        catch (SocketException e) when (Unreachable(e.SocketErrorCode) is { } why)
        {
            socket.Dispose();
            throw new TailscaledUnreachableException(why, e);
        }
        catch
        {
            socket.Dispose();
            throw;
        }
    }

    private string? Unreachable(SocketError error) => error switch
    {
        // ENOENT: tailscaled is not running (it removes the socket when it stops), or listens elsewhere.
        SocketError.AddressNotAvailable => $"tailscaled is not running or not reachable here: no socket at {SocketPath}",
        // ECONNREFUSED: a socket file left behind by a tailscaled that crashed, or one starting up.
        SocketError.ConnectionRefused => $"tailscaled is not running or not reachable here: {SocketPath} refuses connections",
        SocketError.AccessDenied => $"tailscaled's socket {SocketPath} is not open to this user: run the agent as root",
        _ => null,
    };

    private static async Task<LocalApiException> RefusalAsync(HttpResponseMessage response, string action, CancellationToken cancellationToken)
    {
        var said = (await response.Content.ReadAsStringAsync(cancellationToken)).Trim();
        if (said.StartsWith('{'))
        {
            try
            {
                said = JsonSerializer.Deserialize(said, TailscaleJsonContext.Default.LocalApiError)?.Error ?? said;
            }
            catch (JsonException)
            {
                // Not the {"Error":…} shape after all: quote it as it came.
            }
        }

        var code = (int)response.StatusCode;
        var message = $"tailscaled refused to {action} ({code}: \"{said}\")";
        return new LocalApiException(response.StatusCode, said, Advice(response.StatusCode, said) is { } advice ? $"{message}. {advice}" : message);
    }

    private static string? Advice(HttpStatusCode status, string said)
    {
        if (said.Contains("config file", StringComparison.OrdinalIgnoreCase))
        {
            // checkPrefsLocked: tailscaled --config=FILE refuses every pref edit unless the file says "Locked": false.
            return "tailscaled runs with --config and that file is locked: add \"Locked\": false to it and restart tailscaled, "
                + "or set \"NetfilterMode\": \"nodivert\" in the file yourself";
        }

        if (status == HttpStatusCode.Forbidden && said.Contains("access denied", StringComparison.OrdinalIgnoreCase))
        {
            // ipnauth: writes need uid 0, tailscaled's own uid, or the operator user.
            return "tailscaled lets only root and its operator user change prefs: run the agent as root, "
                + "or as the user named by 'tailscale set --operator=USER'";
        }

        if (status == HttpStatusCode.Forbidden && said.Contains("invalid localapi request", StringComparison.OrdinalIgnoreCase))
        {
            return $"the request did not look local to tailscaled (Host other than {Host}, or a Referer/Origin header)";
        }

        return null;
    }
}

/// <summary>
/// No tailscaled listens on the socket: it is not installed, stopped, restarting, or its socket is
/// elsewhere (<c>--tailscale-socket</c>). A normal state for the agent, not a failure.
/// </summary>
public sealed class TailscaledUnreachableException(string message, Exception? innerException) : IOException(message, innerException);

/// <summary>tailscaled answered with an error; <see cref="Exception.Message"/> says what it said and what to do.</summary>
public sealed class LocalApiException(HttpStatusCode statusCode, string tailscaledSaid, string message) : Exception(message)
{
    public HttpStatusCode StatusCode { get; } = statusCode;

    /// <summary>tailscaled's own words: the <c>Error</c> of a JSON reply, or the plain-text body.</summary>
    public string TailscaledSaid { get; } = tailscaledSaid;
}
