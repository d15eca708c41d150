using TsCgnat.Firewall.Formats;
using TsCgnat.Firewall.Model;
using TsCgnat.Firewall.Rules;

namespace TsCgnat.Firewall.Detection;

/// <summary>Which runner tailscaled writes its rules with, and how we know.</summary>
public sealed record RunnerChoice(TailscaleRunner Runner, string Reason);

/// <summary>The strategy in use, and why.</summary>
public sealed record StrategyChoice(Strategy Strategy, string Reason);

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
            _ => new(TailscaleRunner.Unknown, "no ts-* chains: tailscaled is stopped, down, in mode off, or waiting for its first netmap"),
        };
    }

    /// <summary>The strategy for what was detected (design section 4: never Indirect with the nft runner).</summary>
    /// <exception cref="InvalidOperationException">Indirect was asked for while tailscaled uses its nftables runner.</exception>
    public static StrategyChoice Choose(StrategyRequest request, RunnerChoice runner, TailscaleChains v4, TailscaleHint? hint, Strategy? previous)
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
            if (v4.PlainJumps)
            {
                return new(Strategy.InChain, "tailscaled is in netfilter mode on: its jump at the top of INPUT runs ts-input before anything else");
            }

            // Chains without jumps are nodivert, or mode on half-way through a rebuild: off->on makes the
            // chains (empty) before it adds its jumps, and on->off removes the jumps before it flushes.
            // Switching strategy on such a passing state made the agent flip between the two at every
            // tailscaled restart, so it takes the LocalAPI's word, or an empty ts-input, as "still on".
            if (hint?.Mode == NetfilterMode.On)
            {
                return new(Strategy.InChain, "the LocalAPI says netfilter mode on; tailscaled's jumps are being rebuilt");
            }

            if (previous == Strategy.InChain && v4.InputRules == 0)
            {
                return new(Strategy.InChain, "tailscaled's chains are empty and unhooked, as in the middle of a mode-on rebuild; keeping InChain");
            }

            return new(Strategy.Indirect, "tailscaled is in netfilter mode nodivert: our hooks call its chains after the exemptions");
        }

        return hint?.Mode switch
        {
            NetfilterMode.On => new(Strategy.InChain, "the LocalAPI says netfilter mode on"),
            NetfilterMode.NoDivert => new(Strategy.Indirect, "the LocalAPI says netfilter mode nodivert"),
            _ when previous is { } kept => new(kept, $"no ts-* chains to tell from; keeping {kept}"),
            _ => new(Strategy.Indirect, "no ts-* chains to tell from; Indirect references them only once tailscaled's iptables runner has made them"),
        };
    }
}
