using System.Diagnostics;

namespace TsCgnat.EndToEnd.Tests;

/// <summary>
/// One <see cref="LabCluster"/> for all the scenarios of a class, on a real API server of its own (one scenario stops
/// it), with two operator replicas as the chart's default. Starting one costs more than most scenarios do (the lab,
/// two emulated tailscaleds, an API server, helm, four .NET processes), so the scenarios share it: each uses policies
/// of its own names, starts with <see cref="LabCluster.EnsureRunningAsync"/> and ends with
/// <see cref="LabCluster.ResetAsync"/>. Started by the first scenario that runs (after its privilege check, so a
/// machine without network namespaces skips rather than fails outside CI; a failed start fails every scenario with
/// the same error), stopped and removed after the last.
/// </summary>
public sealed class LabClusterFixture : IAsyncLifetime
{
    private readonly Lock _gate = new();
    private Task<LabCluster>? _starting;

    private TimeSpan? _startedIn;

    /// <summary>How long the start took, once: for the output of the scenario that waited for it.</summary>
    public TimeSpan? TakeStartTime()
    {
        lock (_gate)
        {
            var startedIn = _startedIn;
            _startedIn = null;
            return startedIn;
        }
    }

    public Task<LabCluster> GetAsync()
    {
        lock (_gate)
        {
            return _starting ??= StartAsync();
        }
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        Task<LabCluster>? starting;
        lock (_gate)
        {
            starting = _starting;
        }

        if (starting is { IsCompletedSuccessfully: true })
        {
            await (await starting).DisposeAsync();
        }
    }

    private async Task<LabCluster> StartAsync()
    {
        var clock = Stopwatch.StartNew();
        var cluster = await LabCluster.StartAsync(operators: 2);
        lock (_gate)
        {
            _startedIn = clock.Elapsed;
        }

        return cluster;
    }
}
