using CliWrap;
using CliWrap.Buffered;

namespace TsCgnat.Firewall.Processes;

/// <summary>What a finished process said.</summary>
public sealed record CommandOutput(int ExitCode, string StdOut, string StdErr)
{
    public bool Succeeded => ExitCode == 0;
}

/// <summary>
/// The seam between firewall logic and processes (kube-proxy's <c>utiliptables</c> idea): everything
/// that touches the host goes through here, so the rest is testable without root.
/// </summary>
public interface ICommandRunner
{
    /// <summary>Runs <paramref name="program"/> with an argument list (never a shell line) and optional stdin.</summary>
    Task<CommandOutput> RunAsync(string program, IReadOnlyList<string> arguments, string? standardInput, CancellationToken cancellationToken);
}

/// <summary>A long-running process whose output lines are events (<c>nft monitor</c>).</summary>
public interface ICommandStreamer
{
    /// <summary>Runs until the process exits or <paramref name="cancellationToken"/> fires; calls <paramref name="onLine"/> for each stdout line as it comes. Returns the exit code (127: not installed).</summary>
    Task<int> StreamAsync(string program, IReadOnlyList<string> arguments, Action<string> onLine, CancellationToken cancellationToken);
}

/// <summary>Runs processes with CliWrap, arguments as a list, output buffered, exit code returned not thrown.</summary>
public sealed class ProcessRunner : ICommandRunner, ICommandStreamer
{
    public async Task<int> StreamAsync(string program, IReadOnlyList<string> arguments, Action<string> onLine, CancellationToken cancellationToken)
    {
        var command = Cli.Wrap(program)
            .WithArguments(arguments)
            .WithValidation(CommandResultValidation.None)
            .WithStandardOutputPipe(PipeTarget.ToDelegate(onLine));
        try
        {
            var result = await command.ExecuteAsync(cancellationToken);
            return result.ExitCode;
        }
        catch (System.ComponentModel.Win32Exception)
        {
            return 127;
        }
    }

    public async Task<CommandOutput> RunAsync(string program, IReadOnlyList<string> arguments, string? standardInput, CancellationToken cancellationToken)
    {
        var command = Cli.Wrap(program)
            .WithArguments(arguments)
            .WithValidation(CommandResultValidation.None);
        if (standardInput is not null)
        {
            command = command.WithStandardInputPipe(PipeSource.FromString(standardInput));
        }

        try
        {
            var result = await command.ExecuteBufferedAsync(cancellationToken);
            return new CommandOutput(result.ExitCode, result.StandardOutput, result.StandardError);
        }
        catch (System.ComponentModel.Win32Exception)
        {
            // The binary is missing: report it as a failed command, so callers can say which tool to install.
            return new CommandOutput(127, "", $"{program}: not found on PATH, or not executable");
        }
    }
}

/// <summary>
/// Runs every command inside a named network namespace while this process stays outside, as a node
/// agent must when Tailscale lives in another namespace (and as the lab tests and benchmarks do).
/// </summary>
public sealed class NetnsRunner(ICommandRunner inner, string netns) : ICommandRunner, ICommandStreamer
{
    public Task<int> StreamAsync(string program, IReadOnlyList<string> arguments, Action<string> onLine, CancellationToken cancellationToken) =>
        inner is ICommandStreamer streamer
            ? streamer.StreamAsync("ip", ["netns", "exec", netns, program, .. arguments], onLine, cancellationToken)
            : throw new NotSupportedException($"{inner.GetType().Name} cannot stream");

    public Task<CommandOutput> RunAsync(string program, IReadOnlyList<string> arguments, string? standardInput, CancellationToken cancellationToken) =>
        inner.RunAsync("ip", ["netns", "exec", netns, program, .. arguments], standardInput, cancellationToken);
}
