using System.CommandLine;
using System.Reflection;
using System.Runtime.InteropServices;
using k8s;
using k8s.Exceptions;
using Microsoft.Extensions.Logging;
using TsCgnat.Api.Crds;
using TsCgnat.Kube;
using TsCgnat.Telemetry;

namespace TsCgnat.Operator;

/// <summary>
/// The <c>ts-cgnat-operator</c> command line (design section 7). Each command is built by one method
/// and listed in <see cref="Build"/>; <c>run</c> (validation, finalizers, status aggregation) joins
/// them with the operator itself.
/// </summary>
internal static class Program
{
    /// <summary>Exit codes of design section 7.</summary>
    private const int Done = 0;
    private const int Failure = 1;
    private const int InvalidInput = 2;

    public static async Task<int> Main(string[] args)
    {
        var parse = Build().Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var error in parse.Errors)
            {
                await Console.Error.WriteLineAsync($"error: {error.Message}");
            }

            await Console.Error.WriteLineAsync("run 'ts-cgnat-operator --help' for usage");
            return InvalidInput;
        }

        // run handles SIGTERM and SIGINT itself, to stop cleanly and exit 0 (System.CommandLine would answer 143).
        return await parse.InvokeAsync(new InvocationConfiguration { ProcessTerminationTimeout = null });
    }

    public static RootCommand Build() => new("ts-cgnat-operator: validates CgnatAllowPolicies and aggregates what the node agents report.")
    {
        Run(), Crds(), Version(),
    };

    private static Command Run()
    {
        var leaderElect = new Option<bool>("--leader-elect")
        {
            Description = "Reconcile only while holding the Lease ts-cgnat-operator in POD_NAMESPACE (default ts-cgnat); for more than one replica.",
        };
        var metricsPort = new Option<int>("--metrics-port")
        {
            Description = "Serve /metrics (Prometheus), /healthz and /readyz on this port, on every address (the chart passes 8080 and "
                + "probes the health paths); 0, the default, serves nothing (OTLP still exports when OTEL_EXPORTER_OTLP_ENDPOINT is set).",
            DefaultValueFactory = _ => 0,
        };
        var deletionTimeout = new Option<TimeSpan>("--deletion-timeout")
        {
            Description = "How long a deleted policy waits for its target nodes to confirm the removal before a Warning event and letting go (e.g. 300s, 5m).",
            DefaultValueFactory = _ => TimeSpan.FromMinutes(5),
            CustomParser = result =>
            {
                var text = result.Tokens.Count == 1 ? result.Tokens[0].Value : "";
                if (Durations.TryParse(text, out var value))
                {
                    return value;
                }

                result.AddError($"--deletion-timeout: \"{text}\" is not a duration such as 300s, 5m or 1h30m");
                return default;
            },
        };
        var kubeconfig = new Option<string?>("--kubeconfig")
        {
            Description = "A kubeconfig file; default: the pod's service account in a cluster, else KUBECONFIG or ~/.kube/config.",
        };
        var run = new Command("run", "Validate policies, hold deleted ones until the agents removed them, and aggregate the node states into each policy's status.")
        {
            leaderElect, metricsPort, deletionTimeout, kubeconfig,
        };
        run.SetAction((parse, ct) => RunAsync(
            parse.GetValue(kubeconfig), parse.GetValue(metricsPort),
            new OperatorOptions
            {
                LeaderElect = parse.GetValue(leaderElect),
                LeaseNamespace = Environment.GetEnvironmentVariable("POD_NAMESPACE") is { Length: > 0 } ns ? ns : "ts-cgnat",
                Identity = Environment.GetEnvironmentVariable("POD_NAME") is { Length: > 0 } pod ? pod : new OperatorOptions().Identity,
                DeletionTimeout = parse.GetValue(deletionTimeout),
            },
            ct));
        return run;
    }

    private static async Task<int> RunAsync(string? kubeconfigPath, int metricsPort, OperatorOptions options, CancellationToken cancellationToken)
    {
        if (metricsPort is < 0 or > 65535)
        {
            await Console.Error.WriteLineAsync($"error: --metrics-port {metricsPort} is not a port (0 to 65535, 0 = off)");
            return InvalidInput;
        }

        using var loggers = LoggerFactory.Create(b => b.AddJsonConsole(o =>
        {
            o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ";
            o.UseUtcTimestamp = true;
        }));
        var logger = loggers.CreateLogger("ts-cgnat-operator");
        KubernetesClientConfiguration configuration;
        try
        {
            KubeJson.Use(Api.KubernetesClientJsonContext.Default); // our kinds without reflection (NativeAOT)
            configuration = KubeConfig.Load(kubeconfigPath);
        }
        catch (Exception e) when (e is KubeConfigException or IOException or UnauthorizedAccessException)
        {
            logger.LogCritical("no API server to talk to: {Error}", e.Message);
            return Failure;
        }

        using var metrics = new TsCgnatMetrics();
        var readiness = new Readiness(3 * options.TelemetryInterval, requireCachesSynced: true);
        TelemetryHost telemetry;
        try
        {
            telemetry = await TelemetryHost.StartAsync(new TelemetryOptions { ServiceName = "ts-cgnat-operator", Port = metricsPort }, readiness, cancellationToken);
        }
        catch (IOException e)
        {
            logger.LogCritical("--metrics-port {Port}: cannot listen: {Error}", metricsPort, e.Message);
            return Failure;
        }

        await using var flushed = telemetry; // stopping flushes what OTLP has not pushed yet
        using var @operator = new CgnatOperator(configuration, options, loggers, metrics: metrics, readiness: readiness);
        using var stop = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        void Stop(PosixSignalContext context)
        {
            context.Cancel = true;
            logger.LogInformation("{Signal}: stopping", context.Signal);
            stop.Cancel();
        }

        using var terminate = PosixSignalRegistration.Create(PosixSignal.SIGTERM, Stop);
        using var interrupt = PosixSignalRegistration.Create(PosixSignal.SIGINT, Stop);
        try
        {
            await @operator.RunAsync(stop.Token);
            return Done;
        }
        catch (Exception e) when (e is not OperationCanceledException)
        {
            logger.LogCritical(e, "the operator failed: {Error}", e.Message);
            return Failure;
        }
    }

    private static Command Crds()
    {
        var outputDir = new Option<DirectoryInfo?>("--output-dir")
        {
            Description = "Write one file per CRD into this directory (as config/crds/ holds them) instead of printing them.",
        };
        var crds = new Command("crds", "Print the CRDs generated from the C# types, as one multi-document YAML stream.") { outputDir };
        crds.SetAction(async (parse, ct) =>
        {
            var definitions = ApiCrds.All();
            if (parse.GetValue(outputDir) is not { } dir)
            {
                await Console.Out.WriteAsync(ApiCrds.ToYaml(definitions));
                return Done;
            }

            try
            {
                dir.Create();
                foreach (var crd in definitions)
                {
                    var path = Path.Combine(dir.FullName, ApiCrds.FileName(crd));
                    await File.WriteAllTextAsync(path, ApiCrds.ToYaml(crd), ct);
                    await Console.Out.WriteLineAsync($"wrote {path}");
                }

                return Done;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                await Console.Error.WriteLineAsync($"error: {e.Message}");
                return Failure;
            }
        });
        return crds;
    }

    private static Command Version()
    {
        var version = new Command("version", "Print the version.");
        version.SetAction(_ =>
        {
            var text = typeof(Program).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";
            Console.WriteLine($"ts-cgnat-operator {text}");
            return Done;
        });
        return version;
    }
}
