namespace TsCgnat.NodeAgent.Cli;

/// <summary>
/// What both agent programs run (<c>ts-cgnat-agent</c> and <c>ts-cgnat-agent-cluster</c>). <c>version</c> is answered
/// before anything else exists: no command tree (System.CommandLine, whose options are <see cref="AgentCommands"/>'
/// static fields), hosting, telemetry or Kubernetes type is touched, so it costs what the process itself costs
/// (issue 11; the images run it as their build check). Every other command goes through the command line.
/// </summary>
public static class AgentMain
{
    public static async Task<int> RunAsync(string[] args) =>
        args is ["version"] ? AgentVersion.Print() : await AgentCommands.InvokeAsync(args);
}
