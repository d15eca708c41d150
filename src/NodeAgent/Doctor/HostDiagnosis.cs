using System.Net;
using TsCgnat.Api;
using TsCgnat.Firewall;
using TsCgnat.Firewall.Detection;
using TsCgnat.Firewall.Formats;
using TsCgnat.Firewall.Model;
using TsCgnat.Firewall.Processes;
using TsCgnat.Firewall.Rules;
using TsCgnat.NodeAgent.Tailscale;

namespace TsCgnat.NodeAgent.Doctor;

/// <summary>
/// Explains one host from what was read of it: a pure function of the snapshot, the listings, the
/// policies and the LocalAPI's view, so every case is testable without root.
/// </summary>
public static class HostDiagnosis
{
    /// <param name="policies">The policies to compare with; null without --policy-file (the host's own sets are probed then).</param>
    /// <param name="settings">Interface and strategy request; the LocalAPI hint is derived from <paramref name="localApi"/>.</param>
    public static DoctorReport Examine(
        HostSnapshot snapshot,
        HostListing listing,
        IReadOnlyList<ValidatedPolicy>? policies,
        FirewallSettings settings,
        string socket,
        TailscaleView localApi)
    {
        var hint = Hint(localApi);
        settings = settings with { Hint = hint };
        var tun = settings.TailscaleInterface;
        var exemptions = policies is null ? null : Exemptions.From(policies);

        FirewallPlan? plan = null;
        string? error = null;
        try
        {
            // Without a policy the plan is still made (for detection), against empty sets; its changes are not reported.
            plan = HostFirewall.Plan(snapshot, IndirectLayout.Sets(exemptions ?? Exemptions.None), settings, PreviousPass.None);
        }
        catch (Exception e) when (e is FirewallToolException or InvalidOperationException)
        {
            error = e.Message;
        }

        var runner = plan?.Runner ?? RunnerDetector.Detect(snapshot.Rulesets, snapshot.Nft, snapshot.NftUnreadableByIptables, hint, tun);
        var fromFirewallAlone = RunnerDetector.Detect(snapshot.Rulesets, snapshot.Nft, snapshot.NftUnreadableByIptables, null, tun);
        var v4 = plan?.Tailscale.GetValueOrDefault(IpFamily.V4) ?? ChainsWithoutPlan(snapshot, runner, tun);
        var auto = RunnerDetector.Choose(StrategyRequest.Auto, runner, v4, hint, null);

        var notModelled = new List<string>();
        var probes = Probes(snapshot, exemptions, tun, plan?.Stateful ?? v4.Stateful ?? hint?.Stateful ?? false);
        var walk = Walkers(snapshot, listing, runner.Runner, plan?.Backend.Backend, notModelled);
        var packets = probes.Select(p => Judge(p, walk)).ToList();

        var tailscale = Tailscale(tun, runner, fromFirewallAlone, v4, hint, plan, socket, localApi);
        var strategy = new StrategyFinding(
            Request(settings.Strategy), plan?.Strategy is { } used ? Name(used.Strategy) : null, plan?.Strategy?.Reason ?? error, Name(auto.Strategy), auto.Reason);
        var rules = Rules(snapshot, plan, policies, runner.Runner);
        var firewall = new FirewallFinding(
            plan?.BackendName ?? (runner.Runner == TailscaleRunner.Nftables ? "nftables" : "unknown"),
            plan?.Backend.Reason ?? runner.Reason,
            error);
        var warnings = plan?.Warnings.ToList() ?? [.. snapshot.Notes];
        if (tailscale.LocalApi.Reachable && tailscale.Mode != tailscale.NetfilterMode)
        {
            warnings.Add($"the LocalAPI says netfilter mode {tailscale.Mode} but the firewall shows {tailscale.NetfilterMode}: "
                + "tailscaled may be down, starting, or rebuilding its chains; run doctor again in a moment");
        }

        // With nothing to write (the native runner in nodivert) every probe may pass, since nothing drops: not healthy all the same.
        var healthy = error is null && plan?.Incompatible is null && rules.MatchPolicy != false && packets.All(p => p.Ok);
        var recommendations = Recommend(tailscale, strategy, rules, packets, error, policies is not null);
        if (plan?.Incompatible is { } incompatible)
        {
            recommendations.Insert(0, incompatible.Message);
        }

        return new DoctorReport(healthy, firewall, tailscale, strategy, rules, packets, notModelled, warnings, recommendations);
    }

    /// <summary>The hint the planner takes from the LocalAPI (the same mapping the running agent makes).</summary>
    public static TailscaleHint? Hint(TailscaleView view) =>
        view.Reachable && view.Prefs is { } prefs
            ? new TailscaleHint(
                prefs.NetfilterMode,
                prefs.NetfilterKind,
                prefs.NoStatefulFiltering is null ? null : prefs.StatefulFiltering,
                view.State == BackendState.Running)
            : null;

    private static TailscaleChains ChainsWithoutPlan(HostSnapshot snapshot, RunnerChoice runner, string tun) => runner.Runner switch
    {
        TailscaleRunner.Nftables when snapshot.Nft is { } nft => TailscaleChainsReader.FromNft(nft, "ip", tun),
        TailscaleRunner.IptablesLegacy or TailscaleRunner.IptablesNft
            when snapshot.Rulesets.TryGetValue((runner.Runner == TailscaleRunner.IptablesLegacy ? IptablesBackend.Legacy : IptablesBackend.Nft, IpFamily.V4), out var ruleset)
            => TailscaleChainsReader.FromIptables(ruleset, tun),
        _ => TailscaleChains.Absent,
    };

    private static TailscaleFinding Tailscale(
        string tun, RunnerChoice runner, RunnerChoice fromFirewallAlone, TailscaleChains v4, TailscaleHint? hint, FirewallPlan? plan, string socket, TailscaleView view)
    {
        var firewallMode = v4.Mode;
        var mode = hint?.Mode is { } m ? ModeName(m) : firewallMode;
        var (stateful, statefulFrom) = v4.Stateful is { } s ? (s, "firewall")
            : hint?.Stateful is { } h ? (h, "localApi")
            : (plan?.Stateful ?? false, "default");
        var prefs = view.Prefs;
        var localApi = new LocalApiFinding(
            socket,
            view.Reachable,
            view.Reachable ? null : view.Problem,
            view.State?.ToString(),
            view.Version,
            prefs is null ? null : ModeName(prefs.NetfilterMode),
            prefs?.NetfilterKind);
        return new TailscaleFinding(
            tun,
            RunnerName(runner.Runner),
            runner.Reason,
            runner.Runner != fromFirewallAlone.Runner ? "localApi" : "firewall",
            mode,
            hint?.Mode is null ? "firewall" : "localApi",
            firewallMode,
            stateful,
            statefulFrom,
            localApi);
    }

    /// <summary>One probe per allowed source and interface, and per routed subnet (two under stateful filtering).</summary>
    private static List<(string Kind, string Cidr, Probe Probe, Outcome Expected)> Probes(HostSnapshot snapshot, Exemptions? exemptions, string tun, bool stateful)
    {
        // A representative interface that is not the tailnet's, for a source allowed on any interface.
        var lan = tun == "eth0" ? "eth1" : "eth0";
        var sources = new List<(IPNetwork Cidr, string Interface)>();
        var subnets = new List<IPNetwork>();
        if (exemptions is not null)
        {
            foreach (var source in exemptions.Sources)
            {
                sources.AddRange(source.Interfaces.Count == 0 ? [(source.Cidr, lan)] : source.Interfaces.Select(i => (source.Cidr, i)));
            }

            subnets.AddRange(exemptions.RoutedSubnets);
        }
        else
        {
            // No policy given: probe what the host's sets of ours hold (ipset, or nft sets for the nftables runner).
            var any = SetMembers(snapshot, Names.SourceSet);
            var withInterface = SetMembers(snapshot, Names.InterfaceSourceSet);
            sources.AddRange(any.Select(m => IPNetwork.TryParse(m, out var n) ? (n, lan) : default).Where(s => s.Item2 is not null));
            sources.AddRange(withInterface.Select(m => m.Split(',') is [var net, var iface] && IPNetwork.TryParse(net, out var n) ? (n, iface) : default)
                .Where(s => s.Item2 is not null));
            subnets.AddRange(SetMembers(snapshot, Names.SubnetSet).Select(m => IPNetwork.TryParse(m, out var n) ? n : (IPNetwork?)null).OfType<IPNetwork>());
        }

        var probes = new List<(string, string, Probe, Outcome)>();
        foreach (var (cidr, iface) in sources.Distinct())
        {
            probes.Add(("allowedSource", cidr.ToString(), new Probe(cidr.BaseAddress, iface, "", PacketPath.Input, ConnectionState.New), Outcome.Allowed));
        }

        foreach (var subnet in subnets.Distinct())
        {
            // Under stateful filtering Tailscale drops new connections from a routed subnet into the tailnet by design,
            // and the exemption keeps that: only replies must pass.
            probes.Add(("routedSubnet", subnet.ToString(), new Probe(subnet.BaseAddress, lan, tun, PacketPath.Forward, ConnectionState.New),
                stateful ? Outcome.Dropped : Outcome.Allowed));
            if (stateful)
            {
                probes.Add(("routedSubnet", subnet.ToString(), new Probe(subnet.BaseAddress, lan, tun, PacketPath.Forward, ConnectionState.Established), Outcome.Allowed));
            }
        }

        return probes;
    }

    private static IEnumerable<string> SetMembers(HostSnapshot snapshot, string name) =>
        snapshot.Sets.TryGetValue(name, out var set) ? set.Members
        : snapshot.Nft?.Set(NftLayout.Family, NftLayout.Table, name) is { } nftSet ? nftSet.Elements
        : [];

    /// <summary>
    /// The rulesets a packet meets, each a walk: both iptables back ends when their table filter is loaded
    /// (both are hooked into the kernel and each can drop), the chosen one first; nft table ip filter with
    /// the nftables runner (iptables-nft cannot read it then). Notes what sits at the same hooks unwalked.
    /// </summary>
    private static List<Func<Probe, Verdict>> Walkers(
        HostSnapshot snapshot, HostListing listing, TailscaleRunner runner, IptablesBackend? chosen, List<string> notModelled)
    {
        var walkers = new List<Func<Probe, Verdict>>();
        var ipsets = listing.IpsetSave is { } ipsetText ? IpsetSave.Parse(ipsetText) : new Dictionary<string, SavedSet>(snapshot.Sets);
        var native = runner == TailscaleRunner.Nftables;
        var iptables = new List<(IptablesBackend Backend, string? Text)> { (IptablesBackend.Legacy, listing.LegacySave) };
        if (!native)
        {
            iptables.Add((IptablesBackend.Nft, listing.NftSave));
        }

        var filterCovered = native;
        foreach (var (backend, text) in iptables.OrderBy(b => b.Backend != chosen))
        {
            if (text is null || IptablesFilter.Parse(Tools.Name(backend), text) is not { } filter)
            {
                continue;
            }

            filterCovered |= backend == IptablesBackend.Nft;
            walkers.Add(probe => IptablesWalk.Walk(filter, ipsets, probe));
            NoteOtherTables(Tools.Name(backend), SavedRuleset.Parse(text), notModelled);
        }

        var baseChains = listing.NftJson is { } json ? NftBaseChain.Parse(json) : [];
        if (native && snapshot.Nft is { } nft)
        {
            walkers.Add(probe => NftWalk.Walk(nft, baseChains, probe));
        }

        foreach (var chain in baseChains.Where(c => c.Hook is "input" or "forward" && c.Family is "ip" or "inet"))
        {
            var walked = filterCovered && chain.Family == NftWalk.Family && chain.Table == NftWalk.Table;
            var rules = snapshot.Nft?.Chain(chain.Family, chain.Table, chain.Name)?.Rules.Count ?? 0;
            if (!walked && (rules > 0 || chain.Policy != "accept"))
            {
                notModelled.Add($"nft table {chain.Family} {chain.Table} chain {chain.Name} (hook {chain.Hook}, priority {chain.Priority}, policy {chain.Policy}, "
                    + $"{rules} rules) is not modelled: it may drop packets the walk lets through");
            }
        }

        if (walkers.Count > 0)
        {
            notModelled.Add("probes start with fwmark 0 and no conntrack history beyond their state; only IPv4 table filter is walked");
        }

        return walkers;
    }

    private static void NoteOtherTables(string backend, SavedRuleset ruleset, List<string> notModelled)
    {
        foreach (var table in new[] { "raw", "mangle", "nat" })
        {
            foreach (var chain in new[] { "PREROUTING", "INPUT", "FORWARD" })
            {
                var rules = ruleset.Table(table).Rules(chain);
                for (var i = 0; i < rules.Count; i++)
                {
                    if (rules[i].EndsWith("-j DROP", StringComparison.Ordinal) || rules[i].Contains("-j REJECT", StringComparison.Ordinal))
                    {
                        notModelled.Add($"{backend} table {table} {chain} rule {i + 1} ({rules[i]}) is not modelled: only table filter is walked");
                    }
                }
            }
        }
    }

    /// <summary>
    /// A packet must pass every ruleset that is hooked: the first drop decides, then an unknown; when all
    /// accept, the first walk's (the chosen back end's) verdict is reported.
    /// </summary>
    private static PacketFinding Judge((string Kind, string Cidr, Probe Probe, Outcome Expected) item, List<Func<Probe, Verdict>> walkers)
    {
        var verdicts = walkers.Select(w => w(item.Probe)).ToList();
        var verdict = verdicts.FirstOrDefault(v => v.Outcome == Outcome.Dropped)
            ?? verdicts.FirstOrDefault(v => v.Outcome == Outcome.Unknown)
            ?? verdicts.FirstOrDefault()
            ?? new Verdict(Outcome.Unknown, "none", null, null, null, "no ruleset could be read", [], []);
        var probe = item.Probe;
        return new PacketFinding(
            item.Kind,
            item.Cidr,
            probe.Source.ToString(),
            probe.Path == PacketPath.Input ? "input" : "forward",
            probe.InInterface,
            probe.Path == PacketPath.Forward ? probe.OutInterface : null,
            probe.State == ConnectionState.New ? "new" : "established",
            OutcomeName(verdict.Outcome),
            OutcomeName(item.Expected),
            verdict.Outcome == item.Expected,
            verdict.Where,
            verdict.Chain,
            verdict.Rule,
            verdict.RuleText,
            verdict.Reason,
            verdict.Trace,
            [.. verdicts.SelectMany(v => v.Assumptions).Distinct()]);
    }

    private static RulesFinding Rules(HostSnapshot snapshot, FirewallPlan? plan, IReadOnlyList<ValidatedPolicy>? policies, TailscaleRunner runner)
    {
        var present = new List<string>();
        foreach (var ((backend, family), ruleset) in snapshot.Rulesets.OrderBy(r => r.Key.Backend).ThenBy(r => r.Key.Family))
        {
            var where = $"{Tools.Name(backend)} {(family == IpFamily.V4 ? "IPv4" : "IPv6")}";
            foreach (var table in ruleset.Tables.Values.OrderBy(t => t.Name, StringComparer.Ordinal))
            {
                foreach (var (chain, rules) in table.Chains.OrderBy(c => c.Key, StringComparer.Ordinal))
                {
                    if (Names.IsOurs(chain))
                    {
                        present.Add($"{where} {table.Name}: chain {chain} ({rules.Count} rules)");
                        continue;
                    }

                    for (var i = 0; i < rules.Count; i++)
                    {
                        if (Names.IsOurRule(rules[i]))
                        {
                            present.Add($"{where} {table.Name}: {chain} rule {i + 1}: {rules[i]}");
                        }
                    }
                }
            }
        }

        foreach (var set in snapshot.Sets.Values.OrderBy(s => s.Name, StringComparer.Ordinal))
        {
            present.Add($"ipset {set.Name} ({set.Type}, {set.Members.Count} members)");
        }

        if (snapshot.Nft is { } nft)
        {
            foreach (var set in nft.Sets.Where(s => Names.IsOurs(s.Name)))
            {
                present.Add($"nft table {set.Family} {set.Table}: set {set.Name} ({set.Type}, {set.Elements.Count} elements)");
            }

            // iptables-nft's rules of ours are listed above already, from iptables-nft-save.
            foreach (var chain in runner == TailscaleRunner.Nftables ? nft.Chains : [])
            {
                for (var i = 0; i < chain.Rules.Count; i++)
                {
                    if (Names.IsOurComment(chain.Rules[i].Comment))
                    {
                        present.Add($"nft table {chain.Family} {chain.Table}: {chain.Name} rule {i + 1}: {NftWalk.Describe(chain.Rules[i])}");
                    }
                }
            }
        }

        var missing = new List<string>();
        var stale = new List<string>();
        if (policies is not null && plan is not null)
        {
            Changes(plan, missing, stale);
        }

        return new RulesFinding(
            policies is not null,
            policies?.Select(p => p.Name).ToList() ?? [],
            policies is null || plan is null ? null : plan.IsEmpty,
            present,
            missing,
            stale);
    }

    /// <summary>The plan's writes in a reader's terms: what would be added, and what would be removed or rebuilt.</summary>
    private static void Changes(FirewallPlan plan, List<string> missing, List<string> stale)
    {
        foreach (var line in Lines(plan.IpsetDestroyStaging).Concat(Lines(plan.IpsetDestroyStale)))
        {
            stale.Add($"ipset: {line}");
        }

        foreach (var line in Lines(plan.IpsetUpdate).Where(l => l.StartsWith("create ", StringComparison.Ordinal)))
        {
            // One line per set: the members follow as "add" lines, up to thousands of them.
            var name = line.Split(' ')[1];
            if (name.EndsWith(Names.StagingSuffix, StringComparison.Ordinal))
            {
                stale.Add($"ipset {name[..^Names.StagingSuffix.Length]}: members differ from the policy");
            }
            else
            {
                missing.Add($"ipset {name}: missing");
            }
        }

        foreach (var step in plan.Restores)
        {
            var tool = Tools.Restore(step.Backend, step.Family);
            foreach (var line in Lines(step.Input).Where(l => l.StartsWith('-')))
            {
                (line.StartsWith("-D ", StringComparison.Ordinal) || line.StartsWith("-X ", StringComparison.Ordinal) ? stale : missing).Add($"{tool}: {line}");
            }
        }

        foreach (var line in Lines(plan.NftScript))
        {
            var text = line.Length > 200 ? line[..200] + " ..." : line;
            (line.StartsWith("delete ", StringComparison.Ordinal) || line.StartsWith("flush ", StringComparison.Ordinal) ? stale : missing).Add($"nft: {text}");
        }
    }

    private static string[] Lines(string? text) =>
        text is null ? [] : text.Split('\n', StringSplitOptions.RemoveEmptyEntries);

    private static List<string> Recommend(
        TailscaleFinding tailscale, StrategyFinding strategy, RulesFinding rules, List<PacketFinding> packets, string? error, bool policyGiven)
    {
        var advice = new List<string>();
        if (error is not null)
        {
            advice.Add($"no plan could be made: {error}");
        }

        var runner = tailscale.Runner switch
        {
            "nftables" => "its nftables runner",
            "unknown" => "a runner not known yet",
            var name => $"its iptables runner over {name}",
        };
        advice.Add(tailscale.NetfilterMode == "off"
            ? $"tailscaled has no ts-* chains (mode {tailscale.Mode}: stopped, down, or off): nothing drops CGNAT sources now; "
                + $"the agent picks {strategy.Auto} once they appear"
                + (tailscale.Mode == "off" ? "; mode off also leaves subnet routing without its MARK and MASQUERADE rules: use nodivert or on" : "")
            : $"tailscaled is in mode {tailscale.NetfilterMode} with {runner}: the agent uses {strategy.InUse ?? strategy.Auto}"
                + (strategy.InUse is not null && strategy.InUse != strategy.Auto ? $" as asked (auto would pick {strategy.Auto})" : ""));

        foreach (var packet in packets.Where(p => !p.Ok))
        {
            var what = $"{packet.Cidr} ({packet.Address} {(packet.Path == "input" ? $"on {packet.InInterface}" : $"{packet.InInterface} -> {packet.OutInterface}")}, {packet.ConnectionState})";
            var rule = packet.Rule is { } n ? $"{packet.Where} {packet.Chain} rule {n} ({packet.RuleText})" : $"the policy of {packet.Where} {packet.Chain}";
            if (packet.Verdict == "unknown")
            {
                advice.Add($"{what}: could not be decided ({packet.Reason}); check {rule} by hand");
            }
            else if (packet.Verdict == "allowed")
            {
                advice.Add($"{what} passes where Tailscale's stateful filtering should drop it ({packet.Reason}): check that ts-forward is intact");
            }
            else if (IsTailscaleDrop(packet))
            {
                advice.Add(!policyGiven
                    ? $"{what} is dropped by {rule}: add it to a policy if it should be allowed, and run the agent"
                    : rules.MatchPolicy == false
                        ? $"{what} is dropped by {rule}: the exemptions are not in place; run the agent (or 'ts-cgnat-agent apply')"
                        : $"{what} is dropped by {rule} although our rules match the policy: the strategy does not fit how tailscaled runs; use --strategy auto");
            }
            else
            {
                advice.Add($"{what} is dropped by {rule}, which is not Tailscale's drop: the agent exempts only from Tailscale's rules; allow it in that firewall if it should pass");
            }
        }

        if (rules.MatchPolicy == false && packets.All(p => p.Ok))
        {
            advice.Add($"our rules do not match the policy ({rules.Missing.Count} to add, {rules.Stale.Count} to remove or rebuild): run the agent (or 'ts-cgnat-agent apply')");
        }

        if (error is null && rules.MatchPolicy != false && packets.All(p => p.Ok))
        {
            advice.Add(packets.Count == 0
                ? policyGiven ? "the policies list no source or subnet; nothing to probe" : "no policy given and no exemption on the host: nothing to probe (pass --policy-file)"
                : "all allowed sources pass; healthy");
        }

        return advice;
    }

    /// <summary>A drop in Tailscale's own chains (its CGNAT or stateful drop), which the agent's exemptions exist to cancel.</summary>
    private static bool IsTailscaleDrop(PacketFinding packet) =>
        packet.Chain is Names.TsInput or Names.TsForward;

    private static string RunnerName(TailscaleRunner runner) => runner switch
    {
        TailscaleRunner.IptablesLegacy => "iptables-legacy",
        TailscaleRunner.IptablesNft => "iptables-nft",
        TailscaleRunner.Nftables => "nftables",
        _ => "unknown",
    };

    private static string ModeName(NetfilterMode mode) => mode switch
    {
        NetfilterMode.Off => "off",
        NetfilterMode.NoDivert => "nodivert",
        _ => "on",
    };

    private static string Name(Strategy strategy) => strategy == Strategy.Indirect ? "indirect" : "in-chain";

    private static string Request(StrategyRequest request) => request switch
    {
        StrategyRequest.Indirect => "indirect",
        StrategyRequest.InChain => "in-chain",
        _ => "auto",
    };

    private static string OutcomeName(Outcome outcome) => outcome switch
    {
        Outcome.Allowed => "allowed",
        Outcome.Dropped => "dropped",
        _ => "unknown",
    };
}
