using TsCgnat.Firewall.Formats;
using TsCgnat.Firewall.Model;
using TsCgnat.Firewall.Rules;

namespace TsCgnat.Firewall.Detection;

/// <summary>Which runner tailscaled writes its rules with, and how we know.</summary>
public sealed record RunnerChoice(TailscaleRunner Runner, string Reason);

/// <summary>The strategy in use, and why.</summary>
/// <param name="LookAgainIn">The choice waits for tailscaled to settle: look again after this long even if nothing else happens.</param>
public sealed record StrategyChoice(Strategy Strategy, string Reason, TimeSpan? LookAgainIn = null);

/// <summary>
/// Tells tailscaled's iptables runner (over legacy or nft) from its native nftables runner, from the
/// firewall and, when it was reachable, the LocalAPI; then picks the strategy (design section 4).
/// </summary>
public static class RunnerDetector
{
    public static RunnerChoice Detect(
        IReadOnlyDictionary<(IptablesBackend Backend, IpFamily Family), SavedRuleset> rulesets,
        NftRuleset? nft,
        bool nftUnreadableByIptables,
        TailscaleHint? hint,
        string tun,
        TailscaleRunner? previous = null)
    {
        var legacyHas = rulesets.TryGetValue((IptablesBackend.Legacy, IpFamily.V4), out var legacy) && TailscaleChainsReader.Present(legacy);
        var legacyRules = legacyHas ? legacy!.Table("filter").Rules(Names.TsInput).Count(r => !Names.IsOurRule(r)) : 0;
        var nftRules = nft?.Chain("ip", "filter", Names.TsInput)?.Rules.Count(r => !Names.IsOurComment(r.Comment)) ?? 0;
        if (legacyHas && nftRules <= legacyRules)
        {
            return new(TailscaleRunner.IptablesLegacy, nftRules == 0
                ? "tailscaled's ts-* chains are in iptables-legacy"
                : $"ts-* chains are in both; iptables-legacy holds most rules in ts-input ({legacyRules} vs {nftRules})");
        }

        var filter = nft?.Chain("ip", "filter", Names.TsInput) is not null || nft?.Chain("ip", "filter", Names.TsForward) is not null;
        if (filter)
        {
            // tailscaled's nft runner compares interface names without the trailing NUL, which nft prints
            // as a prefix match ("tailscale0*"); iptables-nft writes "-i tailscale0" as an exact match.
            var theirs = new[] { Names.TsInput, Names.TsForward }
                .SelectMany(c => nft!.Chain("ip", "filter", c)?.Rules ?? [])
                .Where(r => !Names.IsOurComment(r.Comment))
                .SelectMany(r => r.InterfaceMatches())
                .Where(m => m.Value.StartsWith(tun, StringComparison.Ordinal))
                .ToList();
            if (theirs.Any(m => m.Value == tun + "*"))
            {
                return new(TailscaleRunner.Nftables, $"ts-input in nft table ip filter matches \"{tun}*\" as a prefix, as only tailscaled's nftables runner writes it");
            }

            if (theirs.Count > 0)
            {
                return new(TailscaleRunner.IptablesNft, legacyHas
                    ? $"ts-* chains are in both; iptables-nft holds most rules in ts-input ({nftRules} vs {legacyRules})"
                    : $"ts-input in table ip filter matches \"{tun}\" exactly, as iptables-nft writes it");
            }

            if (nftUnreadableByIptables)
            {
                return new(TailscaleRunner.Nftables, "ts-* chains exist in nft and iptables-nft cannot read the table, so native nft rules are in it");
            }

            return hint?.Kind switch
            {
                _ when previous is TailscaleRunner.Nftables or TailscaleRunner.IptablesNft =>
                    new(previous.Value, $"ts-* chains in nft are empty (being rebuilt); {previous} made them before"),
                "nftables" => new(TailscaleRunner.Nftables, "ts-* chains in nft are still empty; the LocalAPI says NetfilterKind=nftables"),
                "iptables" => new(TailscaleRunner.IptablesNft, "ts-* chains in nft are still empty; the LocalAPI says NetfilterKind=iptables"),
                _ => new(TailscaleRunner.Unknown, "ts-* chains in nft are still empty, so which runner made them is not known yet"),
            };
        }

        if (nft is null && rulesets.TryGetValue((IptablesBackend.Nft, IpFamily.V4), out var viaIptablesNft) && TailscaleChainsReader.Present(viaIptablesNft))
        {
            return new(TailscaleRunner.IptablesNft, "tailscaled's ts-* chains are in iptables-nft (nft itself is not installed)");
        }

        return hint?.Kind switch
        {
            "nftables" => new(TailscaleRunner.Nftables, "no ts-* chains yet; the LocalAPI says NetfilterKind=nftables"),
            // Its tables stay when its chains go (down, stop): iptables-nft rules of ours in them would make every later
            // pass fail once tailscaled is back, so what it made before decides until it shows otherwise.
            _ when previous is TailscaleRunner.Nftables => new(TailscaleRunner.Nftables, "no ts-* chains now; tailscaled's nftables runner made them before"),
            _ => new(TailscaleRunner.Unknown, "no ts-* chains: tailscaled is stopped, down, in mode off, or waiting for its first netmap"),
        };
    }

    /// <summary>
    /// How long tailscaled's chains must stay full without its jumps before the agent takes it for nodivert rather than
    /// mode on part-way through a stop (jumps deleted first, then the chains flushed and deleted, a few dozen commands).
    /// </summary>
    public static readonly TimeSpan UnhookedSettle = TimeSpan.FromSeconds(2);

    /// <summary>The strategy for what was detected (design section 4: never Indirect with the nft runner).</summary>
    /// <param name="unhookedFor">How long ts-input has been full without tailscaled's jumps while the strategy was InChain
    /// (null when that is not the case now).</param>
    /// <exception cref="InvalidOperationException">Indirect was asked for while tailscaled uses its nftables runner.</exception>
    public static StrategyChoice Choose(
        StrategyRequest request, RunnerChoice runner, TailscaleChains v4, TailscaleHint? hint, Strategy? previous, TimeSpan? unhookedFor = null)
    {
        if (request == StrategyRequest.Indirect)
        {
            return runner.Runner == TailscaleRunner.Nftables
                ? throw new InvalidOperationException(
                    "--strategy indirect cannot work with tailscaled's nftables runner: a reference to ts-input makes its next start fail "
                    + "(\"nftables chain has nil hooknum or priority\"); use --strategy auto or in-chain")
                : new(Strategy.Indirect, "--strategy indirect");
        }

        if (request == StrategyRequest.InChain)
        {
            return new(Strategy.InChain, "--strategy in-chain");
        }

        if (runner.Runner == TailscaleRunner.Nftables)
        {
            return new(Strategy.InChain, "tailscaled uses its nftables runner, where a reference to a ts-* chain would break its start");
        }

        if (v4.Any && runner.Runner != TailscaleRunner.Unknown)
        {
            return Mode(v4, hint, previous, unhookedFor) is { Mode: NetfilterMode.On } on
                ? new(Strategy.InChain, on.Reason, on.LookAgainIn)
                : new(Strategy.Indirect, "tailscaled is in netfilter mode nodivert: our hooks run the exemptions, then a copy of its rules");
        }

        return hint?.Mode switch
        {
            NetfilterMode.On => new(Strategy.InChain, "the LocalAPI says netfilter mode on"),
            NetfilterMode.NoDivert => new(Strategy.Indirect, "the LocalAPI says netfilter mode nodivert"),
            _ when previous is { } kept => new(kept, $"no ts-* chains to tell from; keeping {kept}"),
            _ => new(Strategy.Indirect, "no ts-* chains to tell from; Indirect writes nothing until tailscaled's iptables runner has made them"),
        };
    }

    /// <summary>tailscaled's netfilter mode as its chains and the LocalAPI show it, and why; null: not known.</summary>
    public sealed record ModeSeen(NetfilterMode Mode, string Reason, TimeSpan? LookAgainIn = null);

    /// <summary>
    /// Mode on or nodivert, from chains that exist. Jumps prove mode on; their absence proves nothing by itself: mode on
    /// makes its chains before its jumps at every start, and deletes the jumps before it flushes and deletes the chains
    /// at every stop. Deciding nodivert on such a passing state flipped the agent's strategy at every tailscaled restart
    /// (and wrote rules in between), so without the LocalAPI's word the agent keeps mode on while the chains are empty,
    /// or until they have stayed full and unhooked for <see cref="UnhookedSettle"/>.
    /// </summary>
    public static ModeSeen Mode(TailscaleChains v4, TailscaleHint? hint, Strategy? previous, TimeSpan? unhookedFor)
    {
        if (v4.PlainJumps)
        {
            return new(NetfilterMode.On, "tailscaled is in netfilter mode on: its jump at the top of INPUT runs ts-input before anything else");
        }

        if (hint?.Mode is NetfilterMode.On)
        {
            return new(NetfilterMode.On, "the LocalAPI says netfilter mode on; tailscaled's jumps are being rebuilt");
        }

        if (hint?.Mode is NetfilterMode.NoDivert)
        {
            return new(NetfilterMode.NoDivert, "the LocalAPI says netfilter mode nodivert");
        }

        if (previous == Strategy.InChain && v4.InputRules == 0)
        {
            return new(NetfilterMode.On, "tailscaled's chains are empty and unhooked, as in the middle of a mode-on rebuild; keeping InChain");
        }

        if (previous == Strategy.InChain && (unhookedFor ?? TimeSpan.Zero) < UnhookedSettle)
        {
            return new(NetfilterMode.On,
                "tailscaled's jumps are gone but its chains are full, as while it stops; keeping InChain unless that lasts "
                + $"{UnhookedSettle.TotalSeconds:0} s (a switch to nodivert)",
                UnhookedSettle - (unhookedFor ?? TimeSpan.Zero));
        }

        return new(NetfilterMode.NoDivert, "tailscaled's chains are there without its jumps: netfilter mode nodivert");
    }
}
