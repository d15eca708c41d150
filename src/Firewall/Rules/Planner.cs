using System.Text;
using TsCgnat.Firewall.Formats;

namespace TsCgnat.Firewall.Rules;

/// <summary>
/// Pure diff between what we want and what the kernel has, as restore input. Nothing here runs a
/// process; the same inputs always give the same plan (the Felix table model: desired and actual as
/// two plain values, one transaction for the difference).
/// </summary>
public static class Planner
{
    /// <summary>
    /// <c>iptables-restore --noflush</c> input that turns <paramref name="actual"/> into
    /// <paramref name="desired"/> for the tables we manage, or null when they already match.
    /// </summary>
    /// <param name="desired">Our tables for this family and back end; empty to remove everything of ours.</param>
    public static string? Iptables(IReadOnlyList<DesiredTable> desired, SavedRuleset actual)
    {
        var output = new StringBuilder();
        foreach (var tableName in new[] { "filter", "nat" })
        {
            var want = desired.FirstOrDefault(t => t.Name == tableName);
            var lines = Table(want, actual.Table(tableName));
            if (lines.Count == 0)
            {
                continue;
            }

            output.Append('*').Append(tableName).Append('\n');
            foreach (var line in lines)
            {
                output.Append(line).Append('\n');
            }

            output.Append("COMMIT\n");
        }

        return output.Length == 0 ? null : output.ToString();
    }

    /// <summary>The restore lines for one table, in an order the kernel accepts within one commit.</summary>
    public static List<string> Table(DesiredTable? desired, SavedTable actual)
    {
        var wantedChains = desired?.Chains ?? new Dictionary<string, IReadOnlyList<string>>();
        var wantedHooks = desired?.Hooks ?? [];

        // Our chains whose content differs (or that are missing) are declared, which in --noflush mode
        // creates or flushes them, and then written whole. Stale ones of ours are declared to flush them.
        var rewrite = wantedChains
            .Where(c => !actual.HasChain(c.Key) || !actual.Rules(c.Key).SequenceEqual(c.Value, StringComparer.Ordinal))
            .Select(c => c.Key)
            .Order(StringComparer.Ordinal)
            .ToList();
        var stale = actual.Chains.Keys
            .Where(c => Names.IsOurs(c) && !wantedChains.ContainsKey(c))
            .Order(StringComparer.Ordinal)
            .ToList();

        var deletes = new List<string>();
        var inserts = new List<string>();
        foreach (var (chain, rules) in actual.Chains.Where(c => !Names.IsOurs(c.Key)).OrderBy(c => c.Key, StringComparer.Ordinal))
        {
            var wanted = wantedHooks.Where(h => h.Chain == chain).ToDictionary(h => h.Rule, StringComparer.Ordinal);
            var kept = new HashSet<string>(StringComparer.Ordinal);
            var firstDrop = FirstForeignDrop(rules);
            for (var i = 0; i < rules.Count; i++)
            {
                var rule = rules[i];
                if (!Names.IsOurRule(rule))
                {
                    continue;
                }

                // A wanted rule is kept once, and an exemption only while it is above every DROP of the
                // chain's owner; duplicates, misplaced exemptions and rules we no longer want go.
                if (!wanted.TryGetValue(rule, out var hook) || (hook.AheadOfDrops && i > firstDrop) || !kept.Add(rule))
                {
                    deletes.Add($"-D {chain} {rule}");
                }
            }

            foreach (var hook in wanted.Values.Where(h => !kept.Contains(h.Rule)))
            {
                // Inserted at the top when missing. A hook is never moved once present: another tool that
                // also wants position 1 (as tailscaled's mode "on" does) must not start a tug of war with us.
                inserts.Add($"-I {chain} 1 {hook.Rule}");
            }
        }

        // A table not loaded yet lists no chains; restore creates it with its built-ins. (Layouts only
        // want rules in Tailscale's chains once they exist.)
        inserts.AddRange(wantedHooks.Where(h => !actual.HasChain(h.Chain)).Select(h => $"-I {h.Chain} 1 {h.Rule}"));

        var lines = new List<string>();
        lines.AddRange(rewrite.Concat(stale).Select(c => $":{c} - [0:0]"));
        lines.AddRange(deletes);
        foreach (var chain in rewrite)
        {
            lines.AddRange(wantedChains[chain].Select(rule => $"-A {chain} {rule}"));
        }

        lines.AddRange(inserts);
        lines.AddRange(stale.Select(c => $"-X {c}"));
        return lines;
    }

    /// <summary>Index of the first rule that is not ours and drops, or <see cref="int.MaxValue"/>.</summary>
    private static int FirstForeignDrop(List<string> rules)
    {
        for (var i = 0; i < rules.Count; i++)
        {
            if (!Names.IsOurRule(rules[i]) && (rules[i].EndsWith("-j DROP", StringComparison.Ordinal) || rules[i].Contains("-j REJECT", StringComparison.Ordinal)))
            {
                return i;
            }
        }

        return int.MaxValue;
    }

    /// <summary>
    /// <c>ipset restore</c> input that makes our sets exactly <paramref name="desired"/>: missing sets are
    /// created and filled; a set whose members differ is rebuilt in a staging set and swapped in, so
    /// packets see either the old or the new list, never half of it. Null when nothing differs.
    /// </summary>
    public static string? IpsetUpdate(IReadOnlyList<DesiredSet> desired, IReadOnlyDictionary<string, SavedSet> actual)
    {
        var output = new StringBuilder();
        foreach (var set in desired)
        {
            if (actual.TryGetValue(set.Name, out var have) && have.Type == set.Type && have.Members.SetEquals(set.Members))
            {
                continue;
            }

            if (have is not null && have.Type != set.Type)
            {
                throw new InvalidOperationException(
                    $"ipset set {set.Name} exists with type {have.Type}, not {set.Type}; run 'ts-cgnat-agent cleanup' and apply again");
            }

            var target = have is null ? set.Name : set.Name + Names.StagingSuffix;
            output.Append("create ").Append(target).Append(' ').Append(set.Type).Append(" family inet hashsize ")
                .Append(HashSize(set.Members.Count)).Append(" maxelem 65536\n");
            foreach (var member in set.Members)
            {
                output.Append("add ").Append(target).Append(' ').Append(member).Append('\n');
            }

            if (have is not null)
            {
                output.Append("swap ").Append(target).Append(' ').Append(set.Name).Append('\n');
                output.Append("destroy ").Append(target).Append('\n');
            }
        }

        return output.Length == 0 ? null : output.ToString();
    }

    /// <summary>
    /// The set's initial hash size: ipset's default (1024) or, for more members, the power of two that holds them, so
    /// the kernel never rehashes while the restore fills the set. At 10,000 members that halved the restore (47 to 23
    /// ms, issue 11); every set is created new (or staged and swapped), so the size is always the one given here.
    /// </summary>
    public static int HashSize(int members) => Math.Max(1024, (int)Math.Min(65536, System.Numerics.BitOperations.RoundUpToPowerOf2((uint)Math.Max(members, 1))));

    /// <summary>
    /// <c>ipset restore</c> input destroying our sets that are not wanted, or null when there are none.
    /// Staging sets left by an interrupted run are never referenced by a rule, so they go first
    /// (<paramref name="staging"/> true, before <see cref="IpsetUpdate"/>); the others only after the
    /// rules that referenced them are gone (<paramref name="staging"/> false).
    /// </summary>
    public static string? IpsetDestroy(IReadOnlyList<DesiredSet> desired, IReadOnlyDictionary<string, SavedSet> actual, bool staging)
    {
        var wanted = desired.Select(s => s.Name).ToHashSet(StringComparer.Ordinal);
        var stale = actual.Keys
            .Where(n => Names.IsOurs(n) && !wanted.Contains(n) && n.EndsWith(Names.StagingSuffix, StringComparison.Ordinal) == staging)
            .Order(StringComparer.Ordinal)
            .ToList();
        return stale.Count == 0 ? null : string.Concat(stale.Select(n => $"destroy {n}\n"));
    }
}
