using System.Text;

namespace TsCgnat.NodeAgent.Doctor;

/// <summary>The plain-text form of a <see cref="DoctorReport"/>, for a person at a terminal.</summary>
public static class DoctorText
{
    public static string Render(DoctorReport report)
    {
        var text = new StringBuilder();
        void Line(string line = "") => text.Append(line).Append('\n');

        var ts = report.Tailscale;
        Line($"back end: {report.Firewall.Backend} ({report.Firewall.Reason})");
        if (report.Firewall.Error is { } error)
        {
            Line($"error: {error}");
        }

        Line($"tailscaled runner: {ts.Runner} (from the {Source(ts.RunnerLearnedFrom)}: {ts.RunnerReason})");
        Line($"tailscaled netfilter mode: {ts.Mode} (from the {Source(ts.ModeLearnedFrom)}; the firewall shows {ts.NetfilterMode})");
        Line($"stateful filtering: {(ts.StatefulFiltering ? "on" : "off")} ({(ts.StatefulFilteringLearnedFrom == "default" ? "default: neither the firewall nor the LocalAPI says" : "from the " + Source(ts.StatefulFilteringLearnedFrom))})");
        var api = ts.LocalApi;
        Line(api.Reachable
            ? $"LocalAPI ({api.Socket}): {api.BackendState ?? "state unknown"}, version {api.Version ?? "unknown"}, NetfilterMode {api.NetfilterMode ?? "unknown"}, NetfilterKind \"{api.NetfilterKind}\""
            : $"LocalAPI ({api.Socket}): not reachable ({api.Problem}); working from the firewall alone");
        Line($"strategy: auto picks {report.Strategy.Auto} ({report.Strategy.AutoReason})"
            + (report.Strategy.Requested != "auto" ? $"; --strategy {report.Strategy.Requested} gives {report.Strategy.InUse ?? "nothing"} ({report.Strategy.Reason})" : ""));

        var rules = report.Rules;
        Line();
        Line(rules.MatchPolicy switch
        {
            true => $"our rules: match the policies ({string.Join(", ", rules.Policies)})",
            false => $"our rules: do NOT match the policies ({string.Join(", ", rules.Policies)})",
            null when rules.PolicyGiven => "our rules: not compared (no plan could be made)",
            null => "our rules: not compared (no --policy-file)",
        });
        List("present", rules.Present.Count == 0 ? ["nothing of ours"] : rules.Present);
        List("missing", rules.Missing);
        List("stale", rules.Stale);

        Line();
        Line("packets (ICMP probes, first address of each prefix):");
        if (report.Packets.Count == 0)
        {
            Line("  none to probe");
        }

        foreach (var p in report.Packets)
        {
            var path = p.Path == "input" ? $"on {p.InInterface} to this host" : $"{p.InInterface} -> {p.OutInterface}";
            var by = p.Rule is { } n ? $"{p.Where} {p.Chain} rule {n}: {p.RuleText}" : p.Chain is null ? p.Reason : $"{p.Where} {p.Chain} {p.RuleText}";
            Line($"  {(p.Ok ? "ok  " : "FAIL")} {(p.Kind == "allowedSource" ? "allowed source" : "routed subnet")} {p.Cidr}: {p.Address} {path}, {p.ConnectionState}: "
                + $"{p.Verdict}{(p.Ok ? "" : $" (expected {p.Expected})")} by {by}");
            if (p.Verdict == "unknown")
            {
                Line($"       {p.Reason}");
            }

            foreach (var assumption in p.Assumptions)
            {
                Line($"       assumed: {assumption}");
            }
        }

        if (report.NotModelled.Count > 0)
        {
            Line();
            List("not modelled", report.NotModelled);
        }

        if (report.Warnings.Count > 0)
        {
            Line();
            List("warnings", report.Warnings);
        }

        Line();
        Line("recommendation:");
        foreach (var advice in report.Recommendations)
        {
            Line($"  {advice}");
        }

        return text.ToString();

        void List(string title, IReadOnlyList<string> items)
        {
            if (items.Count == 0)
            {
                return;
            }

            Line($"  {title}:");
            foreach (var item in items)
            {
                Line($"    {item}");
            }
        }
    }

    private static string Source(string learnedFrom) => learnedFrom == "localApi" ? "LocalAPI" : learnedFrom;
}
