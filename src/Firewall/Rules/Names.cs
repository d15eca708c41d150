namespace TsCgnat.Firewall.Rules;

/// <summary>Everything we create carries these names, so we can always tell ours from anyone else's.</summary>
public static class Names
{
    public const string ChainPrefix = "TSCGNAT-";
    public const string SetPrefix = "TSCGNAT-";

    /// <summary>The comment on our rules in chains we do not own (the hooks in the built-ins).</summary>
    public const string HookComment = "ts-cgnat hook";

    /// <summary>The comment on our exemption rules inside Tailscale's chains (<see cref="Model.Strategy.InChain"/>).</summary>
    public const string ExemptionComment = "ts-cgnat exemption";

    /// <summary>What every comment of ours starts with, in iptables and nft alike.</summary>
    public const string CommentPrefix = "ts-cgnat ";

    public const string InputChain = "TSCGNAT-INPUT";
    public const string ForwardChain = "TSCGNAT-FORWARD";
    public const string PostroutingChain = "TSCGNAT-POSTROUTING";

    /// <summary>hash:net: allowed sources on any interface but Tailscale's.</summary>
    public const string SourceSet = "TSCGNAT-SRC4";

    /// <summary>hash:net,iface: allowed sources restricted to named interfaces.</summary>
    public const string InterfaceSourceSet = "TSCGNAT-SRCIF4";

    /// <summary>hash:net: routed subnets (forward path).</summary>
    public const string SubnetSet = "TSCGNAT-FWD4";

    /// <summary>Suffix of the staging set filled and then swapped in, so a set changes atomically.</summary>
    public const string StagingSuffix = "-NEXT";

    /// <summary>Tailscale's chains (tailscaled util/linuxfw).</summary>
    public const string TsInput = "ts-input";
    public const string TsForward = "ts-forward";
    public const string TsPostrouting = "ts-postrouting";

    public static bool IsOurs(string chainOrSet) => chainOrSet.StartsWith(ChainPrefix, StringComparison.Ordinal);

    public static string HookRule(string target) => $"-m comment --comment \"{HookComment}\" -j {target}";

    /// <summary>A rule of ours in a chain we do not own, in iptables-save form: it carries one of our comments.</summary>
    public static bool IsOurRule(string rule) => rule.Contains($"--comment \"{CommentPrefix}", StringComparison.Ordinal);

    /// <summary>An nft rule comment (userdata) of ours; iptables-nft stores <c>-m comment</c> there too.</summary>
    public static bool IsOurComment(string? comment) => comment is not null && comment.StartsWith(CommentPrefix, StringComparison.Ordinal);
}
