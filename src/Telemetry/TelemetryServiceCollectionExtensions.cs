using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace TsCgnat.Telemetry;

/// <summary>Telemetry for a program on the generic host (the agent).</summary>
public static class TelemetryServiceCollectionExtensions
{
    /// <summary>
    /// Registers <see cref="TsCgnatMetrics"/> and <see cref="Readiness"/> as singletons (on the container's
    /// <see cref="TimeProvider"/> if it has one) and a hosted service that runs a <see cref="TelemetryHost"/> for
    /// the host's lifetime. The program injects the two singletons where it reconciles.
    /// </summary>
    public static IServiceCollection AddTsCgnatTelemetry(this IServiceCollection services, TelemetryOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        services.AddSingleton(sp => new TsCgnatMetrics(sp.GetService<TimeProvider>()));
        services.AddSingleton(sp => new Readiness(options.LivenessBound, options.RequireCachesSynced, sp.GetService<TimeProvider>()));
        services.AddHostedService(sp => new TelemetryService(options, sp.GetRequiredService<Readiness>()));
        return services;
    }

    private sealed class TelemetryService(TelemetryOptions options, Readiness readiness) : IHostedService, IAsyncDisposable
    {
        private TelemetryHost? _host;

        public async Task StartAsync(CancellationToken cancellationToken) =>
            _host = await TelemetryHost.StartAsync(options, readiness, cancellationToken);

        public async Task StopAsync(CancellationToken cancellationToken) => await DisposeAsync();

        public async ValueTask DisposeAsync()
        {
            if (Interlocked.Exchange(ref _host, null) is { } host)
            {
                await host.DisposeAsync();
            }
        }
    }
}
