using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;

namespace TsCgnat.Operator;

/// <summary>
/// <c>/healthz</c> and <c>/readyz</c> on the metrics port, which the chart's probes ask. Kestrel with a single
/// request delegate and no routing: nothing reflection-based, so it stays NativeAOT-clean. Metrics join this
/// listener when the operator exports them.
/// </summary>
public static class HealthEndpoint
{
    /// <summary>Listens on every address at <paramref name="port"/> until <paramref name="cancellationToken"/> is cancelled.</summary>
    /// <param name="ready">Whether the operator can serve (its caches have listed once).</param>
    public static async Task RunAsync(int port, Func<bool> ready, CancellationToken cancellationToken)
    {
        ArgumentNullException.ThrowIfNull(ready);
        var builder = WebApplication.CreateEmptyBuilder(new WebApplicationOptions());
        builder.WebHost.UseKestrelCore().ConfigureKestrel(o =>
        {
            o.AddServerHeader = false;
            o.Listen(IPAddress.Any, port);
        });
        // The program owns SIGTERM (see Program); the host's console lifetime would take it too and keep the
        // process alive after the operator stopped.
        builder.Services.AddSingleton<IHostLifetime, ProgramOwnsSignals>();
        await using var app = builder.Build();
        app.Run(context => context.Request.Path.Value switch
        {
            "/healthz" => Answer(context, StatusCodes.Status200OK, "ok"),
            "/readyz" when ready() => Answer(context, StatusCodes.Status200OK, "ok"),
            "/readyz" => Answer(context, StatusCodes.Status503ServiceUnavailable, "caches not synced yet"),
            _ => Answer(context, StatusCodes.Status404NotFound, "not found"),
        });
        await app.StartAsync(cancellationToken);
        try
        {
            await Task.Delay(Timeout.Infinite, cancellationToken);
        }
        catch (OperationCanceledException)
        {
            // Stopping is the normal end.
        }

        await app.StopAsync(CancellationToken.None);
    }

    private static Task Answer(HttpContext context, int status, string text)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "text/plain";
        return context.Response.WriteAsync(text + "\n", context.RequestAborted);
    }

    private sealed class ProgramOwnsSignals : IHostLifetime
    {
        public Task WaitForStartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

        public Task StopAsync(CancellationToken cancellationToken) => Task.CompletedTask;
    }
}
