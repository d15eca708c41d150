using TsCgnat.Firewall.Model;

namespace TsCgnat.Firewall.Processes;

/// <summary>The binaries of each back end, by their Debian/Ubuntu/Alpine names (iptables 1.8+).</summary>
public static class Tools
{
    public static string Save(IptablesBackend backend, IpFamily family) => $"{Prefix(family)}-{Suffix(backend)}-save";

    public static string Restore(IptablesBackend backend, IpFamily family) => $"{Prefix(family)}-{Suffix(backend)}-restore";

    public static string Iptables(IptablesBackend backend, IpFamily family) => $"{Prefix(family)}-{Suffix(backend)}";

    public const string Ipset = "ipset";

    public const string Nft = "nft";

    private static string Prefix(IpFamily family) => family == IpFamily.V4 ? "iptables" : "ip6tables";

    private static string Suffix(IptablesBackend backend) => backend == IptablesBackend.Legacy ? "legacy" : "nft";

    public static string Name(IptablesBackend backend) => backend == IptablesBackend.Legacy ? "iptables-legacy" : "iptables-nft";
}

/// <summary>Which back end plain <c>iptables</c> is on this host, from the alternatives symlink chain.</summary>
public static class SystemIptables
{
    public static IptablesBackend? Default()
    {
        foreach (var dir in (Environment.GetEnvironmentVariable("PATH") ?? "/usr/sbin:/sbin").Split(':'))
        {
            var path = Path.Combine(dir, "iptables");
            if (!File.Exists(path))
            {
                continue;
            }

            // Debian: /usr/sbin/iptables -> /etc/alternatives/iptables -> /usr/sbin/iptables-nft;
            // elsewhere a link to xtables-nft-multi or xtables-legacy-multi.
            var target = File.ResolveLinkTarget(path, returnFinalTarget: true)?.Name ?? Path.GetFileName(path);
            return target.Contains("legacy", StringComparison.Ordinal) ? IptablesBackend.Legacy
                : target.Contains("nft", StringComparison.Ordinal) ? IptablesBackend.Nft
                : null;
        }

        return null;
    }
}
