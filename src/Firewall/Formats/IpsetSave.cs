namespace TsCgnat.Firewall.Formats;

/// <summary>One ipset set as <c>ipset save</c> prints it.</summary>
public sealed record SavedSet(string Name, string Type, string Family, SortedSet<string> Members);

public static class IpsetSave
{
    /// <summary>Parses <c>ipset save</c> output into sets by name, keeping only sets whose name starts with <paramref name="prefix"/>.</summary>
    /// <remarks>
    /// ipset prints a /32 member of a hash:net set without its prefix length; members are normalised back
    /// to CIDR form so they compare equal to what we render. The output also holds every other tool's
    /// sets (kube-proxy's, Calico's), so lines are filtered on the span before anything is allocated:
    /// this runs on every resync.
    /// </remarks>
    public static Dictionary<string, SavedSet> Parse(string text, string prefix = "")
    {
        var sets = new Dictionary<string, SavedSet>(StringComparer.Ordinal);
        SavedSet? current = null;
        foreach (var raw in text.AsSpan().EnumerateLines())
        {
            var line = raw.Trim();
            if (line.StartsWith("add "))
            {
                var rest = line[4..];
                var space = rest.IndexOf(' ');
                if (space <= 0 || !rest.StartsWith(prefix))
                {
                    continue;
                }

                var name = rest[..space];
                if (current is null || !name.SequenceEqual(current.Name))
                {
                    current = sets.GetValueOrDefault(name.ToString());
                }

                var member = rest[(space + 1)..];
                var end = member.IndexOf(' '); // options such as "timeout 60" or "nomatch" follow the member
                current?.Members.Add(NormaliseMember((end < 0 ? member : member[..end]).ToString()));
            }
            else if (line.StartsWith("create "))
            {
                var parts = line.ToString().Split(' ', StringSplitOptions.RemoveEmptyEntries);
                if (parts.Length < 3 || !parts[1].StartsWith(prefix, StringComparison.Ordinal))
                {
                    continue;
                }

                var at = Array.IndexOf(parts, "family");
                var family = at > 0 && at + 1 < parts.Length ? parts[at + 1] : "inet";
                current = sets[parts[1]] = new SavedSet(parts[1], parts[2], family, new SortedSet<string>(StringComparer.Ordinal));
            }
        }

        return sets;
    }

    public static string NormaliseMember(string member)
    {
        var comma = member.IndexOf(',', StringComparison.Ordinal);
        var net = comma < 0 ? member : member[..comma];
        if (net.Contains('/', StringComparison.Ordinal))
        {
            return member;
        }

        net += net.Contains(':', StringComparison.Ordinal) ? "/128" : "/32";
        return comma < 0 ? net : net + member[comma..];
    }
}
