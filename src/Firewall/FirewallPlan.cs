using System.Text;
using TsCgnat.Firewall.Detection;
using TsCgnat.Firewall.Model;
using TsCgnat.Firewall.Processes;
using TsCgnat.Firewall.Rules;

namespace TsCgnat.Firewall;

/// <summary>One <c>iptables-restore</c> run.</summary>
public sealed record RestoreStep(IptablesBackend Backend, IpFamily Family, string Input);

/// <summary>Why what tailscaled does leaves the agent nothing useful to write, as a condition reason and a message.</summary>
public sealed record Incompatibility(string Reason, string Message);

/// <summary>How much of ours the host holds once a plan is written: our rules in every family (rules in our chains,
/// hooks, exemptions in Tailscale's chains) and each of our sets' members. What the agent's size gauges report.</summary>
public sealed record OursAfter(long Rules, IReadOnlyDictionary<string, long> SetMembers)
{
    public static readonly OursAfter Nothing = new(0, new Dictionary<string, long>());

    public static OursAfter Of(DesiredState desired) => new(
        desired.Families.Values.SelectMany(tables => tables).Sum(table => (long)table.Chains.Values.Sum(chain => chain.Count) + table.Hooks.Count),
        Members(desired.Sets));

    public static Dictionary<string, long> Members(IEnumerable<DesiredSet> sets) =>
        sets.ToDictionary(s => s.Name, s => (long)s.Members.Count, StringComparer.Ordinal);
}

/// <summary>The difference between the host and what we want, as the exact input of each write.</summary>
/// <param name="Backend">The iptables back end our iptables rules go to (with the nftables runner: where its rules live).</param>
/// <param name="NftScript">One <c>nft -f</c> transaction (tailscaled's nftables runner), or null.</param>
public sealed record FirewallPlan(
    BackendChoice Backend,
    IReadOnlyDictionary<IpFamily, TailscaleChains> Tailscale,
    bool Stateful,
    string? IpsetDestroyStaging,
    string? IpsetUpdate,
    IReadOnlyList<RestoreStep> Restores,
    string? IpsetDestroyStale,
    IReadOnlyList<string> Warnings,
    RunnerChoice? Runner = null,
    StrategyChoice? Strategy = null,
    string? NftScript = null)
{
    public bool IsEmpty => IpsetDestroyStaging is null && IpsetUpdate is null && Restores.Count == 0 && IpsetDestroyStale is null && NftScript is null;

    /// <summary>What the host holds of ours once this plan is written: counted from the desired state the plan was made from.</summary>
    public OursAfter Ours { get; init; } = OursAfter.Nothing;

    /// <summary>Set when tailscaled's set-up leaves no exemption to write (the plan then removes ours).</summary>
    public Incompatibility? Incompatible { get; init; }

    /// <summary>For the next pass: see <see cref="PreviousPass.UnhookedSince"/>.</summary>
    public long? UnhookedSince { get; init; }

    /// <summary>Where the rules live, as reported: iptables-legacy, iptables-nft or nftables.</summary>
    public string BackendName => Runner?.Runner == TailscaleRunner.Nftables ? "nftables" : Tools.Name(Backend.Backend);

    /// <summary>The plan as a human reads it (apply --dry-run).</summary>
    public string Describe()
    {
        if (IsEmpty)
        {
            return "in sync: nothing to write\n";
        }

        var text = new StringBuilder();
        void Block(string title, string? body)
        {
            if (body is null)
            {
                return;
            }

            text.Append("# ").Append(title).Append('\n').Append(body);
        }

        Block("ipset restore (remove staging sets left by an interrupted run)", IpsetDestroyStaging);
        Block("ipset restore", IpsetUpdate);
        Block("nft -f (one transaction)", NftScript);
        foreach (var step in Restores)
        {
            Block($"{Tools.Restore(step.Backend, step.Family)} --noflush", step.Input);
        }

        Block("ipset restore (remove sets no longer used)", IpsetDestroyStale);
        return text.ToString();
    }
}

/// <summary>What one reconcile found and did.</summary>
public sealed record ReconcileResult(FirewallPlan Plan, bool Wrote, TimeSpan Elapsed);
