using System.Buffers;
using System.Globalization;
using System.Text.Json;
using System.Text.RegularExpressions;
using YamlDotNet.Core;
using YamlDotNet.Core.Events;

namespace TsCgnat.Api;

/// <summary>A limit of <see cref="PolicyYaml"/> that a text broke, or a YAML feature it refuses; where, and why.</summary>
internal sealed class PolicyYamlException(int document, int line, string message) : Exception(message)
{
    public int Document { get; } = document;

    public int Line { get; } = line;
}

/// <summary>
/// Reads policy YAML at the level of YamlDotNet's parser events and writes each document as JSON, with
/// every limit checked before the next event is asked for (issue 10). Nothing here builds YamlDotNet's
/// node graph: that graph expands aliases (the "billion laughs" class of CVE-2019-11253), and its depth
/// and size are only known once it is built. A policy needs none of anchors, aliases, deep nesting or
/// long scalars, so each is refused at the first event that shows it, naming the line. The depth limit
/// also keeps YamlDotNet's scanner cheap: its cost per token grows with the flow nesting it holds.
/// </summary>
internal sealed partial class PolicyYaml
{
    private readonly Parser _parser;
    private readonly Dictionary<(int Document, string Path), int>? _lines;
    private readonly IReadOnlyDictionary<int, HashSet<string>>? _wanted;
    private HashSet<string>? _wantedNow;
    private readonly List<HashSet<string>> _keys = [];
    private Utf8JsonWriter? _json;
    private int _nodes;
    private int _document;

    private PolicyYaml(string text, Dictionary<(int, string), int>? lines = null, IReadOnlyDictionary<int, HashSet<string>>? wanted = null)
    {
        _parser = new Parser(new StringReader(text));
        _lines = lines;
        _wanted = wanted;
    }

    /// <summary>One document of the text: its number (from 1), the line of its root, and what it is.</summary>
    /// <param name="Json">The document as JSON; empty when <paramref name="Problem"/> is set.</param>
    /// <param name="Problem">Why the document is not a policy object, when it is not.</param>
    /// <param name="TopLevelKeys">The keys of the root mapping.</param>
    public readonly record struct Document(int Number, int Line, ReadOnlyMemory<byte> Json, string? Problem, IReadOnlySet<string> TopLevelKeys);

    /// <summary>
    /// Calls <paramref name="each"/> with every non-empty document in turn. The JSON it is handed is only
    /// valid during the call. Throws <see cref="YamlException"/> (syntax) or <see cref="PolicyYamlException"/> (limits).
    /// </summary>
    public static void Read(string text, Action<Document> each)
    {
        // The plain subset policy files are written in is read by PlainYaml, many times faster; anything else, and
        // every text that turns out to hold a problem, by YamlDotNet's parser below.
        if (PlainYaml.TryRead(text) is { } plain)
        {
            foreach (var document in plain)
            {
                each(document);
            }

            return;
        }

        ReadWithYamlDotNet(text, each);
    }

    /// <summary>
    /// For the tests and the fuzzer: null when <see cref="PlainYaml"/> leaves <paramref name="text"/> to YamlDotNet or
    /// reads it exactly as YamlDotNet does (document numbers, lines, JSON, top-level keys); otherwise what differs.
    /// </summary>
    internal static string? PlainDisagreement(string text)
    {
        if (PlainYaml.TryRead(text) is not { } plain)
        {
            return null;
        }

        static string Show(Document d) =>
            $"document {d.Number} line {d.Line} problem {d.Problem ?? "none"} keys [{string.Join(',', d.TopLevelKeys.Order(StringComparer.Ordinal))}] json {System.Text.Encoding.UTF8.GetString(d.Json.Span)}";
        var slow = new List<string>();
        try
        {
            ReadWithYamlDotNet(text, d => slow.Add(Show(d)));
        }
        catch (Exception e)
        {
            return $"PlainYaml read it, YamlDotNet refused it: {e.GetType().Name}: {e.Message}";
        }

        var fast = plain.Select(Show).ToList();
        for (var i = 0; i < Math.Max(fast.Count, slow.Count); i++)
        {
            var (f, y) = (i < fast.Count ? fast[i] : "nothing", i < slow.Count ? slow[i] : "nothing");
            if (f != y)
            {
                return $"PlainYaml: {f}\nYamlDotNet: {y}";
            }
        }

        return null;
    }

    /// <summary><see cref="Read"/> without the fast path: YamlDotNet's events, every limit checked (the tests compare the two).</summary>
    internal static void ReadWithYamlDotNet(string text, Action<Document> each)
    {
        var buffer = new ArrayBufferWriter<byte>(4096);
        using var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { SkipValidation = true });
        var reader = new PolicyYaml(text);
        try
        {
            reader.Read(buffer, json, each);
        }
        catch (ArgumentException e)
        {
            // YamlDotNet's TagName throws this for a tag that is no URI, such as !<:> (found by fuzzing, issue 10).
            // The parser has no mark for it: the line is that of the last event read, just before the tag.
            throw new PolicyYamlException(Math.Max(1, reader._document), reader._parser.Current is { } last ? Line(last) : 1, $"YAML syntax error: {e.Message}");
        }
    }

    private void Read(ArrayBufferWriter<byte> buffer, Utf8JsonWriter json, Action<Document> each)
    {
        Documents(number =>
        {
            buffer.ResetWrittenCount();
            json.Reset(buffer);
            return json;
        }, (number, line, problem) =>
        {
            json.Flush();
            each(new Document(number, line, problem is null ? buffer.WrittenMemory : default, problem, _keys.Count > 0 ? _keys[0] : new HashSet<string>()));
        });
    }

    /// <summary>
    /// The lines of the <paramref name="wanted"/> field paths ("spec.allowedSources[0].cidr"), by document number:
    /// one more reading of the text, only when problems need placing, and only the wanted paths are kept. The
    /// common, valid case builds no paths at all.
    /// </summary>
    public static Dictionary<(int Document, string Path), int> LinesOf(string text, IReadOnlyDictionary<int, HashSet<string>> wanted)
    {
        var lines = new Dictionary<(int, string), int>();
        try
        {
            new PolicyYaml(text.TrimStart('\uFEFF'), lines, wanted).Documents(n => null, (_, _, _) => { }, stopAfter: wanted.Keys.Max());
        }
        catch (Exception e) when (e is YamlException or PolicyYamlException or ArgumentException)
        {
            // The first reading of the same text got past these documents, so this cannot happen; lines are a nicety.
        }

        return lines;
    }

    private void Documents(Func<int, Utf8JsonWriter?> writerFor, Action<int, int, string?> done, int stopAfter = int.MaxValue)
    {
        _parser.MoveNext(); // StreamStart
        _parser.MoveNext();
        while (_parser.Current is DocumentStart start)
        {
            if (++_document > PolicyDocuments.MaxDocuments)
            {
                throw new PolicyYamlException(_document, Line(start), $"more than {PolicyDocuments.MaxDocuments} YAML documents in one file; split the policies over several files");
            }

            _parser.MoveNext();
            var root = _parser.Current!;
            var line = Line(root);
            _wantedNow = null;
            var collect = _wanted is not null && _wanted.TryGetValue(_document, out _wantedNow);
            if (root is Scalar { Value: "" } || root is Scalar { Style: ScalarStyle.Plain, Value: "~" or "null" })
            {
                _parser.MoveNext(); // an empty document, e.g. after a trailing "---", as kubectl skips it
            }
            else if (root is not MappingStart)
            {
                _json = null;
                Node(0, path: null);
                if (_document <= stopAfter)
                {
                    done(_document, line, $"is a YAML {Describe(root)}, not a {CgnatAllowPolicy.KindName} object");
                }
            }
            else
            {
                _json = _document <= stopAfter ? writerFor(_document) : null;
                Node(0, collect ? "" : null);
                if (_document <= stopAfter)
                {
                    done(_document, line, null);
                }
            }

            if (_document >= stopAfter)
            {
                return;
            }

            _parser.MoveNext(); // past DocumentEnd
        }
    }

    private void Node(int depth, string? path)
    {
        var node = _parser.Current!;
        Count(node);
        Plain(node);
        if (path is not null && _wantedNow!.Contains(path))
        {
            _lines!.TryAdd((_document, path), Line(node));
        }

        switch (node)
        {
            case Scalar scalar:
                Write(scalar);
                _parser.MoveNext();
                return;
            case SequenceStart:
                Deeper(node, depth);
                _json?.WriteStartArray();
                _parser.MoveNext();
                for (var i = 0; _parser.Current is not SequenceEnd; i++)
                {
                    Wider(i, node);
                    Node(depth + 1, path is null ? null : $"{path}[{i}]");
                }

                _json?.WriteEndArray();
                _parser.MoveNext();
                return;
            case MappingStart:
                Deeper(node, depth);
                _json?.WriteStartObject();
                _parser.MoveNext();
                var keys = KeysAt(depth);
                for (var i = 0; _parser.Current is not MappingEnd; i++)
                {
                    Wider(i, node);
                    var keyNode = _parser.Current;
                    Count(keyNode!);
                    Plain(keyNode!);
                    if (keyNode is not Scalar { Value: var key })
                    {
                        throw new PolicyYamlException(_document, Line(keyNode!), $"line {Line(keyNode!)}: a mapping key must be a plain string");
                    }

                    Utf16(keyNode, key);
                    if (!keys.Add(key))
                    {
                        throw new PolicyYamlException(_document, Line(keyNode), $"Duplicate key \"{key}\": a key may appear only once in a mapping, so that one value cannot hide another");
                    }

                    _json?.WritePropertyName(key);
                    _parser.MoveNext();
                    Node(depth + 1, path is null ? null : path.Length == 0 ? key : $"{path}.{key}");
                }

                _json?.WriteEndObject();
                _parser.MoveNext();
                return;
            default:
                throw new PolicyYamlException(_document, Line(node), $"unexpected YAML {node.GetType().Name}");
        }
    }

    private HashSet<string> KeysAt(int depth)
    {
        while (_keys.Count <= depth)
        {
            _keys.Add(new HashSet<string>(StringComparer.Ordinal));
        }

        _keys[depth].Clear();
        return _keys[depth];
    }

    private void Count(ParsingEvent node)
    {
        if (++_nodes > PolicyDocuments.MaxNodes)
        {
            throw new PolicyYamlException(_document, Line(node), $"more than {PolicyDocuments.MaxNodes} YAML nodes in one file");
        }
    }

    private void Deeper(ParsingEvent node, int depth)
    {
        if (depth >= PolicyDocuments.MaxDepth)
        {
            throw new PolicyYamlException(_document, Line(node), $"nested more than {PolicyDocuments.MaxDepth} lists or maps deep; a policy needs fewer than 10");
        }
    }

    private void Wider(int items, ParsingEvent collection)
    {
        if (items >= PolicyDocuments.MaxCollectionItems)
        {
            throw new PolicyYamlException(_document, Line(_parser.Current!), $"the list or map that starts on line {Line(collection)} has more than {PolicyDocuments.MaxCollectionItems} items");
        }
    }

    /// <summary>Anchors and aliases are refused outright: a policy needs none, and aliases are how a few lines become millions of nodes.</summary>
    private void Plain(ParsingEvent node)
    {
        switch (node)
        {
            case AnchorAlias alias:
                throw new PolicyYamlException(_document, Line(node), $"the YAML alias *{alias.Value} is refused: policy files may not use anchors and aliases (a few lines of them can expand into millions of nodes); write the value out");
            case NodeEvent { Anchor.IsEmpty: false } anchored:
                throw new PolicyYamlException(_document, Line(node), $"the YAML anchor &{anchored.Anchor} is refused: policy files may not use anchors and aliases (a few lines of them can expand into millions of nodes); write the value out");
            case Scalar { Value.Length: > PolicyDocuments.MaxScalarLength } scalar:
                throw new PolicyYamlException(_document, Line(node), $"a value of {scalar.Value.Length} characters; a policy file's values have at most {PolicyDocuments.MaxScalarLength}");
            default:
                return;
        }
    }

    /// <summary>A double-quoted "\ud800" is a lone surrogate: no text, and nothing JSON can carry.</summary>
    private void Utf16(ParsingEvent node, string value)
    {
        var span = value.AsSpan();
        for (var i = span.IndexOfAnyInRange('\uD800', '\uDFFF'); i >= 0 && i < span.Length; i++)
        {
            if (!char.IsSurrogate(span[i]))
            {
                continue;
            }

            if (char.IsHighSurrogate(span[i]) && i + 1 < span.Length && char.IsLowSurrogate(span[i + 1]))
            {
                i++;
                continue;
            }

            throw new PolicyYamlException(_document, Line(node), "a value holds an unpaired UTF-16 surrogate (an escape such as \\ud800); that is not text");
        }
    }

    /// <summary>YAML 1.2 core schema for plain scalars; quoted scalars are always strings.</summary>
    private void Write(Scalar scalar)
    {
        var value = scalar.Value;
        Utf16(scalar, value);
        if (_json is null)
        {
            return;
        }

        if (scalar.Style is not ScalarStyle.Plain)
        {
            _json.WriteStringValue(value);
        }
        else
        {
            WritePlain(_json, value);
        }
    }

    /// <summary>A plain scalar as JSON, by the YAML 1.2 core schema: null, true, false, a number, or a string (also used by <see cref="PlainYaml"/>).</summary>
    internal static void WritePlain(Utf8JsonWriter json, ReadOnlySpan<char> value)
    {
        if (value is "" or "~" or "null" or "Null" or "NULL")
        {
            json.WriteNullValue();
        }
        else if (value is "true" or "True" or "TRUE")
        {
            json.WriteBooleanValue(true);
        }
        else if (value is "false" or "False" or "FALSE")
        {
            json.WriteBooleanValue(false);
        }
        else if (!MayBeNumber(value))
        {
            json.WriteStringValue(value);
        }
        else if (IntegerPattern().IsMatch(value) && long.TryParse(value, NumberStyles.AllowLeadingSign, CultureInfo.InvariantCulture, out var integer))
        {
            json.WriteNumberValue(integer);
        }
        else if (FloatPattern().IsMatch(value) && double.TryParse(value, NumberStyles.Float, CultureInfo.InvariantCulture, out var real) && double.IsFinite(real))
        {
            json.WriteNumberValue(real);
        }
        else
        {
            json.WriteStringValue(value); // "1e999" too: no JSON number, and no field of ours wants one
        }
    }

    /// <summary>The cheap test first: most values (names, CIDRs, interface names) fail it or the first pattern.</summary>
    /// <remarks>Both number patterns only match text made of these characters: a CIDR (its '/') is a string without running either.</remarks>
    private static bool MayBeNumber(ReadOnlySpan<char> value) =>
        value[0] is (>= '0' and <= '9') or '-' or '+' or '.' && !value.ContainsAnyExcept(NumberCharacters);

    private static readonly SearchValues<char> NumberCharacters = SearchValues.Create("0123456789+-.eE");

    private static int Line(ParsingEvent node) => (int)Math.Min(node.Start.Line, int.MaxValue);

    private static string Describe(ParsingEvent node) => node switch
    {
        SequenceStart => "list",
        Scalar => "plain value",
        _ => "node",
    };

    [GeneratedRegex(@"^[-+]?[0-9]+$", RegexOptions.CultureInvariant)]
    private static partial Regex IntegerPattern();

    [GeneratedRegex(@"^[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?$", RegexOptions.CultureInvariant)]
    private static partial Regex FloatPattern();
}
