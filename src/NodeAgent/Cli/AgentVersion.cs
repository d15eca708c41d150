using System.Reflection;

namespace TsCgnat.NodeAgent.Cli;

/// <summary>
/// The agent's version, apart from <see cref="AgentCommands"/>: that class's static fields are the command line's
/// options, and touching it for <c>version</c> would build them (issue 11).
/// </summary>
public static class AgentVersion
{
    public static string Text { get; } =
        typeof(AgentVersion).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";

    /// <summary><c>ts-cgnat-agent version</c>: one line on stdout, named after the program (ts-cgnat-agent-cluster says so).</summary>
    public static int Print()
    {
        var program = Assembly.GetEntryAssembly()?.GetName().Name ?? "ts-cgnat-agent";
        using var stdout = Console.OpenStandardOutput();
        stdout.Write(System.Text.Encoding.UTF8.GetBytes($"{program} {Text}\n"));
        return ExitCodes.Done;
    }
}
