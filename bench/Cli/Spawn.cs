using System.Diagnostics;
using System.Runtime.InteropServices;

namespace TsCgnat.Bench.Cli;

/// <summary>
/// What one finished child process cost: its wall time from spawn to reaped, the CPU it used (user + system, its own
/// threads; the figure a loaded machine changes least), its peak resident memory, its exit code.
/// </summary>
internal sealed record Finished(double WallMs, double CpuMs, int ExitCode, string StdOut, string StdErr)
{
    public bool Succeeded => ExitCode == 0;
}

/// <summary>
/// Starts a program with <c>posix_spawnp</c> and reaps it with <c>wait4</c>, which gives its CPU time.
/// System.Diagnostics.Process's fork of a large .NET process costs more than the few milliseconds being measured.
/// Output goes to files, read afterwards, so no pipe reader runs during the measurement. Peak RSS comes from
/// <see cref="PeakRssMb"/>: wait4's <c>ru_maxrss</c> of a child of this process is never below this process's own.
/// </summary>
internal static partial class Spawn
{
    private const int ORdOnly = 0;
    private const int OWrOnly = 1;
    private const int OCreat = 0x40;
    private const int OTrunc = 0x200;
    private const int RusageBytes = 144;

    /// <summary>Runs <paramref name="program"/> (found on PATH) with <paramref name="arguments"/>; stdin from <paramref name="stdinFile"/> or /dev/null.</summary>
    public static Finished Run(string program, IReadOnlyList<string> arguments, string? stdinFile = null)
    {
        var output = Path.GetTempFileName();
        var errors = Path.GetTempFileName();
        var actions = Marshal.AllocHGlobal(256); // posix_spawn_file_actions_t is 80 bytes on glibc
        var usage = Marshal.AllocHGlobal(RusageBytes);
        try
        {
            Check(posix_spawn_file_actions_init(actions), "posix_spawn_file_actions_init");
            Check(posix_spawn_file_actions_addopen(actions, 0, stdinFile ?? "/dev/null", ORdOnly, 0), "addopen stdin");
            Check(posix_spawn_file_actions_addopen(actions, 1, output, OWrOnly | OCreat | OTrunc, 0x1a4), "addopen stdout");
            Check(posix_spawn_file_actions_addopen(actions, 2, errors, OWrOnly | OCreat | OTrunc, 0x1a4), "addopen stderr");
            string?[] argv = [program, .. arguments, null];
            string?[] envp = [.. Environment.GetEnvironmentVariables().Cast<System.Collections.DictionaryEntry>().Select(e => $"{e.Key}={e.Value}"), null];

            var clock = Stopwatch.StartNew();
            Check(posix_spawnp(out var pid, program, actions, IntPtr.Zero, argv, envp), $"posix_spawnp {program}");
            int status;
            while (wait4(pid, out status, 0, usage) < 0)
            {
                if (Marshal.GetLastPInvokeError() != 4) // EINTR
                {
                    throw new BenchException($"wait4 for {program} failed: errno {Marshal.GetLastPInvokeError()}");
                }
            }

            var wallMs = clock.Elapsed.TotalMilliseconds;
            var cpuMs = Milliseconds(usage, 0) + Milliseconds(usage, 16); // ru_utime, ru_stime
            var exitCode = (status & 0x7f) == 0 ? (status >> 8) & 0xff : 128 + (status & 0x7f);
            return new Finished(wallMs, cpuMs, exitCode, File.ReadAllText(output), File.ReadAllText(errors));
        }
        finally
        {
            _ = posix_spawn_file_actions_destroy(actions);
            Marshal.FreeHGlobal(actions);
            Marshal.FreeHGlobal(usage);
            File.Delete(output);
            File.Delete(errors);
        }
    }

    /// <summary>
    /// The peak RSS of one run of <paramref name="program"/>, in MB, from GNU time (<c>/usr/bin/time -f %M</c>, Debian's
    /// package <c>time</c>); the run must print <paramref name="expected"/>.
    /// </summary>
    public static double PeakRssMb(string program, IReadOnlyList<string> arguments, string expected)
    {
        const string Time = "/usr/bin/time";
        if (!File.Exists(Time))
        {
            throw new BenchException($"{Time} is missing: peak RSS is measured with GNU time (apt-get install time)");
        }

        var report = Path.GetTempFileName();
        try
        {
            var run = Run(Time, ["-f", "%M", "-o", report, program, .. arguments]);
            var text = File.ReadAllText(report).Trim();
            return run.Succeeded && run.StdOut.Contains(expected, StringComparison.Ordinal) && double.TryParse(text, System.Globalization.CultureInfo.InvariantCulture, out var kb)
                ? kb / 1024.0
                : throw new BenchException($"{program} {string.Join(' ', arguments)} under {Time} exited {run.ExitCode}: {run.StdOut.Trim()} {run.StdErr.Trim()} {text}");
        }
        finally
        {
            File.Delete(report);
        }
    }

    /// <summary>A struct timeval (seconds, microseconds) at <paramref name="offset"/>, in milliseconds.</summary>
    private static double Milliseconds(IntPtr usage, int offset) =>
        (Marshal.ReadInt64(usage, offset) * 1000.0) + (Marshal.ReadInt64(usage, offset + 8) / 1000.0);

    private static void Check(int result, string what)
    {
        if (result != 0)
        {
            throw new BenchException($"{what} failed: errno {result}");
        }
    }

    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int posix_spawnp(out int pid, string file, IntPtr fileActions, IntPtr attributes, string?[] argv, string?[] envp);

    [LibraryImport("libc")]
    private static partial int posix_spawn_file_actions_init(IntPtr fileActions);

    [LibraryImport("libc", StringMarshalling = StringMarshalling.Utf8)]
    private static partial int posix_spawn_file_actions_addopen(IntPtr fileActions, int fd, string path, int flags, uint mode);

    [LibraryImport("libc")]
    private static partial int posix_spawn_file_actions_destroy(IntPtr fileActions);

    [LibraryImport("libc", SetLastError = true)]
    private static partial int wait4(int pid, out int status, int options, IntPtr usage);
}
