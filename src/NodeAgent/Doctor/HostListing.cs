using System.Collections.Concurrent;
using TsCgnat.Firewall.Model;
using TsCgnat.Firewall.Processes;

namespace TsCgnat.NodeAgent.Doctor;

/// <summary>
/// The host's listings as the tools printed them, for the walk: the chain policies, every ipset set
/// (not only ours) and the nft base chains are in the text but not in the parsed
/// <see cref="Firewall.HostSnapshot"/>. Null where a tool was not run or failed.
/// </summary>
/// <param name="LegacySave"><c>iptables-legacy-save</c> (IPv4).</param>
/// <param name="NftSave"><c>iptables-nft-save</c> (IPv4).</param>
/// <param name="IpsetSave"><c>ipset save</c>.</param>
/// <param name="NftJson"><c>nft -j list ruleset</c>.</param>
public sealed record HostListing(string? LegacySave, string? NftSave, string? IpsetSave, string? NftJson);

/// <summary>
/// Passes every command through and keeps what the listing commands printed, so the walk reads exactly
/// the text the plan was computed from (one read of the host, no second look that could differ).
/// </summary>
public sealed class ListingRecorder(ICommandRunner inner) : ICommandRunner
{
    private readonly ConcurrentDictionary<string, string> _outputs = new(StringComparer.Ordinal);

    public async Task<CommandOutput> RunAsync(string program, IReadOnlyList<string> arguments, string? standardInput, CancellationToken cancellationToken)
    {
        var output = await inner.RunAsync(program, arguments, standardInput, cancellationToken);
        if (standardInput is null && output.Succeeded)
        {
            _outputs[Key(program, arguments)] = output.StdOut;
        }

        return output;
    }

    public HostListing Listing => new(
        _outputs.GetValueOrDefault(Key(Tools.Save(IptablesBackend.Legacy, IpFamily.V4), [])),
        _outputs.GetValueOrDefault(Key(Tools.Save(IptablesBackend.Nft, IpFamily.V4), [])),
        _outputs.GetValueOrDefault(Key(Tools.Ipset, ["save"])),
        _outputs.GetValueOrDefault(Key(Tools.Nft, ["-j", "list", "ruleset"])));

    private static string Key(string program, IReadOnlyList<string> arguments) => string.Join('\0', [program, .. arguments]);
}
