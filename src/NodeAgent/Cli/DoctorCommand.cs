using System.CommandLine;
using System.Net.Sockets;
using System.Text.Json;
using TsCgnat.Firewall;
using TsCgnat.Firewall.Model;
using TsCgnat.Firewall.Processes;
using TsCgnat.NodeAgent.Doctor;
using TsCgnat.NodeAgent.HostMode;
using TsCgnat.NodeAgent.Reconciling;
using TsCgnat.NodeAgent.Tailscale;

namespace TsCgnat.NodeAgent.Cli;

/// <summary><c>ts-cgnat-agent doctor</c>: reads the host and tailscaled once, writes nothing, explains what it sees.</summary>
public static class DoctorCommand
{
    /// <summary>The LocalAPI answers in milliseconds; a hung tailscaled must not hang the doctor for the client's 30 s.</summary>
    private static readonly TimeSpan LocalApiTimeout = TimeSpan.FromSeconds(5);

    private static readonly Option<bool> Json = new("--json") { Description = "Print the findings as JSON (fields in docs/doctor.md) instead of text." };

    public static Command Build()
    {
        var doctor = new Command(
            "doctor",
            "Explain this host: firewall back end, tailscaled's runner and mode, the strategy auto picks, our rules against the policy, "
            + "and whether a packet from each allowed source and routed subnet is dropped right now, and by which rule. Writes nothing. "
            + "Exit code 0 healthy, 1 problems found, 2 invalid input.")
        {
            AgentCommands.PolicyFile, Json, AgentCommands.Netns, AgentCommands.TailscaleSocket, AgentCommands.TailscaleInterface, AgentCommands.Strategy,
        };
        doctor.SetAction((parse, ct) => RunAsync(parse, ct));
        return doctor;
    }

    private static async Task<int> RunAsync(ParseResult parse, CancellationToken cancellationToken)
    {
        var paths = parse.GetValue(AgentCommands.PolicyFile) ?? [];
        PolicySet? policies = null;
        if (paths.Length > 0)
        {
            policies = PolicyFiles.Load(paths);
            if (!policies.IsValid)
            {
                await Console.Error.WriteLineAsync($"error: {policies.Problems.Count} problem(s) in the policy files:");
                foreach (var problem in policies.Problems)
                {
                    await Console.Error.WriteLineAsync($"  {problem}");
                }

                return ExitCodes.InvalidInput;
            }
        }

        var socket = parse.GetValue(AgentCommands.TailscaleSocket)!;
        var localApi = await AskTailscaledAsync(socket, cancellationToken);
        var inner = parse.GetValue(AgentCommands.Netns) is { } netns ? new NetnsRunner(new ProcessRunner(), netns) : (ICommandRunner)new ProcessRunner();
        var recorder = new ListingRecorder(inner);
        HostSnapshot snapshot;
        try
        {
            snapshot = await new HostFirewall(recorder).ReadAsync(cancellationToken);
        }
        catch (FirewallToolException e)
        {
            await Console.Error.WriteLineAsync($"error: {e.Message}");
            return ExitCodes.Failure;
        }

        var settings = new FirewallSettings(
            parse.GetValue(AgentCommands.TailscaleInterface)!,
            Strategy: parse.GetValue(AgentCommands.Strategy) switch
            {
                "indirect" => StrategyRequest.Indirect,
                "in-chain" => StrategyRequest.InChain,
                _ => StrategyRequest.Auto,
            });
        var report = HostDiagnosis.Examine(snapshot, recorder.Listing, policies?.Policies.Select(p => p.Valid).ToList(), settings, socket, localApi);
        Console.Write(parse.GetValue(Json)
            ? DoctorJsonContext.Serialize(report) + "\n"
            : DoctorText.Render(report));
        return report.Healthy ? ExitCodes.Done : ExitCodes.Failure;
    }

    /// <summary>Prefs and status, read-only; a missing socket is a normal answer ("not reachable"), not an error.</summary>
    private static async Task<TailscaleView> AskTailscaledAsync(string socket, CancellationToken cancellationToken)
    {
        using var client = new LocalApiClient(socket);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        timeout.CancelAfter(LocalApiTimeout);
        try
        {
            var prefs = await client.GetPrefsAsync(timeout.Token);
            var status = await client.GetStatusAsync(timeout.Token);
            return new TailscaleView(true, null, status.State, status.Version, prefs);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            return TailscaleView.Unreachable($"tailscaled did not answer on {socket} within {LocalApiTimeout.TotalSeconds:F0} s");
        }
        catch (Exception e) when (e is TailscaledUnreachableException or LocalApiException or HttpRequestException or IOException or JsonException or SocketException)
        {
            return TailscaleView.Unreachable(e.Message);
        }
    }
}
