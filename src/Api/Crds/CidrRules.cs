namespace TsCgnat.Api.Crds;

/// <summary>
/// The CEL rules the API server runs on every <c>cidr</c> (design sections 3 and 11): the same
/// checks as <see cref="CgnatPrefix.Check"/>, with messages that say the same thing.
/// </summary>
/// <remarks>
/// They use the Kubernetes CIDR library (Kubernetes 1.31 and later). Every rule after the first is
/// guarded with <c>!isCIDR(self) ||</c>, so a string that is no CIDR at all gets one message, not
/// one per rule; the range rules are also guarded by family, so an IPv6 prefix gets only the IPv6
/// message. The bounds on the field (<see cref="MaxLength"/>) and on the lists
/// (<see cref="PolicyValidator.MaxEntries"/>) keep the estimated cost within the API server's budget.
/// </remarks>
public static class CidrRules
{
    /// <summary>"100.127.255.255/32", the longest canonical prefix inside the range.</summary>
    public const int MaxLength = 18;

    /// <summary>
    /// Dotted decimal without leading zeros, as <see cref="CgnatPrefix"/> requires. Go's prefix parser
    /// behind <c>isCIDR</c> already refuses leading zeros in addresses; this states the rule rather than
    /// relying on the parser of whichever Go version the API server was built with.
    /// </summary>
    /// <remarks>'[.]', not '\.': a backslash in a CEL string literal starts an escape sequence.</remarks>
    public const string CanonicalPattern = "^(0|[1-9][0-9]{0,2})([.](0|[1-9][0-9]{0,2})){3}/(0|[1-9][0-9]?)$";

    public const string IsCidr = "isCIDR(self)";
    public const string IsCidrMessage = "is not an IPv4 prefix in canonical CIDR notation; write a.b.c.d/n inside 100.64.0.0/10, e.g. 100.100.0.0/16";

    public const string IPv4 = "!isCIDR(self) || cidr(self).ip().family() == 4";
    public const string IPv4Message = "is an IPv6 prefix; Tailscale has no IPv6 CGNAT drop, so it needs no exemption";

    public const string Canonical = "!isCIDR(self) || cidr(self).ip().family() != 4 || self.matches('" + CanonicalPattern + "')";
    public const string CanonicalMessage = "is not an IPv4 prefix in canonical CIDR notation (a.b.c.d/n, no leading zeros)";

    public const string HostBitsZero = "!isCIDR(self) || cidr(self).masked() == cidr(self)";
    public const string HostBitsZeroMessage = "has host bits set; write the network address (host bits zero), e.g. 100.64.0.0/24 for 100.64.0.1/24";

    public const string NotOutside = "!isCIDR(self) || cidr(self).ip().family() != 4 "
        + "|| cidr('100.64.0.0/10').containsCIDR(self) || cidr(self).containsCIDR('100.64.0.0/10')";

    public const string NotOutsideMessage = "is outside 100.64.0.0/10; Tailscale does not drop it, so it needs no exemption";

    public const string NotWider = "!isCIDR(self) || cidr(self).ip().family() != 4 "
        + "|| !cidr(self).containsCIDR('100.64.0.0/10') || cidr(self).prefixLength() >= 10";

    public const string NotWiderMessage = "is wider than 100.64.0.0/10; only prefixes inside 100.64.0.0/10 are dropped by Tailscale, list those instead";

    /// <summary>
    /// On <c>spec</c>, because it reads <c>allowBroadRanges</c> beside the lists (design section 11).
    /// Only prefixes inside the range count: one outside it already has its own message.
    /// </summary>
    public const string NarrowSources = "(has(self.allowBroadRanges) && self.allowBroadRanges) || !has(self.allowedSources) "
        + "|| self.allowedSources.all(s, !isCIDR(s.cidr) || !cidr('100.64.0.0/10').containsCIDR(s.cidr) || cidr(s.cidr).prefixLength() >= 16)";

    /// <summary>As <see cref="NarrowSources"/>, for the routed subnets.</summary>
    public const string NarrowSubnets = "(has(self.allowBroadRanges) && self.allowBroadRanges) || !has(self.routedSubnets) "
        + "|| self.routedSubnets.all(s, !isCIDR(s.cidr) || !cidr('100.64.0.0/10').containsCIDR(s.cidr) || cidr(s.cidr).prefixLength() >= 16)";

    public const string NarrowMessage = "holds a prefix broader than /16; a broad exemption brings back the spoofing risk (CVE-2019-14899) "
        + "that Tailscale's drop exists for. List /16 or narrower prefixes, or set spec.allowBroadRanges: true to accept that risk";
}
