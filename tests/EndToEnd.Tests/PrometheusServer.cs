using System.Diagnostics;
using System.Globalization;
using System.Text;
using System.Text.Json.Nodes;
using TsCgnat.TestSupport;

namespace TsCgnat.EndToEnd.Tests;

/// <summary>
/// A real Prometheus (Debian's prometheus package) for one test: on 127.0.0.1 at a port of its own, with its
/// configuration and data in a temp directory of its own, killed and removed on dispose. Scrapes and rule
/// evaluations every second, so a test sees its series within seconds. Read back through the HTTP API.
/// </summary>
public sealed class PrometheusServer : IDisposable
{
    private readonly string _dir = Path.Combine(Path.GetTempPath(), UniqueName.For("tscgnat-prom-"));
    private readonly StringBuilder _output = new();
    private readonly Process _process;
    private readonly HttpClient _http;

    /// <param name="binary">The prometheus binary.</param>
    /// <param name="scrapeConfigs">The <c>scrape_configs</c> entries, as YAML text (each starting with <c>- job_name:</c>).</param>
    /// <param name="ruleFiles">Rule files to load and evaluate.</param>
    public PrometheusServer(string binary, string scrapeConfigs, params string[] ruleFiles)
    {
        Directory.CreateDirectory(_dir);
        var config = Path.Combine(_dir, "prometheus.yml");
        File.WriteAllText(config, $"""
            global:
              scrape_interval: 1s
              scrape_timeout: 1s
              evaluation_interval: 1s
            rule_files: [{string.Join(", ", ruleFiles.Select(f => $"'{f}'"))}]
            scrape_configs:
            {scrapeConfigs}
            """);
        Port = FreePort.Loopback();
        var info = new ProcessStartInfo(binary) { RedirectStandardOutput = true, RedirectStandardError = true, WorkingDirectory = _dir };
        foreach (var arg in new[]
        {
            "--config.file=" + config, "--storage.tsdb.path=" + Path.Combine(_dir, "data"),
            "--web.listen-address=127.0.0.1:" + Port.ToString(CultureInfo.InvariantCulture),
        })
        {
            info.ArgumentList.Add(arg);
        }

        _process = Process.Start(info)!;
        _process.OutputDataReceived += (_, e) => Append(e.Data);
        _process.ErrorDataReceived += (_, e) => Append(e.Data);
        _process.BeginOutputReadLine();
        _process.BeginErrorReadLine();
        _http = new HttpClient { BaseAddress = new Uri($"http://127.0.0.1:{Port}/"), Timeout = TimeSpan.FromSeconds(10) };
    }

    public int Port { get; }

    /// <summary>What Prometheus logged, for failure messages.</summary>
    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    /// <summary>Waits until <c>/-/ready</c> answers 200.</summary>
    public void WaitReady(TimeSpan patience)
    {
        var clock = Stopwatch.StartNew();
        while (true)
        {
            if (_process.HasExited)
            {
                Assert.Fail($"prometheus exited with {_process.ExitCode}:\n{Output}");
            }

            try
            {
                if (_http.GetAsync("-/ready").GetAwaiter().GetResult().IsSuccessStatusCode)
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
                // not listening yet
            }

            if (clock.Elapsed > patience)
            {
                Assert.Fail($"prometheus not ready within {patience.TotalSeconds} s:\n{Output}");
            }

            Thread.Sleep(100);
        }
    }

    /// <summary>An instant query: the API's <c>data</c> object (<c>resultType</c>, <c>result</c>); fails the test on an error status.</summary>
    public JsonObject Query(string expr) => Data("api/v1/query?query=" + Uri.EscapeDataString(expr)).AsObject();

    /// <summary>The instant vector an expression returns, as (labels, value) pairs.</summary>
    public IReadOnlyList<(JsonObject Labels, double Value)> Vector(string expr) =>
        [.. Query(expr)["result"]!.AsArray().Select(r => (r!["metric"]!.AsObject(), double.Parse((string)r["value"]![1]!, CultureInfo.InvariantCulture)))];

    /// <summary>The label sets of every series matching <paramref name="selector"/>, as stored.</summary>
    public IReadOnlyList<JsonObject> Series(string selector) =>
        [.. Data("api/v1/series?match[]=" + Uri.EscapeDataString(selector)).AsArray().Select(s => s!.AsObject())];

    /// <summary>Every rule Prometheus loaded, with its health, last error and last evaluation.</summary>
    public IReadOnlyList<JsonObject> Rules() =>
        [.. Data("api/v1/rules")["groups"]!.AsArray().SelectMany(g => g!["rules"]!.AsArray()).Select(r => r!.AsObject())];

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            _process.WaitForExit();
        }

        _process.Dispose();
        _http.Dispose();
        Directory.Delete(_dir, recursive: true);
    }

    private JsonNode Data(string path)
    {
        var response = _http.GetAsync(path).GetAwaiter().GetResult();
        var body = JsonNode.Parse(response.Content.ReadAsStringAsync().GetAwaiter().GetResult())!;
        Assert.True((string?)body["status"] == "success", $"GET {path}: {(int)response.StatusCode} {body.ToJsonString()}");
        return body["data"]!;
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            _output.AppendLine(line);
        }
    }
}
