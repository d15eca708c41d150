using System.Collections.Concurrent;
using System.Net;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using System.Threading.Channels;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;

namespace TsCgnat.TestSupport;

#pragma warning disable CA1507 // JSON keys here are tailscaled's Go field names, which only happen to match some of our member names

/// <summary>
/// tailscaled's LocalAPI as far as the agent uses it, on a unix socket, speaking the exact shapes of
/// docs/tailscale.md (section 5): prefs as indented JSON with Go field names and numbers for enums,
/// MaskedPrefs PATCH, the watch-ipn-bus stream with <c>null</c> for unset fields and Version in every
/// message, /status with the state's name, and tailscaled's 403s. Kestrel serves it (ListenUnixSocket);
/// the handler is one method so the whole protocol reads in one place.
/// </summary>
/// <remarks>
/// Deliberately independent of the agent's types (it does not reference NodeAgent): the fake says what
/// tailscaled sends, so a test against it checks the client's reading, not the client against itself.
/// </remarks>
public sealed class FakeTailscaled : IAsyncDisposable
{
    /// <summary>ipn.State, as numbers on the wire.</summary>
    public enum IpnState
    {
        NoState = 0,
        InUseOtherUser = 1,
        NeedsLogin = 2,
        NeedsMachineAuth = 3,
        Stopped = 4,
        Starting = 5,
        Running = 6,
    }

    /// <summary>What <c>checkPrefsLocked</c> says when <c>tailscaled --config</c> is used without <c>"Locked": false</c>.</summary>
    public const string LockedConfigError = "can't reconfigure tailscaled when using a config file; config file is locked";

    private const string LocalApiHost = "local-tailscaled.sock";
    private const ulong InitialState = 2;
    private const ulong InitialPrefs = 4;
    private const ulong NoPrivateKeys = 16;

    /// <summary>The facts' example prefs (section 5.2), with the fields tailscaled sends that the agent does not read.</summary>
    private const string FactsPrefs = """
        {
          "ControlURL": "https://controlplane.tailscale.com",
          "RouteAll": false,
          "ExitNodeID": "",
          "ExitNodeIP": "",
          "CorpDNS": true,
          "RunSSH": false,
          "WantRunning": true,
          "LoggedOut": false,
          "ShieldsUp": false,
          "AdvertiseTags": null,
          "Hostname": "",
          "NotepadURLs": false,
          "AdvertiseRoutes": null,
          "NoSNAT": false,
          "NoStatefulFiltering": null,
          "NetfilterMode": 2,
          "NetfilterKind": "",
          "AutoUpdate": { "Check": true, "Apply": null },
          "AppConnector": { "Advertise": false },
          "PostureChecking": false,
          "Config": { "PrivateNodeKey": "privkey:0000000000000000000000000000000000000000000000000000000000000000", "OldPrivateNodeKey": "privkey:0000000000000000000000000000000000000000000000000000000000000000", "UserProfile": { "ID": 0, "LoginName": "", "DisplayName": "", "ProfilePicURL": "", "Roles": [] }, "NetworkLockKey": "nlpriv:0000000000000000000000000000000000000000000000000000000000000000", "NodeID": "" }
        }
        """;

    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true, IndentCharacter = '\t', IndentSize = 1 };

    private readonly Lock _gate = new();
    private readonly List<Channel<string>> _watchers = [];
    private readonly ConcurrentQueue<FakeRequest> _requests = new();
    private JsonObject _prefs = JsonNode.Parse(FactsPrefs)!.AsObject();
    private IpnState _state = IpnState.Running;
    private WebApplication? _app;
    private CancellationTokenSource _stopping = new();

    public FakeTailscaled(string socketPath, string version = "1.102.3-t1a2b3c4d5-g6e7f8a9b0")
    {
        SocketPath = socketPath;
        Version = version;
    }

    public string SocketPath { get; }

    /// <summary><c>version.Long()</c>: in the <c>Tailscale-Version</c> header, in /status and in every notification.</summary>
    public string Version { get; }

    /// <summary>Refuse pref edits as <c>tailscaled --config</c> with a locked file does: 400 <c>{"Error":"…"}</c>.</summary>
    public bool ConfigLocked { get; set; }

    /// <summary>
    /// The peer may only read (not root, not tailscaled's uid, not the operator): PATCH gets 403
    /// "prefs write access denied", and a watch without NotifyNoPrivateKeys is refused too.
    /// </summary>
    public bool ReadOnly { get; set; }

    /// <summary>
    /// Runs after a PATCH changed the prefs and before the Prefs notification and the reply, where
    /// tailscaled runs <c>router.Set</c> (facts 5.3): tests hook the firewall emulator here.
    /// </summary>
    public Func<PrefsPatch, CancellationToken, Task>? OnPrefsPatched { get; set; }

    /// <summary>Every request that reached the server, in order.</summary>
    public IReadOnlyList<FakeRequest> Requests => [.. _requests];

    /// <summary>Open watch-ipn-bus streams.</summary>
    public int Watchers
    {
        get
        {
            lock (_gate)
            {
                return _watchers.Count;
            }
        }
    }

    /// <summary>A copy of the prefs as tailscaled holds them now.</summary>
    public JsonObject Prefs
    {
        get
        {
            lock (_gate)
            {
                return _prefs.DeepClone().AsObject();
            }
        }
    }

    /// <summary>Wire name of a netfilter mode number, as the emulator's <c>set-mode</c> wants it.</summary>
    public static string ModeName(int netfilterMode) => netfilterMode switch
    {
        0 => "off",
        1 => "nodivert",
        2 => "on",
        _ => throw new ArgumentOutOfRangeException(nameof(netfilterMode), netfilterMode, "NetfilterMode is 0, 1 or 2"),
    };

    /// <summary>
    /// Creates the socket and serves until <see cref="StopAsync"/>. Starting again after a stop is a
    /// tailscaled restart: prefs and state carry over, as tailscaled keeps prefs in its state file.
    /// </summary>
    public async Task StartAsync(CancellationToken cancellationToken = default)
    {
        if (_app is not null)
        {
            throw new InvalidOperationException("already started");
        }

        File.Delete(SocketPath); // what tailscaled does with a socket left by a crash
        _stopping = new CancellationTokenSource();
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.WebHost.UseKestrelCore().ConfigureKestrel(kestrel => kestrel.ListenUnixSocket(SocketPath));
        var app = builder.Build();
        app.Run(ServeAsync);
        await app.StartAsync(cancellationToken);
        _app = app;
    }

    /// <summary>tailscaled stops: open watch streams end, the socket file goes away.</summary>
    public async Task StopAsync()
    {
        if (_app is not { } app)
        {
            return;
        }

        _app = null;
        await _stopping.CancelAsync();
        await app.StopAsync();
        await app.DisposeAsync();
        _stopping.Dispose();
        File.Delete(SocketPath);
    }

    public async ValueTask DisposeAsync() => await StopAsync();

    /// <summary>The backend changes state (e.g. <c>tailscale down</c> → Stopped): watchers get a State notification.</summary>
    public void PublishState(IpnState state)
    {
        lock (_gate)
        {
            _state = state;
            Broadcast(Notify(state: state));
        }
    }

    /// <summary>Prefs change by some other client (or the CLI): the edit is applied and watchers get a Prefs notification.</summary>
    public void PublishPrefs(Action<JsonObject> edit)
    {
        lock (_gate)
        {
            edit(_prefs);
            Broadcast(Notify(prefs: _prefs));
        }
    }

    private async Task ServeAsync(HttpContext context)
    {
        var request = context.Request;
        var response = context.Response;
        string? body = null;
        if (HttpMethods.IsPatch(request.Method))
        {
            using var reader = new StreamReader(request.Body, Encoding.UTF8);
            body = await reader.ReadToEndAsync(context.RequestAborted);
        }

        _requests.Enqueue(new FakeRequest(request.Method, request.Path + request.QueryString, request.Headers.Host.ToString(),
            request.Headers.Referer.ToString(), request.Headers.Origin.ToString(), body));

        // localapi.Handler.ServeHTTP: the guard against browsers (DNS rebinding, CSRF) comes first.
        if (request.Headers.Referer.Count > 0 || request.Headers.Origin.Count > 0 || !ValidHost(request.Headers.Host.ToString()))
        {
            await GoErrorAsync(response, StatusCodes.Status403Forbidden, "invalid localapi request");
            return;
        }

        response.Headers["Tailscale-Version"] = Version;
        response.Headers["Tailscale-Cap"] = "130";
        switch (request.Path.Value, request.Method)
        {
            case ("/localapi/v0/prefs", "GET"):
                await JsonAsync(response, StatusCodes.Status200OK, Prefs.ToJsonString(Indented));
                break;
            case ("/localapi/v0/prefs", "PATCH"):
                await PatchPrefsAsync(context, body!);
                break;
            case ("/localapi/v0/prefs", _):
                await GoErrorAsync(response, StatusCodes.Status405MethodNotAllowed, "unsupported method");
                break;
            case ("/localapi/v0/status", "GET"):
                await JsonAsync(response, StatusCodes.Status200OK, Status().ToJsonString(Indented));
                break;
            case ("/localapi/v0/watch-ipn-bus", "GET"):
                await WatchAsync(context);
                break;
            default:
                await GoErrorAsync(response, StatusCodes.Status404NotFound, "404 page not found");
                break;
        }
    }

    private async Task PatchPrefsAsync(HttpContext context, string body)
    {
        if (ReadOnly)
        {
            await GoErrorAsync(context.Response, StatusCodes.Status403Forbidden, "prefs write access denied");
            return;
        }

        JsonObject masked;
        try
        {
            masked = JsonNode.Parse(body)?.AsObject() ?? throw new JsonException("null body");
        }
        catch (Exception e) when (e is JsonException or InvalidOperationException)
        {
            await GoErrorAsync(context.Response, StatusCodes.Status400BadRequest, e.Message);
            return;
        }

        if (ConfigLocked)
        {
            await JsonAsync(context.Response, StatusCodes.Status400BadRequest, new JsonObject { ["Error"] = LockedConfigError }.ToJsonString());
            return;
        }

        JsonObject before, after;
        lock (_gate)
        {
            before = _prefs.DeepClone().AsObject();
            foreach (var (name, value) in masked)
            {
                // ipn.MaskedPrefs: a field is applied only when its <Field>Set flag is true.
                if (name.EndsWith("Set", StringComparison.Ordinal) && value?.GetValueKind() == JsonValueKind.True
                    && name[..^3] is var field && _prefs.ContainsKey(field))
                {
                    _prefs[field] = masked[field]?.DeepClone();
                }
            }

            after = _prefs.DeepClone().AsObject();
        }

        var patch = new PrefsPatch(before, after);
        if (patch.Changed("WantRunning"))
        {
            // The state machine runs first and its State notification goes out before the engine is reconfigured.
            var running = after["WantRunning"]?.GetValue<bool>() == true;
            PublishState(running ? IpnState.Starting : IpnState.Stopped);
            if (running)
            {
                PublishState(IpnState.Running);
            }
        }

        if (OnPrefsPatched is { } hook)
        {
            await hook(patch, context.RequestAborted);
        }

        lock (_gate)
        {
            Broadcast(Notify(prefs: _prefs));
        }

        await JsonAsync(context.Response, StatusCodes.Status200OK, after.ToJsonString(Indented));
    }

    private async Task WatchAsync(HttpContext context)
    {
        var query = context.Request.Query["mask"].ToString();
        ulong mask = 0;
        if (query.Length > 0 && !ulong.TryParse(query, out mask))
        {
            await GoErrorAsync(context.Response, StatusCodes.Status400BadRequest, "bad mask");
            return;
        }

        if ((mask & NoPrivateKeys) == 0 && ReadOnly)
        {
            await GoErrorAsync(context.Response, StatusCodes.Status403Forbidden,
                "watch IPN bus access denied, must set ipn.NotifyNoPrivateKeys when not running as admin/root or operator");
            return;
        }

        var stream = Channel.CreateUnbounded<string>();
        lock (_gate)
        {
            // The initial message is queued under the same lock as publications, so nothing is lost or reordered.
            if ((mask & (InitialState | InitialPrefs)) != 0)
            {
                stream.Writer.TryWrite(Notify(
                    sessionId: $"{Random.Shared.Next():x8}",
                    state: (mask & InitialState) != 0 ? _state : null,
                    prefs: (mask & InitialPrefs) != 0 ? _prefs : null));
            }

            _watchers.Add(stream);
        }

        try
        {
            context.Response.ContentType = "application/json";
            await context.Response.StartAsync(context.RequestAborted); // headers now, as tailscaled flushes on watch start
            using var done = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, _stopping.Token);
            await foreach (var line in stream.Reader.ReadAllAsync(done.Token))
            {
                await context.Response.WriteAsync(line + "\n", done.Token);
                await context.Response.Body.FlushAsync(done.Token);
            }
        }
        catch (OperationCanceledException)
        {
            // The client went away or tailscaled is stopping: the stream just ends.
        }
        finally
        {
            lock (_gate)
            {
                _watchers.Remove(stream);
            }
        }
    }

    /// <summary>Call with <see cref="_gate"/> held.</summary>
    private void Broadcast(string line)
    {
        foreach (var watcher in _watchers)
        {
            watcher.Writer.TryWrite(line);
        }
    }

    /// <summary>
    /// One <c>ipn.Notify</c> as <c>json.Marshal</c> writes it: Version always, SessionID only when set
    /// (omitempty), and the pointer fields without omitempty as <c>null</c>.
    /// </summary>
    private string Notify(string? sessionId = null, IpnState? state = null, JsonObject? prefs = null)
    {
        var notify = new JsonObject { ["Version"] = Version };
        if (sessionId is not null)
        {
            notify["SessionID"] = sessionId;
        }

        notify["ErrMessage"] = null;
        notify["LoginFinished"] = null;
        notify["State"] = state is { } s ? (int)s : null;
        notify["Prefs"] = prefs?.DeepClone();
        notify["NetMap"] = null;
        notify["Engine"] = null;
        notify["BrowseToURL"] = null;
        notify["DriveShares"] = null;
        return notify.ToJsonString();
    }

    private JsonObject Status()
    {
        IpnState state;
        lock (_gate)
        {
            state = _state;
        }

        return new JsonObject
        {
            ["Version"] = Version,
            ["TUN"] = true,
            ["BackendState"] = state.ToString(),
            ["HaveNodeKey"] = true,
            ["AuthURL"] = "",
            ["TailscaleIPs"] = new JsonArray("100.101.102.103", "fd7a:115c:a1e0::1"),
            ["Self"] = new JsonObject { ["ID"] = "n1234", ["HostName"] = "node-a", ["DNSName"] = "node-a.tail1234.ts.net.", ["OS"] = "linux", ["Online"] = true },
            ["Health"] = new JsonArray(),
            ["MagicDNSSuffix"] = "tail1234.ts.net",
            ["CurrentTailnet"] = new JsonObject { ["Name"] = "example.com", ["MagicDNSSuffix"] = "tail1234.ts.net", ["MagicDNSEnabled"] = true },
            ["CertDomains"] = null,
            ["User"] = null,
            ["ClientVersion"] = null,
        };
    }

    /// <summary>localapi <c>validHost</c>: empty, the LocalAPI name, or loopback (the TCP transports of other platforms).</summary>
    private static bool ValidHost(string host)
    {
        if (host.Length == 0 || host == LocalApiHost)
        {
            return true;
        }

        var colon = host.LastIndexOf(':');
        if (colon < 0)
        {
            return false;
        }

        var name = host[..colon].Trim('[', ']');
        return name == "localhost" || (IPAddress.TryParse(name, out var address) && IPAddress.IsLoopback(address));
    }

    /// <summary>Go's <c>http.Error</c>: plain text and a newline.</summary>
    private static async Task GoErrorAsync(HttpResponse response, int status, string message)
    {
        response.StatusCode = status;
        response.ContentType = "text/plain; charset=utf-8";
        response.Headers.XContentTypeOptions = "nosniff";
        await response.WriteAsync(message + "\n");
    }

    private static async Task JsonAsync(HttpResponse response, int status, string json)
    {
        response.StatusCode = status;
        response.ContentType = "application/json";
        await response.WriteAsync(json + "\n");
    }
}

/// <summary>One request as the fake received it (headers as sent; empty when absent).</summary>
public sealed record FakeRequest(string Method, string PathAndQuery, string Host, string Referer, string Origin, string? Body);

/// <summary>A prefs edit the fake applied: the prefs before and after.</summary>
public sealed record PrefsPatch(JsonObject Before, JsonObject After)
{
    public bool Changed(string field) => !JsonNode.DeepEquals(Before[field], After[field]);

    /// <summary>The netfilter mode after the edit, by its CLI name (off, nodivert, on).</summary>
    public string NetfilterMode => FakeTailscaled.ModeName(After["NetfilterMode"]!.GetValue<int>());
}
