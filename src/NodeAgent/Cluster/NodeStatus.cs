using System.Security.Cryptography;
using System.Text;
using k8s.Models;
using TsCgnat.Api;
using TsCgnat.Firewall;
using TsCgnat.Firewall.Model;
using TsCgnat.NodeAgent.HostMode;
using TsCgnat.NodeAgent.Reconciling;
using TsCgnat.NodeAgent.Tailscale;

namespace TsCgnat.NodeAgent.Cluster;

/// <summary>What the agent tells its status writer after a pass: the selection it acted on and what the pass did.</summary>
/// <param name="Node">This node's Node, for the owner reference and as the object events are about.</param>
/// <param name="DriftRepairs">Repairs counted since the agent started.</param>
public sealed record NodeReport(V1Node Node, PolicySelection Selection, PassOutcome Outcome, long DriftRepairs);

/// <summary>
/// The status of this node's CgnatNodeState as a pure function of the status it has and a <see cref="NodeReport"/>.
/// Everything time-dependent moves only when its meaning does (lastApplyTime when rules were written, a
/// condition's lastTransitionTime when its status flips), so an idle resync computes the same status and the
/// status writer sends nothing.
/// </summary>
public static class NodeStatus
{
    private const int MaxEntryMessage = 4096;
    private const int MaxReason = 1024;

    public static CgnatNodeStateStatus Compute(CgnatNodeStateStatus? previous, NodeReport report, long? observedGeneration, TimeProvider time)
    {
        ArgumentNullException.ThrowIfNull(report);
        ArgumentNullException.ThrowIfNull(time);
        var outcome = report.Outcome;
        var plan = outcome.Result?.Plan;
        var ok = outcome.Error is null && plan is not null;
        var conditions = (previous?.Conditions ?? []).Select(Copy).ToList();
        var status = new CgnatNodeStateStatus
        {
            ObservedGeneration = observedGeneration,
            Policies = Entries(previous?.Policies ?? [], report.Selection, outcome.Error),
            DriftRepairs = report.DriftRepairs,
            Conditions = conditions,
            // A failed pass changes nothing on the host as far as we know: keep what the last good one found.
            RulesDigest = previous?.RulesDigest,
            Backend = previous?.Backend,
            BackendReason = previous?.BackendReason,
            Strategy = previous?.Strategy,
            StrategyReason = previous?.StrategyReason,
            Tailscale = previous?.Tailscale,
            Exemptions = previous?.Exemptions,
            LastApplyTime = previous?.LastApplyTime,
        };

        if (ok)
        {
            var exemptions = Exemptions.From(outcome.Policies ?? []);
            status.RulesDigest = Digest(exemptions);
            status.Exemptions = new ExemptionCounts
            {
                AllowedSources = exemptions.Sources.Select(s => s.Cidr).Distinct().Count(),
                RoutedSubnets = exemptions.RoutedSubnets.Distinct().Count(),
            };
            status.Backend = plan!.BackendName switch
            {
                "iptables-legacy" => FirewallBackend.IptablesLegacy,
                "nftables" => FirewallBackend.Nftables,
                _ => FirewallBackend.IptablesNft,
            };
            status.BackendReason = Truncate(plan.Backend.Reason, MaxReason);
            status.Strategy = plan.Incompatible is not null ? ExemptionStrategy.None : plan.Strategy?.Strategy switch
            {
                Strategy.Indirect => ExemptionStrategy.Indirect,
                Strategy.InChain => ExemptionStrategy.InChain,
                _ => ExemptionStrategy.None,
            };
            status.StrategyReason = plan.Strategy is { } strategy ? Truncate(strategy.Reason, MaxReason) : null;
            status.Tailscale = Observe(plan, outcome.Tailscale);
            if (outcome.Result!.Wrote || status.LastApplyTime is null)
            {
                status.LastApplyTime = WholeSeconds(time.GetUtcNow());
            }

            var applied = outcome.Policies?.Count ?? 0;
            Conditions.Set(conditions, ConditionTypes.Ready, ConditionStatus.True, NodeReasons.RulesApplied,
                $"the host's rules match {applied} applied polic{(applied == 1 ? "y" : "ies")}", observedGeneration, time);
            var (compatible, reason, message) = Compatibility(plan, outcome.Tailscale);
            Conditions.Set(conditions, ConditionTypes.TailscaleCompatible, compatible, reason, message, observedGeneration, time);
        }
        else
        {
            var error = outcome.Error?.Message ?? "the pass failed";
            Conditions.Set(conditions, ConditionTypes.Ready, ConditionStatus.False, NodeReasons.ApplyFailed, error, observedGeneration, time);
            if (outcome.Error is InvalidOperationException)
            {
                // The engine refuses a strategy that cannot work (--strategy indirect with tailscaled's nftables runner).
                Conditions.Set(conditions, ConditionTypes.TailscaleCompatible, ConditionStatus.False, NodeReasons.StrategyImpossible, error, observedGeneration, time);
            }

            if (outcome.Tailscale.Reachable && status.Tailscale is { } seen)
            {
                status.Tailscale = FromLocalApi(seen.Runner, outcome.Tailscale);
            }
        }

        return status;
    }

    /// <summary>
    /// One entry per policy that selects this node, or that is being deleted or was deselected while it had an entry
    /// here (those say Removed once a pass without them succeeded); a policy that is gone has no entry.
    /// </summary>
    public static List<NodePolicyState> Entries(IEnumerable<NodePolicyState> previous, PolicySelection selection, Exception? error)
    {
        ArgumentNullException.ThrowIfNull(previous);
        ArgumentNullException.ThrowIfNull(selection);
        var before = previous.Where(e => e?.Name is not null).ToList();
        var entries = new List<NodePolicyState>();
        foreach (var policy in selection.Policies)
        {
            var had = before.FirstOrDefault(e => e.Name == policy.Name && (string.IsNullOrEmpty(e.Uid) || e.Uid == policy.Uid));
            PolicyPhase phase;
            string? message = null;
            if (policy.Applies)
            {
                (phase, message) = error is null ? (PolicyPhase.Applied, null) : (PolicyPhase.Failed, error.Message);
            }
            else if (policy.Problem is not null)
            {
                (phase, message) = (PolicyPhase.Failed, policy.Problem);
            }
            else if (policy.Selected || had is not null)
            {
                // Deleting, or no longer selected: its rules go with the next successful pass.
                (phase, message) = error is null || had?.Phase is PolicyPhase.Removed or null
                    ? (PolicyPhase.Removed, policy.Deleting ? "the policy is being deleted" : "the node selector no longer selects this node")
                    : (PolicyPhase.Failed, "its exemptions could not be removed: " + error.Message);
            }
            else
            {
                continue;
            }

            entries.Add(new NodePolicyState
            {
                Name = policy.Name,
                Uid = policy.Uid,
                Generation = policy.Generation,
                Phase = phase,
                Message = message is null ? null : Truncate(message, MaxEntryMessage),
            });
        }

        return entries;
    }

    /// <summary>
    /// Hex SHA-256 over the sorted set members (the same text whatever the policies' order), so equal digests on
    /// two nodes mean the same exemptions.
    /// </summary>
    public static string Digest(Exemptions exemptions)
    {
        ArgumentNullException.ThrowIfNull(exemptions);
        var text = new StringBuilder();
        foreach (var (tag, members) in new[] { ("src", exemptions.AnyInterfaceSources()), ("srcif", exemptions.InterfaceSources()), ("fwd", exemptions.Subnets()) })
        {
            foreach (var member in members)
            {
                text.Append(tag).Append(' ').Append(member).Append('\n');
            }
        }

        return Convert.ToHexStringLower(SHA256.HashData(Encoding.UTF8.GetBytes(text.ToString())));
    }

    /// <summary>
    /// Whether what tailscaled does lets the strategy work: mode off has no drop to cancel but breaks subnet
    /// routing; Indirect under mode on is bypassed by tailscaled's own jump (the engine warns of it).
    /// </summary>
    public static (string Status, string Reason, string Message) Compatibility(FirewallPlan plan, TailscaleView tailscale)
    {
        ArgumentNullException.ThrowIfNull(plan);
        ArgumentNullException.ThrowIfNull(tailscale);
        if (tailscale.Reachable && tailscale.Prefs?.NetfilterMode == NetfilterMode.Off)
        {
            return (ConditionStatus.False, NodeReasons.NetfilterModeOff,
                "tailscaled runs with --netfilter-mode=off: it drops nothing, so no exemption is needed, but subnet routing lacks its MARK and MASQUERADE rules; use mode on or nodivert");
        }

        if (plan.Incompatible is { } incompatible)
        {
            return (ConditionStatus.False, incompatible.Reason, incompatible.Message);
        }

        var v4 = plan.Tailscale.GetValueOrDefault(IpFamily.V4) ?? TailscaleChains.Absent;
        if (plan.Strategy?.Strategy == Strategy.Indirect && v4.PlainJumps)
        {
            return (ConditionStatus.False, NodeReasons.StrategyImpossible,
                "tailscaled is in netfilter mode on: its own jump reaches ts-input before our hook, so Indirect exemptions have no effect; use --strategy auto");
        }

        if (!tailscale.Reachable && !v4.Any)
        {
            return (ConditionStatus.Unknown, NodeReasons.TailscaleNotDetected,
                "neither tailscaled's LocalAPI nor its ts-* chains were found; the rules are in place for when it starts");
        }

        return (ConditionStatus.True, NodeReasons.StrategyWorks, $"strategy {plan.Strategy?.Strategy.ToString() ?? "none"} works with tailscaled in mode {ModeName(plan, tailscale)}");
    }

    private static TailscaleObservation Observe(FirewallPlan plan, TailscaleView tailscale)
    {
        var runner = plan.Runner?.Runner switch
        {
            TailscaleRunner.IptablesLegacy => TailscaleFirewallRunner.IptablesLegacy,
            TailscaleRunner.IptablesNft => TailscaleFirewallRunner.IptablesNft,
            TailscaleRunner.Nftables => TailscaleFirewallRunner.Nftables,
            _ => TailscaleFirewallRunner.Unknown,
        };
        if (tailscale.Reachable)
        {
            return FromLocalApi(runner, tailscale);
        }

        var v4 = plan.Tailscale.GetValueOrDefault(IpFamily.V4) ?? TailscaleChains.Absent;
        return new TailscaleObservation
        {
            Detected = v4.Any,
            // Without the LocalAPI, "no chains" cannot tell mode off from a stopped tailscaled.
            NetfilterMode = !v4.Any ? TailscaleNetfilterMode.Unknown : v4.PlainJumps ? TailscaleNetfilterMode.On : TailscaleNetfilterMode.Nodivert,
            Runner = runner,
            LearnedFrom = TailscaleEvidence.Firewall,
        };
    }

    private static TailscaleObservation FromLocalApi(TailscaleFirewallRunner? runner, TailscaleView tailscale) => new()
    {
        Detected = true,
        NetfilterMode = tailscale.Prefs?.NetfilterMode switch
        {
            NetfilterMode.Off => TailscaleNetfilterMode.Off,
            NetfilterMode.NoDivert => TailscaleNetfilterMode.Nodivert,
            NetfilterMode.On => TailscaleNetfilterMode.On,
            _ => TailscaleNetfilterMode.Unknown,
        },
        Runner = runner ?? TailscaleFirewallRunner.Unknown,
        BackendState = tailscale.State?.ToString(),
        Version = string.IsNullOrEmpty(tailscale.Version) ? null : Truncate(tailscale.Version, 128),
        LearnedFrom = TailscaleEvidence.LocalApi,
    };

    private static string ModeName(FirewallPlan plan, TailscaleView tailscale) =>
        tailscale.Reachable && tailscale.Prefs is { } prefs
            ? prefs.NetfilterMode switch { NetfilterMode.On => "on", NetfilterMode.NoDivert => "nodivert", _ => "off" }
            : (plan.Tailscale.GetValueOrDefault(IpFamily.V4) ?? TailscaleChains.Absent).Mode;

    private static V1Condition Copy(V1Condition c) => new()
    {
        Type = c.Type,
        Status = c.Status,
        Reason = c.Reason,
        Message = c.Message,
        ObservedGeneration = c.ObservedGeneration,
        LastTransitionTime = c.LastTransitionTime,
    };

    private static DateTime WholeSeconds(DateTimeOffset now)
    {
        var utc = now.UtcDateTime;
        return new DateTime(utc.Ticks - (utc.Ticks % TimeSpan.TicksPerSecond), DateTimeKind.Utc);
    }

    private static string Truncate(string text, int max) =>
        text.Length <= max ? text : string.Concat(text.AsSpan(0, max - 1), "…");
}
