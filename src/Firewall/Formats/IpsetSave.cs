namespace TsCgnat.Firewall.Formats;

/// <summary>One ipset set as <c>ipset save</c> prints it.</summary>
public sealed record SavedSet(string Name, string Type, string Family, SortedSet<string> Members);

public static class IpsetSave
{
    /// <summary>Parses <c>ipset save</c> output into sets by name.</summary>
    /// <remarks>ipset prints a /32 member of a hash:net set without its prefix length; members are
    /// normalised back to CIDR form so they compare equal to what we render.</remarks>
    public static Dictionary<string, SavedSet> Parse(string text)
    {
        var sets = new Dictionary<string, SavedSet>(StringComparer.Ordinal);
        foreach (var raw in text.Split('\n'))
        {
            var parts = raw.Trim().Split(' ', StringSplitOptions.RemoveEmptyEntries);
            if (parts.Length >= 3 && parts[0] == "create")
            {
                var family = "inet";
                var at = Array.IndexOf(parts, "family");
                if (at > 0 && at + 1 < parts.Length)
                {
                    family = parts[at + 1];
                }

                sets[parts[1]] = new SavedSet(parts[1], parts[2], family, new SortedSet<string>(StringComparer.Ordinal));
            }
            else if (parts.Length >= 3 && parts[0] == "add" && sets.TryGetValue(parts[1], out var set))
            {
                set.Members.Add(NormaliseMember(parts[2]));
            }
        }

        return sets;
    }

    public static string NormaliseMember(string member)
    {
        var comma = member.IndexOf(',', StringComparison.Ordinal);
        var net = comma < 0 ? member : member[..comma];
        if (!net.Contains('/', StringComparison.Ordinal))
        {
            net += net.Contains(':', StringComparison.Ordinal) ? "/128" : "/32";
        }

        return comma < 0 ? net : net + member[comma..];
    }
}
