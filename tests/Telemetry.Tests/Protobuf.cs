using Google.Protobuf;

namespace TsCgnat.Telemetry.Tests;

/// <summary>
/// Reads OTLP's protobuf without its generated classes: OpenTelemetry.Proto is not served here, and the few
/// fields the tests look at (names, attributes, one value) are easier to follow as field numbers of
/// opentelemetry/proto (cited where used) than as a vendored .proto and a code generator. Google.Protobuf's
/// <see cref="CodedInputStream"/> does the wire format.
/// </summary>
internal sealed record ProtoField(int Number, WireFormat.WireType Type, ulong Scalar, ByteString Bytes)
{
    public static IReadOnlyList<ProtoField> Read(ByteString message)
    {
        var fields = new List<ProtoField>();
        var input = message.CreateCodedInput();
        uint tag;
        while ((tag = input.ReadTag()) != 0)
        {
            var number = WireFormat.GetTagFieldNumber(tag);
            var type = WireFormat.GetTagWireType(tag);
            fields.Add(type switch
            {
                WireFormat.WireType.Varint => new ProtoField(number, type, input.ReadUInt64(), ByteString.Empty),
                WireFormat.WireType.Fixed64 => new ProtoField(number, type, input.ReadFixed64(), ByteString.Empty),
                WireFormat.WireType.Fixed32 => new ProtoField(number, type, input.ReadFixed32(), ByteString.Empty),
                WireFormat.WireType.LengthDelimited => new ProtoField(number, type, 0, input.ReadBytes()),
                _ => throw new InvalidDataException($"field {number}: wire type {type} does not occur in OTLP"),
            });
        }

        return fields;
    }

    public string Text => Bytes.ToStringUtf8();
}

internal static class Proto
{
    /// <summary>The embedded messages reached by following <paramref name="path"/> (field numbers) from <paramref name="message"/>.</summary>
    public static IEnumerable<ByteString> Walk(ByteString message, params int[] path)
    {
        IEnumerable<ByteString> level = [message];
        foreach (var number in path)
        {
            level = [.. level.SelectMany(m => ProtoField.Read(m).Where(f => f.Number == number).Select(f => f.Bytes))];
        }

        return level;
    }

    public static string? String(ByteString message, int number) =>
        ProtoField.Read(message).FirstOrDefault(f => f.Number == number)?.Text;

    /// <summary>KeyValue attributes (key = 1, value = 2: AnyValue with string_value = 1, bool_value = 2) as text.</summary>
    public static Dictionary<string, string> Attributes(ByteString owner, int number) =>
        Walk(owner, number).ToDictionary(
            kv => String(kv, 1)!,
            kv => ProtoField.Read(Walk(kv, 2).Single()).Single() switch
            {
                { Number: 1 } s => s.Text,
                { Number: 2 } b => (b.Scalar != 0).ToString(),
                var other => $"<field {other.Number}>",
            },
            StringComparer.Ordinal);
}
