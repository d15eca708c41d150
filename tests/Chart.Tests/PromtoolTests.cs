using TsCgnat.TestSupport;

namespace TsCgnat.Chart.Tests;

/// <summary>
/// The alert rules checked and unit-tested by Prometheus' own tool (Debian's prometheus package brings promtool):
/// deploy/prometheus/ts-cgnat.rules.test.yaml holds, for every alert, series that fire it and series that must not.
/// Under CI=true a missing promtool fails; elsewhere these skip with the reason. About a second together.
/// </summary>
public sealed class PromtoolTests
{
    private static readonly string Rules = Path.Combine(ChartPaths.Root, "deploy", "prometheus");

    [SkippableFact]
    public void Promtool_check_rules_accepts_the_rules_file_and_the_charts_copy()
    {
        var promtool = Privileges.RequireTool("promtool", "prometheus");

        var output = Sh.Run(promtool, "check", "rules", Path.Combine(Rules, "ts-cgnat.rules.yaml"), Path.Combine(ChartPaths.Chart, "files", "ts-cgnat.rules.yaml"));

        Assert.True(output.Succeeded, output.StdOut + output.StdErr);
        Assert.Contains("SUCCESS: 11 rules found", output.StdOut, StringComparison.Ordinal);
    }

    [SkippableFact]
    public void Promtool_test_rules_passes_a_firing_and_a_silent_case_for_every_alert()
    {
        var promtool = Privileges.RequireTool("promtool", "prometheus");

        // promtool resolves rule_files relative to the test file.
        var output = Sh.Run(promtool, "test", "rules", Path.Combine(Rules, "ts-cgnat.rules.test.yaml"));

        Assert.True(output.Succeeded, output.StdOut + output.StdErr);
        Assert.Contains("SUCCESS", output.StdOut + output.StdErr, StringComparison.Ordinal);
    }
}
