using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TsCgnat.Firewall.Model;
using TsCgnat.NodeAgent.Tailscale;
using TsCgnat.TestSupport;

namespace TsCgnat.NodeAgent.Tests;

/// <summary>
/// The tailscaled LocalAPI client and watcher, against JSON exactly as docs/tailscale.md (section 5)
/// show it and against <see cref="FakeTailscaled"/> on a real unix socket. No root needed.
/// </summary>
public sealed class LocalApiTests : IAsyncLifetime, IDisposable
{
    /// <summary>Only guards against a hang; no test measures time.</summary>
    private static readonly TimeSpan Guard = TimeSpan.FromSeconds(20);

    private readonly TempDir _dir = new();
    private readonly FakeTailscaled _tailscaled;
    private readonly LocalApiClient _client;

    public LocalApiTests()
    {
        _tailscaled = new FakeTailscaled(SocketPath);
        _client = new LocalApiClient(SocketPath);
    }

    private string SocketPath => Path.Combine(_dir.Path, "tailscaled.sock");

    public Task InitializeAsync() => _tailscaled.StartAsync();

    /// <summary>xunit calls this before <see cref="Dispose"/>.</summary>
    public async Task DisposeAsync() => await _tailscaled.DisposeAsync();

    public void Dispose()
    {
        _client.Dispose();
        _dir.Dispose();
    }

    // ---- JSON exactly as tailscaled sends it ----

    [Fact]
    public void Prefs_are_read_from_the_json_in_the_facts_and_unknown_fields_are_ignored()
    {
        const string json = """
            {
              "ControlURL": "https://controlplane.tailscale.com",
              "RouteAll": false,
              "WantRunning": true,
              "LoggedOut": false,
              "ShieldsUp": false,
              "AdvertiseRoutes": ["192.168.1.0/24", "0.0.0.0/0", "::/0"],
              "NoSNAT": false,
              "NoStatefulFiltering": true,
              "NetfilterMode": 1,
              "NetfilterKind": "",
              "OperatorUser": "alice",
              "Config": { "...": "sanitized persist data" }
            }
            """;

        var prefs = JsonSerializer.Deserialize(json, TailscaleJsonContext.Default.TailscalePrefs)!;

        Assert.Equal(NetfilterMode.NoDivert, prefs.NetfilterMode);
        Assert.Equal("", prefs.NetfilterKind);
        Assert.True(prefs.NoStatefulFiltering);
        Assert.False(prefs.StatefulFiltering);
        Assert.Equal(["192.168.1.0/24", "0.0.0.0/0", "::/0"], prefs.AdvertiseRoutes.Select(r => r.ToString()));
        Assert.True(prefs.WantRunning);
    }

    [Theory]
    [InlineData("null", null, false)]
    [InlineData("true", true, false)]
    [InlineData("false", false, true)]
    public void NoStatefulFiltering_is_an_optional_bool_and_only_an_explicit_false_turns_stateful_filtering_on(string wire, bool? expected, bool stateful)
    {
        var prefs = JsonSerializer.Deserialize($$"""{"NetfilterMode":2,"NoStatefulFiltering":{{wire}}}""", TailscaleJsonContext.Default.TailscalePrefs)!;

        Assert.Equal(expected, prefs.NoStatefulFiltering);
        Assert.Equal(stateful, prefs.StatefulFiltering);
    }

    [Fact]
    public void Null_advertised_routes_read_as_none()
    {
        var prefs = JsonSerializer.Deserialize("""{"AdvertiseRoutes":null,"NetfilterKind":"nftables","NetfilterMode":2}""", TailscaleJsonContext.Default.TailscalePrefs)!;

        Assert.Empty(prefs.AdvertiseRoutes);
        Assert.Equal("nftables", prefs.NetfilterKind);
    }

    [Fact]
    public void An_advertised_route_with_host_bits_reads_as_its_network()
    {
        var prefs = JsonSerializer.Deserialize("""{"AdvertiseRoutes":["100.64.0.7/24"]}""", TailscaleJsonContext.Default.TailscalePrefs)!;

        Assert.Equal(IPNetwork.Parse("100.64.0.0/24"), Assert.Single(prefs.AdvertiseRoutes));
    }

    [Fact]
    public void An_advertised_route_that_is_no_prefix_is_refused_by_name()
    {
        var error = Assert.Throws<JsonException>(() =>
            JsonSerializer.Deserialize("""{"AdvertiseRoutes":["lan"]}""", TailscaleJsonContext.Default.TailscalePrefs));

        Assert.Contains("'lan' is not a route prefix", error.Message, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData(0, NetfilterMode.Off)]
    [InlineData(1, NetfilterMode.NoDivert)]
    [InlineData(2, NetfilterMode.On)]
    public void Netfilter_mode_numbers_map_to_modes(int wire, NetfilterMode mode)
    {
        var prefs = JsonSerializer.Deserialize($$"""{"NetfilterMode":{{wire}}}""", TailscaleJsonContext.Default.TailscalePrefs)!;

        Assert.Equal(mode, prefs.NetfilterMode);
    }

    [Theory]
    [InlineData(0, BackendState.NoState)]
    [InlineData(1, BackendState.InUseOtherUser)]
    [InlineData(2, BackendState.NeedsLogin)]
    [InlineData(3, BackendState.NeedsMachineAuth)]
    [InlineData(4, BackendState.Stopped)]
    [InlineData(5, BackendState.Starting)]
    [InlineData(6, BackendState.Running)]
    public void State_numbers_in_notifications_map_to_backend_states(int wire, BackendState state)
    {
        var line = $$"""{"Version":"1.102.3-t","ErrMessage":null,"LoginFinished":null,"State":{{wire}},"Prefs":null,"NetMap":null,"Engine":null,"BrowseToURL":null,"DriveShares":null}""";

        var notification = JsonSerializer.Deserialize(line, TailscaleJsonContext.Default.IpnNotification)!;

        Assert.Equal(state, notification.State);
        Assert.Null(notification.Prefs);
        Assert.Null(notification.ErrMessage);
        Assert.Equal("1.102.3-t", notification.Version);
    }

    [Fact]
    public void The_first_notification_carries_state_and_prefs()
    {
        const string line = """{"Version":"1.102.3-t1-g2","SessionID":"abc","ErrMessage":null,"LoginFinished":null,"State":6,"Prefs":{"WantRunning":true,"NetfilterMode":2,"NetfilterKind":"iptables","NoStatefulFiltering":null,"AdvertiseRoutes":null},"NetMap":null,"Engine":null,"BrowseToURL":null,"DriveShares":null}""";

        var notification = JsonSerializer.Deserialize(line, TailscaleJsonContext.Default.IpnNotification)!;

        Assert.Equal(BackendState.Running, notification.State);
        Assert.Equal(NetfilterMode.On, notification.Prefs!.NetfilterMode);
        Assert.Equal("iptables", notification.Prefs.NetfilterKind);
    }

    [Theory]
    [InlineData("Running", BackendState.Running)]
    [InlineData("Stopped", BackendState.Stopped)]
    [InlineData("NeedsLogin", BackendState.NeedsLogin)]
    [InlineData("SomethingNewer", null)]
    [InlineData("6", null)]
    public void Status_names_the_backend_state_as_a_string(string wire, BackendState? state)
    {
        var status = JsonSerializer.Deserialize($$$"""{"Version":"1.102.3","TUN":true,"BackendState":"{{{wire}}}","Self":{"ID":"n1"}}""", TailscaleJsonContext.Default.TailscaleStatus)!;

        Assert.Equal(wire, status.BackendStateName);
        Assert.Equal(state, status.State);
    }

    // ---- The client against the fake tailscaled ----

    [Fact]
    public async Task The_client_reads_prefs_and_status_sending_only_what_tailscaled_accepts()
    {
        var prefs = await _client.GetPrefsAsync(CancellationToken.None);
        var status = await _client.GetStatusAsync(CancellationToken.None);

        Assert.Equal(NetfilterMode.On, prefs.NetfilterMode);
        Assert.True(prefs.WantRunning);
        Assert.Null(prefs.NoStatefulFiltering);
        Assert.Equal(BackendState.Running, status.State);
        Assert.Equal(_tailscaled.Version, status.Version);
        Assert.All(_tailscaled.Requests, request =>
        {
            Assert.Equal("local-tailscaled.sock", request.Host);
            Assert.Equal("", request.Referer);
            Assert.Equal("", request.Origin);
        });
        Assert.Equal(["GET /localapi/v0/prefs", "GET /localapi/v0/status?peers=false"], _tailscaled.Requests.Select(r => $"{r.Method} {r.PathAndQuery}"));
    }

    [Fact]
    public async Task Watch_yields_the_initial_state_and_prefs_then_each_later_change()
    {
        await using var stream = _client.WatchIpnBusAsync(NotifyWatchOpt.InitialState | NotifyWatchOpt.InitialPrefs, CancellationToken.None).GetAsyncEnumerator();

        var initial = await NextAsync(stream);
        Assert.Equal(BackendState.Running, initial.State);
        Assert.Equal(NetfilterMode.On, initial.Prefs!.NetfilterMode);
        Assert.Equal(_tailscaled.Version, initial.Version);

        _tailscaled.PublishState(FakeTailscaled.IpnState.Stopped);
        var stopped = await NextAsync(stream);
        Assert.Equal(BackendState.Stopped, stopped.State);
        Assert.Null(stopped.Prefs);
        Assert.Equal(_tailscaled.Version, stopped.Version);

        _tailscaled.PublishPrefs(prefs => prefs["NoStatefulFiltering"] = false);
        var stateful = await NextAsync(stream);
        Assert.Null(stateful.State);
        Assert.True(stateful.Prefs!.StatefulFiltering);
    }

    [Fact]
    public async Task Watch_without_the_initial_bits_starts_with_the_next_change()
    {
        await using var stream = _client.WatchIpnBusAsync(NotifyWatchOpt.NoPrivateKeys, CancellationToken.None).GetAsyncEnumerator();
        var first = stream.MoveNextAsync().AsTask();
        await WaitUntilAsync(() => _tailscaled.Watchers == 1);

        _tailscaled.PublishState(FakeTailscaled.IpnState.Starting);

        Assert.True(await first.WaitAsync(Guard));
        Assert.Equal(BackendState.Starting, stream.Current.State);
        Assert.Null(stream.Current.Prefs);
    }

    [Fact]
    public async Task Setting_the_netfilter_mode_sends_a_masked_edit_and_returns_the_new_prefs()
    {
        var prefs = await _client.SetNetfilterModeAsync(NetfilterMode.NoDivert, CancellationToken.None);

        Assert.Equal(NetfilterMode.NoDivert, prefs.NetfilterMode);
        Assert.True(prefs.WantRunning);
        var patch = Assert.Single(_tailscaled.Requests, r => r.Method == "PATCH");
        Assert.Equal("/localapi/v0/prefs", patch.PathAndQuery);
        Assert.Equal("""{"NetfilterMode":1,"NetfilterModeSet":true}""", patch.Body);
        Assert.Equal(1, _tailscaled.Prefs["NetfilterMode"]!.GetValue<int>());
        Assert.Equal("https://controlplane.tailscale.com", _tailscaled.Prefs["ControlURL"]!.GetValue<string>());
    }

    [Fact]
    public async Task A_locked_config_file_refusal_says_what_tailscaled_said_and_what_to_do()
    {
        _tailscaled.ConfigLocked = true;

        var error = await Assert.ThrowsAsync<LocalApiException>(() => _client.SetNetfilterModeAsync(NetfilterMode.NoDivert, CancellationToken.None));

        Assert.Equal(HttpStatusCode.BadRequest, error.StatusCode);
        Assert.Equal(FakeTailscaled.LockedConfigError, error.TailscaledSaid);
        Assert.Equal(
            "tailscaled refused to set its netfilter mode to NoDivert (400: \"can't reconfigure tailscaled when using a config file; config file is locked\"). "
            + "tailscaled runs with --config and that file is locked: add \"Locked\": false to it and restart tailscaled, "
            + "or set \"NetfilterMode\": \"nodivert\" in the file yourself",
            error.Message);
        Assert.Equal(2, _tailscaled.Prefs["NetfilterMode"]!.GetValue<int>());
    }

    [Fact]
    public async Task A_read_only_refusal_says_the_agent_must_run_as_root_or_as_the_operator()
    {
        _tailscaled.ReadOnly = true;

        var error = await Assert.ThrowsAsync<LocalApiException>(() => _client.SetNetfilterModeAsync(NetfilterMode.NoDivert, CancellationToken.None));

        Assert.Equal(HttpStatusCode.Forbidden, error.StatusCode);
        Assert.Equal(
            "tailscaled refused to set its netfilter mode to NoDivert (403: \"prefs write access denied\"). "
            + "tailscaled lets only root and its operator user change prefs: run the agent as root, "
            + "or as the user named by 'tailscale set --operator=USER'",
            error.Message);
        Assert.Equal(2, _tailscaled.Prefs["NetfilterMode"]!.GetValue<int>());
    }

    [Fact]
    public async Task A_missing_socket_is_reported_as_tailscaled_not_reachable()
    {
        using var client = new LocalApiClient(Path.Combine(_dir.Path, "absent.sock"));

        var error = await Assert.ThrowsAsync<TailscaledUnreachableException>(() => client.GetPrefsAsync(CancellationToken.None));

        Assert.Equal($"tailscaled is not running or not reachable here: no socket at {client.SocketPath}", error.Message);
    }

    [Fact]
    public async Task A_socket_nobody_listens_on_is_reported_as_tailscaled_not_reachable()
    {
        // What a crashed tailscaled leaves behind: the file exists, connecting is refused.
        var path = Path.Combine(_dir.Path, "stale.sock");
        using var stale = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
        stale.Bind(new UnixDomainSocketEndPoint(path));
        using var client = new LocalApiClient(path);

        var error = await Assert.ThrowsAsync<TailscaledUnreachableException>(() => client.GetStatusAsync(CancellationToken.None));

        Assert.Equal($"tailscaled is not running or not reachable here: {path} refuses connections", error.Message);
    }

    // ---- The fake is faithful where the client could go wrong ----

    [Theory]
    [InlineData("local-tailscaled.sock", null, null, 200, "")]
    [InlineData("", null, null, 200, "")]
    [InlineData("evil.example", null, null, 403, "invalid localapi request\n")]
    [InlineData("local-tailscaled.sock.evil.example", null, null, 403, "invalid localapi request\n")]
    [InlineData("local-tailscaled.sock", "http://evil.example/", null, 403, "invalid localapi request\n")]
    [InlineData("local-tailscaled.sock", null, "http://evil.example", 403, "invalid localapi request\n")]
    public async Task The_fake_refuses_requests_that_do_not_look_local_as_tailscaled_does(string host, string? referer, string? origin, int status, string body)
    {
        using var raw = RawClient();
        using var request = new HttpRequestMessage(HttpMethod.Get, "http://local-tailscaled.sock/localapi/v0/prefs");
        request.Headers.Host = host;
        if (referer is not null)
        {
            request.Headers.Referrer = new Uri(referer);
        }

        if (origin is not null)
        {
            request.Headers.Add("Origin", origin);
        }

        using var response = await raw.SendAsync(request);
        var text = await response.Content.ReadAsStringAsync();

        Assert.Equal(status, (int)response.StatusCode);
        if (status == 200)
        {
            Assert.Equal(_tailscaled.Version, Assert.Single(response.Headers.GetValues("Tailscale-Version")));
            Assert.StartsWith("{\n\t\"ControlURL\": ", text, StringComparison.Ordinal);
        }
        else
        {
            Assert.Equal(body, text);
        }
    }

    [Fact]
    public async Task The_fake_streams_notifications_in_tailscaleds_shape()
    {
        using var raw = RawClient();
        using var response = await raw.GetAsync("http://local-tailscaled.sock/localapi/v0/watch-ipn-bus?mask=6", HttpCompletionOption.ResponseHeadersRead);
        using var reader = new StreamReader(await response.Content.ReadAsStreamAsync());

        var initial = await reader.ReadLineAsync().WaitAsync(Guard);
        _tailscaled.PublishState(FakeTailscaled.IpnState.Stopped);
        var change = await reader.ReadLineAsync().WaitAsync(Guard);

        Assert.StartsWith($$"""{"Version":"{{_tailscaled.Version}}","SessionID":""", initial, StringComparison.Ordinal);
        Assert.Contains(""","ErrMessage":null,"LoginFinished":null,"State":6,"Prefs":{"ControlURL":""", initial, StringComparison.Ordinal);
        Assert.EndsWith(""","NetMap":null,"Engine":null,"BrowseToURL":null,"DriveShares":null}""", initial, StringComparison.Ordinal);
        Assert.Equal(
            $$"""{"Version":"{{_tailscaled.Version}}","ErrMessage":null,"LoginFinished":null,"State":4,"Prefs":null,"NetMap":null,"Engine":null,"BrowseToURL":null,"DriveShares":null}""",
            change);
    }

    [Fact]
    public async Task The_fake_refuses_a_read_only_watch_without_NoPrivateKeys_as_tailscaled_does()
    {
        _tailscaled.ReadOnly = true;

        var error = await Assert.ThrowsAsync<LocalApiException>(async () =>
        {
            await foreach (var _ in _client.WatchIpnBusAsync(NotifyWatchOpt.InitialState | NotifyWatchOpt.InitialPrefs, CancellationToken.None))
            {
            }
        });

        Assert.Equal(HttpStatusCode.Forbidden, error.StatusCode);
        Assert.StartsWith("watch IPN bus access denied, must set ipn.NotifyNoPrivateKeys", error.TailscaledSaid, StringComparison.Ordinal);
    }

    // ---- The watcher ----

    [Fact]
    public async Task The_watcher_reports_state_and_prefs_from_the_first_notification()
    {
        await using var run = new WatcherRun(_client);

        var view = await run.NextViewAsync();

        Assert.True(view.Reachable);
        Assert.Null(view.Problem);
        Assert.Equal(BackendState.Running, view.State);
        Assert.Equal(_tailscaled.Version, view.Version);
        Assert.Equal(NetfilterMode.On, view.Prefs!.NetfilterMode);
        Assert.Equal(view, run.Watcher.Current);
        Assert.Equal("/localapi/v0/watch-ipn-bus?mask=22", Assert.Single(_tailscaled.Requests).PathAndQuery);
    }

    [Fact]
    public async Task The_watcher_also_works_for_a_user_who_may_only_read()
    {
        _tailscaled.ReadOnly = true;
        await using var run = new WatcherRun(_client);

        var view = await run.NextViewAsync();

        Assert.True(view.Reachable);
        Assert.Equal(BackendState.Running, view.State);
    }

    [Fact]
    public async Task Each_state_and_prefs_notification_calls_back_with_the_whole_view()
    {
        await using var run = new WatcherRun(_client);
        await run.NextViewAsync();

        _tailscaled.PublishState(FakeTailscaled.IpnState.Stopped);
        var stopped = await run.NextViewAsync();
        _tailscaled.PublishPrefs(prefs => prefs["NetfilterKind"] = "nftables");
        var nft = await run.NextViewAsync();

        Assert.Equal(BackendState.Stopped, stopped.State);
        Assert.Equal(NetfilterMode.On, stopped.Prefs!.NetfilterMode);
        Assert.Equal(BackendState.Stopped, nft.State);
        Assert.Equal("nftables", nft.Prefs!.NetfilterKind);
    }

    [Fact]
    public async Task A_mode_change_through_the_LocalAPI_reaches_the_watcher_after_tailscaled_rewrote_its_firewall()
    {
        var order = new List<string>();
        _tailscaled.OnPrefsPatched = (patch, _) =>
        {
            lock (order)
            {
                order.Add($"router.Set {patch.NetfilterMode}");
            }

            return Task.CompletedTask;
        };
        await using var run = new WatcherRun(_client, view =>
        {
            lock (order)
            {
                order.Add($"view {view.Prefs?.NetfilterMode}");
            }
        });
        await run.NextViewAsync();

        var prefs = await _client.SetNetfilterModeAsync(NetfilterMode.NoDivert, CancellationToken.None);
        var seen = await run.NextViewAsync();

        Assert.Equal(NetfilterMode.NoDivert, prefs.NetfilterMode);
        Assert.Equal(NetfilterMode.NoDivert, seen.Prefs!.NetfilterMode);
        Assert.Equal(["view On", "router.Set nodivert", "view NoDivert"], order);
    }

    [Fact]
    public async Task A_missing_socket_is_a_normal_not_reachable_view_and_the_watcher_keeps_trying()
    {
        using var client = new LocalApiClient(Path.Combine(_dir.Path, "absent.sock"));
        await using var run = new WatcherRun(client);

        var view = await run.NextViewAsync();
        await run.Clock.NextWaitAsync();

        Assert.False(view.Reachable);
        Assert.Equal($"tailscaled is not running or not reachable here: no socket at {client.SocketPath}", view.Problem);
        Assert.Null(view.State);
        Assert.Null(view.Prefs);
        Assert.False(run.Task.IsCompleted);
    }

    [Fact]
    public async Task The_watcher_reconnects_after_tailscaled_restarts_waiting_twice_as_long_each_time_up_to_the_cap()
    {
        await using var run = new WatcherRun(_client, options: new TailscaleWatchOptions(TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(4)));
        Assert.True((await run.NextViewAsync()).Reachable);

        await _tailscaled.StopAsync();
        var lost = await run.NextViewAsync();
        Assert.False(lost.Reachable);
        Assert.Equal("tailscaled closed the watch stream (stopping or restarting)", lost.Problem);

        // While tailscaled is away, every attempt is followed by a wait: no busy loop.
        var waits = new List<TimeSpan>();
        for (var i = 0; i < 5; i++)
        {
            var wait = await run.Clock.NextWaitAsync();
            waits.Add(wait.DueTime);
            wait.Fire();
        }

        var pending = await run.Clock.NextWaitAsync();
        Assert.Equal([1, 2, 4, 4, 4, 4], [.. waits.Append(pending.DueTime).Select(w => w.TotalSeconds)]);
        Assert.Equal(6, run.Watcher.ConnectionAttempts); // the first connection, then one after each wait that passed
        Assert.Equal($"tailscaled is not running or not reachable here: no socket at {SocketPath}", run.Watcher.Current.Problem);
        Assert.False(run.HasMoreViews, "repeated failures are no news: no callback per retry");

        await _tailscaled.StartAsync();
        pending.Fire();
        var back = await run.NextViewAsync();
        Assert.True(back.Reachable);
        Assert.Equal(BackendState.Running, back.State);

        // A connection that worked resets the backoff.
        await _tailscaled.StopAsync();
        Assert.False((await run.NextViewAsync()).Reachable);
        Assert.Equal(TimeSpan.FromSeconds(1), (await run.Clock.NextWaitAsync()).DueTime);
    }

    [Fact]
    public async Task The_watcher_logs_each_change_once_and_not_each_retry()
    {
        await _tailscaled.StopAsync();
        var log = new ListLogger();
        await using var run = new WatcherRun(_client, logger: log);
        await run.NextViewAsync();
        for (var i = 0; i < 3; i++)
        {
            (await run.Clock.NextWaitAsync()).Fire();
        }

        var last = await run.Clock.NextWaitAsync();
        await _tailscaled.StartAsync();
        last.Fire();
        await run.NextViewAsync();
        _tailscaled.PublishState(FakeTailscaled.IpnState.Stopped);
        await run.NextViewAsync();

        Assert.Equal(
        [
            $"tailscaled not reachable: tailscaled is not running or not reachable here: no socket at {SocketPath}",
            $"tailscaled {_tailscaled.Version}: state Running, netfilter mode On, runner chosen by tailscaled, stateful filtering off",
            $"tailscaled {_tailscaled.Version}: state Stopped, netfilter mode On, runner chosen by tailscaled, stateful filtering off",
        ], log.Lines);
    }

    // ---- helpers ----

    private HttpClient RawClient() => new(new SocketsHttpHandler
    {
        ConnectCallback = async (_, cancellationToken) =>
        {
            var socket = new Socket(AddressFamily.Unix, SocketType.Stream, ProtocolType.Unspecified);
            await socket.ConnectAsync(new UnixDomainSocketEndPoint(SocketPath), cancellationToken);
            return new NetworkStream(socket, ownsSocket: true);
        },
    });

    private static async Task<IpnNotification> NextAsync(IAsyncEnumerator<IpnNotification> stream)
    {
        Assert.True(await stream.MoveNextAsync().AsTask().WaitAsync(Guard), "the watch stream ended");
        return stream.Current;
    }

    private static async Task WaitUntilAsync(Func<bool> condition)
    {
        using var guard = new CancellationTokenSource(Guard);
        while (!condition())
        {
            await Task.Delay(10, guard.Token);
        }
    }

    /// <summary>A watcher running on a <see cref="StepClock"/>, its callbacks queued for the test to read.</summary>
    private sealed class WatcherRun : IAsyncDisposable
    {
        private readonly Channel<TailscaleView> _views = Channel.CreateUnbounded<TailscaleView>();
        private readonly CancellationTokenSource _stop = new();

        public WatcherRun(LocalApiClient client, Action<TailscaleView>? also = null, TailscaleWatchOptions? options = null, ILogger<TailscaleWatcher>? logger = null)
        {
            Watcher = new TailscaleWatcher(client, view =>
            {
                also?.Invoke(view);
                _views.Writer.TryWrite(view);
            }, logger ?? NullLogger<TailscaleWatcher>.Instance, Clock, options);
            Task = Task.Run(() => Watcher.RunAsync(_stop.Token));
        }

        public StepClock Clock { get; } = new();

        public TailscaleWatcher Watcher { get; }

        public Task Task { get; }

        public bool HasMoreViews => _views.Reader.TryPeek(out _);

        public async Task<TailscaleView> NextViewAsync() => await _views.Reader.ReadAsync().AsTask().WaitAsync(Guard);

        public async ValueTask DisposeAsync()
        {
            await _stop.CancelAsync();
            await Task.WaitAsync(Guard); // RunAsync ends quietly on cancellation: nothing spills out
            _stop.Dispose();
        }
    }

    /// <summary>
    /// A clock that never moves by itself: each wait the watcher starts is handed to the test, which
    /// sees how long it asked for and lets it pass. Retries are counted, not timed.
    /// </summary>
    private sealed class StepClock : TimeProvider
    {
        private readonly Channel<StepTimer> _timers = Channel.CreateUnbounded<StepTimer>();

        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period)
        {
            var timer = new StepTimer(callback, state, dueTime);
            _timers.Writer.TryWrite(timer);
            return timer;
        }

        /// <summary>The next wait the watcher started (not yet passed).</summary>
        public async Task<StepTimer> NextWaitAsync() => await _timers.Reader.ReadAsync().AsTask().WaitAsync(Guard);
    }

    private sealed class StepTimer(TimerCallback callback, object? state, TimeSpan dueTime) : ITimer
    {
        private int _fired;

        public TimeSpan DueTime => dueTime;

        public void Fire()
        {
            if (Interlocked.Exchange(ref _fired, 1) == 0)
            {
                callback(state);
            }
        }

        public bool Change(TimeSpan dueTime, TimeSpan period) => true;

        public void Dispose() => Interlocked.Exchange(ref _fired, 1);

        public ValueTask DisposeAsync()
        {
            Dispose();
            return ValueTask.CompletedTask;
        }
    }

    private sealed class ListLogger : ILogger<TailscaleWatcher>
    {
        private readonly List<string> _lines = [];

        public IReadOnlyList<string> Lines
        {
            get
            {
                lock (_lines)
                {
                    return [.. _lines];
                }
            }
        }

        public IDisposable? BeginScope<TState>(TState state)
            where TState : notnull => null;

        public bool IsEnabled(LogLevel logLevel) => true;

        public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
        {
            lock (_lines)
            {
                _lines.Add(formatter(state, exception));
            }
        }
    }
}
