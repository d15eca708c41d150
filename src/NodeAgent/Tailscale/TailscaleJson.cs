using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using System.Text.Json.Serialization;
using TsCgnat.Firewall.Model;

namespace TsCgnat.NodeAgent.Tailscale;

/// <summary>
/// Source-generated (NativeAOT-safe). Lenient on purpose, unlike the policy schema: tailscaled sends
/// far more fields than we read and adds new ones in every release, so unknown members are ignored.
/// Go field names are the keys as they are (no naming policy).
/// </summary>
[JsonSourceGenerationOptions(Converters = [typeof(RoutePrefixConverter)])]
[JsonSerializable(typeof(TailscalePrefs))]
[JsonSerializable(typeof(IpnNotification))]
[JsonSerializable(typeof(TailscaleStatus))]
[JsonSerializable(typeof(NetfilterModeEdit))]
[JsonSerializable(typeof(LocalApiError))]
internal sealed partial class TailscaleJsonContext : JsonSerializerContext;

/// <summary>
/// The body of <c>PATCH /localapi/v0/prefs</c> that changes the netfilter mode and nothing else: an
/// <c>ipn.MaskedPrefs</c>, where only fields whose <c>…Set</c> flag is true are applied.
/// </summary>
internal sealed record NetfilterModeEdit(NetfilterMode NetfilterMode, bool NetfilterModeSet = true);

/// <summary>The body tailscaled sends with a 400 from a prefs edit: <c>{"Error":"…"}</c>.</summary>
internal sealed record LocalApiError(string? Error);

/// <summary>
/// Reads a Go <c>netip.Prefix</c> string into an <see cref="IPNetwork"/>. System.Text.Json has no
/// converter for IPNetwork, and <see cref="IPNetwork.Parse(string)"/> refuses host bits, which a Go
/// prefix may carry; a route only matters to us as a network, so host bits are cleared rather than
/// letting one odd route make all of the prefs unreadable.
/// </summary>
internal sealed class RoutePrefixConverter : JsonConverter<IPNetwork>
{
    public override IPNetwork Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options)
    {
        var text = reader.GetString() ?? throw new JsonException("a route prefix is null");
        if (IPNetwork.TryParse(text, out var network))
        {
            return network;
        }

        var slash = text.IndexOf('/', StringComparison.Ordinal);
        if (slash < 0
            || !IPAddress.TryParse(text.AsSpan(0, slash), out var address)
            || !int.TryParse(text.AsSpan(slash + 1), out var length)
            || length < 0
            || length > (address.AddressFamily == AddressFamily.InterNetwork ? 32 : 128))
        {
            throw new JsonException($"'{text}' is not a route prefix");
        }

        var bytes = address.GetAddressBytes();
        for (var i = 0; i < bytes.Length; i++)
        {
            var keep = Math.Clamp(length - (i * 8), 0, 8);
            bytes[i] &= (byte)(0xFF << (8 - keep));
        }

        return new IPNetwork(new IPAddress(bytes), length);
    }

    public override void Write(Utf8JsonWriter writer, IPNetwork value, JsonSerializerOptions options) =>
        writer.WriteStringValue(value.ToString());
}
