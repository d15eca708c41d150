using System.Net;

namespace TsCgnat.Telemetry;

/// <summary>How a program exposes its telemetry.</summary>
public sealed record TelemetryOptions
{
    /// <summary>The OTLP environment variable whose presence turns the OTLP exporter on.</summary>
    public const string OtlpEndpointVariable = "OTEL_EXPORTER_OTLP_ENDPOINT";

    /// <summary><c>service.name</c> of the exported resource (<c>OTEL_SERVICE_NAME</c> overrides it).</summary>
    public required string ServiceName { get; init; }

    /// <summary><c>--metrics-port</c>: where /metrics, /healthz and /readyz are served; 0 serves nothing (OTLP still exports).</summary>
    public int Port { get; init; }

    /// <summary>The address to listen on; every IPv4 address by default, so the kubelet and Prometheus reach it.</summary>
    public IPAddress ListenAddress { get; init; } = IPAddress.Any;

    /// <summary>See <see cref="Readiness(TimeSpan, bool, TimeProvider?)"/>; used where the telemetry creates the <see cref="Readiness"/>.</summary>
    public TimeSpan LivenessBound { get; init; } = TimeSpan.FromSeconds(90);

    /// <summary>Cluster mode: <c>/readyz</c> also waits for the caches.</summary>
    public bool RequireCachesSynced { get; init; }

    /// <summary>
    /// Standard <c>OTEL_*</c> settings that take precedence over the process environment (tests set the OTLP
    /// endpoint here without touching the environment of other tests). Null: the environment only.
    /// </summary>
    public IReadOnlyDictionary<string, string?>? Settings { get; init; }
}
