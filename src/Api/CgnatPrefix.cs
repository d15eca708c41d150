using System.Net;
using System.Net.Sockets;
using System.Text.RegularExpressions;

namespace TsCgnat.Api;

/// <summary>Parses the CIDRs a policy may exempt: canonical IPv4 prefixes inside 100.64.0.0/10.</summary>
public static partial class CgnatPrefix
{
    /// <summary>The range Tailscale drops on non-Tailscale interfaces (net/tsaddr).</summary>
    public static readonly IPNetwork Range = IPNetwork.Parse("100.64.0.0/10");

    /// <summary>Prefixes shorter than this need <c>spec.allowBroadRanges</c>.</summary>
    public const int NarrowestUnguardedLength = 16;

    /// <summary>
    /// Returns null and the prefix when <paramref name="text"/> is a canonical IPv4 prefix inside the
    /// range, otherwise a sentence saying what is wrong and what to write instead.
    /// </summary>
    /// <remarks>
    /// IPNetwork.TryParse alone is too lenient for input we turn into firewall rules: it silently
    /// masks host bits ("100.64.0.1/24" parses as 100.64.0.0/24) and accepts legacy forms such as
    /// "100.064.0.0/16" (read as octal) or "100.64/16". Each of those hides a mistake, so the text
    /// must be in dotted-decimal form without leading zeros and equal to the network it denotes.
    /// </remarks>
    public static string? Check(string? text, bool allowBroad, out IPNetwork prefix)
    {
        prefix = default;
        if (string.IsNullOrEmpty(text))
        {
            return "is required: an IPv4 prefix inside 100.64.0.0/10, e.g. 100.100.0.0/16";
        }

        if (text.Contains(':', StringComparison.Ordinal))
        {
            return $"\"{text}\" is an IPv6 prefix; Tailscale has no IPv6 CGNAT drop, so it needs no exemption";
        }

        if (!DottedDecimalPrefix().IsMatch(text) || !IPNetwork.TryParse(text, out var parsed)
            || parsed.BaseAddress.AddressFamily != AddressFamily.InterNetwork)
        {
            return $"\"{text}\" is not an IPv4 prefix in canonical CIDR notation (a.b.c.d/n, no leading zeros, n from 0 to 32)";
        }

        var written = IPAddress.Parse(text[..text.IndexOf('/', StringComparison.Ordinal)]);
        if (!written.Equals(parsed.BaseAddress))
        {
            return $"\"{text}\" has host bits set; write the network address \"{parsed}\"";
        }

        if (!Range.Contains(parsed.BaseAddress) || parsed.PrefixLength < Range.PrefixLength)
        {
            return parsed.Contains(Range.BaseAddress)
                ? $"\"{text}\" is wider than 100.64.0.0/10; only prefixes inside 100.64.0.0/10 are dropped by Tailscale, list those instead"
                : $"\"{text}\" is outside 100.64.0.0/10; Tailscale does not drop it, so it needs no exemption";
        }

        if (parsed.PrefixLength < NarrowestUnguardedLength && !allowBroad)
        {
            return $"\"{text}\" is broader than /{NarrowestUnguardedLength}; a broad exemption brings back the spoofing risk "
                + "(CVE-2019-14899) that Tailscale's drop exists for. List /16 or narrower prefixes, or set "
                + "spec.allowBroadRanges: true to accept that risk";
        }

        prefix = parsed;
        return null;
    }

    [GeneratedRegex(@"^(0|[1-9][0-9]{0,2})(\.(0|[1-9][0-9]{0,2})){3}/(0|[1-9][0-9]?)\z", RegexOptions.CultureInvariant)]
    private static partial Regex DottedDecimalPrefix();
}
