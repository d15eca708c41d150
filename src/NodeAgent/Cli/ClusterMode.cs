using System.Diagnostics.CodeAnalysis;
using System.Runtime.InteropServices;

namespace TsCgnat.NodeAgent.Cli;

/// <summary>
/// Whether this binary runs cluster mode itself, or hands it to <c>ts-cgnat-agent-cluster</c> beside it (issue 11).
/// </summary>
/// <remarks>
/// Cluster mode needs KubernetesClient, whose source-generated JSON context covers every Kubernetes model: under
/// NativeAOT that is two thirds of the binary's types, and the runtime expands them into private memory at every
/// start, before <c>Main</c>, whatever the command. So the NativeAOT <c>ts-cgnat-agent</c> is published with this
/// switch off (NodeAgent.csproj), ILC drops everything only cluster mode reaches, and <c>run</c> without
/// <c>--policy-file</c> replaces the process (<c>execv</c>: same PID, environment and arguments, so the kubelet's
/// signals still reach the agent) with <c>ts-cgnat-agent-cluster</c> (src/ClusterAgent), the same code with the
/// switch on. Built with the JIT (tests, <c>dotnet run</c>), the switch is on and one binary does everything.
/// </remarks>
public static partial class ClusterMode
{
    public const string Switch = "TsCgnat.NodeAgent.ClusterMode.IsSupported";

    /// <summary>The binary cluster mode is handed to, looked for beside this one.</summary>
    public const string ClusterBinary = "ts-cgnat-agent-cluster";

    [FeatureSwitchDefinition(Switch)]
    public static bool IsSupported => !AppContext.TryGetSwitch(Switch, out var on) || on;

    /// <summary>Replaces this process with <see cref="ClusterBinary"/>; returns only when that fails, with the exit code.</summary>
    public static int Exec(string[] args)
    {
        var self = Environment.ProcessPath ?? Path.Combine(AppContext.BaseDirectory, "ts-cgnat-agent");
        var path = Path.Combine(Path.GetDirectoryName(self) ?? AppContext.BaseDirectory, ClusterBinary);
        if (!File.Exists(path))
        {
            Console.Error.WriteLine($"error: cluster mode (run without --policy-file) is in {ClusterBinary}, and {path} does not exist; "
                + "install it beside this binary (the container image has it), or give --policy-file for host mode");
            return ExitCodes.Failure;
        }

        Console.Out.Flush();
        var argv = new IntPtr[args.Length + 2]; // argv[0], the arguments, and the null that ends the list
        argv[0] = Marshal.StringToCoTaskMemUTF8(path);
        for (var i = 0; i < args.Length; i++)
        {
            argv[i + 1] = Marshal.StringToCoTaskMemUTF8(args[i]);
        }

        Execv(path, argv); // returns only on failure
        var errno = Marshal.GetLastPInvokeError();
        foreach (var arg in argv)
        {
            Marshal.FreeCoTaskMem(arg);
        }

        Console.Error.WriteLine($"error: cannot start {path} for cluster mode: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})");
        return ExitCodes.Failure;
    }

    [LibraryImport("libc", EntryPoint = "execv", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Execv(string path, IntPtr[] argv);
}
