using TsCgnat.Firewall.Formats;
using TsCgnat.Firewall.Model;
using TsCgnat.Firewall.Processes;
using TsCgnat.Firewall.Rules;

namespace TsCgnat.Firewall.Detection;

/// <summary>The back end we write to, and why, in words an operator can check.</summary>
public sealed record BackendChoice(IptablesBackend Backend, string Reason);

/// <summary>
/// Picks the iptables back end to write with. It must be the one tailscaled writes with: an ACCEPT or
/// RETURN written with iptables-nft does not cancel a DROP written with iptables-legacy.
/// </summary>
public static class BackendDetector
{
    /// <param name="rulesets">IPv4 <c>iptables-save</c> output of each back end that could be read.</param>
    /// <param name="systemDefault">What plain <c>iptables</c> is on this host, asked only to break a tie.</param>
    public static BackendChoice Detect(IReadOnlyDictionary<IptablesBackend, SavedRuleset> rulesets, Func<IptablesBackend?> systemDefault)
    {
        var backends = new[] { IptablesBackend.Nft, IptablesBackend.Legacy }.Where(rulesets.ContainsKey).ToList();
        if (backends.Count == 0)
        {
            throw new InvalidOperationException("neither iptables-legacy-save nor iptables-nft-save could be run; install iptables (1.8 or later)");
        }

        if (backends.Count == 1)
        {
            return new(backends[0], $"only {Tools.Name(backends[0])} is usable on this host");
        }

        // 1. Where tailscaled's chains are. With leftovers in both, the one whose ts-input holds rules is live.
        var withTs = backends.Where(b => TailscaleChainsReader.Present(rulesets[b])).ToList();
        if (withTs.Count == 1)
        {
            return new(withTs[0], $"tailscaled's ts-* chains are in {Tools.Name(withTs[0])}");
        }

        if (withTs.Count == 2)
        {
            var live = withTs.OrderByDescending(b => rulesets[b].Table("filter").Rules(Names.TsInput).Count).First();
            return new(live, $"ts-* chains exist in both back ends; {Tools.Name(live)} has the most rules in ts-input");
        }

        // 2. Where we wrote before (tailscaled not up yet): stay, rather than flip and flip back.
        var withOurs = backends.Where(b => rulesets[b].Tables.Values.Any(t => t.Chains.Keys.Any(Names.IsOurs))).ToList();
        if (withOurs.Count == 1)
        {
            return new(withOurs[0], $"no ts-* chains yet; our own chains are in {Tools.Name(withOurs[0])} from an earlier apply");
        }

        // 3. The kubelet's hint chains (the iptables-wrappers method).
        foreach (var backend in backends)
        {
            var mangle = rulesets[backend].Table("mangle");
            if (mangle.HasChain("KUBE-IPTABLES-HINT") || mangle.HasChain("KUBE-KUBELET-CANARY"))
            {
                return new(backend, $"no ts-* chains yet; the kubelet's hint chain is in {Tools.Name(backend)}");
            }
        }

        // 4. Whichever holds more rules; on a tie, what plain iptables is.
        var nft = rulesets[IptablesBackend.Nft].RuleCount;
        var legacy = rulesets[IptablesBackend.Legacy].RuleCount;
        if (nft != legacy)
        {
            var more = nft > legacy ? IptablesBackend.Nft : IptablesBackend.Legacy;
            return new(more, $"no ts-* chains or hints yet; {Tools.Name(more)} holds more rules ({Math.Max(nft, legacy)} vs {Math.Min(nft, legacy)})");
        }

        var fallback = systemDefault();
        return fallback is { } chosen
            ? new(chosen, $"no ts-* chains, hints or rules yet; plain iptables on this host is {Tools.Name(chosen)}")
            : new(IptablesBackend.Nft, "no ts-* chains, hints or rules yet, and plain iptables did not say which it is; iptables-nft is the distributions' default");
    }
}
