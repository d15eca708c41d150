using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using k8s;
using TsCgnat.TestSupport;
using Xunit;

namespace TsCgnat.KubeApiServer;

/// <summary>
/// A real etcd and kube-apiserver on loopback, for tests (the envtest pattern of controller-runtime): fresh PKI,
/// an administrator in <c>system:masters</c>, RBAC and admission on as in a cluster. The binaries come from the
/// directory in <see cref="KubeAssets.Variable"/>. No kubelet, scheduler or controller manager runs: Pods are
/// stored and never start, owner references never cascade, namespaces never finish terminating.
/// </summary>
public sealed class KubeApiServer : IAsyncDisposable
{
    private static readonly Lazy<Task<KubeApiServer>> SharedServer = new(StartSharedAsync);

    private readonly string _dir;
    private readonly string _assets;
    private readonly int _etcdPort;
    private readonly int _peerPort;
    private Supervised? _etcd;
    private Supervised? _apiServer;

    private KubeApiServer(string assets)
    {
        _assets = assets;
        _dir = Directory.CreateTempSubdirectory("tscgnat-kube-").FullName;
        (_etcdPort, _peerPort, Port) = (FreePort(), FreePort(), FreePort());
        AdminToken = Convert.ToHexString(RandomNumberGenerator.GetBytes(16)).ToLowerInvariant();
        CaPem = Pki.Write(_dir);
        File.WriteAllText(Path.Combine(_dir, "tokens.csv"), $"{AdminToken},tscgnat-admin,tscgnat-admin-uid,\"system:masters\"\n");
        AdminKubeconfig = WriteKubeconfig(Path.Combine(_dir, "admin.kubeconfig"), AdminToken, "tscgnat-admin");
    }

    public int Port { get; }

    public Uri BaseAddress => new($"https://127.0.0.1:{Port}");

    /// <summary>The CA that signed the serving certificate, PEM.</summary>
    public string CaPem { get; }

    /// <summary>A bearer token of a member of <c>system:masters</c>.</summary>
    public string AdminToken { get; }

    /// <summary>A kubeconfig file for the administrator.</summary>
    public string AdminKubeconfig { get; }

    /// <summary>
    /// One API server for the whole test assembly, started on first use and stopped when the test process exits.
    /// Tests share it, so every object a test makes has a name of its own (<see cref="UniqueName"/>).
    /// </summary>
    public static Task<KubeApiServer> SharedAsync()
    {
        KubeAssets.Require();
        return SharedServer.Value;
    }

    /// <summary>Starts a server of one's own (a test that stops and restarts it must not share it).</summary>
    public static async Task<KubeApiServer> StartAsync(CancellationToken cancellationToken = default)
    {
        var server = new KubeApiServer(KubeAssets.Require());
        try
        {
            await server.StartEtcdAsync(cancellationToken);
            await server.StartAgainAsync(cancellationToken);
            return server;
        }
        catch
        {
            await server.DisposeAsync();
            throw;
        }
    }

    public KubernetesClientConfiguration ClientConfiguration(string? token = null) => new()
    {
        Host = BaseAddress.ToString(),
        AccessToken = token ?? AdminToken,
        SslCaCerts = [X509Certificate2.CreateFromPem(CaPem)],
    };

    public Kubernetes Client(string? token = null) => new(ClientConfiguration(token));

    /// <summary>Writes a kubeconfig for <paramref name="token"/> and returns its path.</summary>
    public string WriteKubeconfig(string path, string token, string user = "user")
    {
        var ca = Convert.ToBase64String(Encoding.ASCII.GetBytes(CaPem));
        File.WriteAllText(path, $"""
            apiVersion: v1
            kind: Config
            clusters:
            - name: test
              cluster:
                server: {BaseAddress.ToString().TrimEnd('/')}
                certificate-authority-data: {ca}
            users:
            - name: {user}
              user:
                token: {token}
            contexts:
            - name: test
              context:
                cluster: test
                user: {user}
            current-context: test
            """);
        return path;
    }

    /// <summary>Stops kube-apiserver (etcd keeps the state): the API server is gone until <see cref="StartAgainAsync"/>.</summary>
    public async Task StopAsync()
    {
        if (_apiServer is { } running)
        {
            _apiServer = null;
            await running.StopAsync();
        }
    }

    /// <summary>Starts kube-apiserver on the same port with the same state, and waits until <c>/readyz</c> says ok.</summary>
    public async Task StartAgainAsync(CancellationToken cancellationToken = default)
    {
        string F(string name) => Path.Combine(_dir, name);
        _apiServer = Supervised.Start(Path.Combine(_assets, "kube-apiserver"), F("kube-apiserver.log"),
        [
            $"--etcd-servers=http://127.0.0.1:{_etcdPort}", "--bind-address=127.0.0.1", $"--secure-port={Port}",
            "--advertise-address=127.0.0.1", "--service-cluster-ip-range=10.96.0.0/16", "--endpoint-reconciler-type=none",
            "--service-account-issuer=https://kubernetes.default.svc", $"--service-account-key-file={F("sa.pub")}",
            $"--service-account-signing-key-file={F("sa.key")}", $"--tls-cert-file={F("apiserver.crt")}",
            $"--tls-private-key-file={F("apiserver.key")}", $"--client-ca-file={F("ca.crt")}",
            $"--token-auth-file={F("tokens.csv")}", "--authorization-mode=Node,RBAC", "--allow-privileged=true",
            $"--cert-dir={F("certs")}",
        ]);
        using var http = new HttpClient(new HttpClientHandler
        {
            ServerCertificateCustomValidationCallback = (_, cert, _, _) => cert is not null && Pki.SignedBy(cert, CaPem),
        });
        http.DefaultRequestHeaders.Authorization = new("Bearer", AdminToken);
        await WaitAsync(async () =>
        {
            try
            {
                return await http.GetStringAsync(new Uri(BaseAddress, "/readyz"), cancellationToken) == "ok";
            }
            catch (HttpRequestException)
            {
                return false;
            }
        }, _apiServer, "kube-apiserver /readyz", cancellationToken);
    }

    public async ValueTask DisposeAsync()
    {
        await StopAsync();
        if (_etcd is { } etcd)
        {
            _etcd = null;
            await etcd.StopAsync();
        }

        try
        {
            Directory.Delete(_dir, recursive: true);
        }
        catch (IOException)
        {
            // etcd may still be closing a file; the directory is under /tmp and uniquely named.
        }
    }

    private static async Task<KubeApiServer> StartSharedAsync()
    {
        var server = await StartAsync();
        AppDomain.CurrentDomain.ProcessExit += (_, _) => server.DisposeAsync().AsTask().GetAwaiter().GetResult();
        return server;
    }

    private async Task StartEtcdAsync(CancellationToken cancellationToken)
    {
        var client = $"http://127.0.0.1:{_etcdPort}";
        var peer = $"http://127.0.0.1:{_peerPort}";
        _etcd = Supervised.Start(Path.Combine(_assets, "etcd"), Path.Combine(_dir, "etcd.log"),
        [
            "--data-dir", Path.Combine(_dir, "etcd"), "--listen-client-urls", client, "--advertise-client-urls", client,
            "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer, "--initial-cluster", $"default={peer}",
            "--name", "default", "--unsafe-no-fsync",
        ], removeAfter: _dir);
        using var http = new HttpClient();
        await WaitAsync(async () =>
        {
            try
            {
                return (await http.GetStringAsync(new Uri($"{client}/health"), cancellationToken)).Contains("\"health\":\"true\"", StringComparison.Ordinal);
            }
            catch (HttpRequestException)
            {
                return false;
            }
        }, _etcd, "etcd /health", cancellationToken);
    }

    /// <summary>Polls to a deadline (generous: both start in 2-20 s on a loaded 2-core machine), failing early if the process died.</summary>
    private static async Task WaitAsync(Func<Task<bool>> ready, Supervised process, string what, CancellationToken cancellationToken)
    {
        var deadline = Stopwatch.StartNew();
        while (!await ready())
        {
            if (process.HasExited || deadline.Elapsed > TimeSpan.FromSeconds(90))
            {
                throw new InvalidOperationException(
                    $"{what}: not ready after {deadline.Elapsed.TotalSeconds:F0} s (process {(process.HasExited ? "exited" : "running")}); its log ends:\n{process.LogTail()}");
            }

            await Task.Delay(200, cancellationToken);
        }
    }

    private static int FreePort()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        return ((IPEndPoint)listener.LocalEndpoint).Port;
    }
}

/// <summary>Where the real Kubernetes binaries are: <c>TSCGNAT_KUBE_ASSETS</c> names a directory with <c>etcd</c> and <c>kube-apiserver</c>.</summary>
public static class KubeAssets
{
    public const string Variable = "TSCGNAT_KUBE_ASSETS";

    /// <summary>The directory; outside CI a missing one skips the test with the reason, under CI=true it fails it.</summary>
    public static string Require()
    {
        var dir = Environment.GetEnvironmentVariable(Variable);
        string? missing = string.IsNullOrEmpty(dir) ? $"{Variable} is not set"
            : new[] { "etcd", "kube-apiserver" }.FirstOrDefault(b => !File.Exists(Path.Combine(dir, b))) is { } absent ? $"{Variable}={dir} has no {absent}"
            : null;
        if (missing is null)
        {
            return dir!;
        }

        var why = $"needs a real kube-apiserver and etcd: {missing} (.ci/run sets it to ../shared/k8s; elsewhere `setup-envtest use 1.36 -p path` prints such a directory)";
        if (Privileges.InCi)
        {
            throw new InvalidOperationException($"CI=true but this test cannot run: {why}");
        }

        Skip.If(true, why);
        return dir!;
    }
}

/// <summary>
/// A child process that dies with the test process: a small bash watchdog runs it and kills it when the test
/// process is gone (a crashed or killed test host must not leave an API server behind). PR_SET_PDEATHSIG is no use
/// from .NET: it fires when the forking thread exits, and thread-pool threads retire while the server should live.
/// </summary>
internal sealed class Supervised
{
    private const string Watchdog = """
        host=$1; shift
        "$@" & child=$!
        trap 'kill -TERM $child 2>/dev/null; wait $child; exit 0' TERM
        while kill -0 "$host" 2>/dev/null && kill -0 $child 2>/dev/null; do sleep 0.5 & wait $!; done
        kill -TERM $child 2>/dev/null; wait $child
        [ -z "$TSCGNAT_REMOVE_AFTER" ] || rm -rf "$TSCGNAT_REMOVE_AFTER"
        """;

    private readonly Process _watchdog;
    private readonly string _log;

    private Supervised(Process watchdog, string log) => (_watchdog, _log) = (watchdog, log);

    public bool HasExited => _watchdog.HasExited;

    /// <summary>Starts <paramref name="program"/>; if the test process dies first, the watchdog stops it and removes <paramref name="removeAfter"/>.</summary>
    public static Supervised Start(string program, string log, IEnumerable<string> args, string? removeAfter = null)
    {
        var info = new ProcessStartInfo("bash") { RedirectStandardOutput = true, RedirectStandardError = true };
        info.Environment["TSCGNAT_REMOVE_AFTER"] = removeAfter ?? "";
        foreach (var arg in new[] { "-c", $"exec >>'{log}' 2>&1\n{Watchdog}", "watchdog", Environment.ProcessId.ToString(CultureInfo.InvariantCulture), program }.Concat(args))
        {
            info.ArgumentList.Add(arg);
        }

        return new Supervised(Process.Start(info)!, log);
    }

    /// <summary>SIGTERM (kube-apiserver takes a few seconds to drain), then SIGKILL after 30 s.</summary>
    public async Task StopAsync()
    {
        if (!_watchdog.HasExited)
        {
            Sh.Run("kill", "-TERM", _watchdog.Id.ToString(CultureInfo.InvariantCulture));
            using var patience = new CancellationTokenSource(TimeSpan.FromSeconds(30));
            try
            {
                await _watchdog.WaitForExitAsync(patience.Token);
            }
            catch (OperationCanceledException)
            {
                Sh.Run("pkill", "-KILL", "-P", _watchdog.Id.ToString(CultureInfo.InvariantCulture));
                _watchdog.Kill();
                await _watchdog.WaitForExitAsync();
            }
        }

        _watchdog.Dispose();
    }

    public string LogTail() => File.Exists(_log) ? string.Join('\n', File.ReadLines(_log).TakeLast(30)) : "(no log)";
}

/// <summary>The certificates and keys kube-apiserver needs, made fresh for each server (ECDSA P-256: fast to make).</summary>
internal static class Pki
{
    /// <summary>Writes ca.crt, apiserver.crt/key (SANs 127.0.0.1, localhost) and the service account key pair; returns the CA PEM.</summary>
    public static string Write(string dir)
    {
        var now = DateTimeOffset.UtcNow;
        using var caKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caRequest = new CertificateRequest("CN=tscgnat-test-ca", caKey, HashAlgorithmName.SHA256);
        caRequest.CertificateExtensions.Add(new X509BasicConstraintsExtension(true, false, 0, true));
        caRequest.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.KeyCertSign | X509KeyUsageFlags.CrlSign, true));
        caRequest.CertificateExtensions.Add(new X509SubjectKeyIdentifierExtension(caRequest.PublicKey, false));
        using var ca = caRequest.CreateSelfSigned(now.AddMinutes(-5), now.AddDays(7));

        using var serverKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var request = new CertificateRequest("CN=kube-apiserver", serverKey, HashAlgorithmName.SHA256);
        var names = new SubjectAlternativeNameBuilder();
        names.AddIpAddress(IPAddress.Loopback);
        names.AddDnsName("localhost");
        request.CertificateExtensions.Add(names.Build());
        request.CertificateExtensions.Add(new X509BasicConstraintsExtension(false, false, 0, false));
        request.CertificateExtensions.Add(new X509KeyUsageExtension(X509KeyUsageFlags.DigitalSignature, true));
        request.CertificateExtensions.Add(new X509EnhancedKeyUsageExtension([new Oid("1.3.6.1.5.5.7.3.1")], false));
        request.CertificateExtensions.Add(X509AuthorityKeyIdentifierExtension.CreateFromCertificate(ca, true, false));
        using var server = request.Create(ca, now.AddMinutes(-5), now.AddDays(7), RandomNumberGenerator.GetBytes(16));

        using var serviceAccountKey = ECDsa.Create(ECCurve.NamedCurves.nistP256);
        var caPem = ca.ExportCertificatePem();
        File.WriteAllText(Path.Combine(dir, "ca.crt"), caPem);
        File.WriteAllText(Path.Combine(dir, "apiserver.crt"), server.ExportCertificatePem());
        File.WriteAllText(Path.Combine(dir, "apiserver.key"), serverKey.ExportPkcs8PrivateKeyPem());
        File.WriteAllText(Path.Combine(dir, "sa.key"), serviceAccountKey.ExportPkcs8PrivateKeyPem());
        File.WriteAllText(Path.Combine(dir, "sa.pub"), serviceAccountKey.ExportSubjectPublicKeyInfoPem());
        return caPem;
    }

    public static bool SignedBy(X509Certificate2 certificate, string caPem)
    {
        using var ca = X509Certificate2.CreateFromPem(caPem);
        using var chain = new X509Chain();
        chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
        chain.ChainPolicy.CustomTrustStore.Add(ca);
        chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
        return chain.Build(certificate);
    }
}
