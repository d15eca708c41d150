using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Configuration;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using OpenTelemetry;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using OpenTelemetry.Trace;

namespace TsCgnat.Telemetry;

/// <summary>
/// OpenTelemetry for one program (design section 8): a MeterProvider over the <c>tscgnat</c> meter and, when
/// an OTLP endpoint is set, a TracerProvider over the <c>tscgnat</c> source; OTLP export of both when
/// <c>OTEL_EXPORTER_OTLP_ENDPOINT</c> is set (with the other standard <c>OTEL_*</c> variables); and, unless the
/// port is 0, one Kestrel listener serving <c>/metrics</c> (Prometheus text), <c>/healthz</c> and <c>/readyz</c>.
/// Disposing stops the listener and flushes the exporters, so the last measurements leave with the process.
/// </summary>
/// <remarks>
/// Kestrel with an empty builder and a single request delegate, no routing, no reflection: NativeAOT-clean.
/// The providers are built with <see cref="Sdk"/> rather than in the program's container, so the operator
/// (no generic host) and the agent (generic host, through <see cref="TelemetryServiceCollectionExtensions"/>)
/// get the same thing, and the port can be 0 while OTLP still exports.
/// </remarks>
public sealed class TelemetryHost : IAsyncDisposable
{
    private readonly MeterProvider _meters;
    private readonly TracerProvider? _traces;
    private readonly WebApplication? _web;

    private TelemetryHost(MeterProvider meters, TracerProvider? traces, WebApplication? web, bool exportsOtlp)
    {
        _meters = meters;
        _traces = traces;
        _web = web;
        ExportsOtlp = exportsOtlp;
    }

    /// <summary>Whether an OTLP endpoint was set, so metrics and traces are pushed.</summary>
    public bool ExportsOtlp { get; }

    /// <summary>Builds the providers and starts listening. Throws <see cref="IOException"/> when the port is taken.</summary>
    public static async Task<TelemetryHost> StartAsync(TelemetryOptions options, Readiness readiness, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(readiness);
        ArgumentOutOfRangeException.ThrowIfNegative(options.Port);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(options.Port, 65535);

        // The exporters read the standard OTEL_* settings from the IConfiguration in their services; giving them
        // ours (environment, then Settings on top) keeps one source of truth for "is OTLP on" and for them.
        var configuration = new ConfigurationBuilder()
            .AddEnvironmentVariables()
            .AddInMemoryCollection(options.Settings ?? new Dictionary<string, string?>())
            .Build();
        var otlp = !string.IsNullOrWhiteSpace(configuration[TelemetryOptions.OtlpEndpointVariable]);
        var serviceName = configuration["OTEL_SERVICE_NAME"] is { Length: > 0 } named ? named : options.ServiceName;
        void Describe(ResourceBuilder resource) => resource.AddService(serviceName, serviceVersion: TsCgnatMetrics.Version);

        var meterBuilder = Sdk.CreateMeterProviderBuilder()
            .ConfigureServices(services => services.AddSingleton<IConfiguration>(configuration))
            .ConfigureResource(Describe)
            .AddMeter(TsCgnatMetrics.MeterName);
        if (options.Port != 0)
        {
            meterBuilder.AddPrometheusExporter();
        }

        if (otlp)
        {
            meterBuilder.AddOtlpExporter();
        }

        var meters = meterBuilder.Build();

        // Without an OTLP endpoint nobody would receive spans: no TracerProvider, so the source has no listener
        // and StartActivity costs nothing.
        var traces = otlp
            ? Sdk.CreateTracerProviderBuilder()
                .ConfigureServices(services => services.AddSingleton<IConfiguration>(configuration))
                .ConfigureResource(Describe)
                .AddSource(TsCgnatTracing.SourceName)
                .AddOtlpExporter()
                .Build()
            : null;

        WebApplication? web = null;
        try
        {
            if (options.Port != 0)
            {
                web = Listen(options, readiness, meters);
                await web.StartAsync(cancellationToken);
            }
        }
        catch
        {
            if (web is not null)
            {
                await web.DisposeAsync();
            }

            traces?.Dispose();
            meters.Dispose();
            throw;
        }

        return new TelemetryHost(meters, traces, web, otlp);
    }

    /// <summary>Pushes what is buffered to the OTLP endpoint now (metrics and spans); false if an exporter failed or timed out.</summary>
    public bool Flush(TimeSpan timeout)
    {
        var milliseconds = (int)Math.Min(timeout.TotalMilliseconds, int.MaxValue);
        var metrics = _meters.ForceFlush(milliseconds);
        return (_traces?.ForceFlush(milliseconds) ?? true) && metrics;
    }

    public async ValueTask DisposeAsync()
    {
        if (_web is not null)
        {
            await _web.StopAsync(CancellationToken.None);
            await _web.DisposeAsync();
        }

        _traces?.Dispose();
        _meters.Dispose();
    }

    private static WebApplication Listen(TelemetryOptions options, Readiness readiness, MeterProvider meters)
    {
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.WebHost.UseKestrelCore().ConfigureKestrel(kestrel =>
        {
            kestrel.AddServerHeader = false;
            kestrel.Listen(options.ListenAddress, options.Port);
        });

        // The program owns SIGTERM and SIGINT (the operator stops itself, the agent's own host stops it); the
        // console lifetime this builder registers would take them too and stop the listener on its own.
        builder.Services.AddSingleton<IHostLifetime, ProgramOwnsSignals>();
        var app = builder.Build();
        app.UseOpenTelemetryPrometheusScrapingEndpoint(
            meters, predicate: context => context.Request.Path == "/metrics", path: null, configureBranchedPipeline: null, optionsName: null);
        app.Run(context => context.Request.Path.Value switch
        {
            "/healthz" => Answer(context, readiness.Liveness()),
            "/readyz" => Answer(context, readiness.Ready()),
            _ => Answer(context, StatusCodes.Status404NotFound, "not found; try /metrics, /healthz or /readyz"),
        });
        return app;
    }

    private sealed class ProgramOwnsSignals : IHostLifetime
    {
        public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }

    private static Task Answer(HttpContext context, HealthState state) =>
        Answer(context, state.Ok ? StatusCodes.Status200OK : StatusCodes.Status503ServiceUnavailable, state.Reason);

    private static Task Answer(HttpContext context, int status, string text)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "text/plain; charset=utf-8";
        return context.Response.WriteAsync(text + "\n", context.RequestAborted);
    }
}
