using System.Net;
using System.Net.Sockets;

namespace TsCgnat.Telemetry.Tests;

internal static class Loopback
{
    /// <summary>
    /// A port nobody listens on right now. The host takes a fixed port (0 means "off" on the command line),
    /// so the test asks the kernel for one and hands it over; the window in between is a few microseconds.
    /// </summary>
    public static int FreePort()
    {
        using var probe = new TcpListener(IPAddress.Loopback, 0);
        probe.Start();
        return ((IPEndPoint)probe.LocalEndpoint).Port;
    }

    public static TelemetryOptions Options(int port, IReadOnlyDictionary<string, string?>? settings = null) => new()
    {
        ServiceName = "ts-cgnat-agent",
        Port = port,
        ListenAddress = IPAddress.Loopback,
        // Keep the process environment out of these tests: an OTEL_EXPORTER_OTLP_ENDPOINT set on the machine
        // must not turn OTLP on where a test expects it off.
        Settings = settings ?? new Dictionary<string, string?> { [TelemetryOptions.OtlpEndpointVariable] = "" },
    };
}
