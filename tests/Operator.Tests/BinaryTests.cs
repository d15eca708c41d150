using System.Diagnostics;
using System.Text;
using TsCgnat.Api;
using TsCgnat.TestSupport;

namespace TsCgnat.Operator.Tests;

/// <summary>The real ts-cgnat-operator program, as the chart runs it: <c>run</c> with KUBECONFIG, and its exit codes.</summary>
public class BinaryTests : OnApiServer
{
    private static readonly string Program = Path.Combine(
        Repo.Root, "src", "Operator", "bin", new DirectoryInfo(AppContext.BaseDirectory).Parent!.Name, "net10.0", "ts-cgnat-operator");

    private static (Process Process, StringBuilder Output) Launch(IReadOnlyDictionary<string, string> env, params string[] args)
    {
        var info = new ProcessStartInfo(Program) { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }

        foreach (var (key, value) in env)
        {
            info.Environment[key] = value;
        }

        var output = new StringBuilder();
        var process = Process.Start(info)!;
        process.OutputDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
        process.ErrorDataReceived += (_, e) => { lock (output) { output.AppendLine(e.Data); } };
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        return (process, output);
    }

    private static async Task<(int ExitCode, string Output)> RunToEnd(IReadOnlyDictionary<string, string> env, params string[] args)
    {
        var (process, output) = Launch(env, args);
        using (process)
        {
            await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(60));
            lock (output)
            {
                return (process.ExitCode, output.ToString());
            }
        }
    }

    [Fact]
    public async Task Run_with_KUBECONFIG_accepts_a_policy_serves_readyz_and_exits_0_on_SIGTERM()
    {
        var kubeconfig = Server.WriteKubeconfig(Path.Combine(Path.GetTempPath(), $"operator-{Guid.NewGuid():N}.kubeconfig"));
        PutPolicy("aliyun");
        var port = FreePort();
        var (process, output) = Launch(
            new Dictionary<string, string> { ["KUBECONFIG"] = kubeconfig, ["POD_NAMESPACE"] = "ts-cgnat", ["POD_NAME"] = "operator-0" },
            "run", "--leader-elect", "--metrics-port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--deletion-timeout", "30s");
        using (process)
        {
            try
            {
                await PolicyStatus("aliyun", p => Has(p, ConditionTypes.Accepted, ConditionStatus.True), "Accepted by the binary");
                // Accepted is written by the first policy pass; /readyz turns 200 only once every policy has been
                // reconciled and the caches have listed, which may come a moment later: poll it to a deadline.
                using var http = new HttpClient();
                var readyz = new Uri($"http://127.0.0.1:{port}/readyz");
                await Eventually(() => ReadyzBody(http, readyz) == "ok\n", "/readyz answers 200 ok");
                Assert.Equal("operator-0", (string?)Server.Get("leases", "ts-cgnat-operator", "ts-cgnat")?["spec"]?["holderIdentity"]);

                Sh.Ok("kill", "-TERM", process.Id.ToString(System.Globalization.CultureInfo.InvariantCulture));
                await process.WaitForExitAsync().WaitAsync(TimeSpan.FromSeconds(30));
            }
            finally
            {
                if (!process.HasExited)
                {
                    process.Kill();
                }

                File.Delete(kubeconfig);
            }

            string log;
            lock (output)
            {
                log = output.ToString();
            }

            Assert.True(process.ExitCode == 0, $"exit {process.ExitCode}:\n{log}");
            Assert.Contains("\"Category\":\"TsCgnat.Operator.PolicyReconciler\"", log, StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task A_deletion_timeout_that_is_not_a_duration_exits_2_naming_the_option()
    {
        var (code, output) = await RunToEnd(new Dictionary<string, string>(), "run", "--deletion-timeout", "5x");

        Assert.Equal(2, code);
        Assert.Contains("--deletion-timeout: \"5x\" is not a duration such as 300s, 5m or 1h30m", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_missing_kubeconfig_exits_1_saying_there_is_no_API_server()
    {
        var (code, output) = await RunToEnd(new Dictionary<string, string>(), "run", "--kubeconfig", "/nonexistent/kubeconfig");

        Assert.Equal(1, code);
        Assert.Contains("no API server to talk to", output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Crds_and_version_still_work()
    {
        var (code, output) = await RunToEnd(new Dictionary<string, string>(), "version");
        Assert.Equal((0, true), (code, output.StartsWith("ts-cgnat-operator ", StringComparison.Ordinal)));

        (code, output) = await RunToEnd(new Dictionary<string, string>(), "crds");
        Assert.Equal(0, code);
        Assert.Contains("name: cgnatallowpolicies.tscgnat.io", output, StringComparison.Ordinal);
    }

    /// <summary>The body of a 200 answer, or null (503, or the listener not up yet).</summary>
    private static string? ReadyzBody(HttpClient http, Uri readyz)
    {
        try
        {
            using var response = http.GetAsync(readyz).GetAwaiter().GetResult();
            return response.IsSuccessStatusCode ? response.Content.ReadAsStringAsync().GetAwaiter().GetResult() : null;
        }
        catch (HttpRequestException)
        {
            return null;
        }
    }

    private static int FreePort()
    {
        using var listener = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        listener.Start();
        return ((System.Net.IPEndPoint)listener.LocalEndpoint).Port;
    }
}
