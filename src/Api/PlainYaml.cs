using System.Buffers;
using System.Text.Json;

namespace TsCgnat.Api;

/// <summary>
/// A fast reader for the plain YAML that policy files are written in (issue 11: 10,000 entries in milliseconds, where
/// YamlDotNet's parser alone took 22 ms under NativeAOT). It reads only a strict subset and says so the moment it
/// meets anything else, and <see cref="PolicyYaml"/> then reads the whole text with YamlDotNet as before. So this
/// reader never decides what a construct outside the subset means: for the subset, both readers give the same
/// documents, JSON, lines and keys (tests/Api.Tests/PlainYamlTests.cs compares them on every test text, generated
/// policies and the fuzzer's inputs; tests/Fuzz has the same comparison as a target).
/// </summary>
/// <remarks>
/// The subset: lines of printable ASCII ending in LF; indentation by spaces; block mappings whose keys are plain
/// names (letters, digits, <c>_ . - /</c>); block sequences, also at their key's indentation and with a compact
/// mapping after the dash; values that are plain scalars on one line, single-quoted or double-quoted scalars with no
/// escape on one line, <c>[]</c>, <c>{}</c>, or a one-line flow list of plain names; full-line and trailing comments;
/// <c>---</c> between documents. Everything else (tabs, CR, non-ASCII text, anchors, aliases, tags, block
/// scalars, multi-line scalars, escapes, directives, <c>...</c>, complex keys, duplicate keys, any limit of
/// <see cref="PolicyDocuments"/> reached) is left to YamlDotNet, which reads it or names the problem.
/// </remarks>
internal sealed class PlainYaml
{
    private static readonly SearchValues<char> PrintableAsciiAndLf =
        SearchValues.Create("\n" + string.Concat(Enumerable.Range(' ', '~' - ' ' + 1).Select(c => (char)c)));

    private readonly string _text;
    private readonly List<(int Start, int Indent, int End)> _lines = [];
    private readonly Utf8JsonWriter _json;
    private readonly List<List<string>> _keys = []; // per depth, reused
    private int _line;
    private int _nodes;

    private PlainYaml(string text, Utf8JsonWriter json)
    {
        _text = text;
        _json = json;
    }

    /// <summary>Thrown inside the reader when the text leaves the subset; never escapes <see cref="TryRead"/>.</summary>
    private sealed class OutsideSubset : Exception;

    /// <summary>
    /// The documents of <paramref name="text"/> as <see cref="PolicyYaml.Read"/> gives them (empty explicit documents
    /// counted and skipped), or null when the text is not in the subset.
    /// </summary>
    public static List<PolicyYaml.Document>? TryRead(string text)
    {
        var buffer = new ArrayBufferWriter<byte>(Math.Min(text.Length + 256, 1 << 20));
        using var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { SkipValidation = true });
        var reader = new PlainYaml(text, json);
        try
        {
            return reader.Documents(buffer);
        }
        catch (OutsideSubset)
        {
            return null;
        }
    }

    private List<PolicyYaml.Document> Documents(ArrayBufferWriter<byte> buffer)
    {
        SplitLines();
        var documents = new List<PolicyYaml.Document>();
        var number = 0;
        var explicitStart = false;
        int Another() => ++number <= PolicyDocuments.MaxDocuments ? number : throw new OutsideSubset();
        while (_line < _lines.Count || explicitStart)
        {
            // A document is explicit after "---" (counted even when empty, as YamlDotNet counts it) or implicit
            // when content comes before any "---".
            SkipBlank();
            if (_line < _lines.Count && IsDocumentStart(_line))
            {
                if (explicitStart)
                {
                    Another(); // "---" right after "---": an empty document
                }

                explicitStart = true;
                _line++;
                continue;
            }

            if (_line >= _lines.Count)
            {
                if (explicitStart)
                {
                    Another(); // a trailing "---": one more, empty, document
                }

                break;
            }

            Another();
            explicitStart = false;
            var root = Content(_line);
            if (_lines[_line].Indent != 0 || root[0] == '-')
            {
                throw new OutsideSubset(); // a root that is a list or an indented mapping: YamlDotNet says what it is
            }

            buffer.ResetWrittenCount();
            _json.Reset(buffer);
            var rootLine = _line + 1;
            var keys = Mapping(0, depth: 0);
            _json.Flush();
            if (_line < _lines.Count && !IsDocumentStart(_line))
            {
                throw new OutsideSubset(); // something after the root mapping that is no "---"
            }

            documents.Add(new PolicyYaml.Document(number, rootLine, buffer.WrittenSpan.ToArray(), null, keys!));
        }

        return documents;
    }

    /// <summary>
    /// Lines of printable ASCII ending in LF. Blank and comment-only lines are kept with Indent -1, so a line's index
    /// is its number less one; readers skip them (<see cref="SkipBlank"/>).
    /// </summary>
    private void SplitLines()
    {
        var text = _text;
        if (text.AsSpan().ContainsAnyExcept(PrintableAsciiAndLf))
        {
            throw new OutsideSubset();
        }

        var start = 0;
        while (start < text.Length)
        {
            var end = text.IndexOf('\n', start);
            if (end < 0)
            {
                end = text.Length;
            }

            var indent = 0;
            while (start + indent < end && text[start + indent] == ' ')
            {
                indent++;
            }

            // Drop blank and comment-only lines; keep the line number in Start for Content and Line.
            if (start + indent < end && text[start + indent] != '#')
            {
                var last = end;
                while (last > start + indent && text[last - 1] == ' ')
                {
                    last--;
                }

                _lines.Add((start, indent, last));
            }
            else
            {
                _lines.Add((start, -1, start));
            }

            start = end + 1;
        }
    }

    private void SkipBlank()
    {
        while (_line < _lines.Count && _lines[_line].Indent < 0)
        {
            _line++;
        }
    }

    /// <summary>The next line with content at or after <see cref="_line"/> (blank lines skipped), or -1.</summary>
    private int Next()
    {
        SkipBlank();
        return _line < _lines.Count ? _line : -1;
    }

    private ReadOnlySpan<char> Content(int line)
    {
        var (start, indent, end) = _lines[line];
        return _text.AsSpan(start + indent, end - start - indent);
    }

    private bool IsDocumentStart(int line)
    {
        if (_lines[line].Indent != 0)
        {
            return false;
        }

        var content = Content(line);
        if (content.StartsWith("...", StringComparison.Ordinal) || content[0] == '%')
        {
            throw new OutsideSubset(); // document end markers and directives
        }

        if (!content.StartsWith("---", StringComparison.Ordinal))
        {
            return false;
        }

        var rest = content[3..];
        return rest.IsEmpty || (rest[0] == ' ' && rest.TrimStart(' ')[0] == '#')
            ? true
            : throw new OutsideSubset(); // "--- value", "----"
    }

    private void Count()
    {
        if (++_nodes > PolicyDocuments.MaxNodes)
        {
            throw new OutsideSubset();
        }
    }

    private static void Deeper(int depth)
    {
        if (depth >= PolicyDocuments.MaxDepth)
        {
            throw new OutsideSubset();
        }
    }

    /// <summary>A block mapping whose keys sit at column <paramref name="indent"/>; the current line holds its first key.</summary>
    /// <param name="firstKeyAt">Where the first key starts when it follows a "- " on the line (a compact mapping).</param>
    private HashSet<string>? Mapping(int indent, int depth, int firstKeyAt = -1)
    {
        Deeper(depth);
        Count();
        _json.WriteStartObject();
        // A mapping has a few keys: a list searched in place finds a duplicate without a set per mapping (10,000
        // entries are 10,000 mappings). The root's keys are returned as a set, for PolicyDocuments.
        while (_keys.Count <= depth)
        {
            _keys.Add([]);
        }

        var keys = _keys[depth];
        keys.Clear();
        HashSet<string>? many = null;
        var first = true;
        while (true)
        {
            ReadOnlySpan<char> entry;
            if (first && firstKeyAt >= 0)
            {
                entry = _text.AsSpan(firstKeyAt, _lines[_line].End - firstKeyAt);
            }
            else
            {
                var line = Next();
                if (line < 0 || _lines[line].Indent < indent || IsDocumentStart(line))
                {
                    break;
                }

                if (_lines[line].Indent > indent)
                {
                    throw new OutsideSubset(); // more indented than its siblings: a continuation or an error
                }

                entry = Content(line);
                if (entry[0] == '-' && (entry.Length == 1 || entry[1] == ' '))
                {
                    break; // a sequence entry at the mapping's column ends a mapping that is a sequence item's
                }
            }

            first = false;
            if (keys.Count >= PolicyDocuments.MaxCollectionItems)
            {
                throw new OutsideSubset();
            }

            var colon = KeyEnd(entry);
            var key = Key(entry[..colon]);
            // A set once the mapping has many keys (a label map), so that finding a duplicate stays linear.
            if (keys.Count < 16 ? keys.Contains(key, StringComparer.Ordinal) : (many ??= new HashSet<string>(keys, StringComparer.Ordinal)).Contains(key))
            {
                throw new OutsideSubset(); // a duplicate key: YamlDotNet's reading names it and its line
            }

            keys.Add(key);
            many?.Add(key);

            Count();
            _json.WritePropertyName(key);
            var rest = entry[(colon + 1)..].TrimStart(' ');
            Value(rest, indent, depth, sequenceMayShareColumn: true);
        }

        _json.WriteEndObject();
        return depth == 0 ? new HashSet<string>(keys, StringComparer.Ordinal) : null;
    }

    /// <summary>The keys policies use, so that 10,000 entries do not make 10,000 copies of "cidr".</summary>
    private static readonly string[] KnownKeys =
    [
        "cidr", "interfaces", "description", "apiVersion", "kind", "metadata", "name", "spec", "allowedSources",
        "routedSubnets", "nodeSelector", "matchLabels", "matchExpressions", "key", "operator", "values", "allowBroadRanges",
        "labels", "annotations", "generation",
    ];

    private static string Key(ReadOnlySpan<char> text)
    {
        foreach (var known in KnownKeys)
        {
            if (text.SequenceEqual(known))
            {
                return known;
            }
        }

        return text.ToString();
    }

    /// <summary>A block sequence whose dashes sit at column <paramref name="indent"/>; the current line holds its first entry.</summary>
    private void Sequence(int indent, int depth)
    {
        Deeper(depth);
        Count();
        _json.WriteStartArray();
        var items = 0;
        while (true)
        {
            var line = Next();
            if (line < 0 || _lines[line].Indent < indent || IsDocumentStart(line))
            {
                break;
            }

            var entry = Content(line);
            if (_lines[line].Indent > indent || entry[0] != '-' || (entry.Length > 1 && entry[1] != ' '))
            {
                if (_lines[line].Indent == indent)
                {
                    break; // a key at the column of a sequence that is a mapping's value ends it
                }

                throw new OutsideSubset();
            }

            if (++items > PolicyDocuments.MaxCollectionItems)
            {
                throw new OutsideSubset();
            }

            var rest = entry[1..];
            var spaces = rest.Length - rest.TrimStart(' ').Length;
            rest = rest.TrimStart(' ');
            if (!rest.IsEmpty && rest[0] != '#' && IsKeyed(rest))
            {
                // "- key: value": a mapping whose keys are at the column after the dash and its spaces.
                var column = indent + 1 + spaces;
                Mapping(column, depth + 1, _lines[line].Start + column);
                continue;
            }

            Value(rest, indent, depth, sequenceMayShareColumn: false);
        }

        _json.WriteEndArray();
    }

    /// <summary>
    /// The value after "key:" or "- " on the current line (<paramref name="rest"/>, possibly empty or a comment), or in
    /// the block below it. Leaves <see cref="_line"/> on the next line to read.
    /// </summary>
    private void Value(ReadOnlySpan<char> rest, int indent, int depth, bool sequenceMayShareColumn)
    {
        var here = _line;
        if (!rest.IsEmpty && rest[0] != '#')
        {
            Inline(rest, depth + 1);
            _line = here + 1;
            var next = Next();
            if (next >= 0 && _lines[next].Indent > indent && !IsDocumentStart(next))
            {
                throw new OutsideSubset(); // a multi-line plain scalar, or an error
            }

            return;
        }

        _line = here + 1;
        var below = Next();
        if (below >= 0 && !IsDocumentStart(below))
        {
            var column = _lines[below].Indent;
            var content = Content(below);
            var dash = content[0] == '-' && (content.Length == 1 || content[1] == ' ');
            if (column > indent)
            {
                if (dash)
                {
                    Sequence(column, depth + 1);
                }
                else
                {
                    Mapping(column, depth + 1);
                }

                return;
            }

            if (column == indent && dash && sequenceMayShareColumn)
            {
                Sequence(column, depth + 1);
                return;
            }
        }

        Count();
        _json.WriteNullValue(); // "key:" with nothing below: YAML's empty value
    }

    /// <summary>A value written on the line: a scalar, <c>[]</c>, <c>{}</c> or a flow list of plain names.</summary>
    private void Inline(ReadOnlySpan<char> rest, int depth)
    {
        Count();
        if (rest[0] is '[' or '{')
        {
            Deeper(depth);
        }

        switch (rest[0])
        {
            case '\'':
            case '"':
                var close = rest[1..].IndexOf(rest[0]);
                if (close < 0)
                {
                    throw new OutsideSubset();
                }

                var quoted = rest.Slice(1, close);
                if ((rest[0] == '"' && quoted.Contains('\\')) || (rest[0] == '\'' && rest.Length > close + 2 && rest[close + 2] == '\''))
                {
                    throw new OutsideSubset(); // escapes, and '' inside single quotes
                }

                Trailer(rest[(close + 2)..]);
                if (quoted.Length > PolicyDocuments.MaxScalarLength)
                {
                    throw new OutsideSubset();
                }

                Scalar(quoted, plain: false);
                return;
            case '[':
                FlowList(rest);
                return;
            case '{':
                if (!rest.StartsWith("{}", StringComparison.Ordinal))
                {
                    throw new OutsideSubset();
                }

                Trailer(rest[2..]);
                _json.WriteStartObject();
                _json.WriteEndObject();
                return;
            default:
                Scalar(PlainScalar(rest), plain: true);
                return;
        }
    }

    /// <summary><c>[a, b]</c> on one line, of plain names only.</summary>
    private void FlowList(ReadOnlySpan<char> rest)
    {
        var close = rest.IndexOf(']');
        if (close < 0)
        {
            throw new OutsideSubset();
        }

        Trailer(rest[(close + 1)..]);
        var inside = rest[1..close];
        _json.WriteStartArray();
        if (!inside.Trim(' ').IsEmpty)
        {
            var items = 0;
            foreach (var range in inside.Split(','))
            {
                var item = inside[range].Trim(' ');
                if (item.IsEmpty || !IsName(item) || ++items > PolicyDocuments.MaxCollectionItems)
                {
                    throw new OutsideSubset();
                }

                Count();
                Scalar(item, plain: true);
            }
        }

        _json.WriteEndArray();
    }

    /// <summary>What may follow a quoted scalar or a flow collection on its line: spaces, then nothing or a comment.</summary>
    private static void Trailer(ReadOnlySpan<char> after)
    {
        if (!after.IsEmpty && (after[0] != ' ' || after.TrimStart(' ')[0] != '#'))
        {
            throw new OutsideSubset(); // "'a': b" (a quoted key), "[a] x", "'a'b"
        }
    }

    /// <summary>A plain scalar up to a comment, with the block-context rules YAML gives it; anything doubtful leaves the subset.</summary>
    private static ReadOnlySpan<char> PlainScalar(ReadOnlySpan<char> rest)
    {
        var comment = rest.IndexOf(" #", StringComparison.Ordinal);
        var value = (comment < 0 ? rest : rest[..comment]).TrimEnd(' ');
        var first = value[0];
        if (first is ',' or '[' or ']' or '{' or '}' or '#' or '&' or '*' or '!' or '|' or '>' or '\'' or '"' or '%' or '@' or '`' or '?' or ':'
            || (first == '-' && (value.Length == 1 || value[1] == ' ')))
        {
            throw new OutsideSubset(); // indicators: anchors, aliases, tags, block scalars, reserved characters
        }

        if (value.Contains(": ", StringComparison.Ordinal) || value[^1] == ':' || value.Length > PolicyDocuments.MaxScalarLength)
        {
            throw new OutsideSubset(); // "a: b: c" is no scalar
        }

        return value;
    }

    /// <summary>Where "key:" ends in a mapping entry: the key must be a plain name followed by ":" and a space or the line's end.</summary>
    private static int KeyEnd(ReadOnlySpan<char> entry)
    {
        var colon = entry.IndexOf(':');
        if (colon <= 0 || colon > PolicyDocuments.MaxScalarLength || !IsName(entry[..colon]) || (colon + 1 < entry.Length && entry[colon + 1] != ' '))
        {
            throw new OutsideSubset();
        }

        return colon;
    }

    /// <summary>Whether a sequence entry's text starts a compact mapping ("- key: value").</summary>
    private static bool IsKeyed(ReadOnlySpan<char> rest)
    {
        var colon = rest.IndexOf(':');
        if (colon <= 0 || (colon + 1 < rest.Length && rest[colon + 1] != ' '))
        {
            return false;
        }

        if (rest[0] is '\'' or '"' or '[' or '{' or '-' or '?')
        {
            throw new OutsideSubset(); // a quoted or complex key, or "- - x"
        }

        return IsName(rest[..colon]) ? true : throw new OutsideSubset();
    }

    /// <summary>Letters, digits and <c>_ . - /</c>, starting with a letter or digit: every key of ours and every label key.</summary>
    private static bool IsName(ReadOnlySpan<char> text)
    {
        if (text.IsEmpty || !char.IsAsciiLetterOrDigit(text[0]))
        {
            return false;
        }

        foreach (var c in text)
        {
            if (!char.IsAsciiLetterOrDigit(c) && c is not ('_' or '.' or '-' or '/'))
            {
                return false;
            }
        }

        return true;
    }

    private void Scalar(ReadOnlySpan<char> value, bool plain)
    {
        if (plain)
        {
            PolicyYaml.WritePlain(_json, value);
        }
        else
        {
            _json.WriteStringValue(value);
        }
    }
}
