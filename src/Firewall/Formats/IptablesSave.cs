namespace TsCgnat.Firewall.Formats;

/// <summary>One table as <c>iptables-save</c> prints it: chains in order, each with its rule bodies.</summary>
/// <remarks>A rule body is the text after <c>-A CHAIN </c>, exactly as printed, so it can be compared
/// with our rendering and passed back to <c>-D CHAIN</c>.</remarks>
public sealed class SavedTable
{
    public SavedTable(string name) => Name = name;

    public string Name { get; }

    public Dictionary<string, List<string>> Chains { get; } = new(StringComparer.Ordinal);

    public IReadOnlyList<string> Rules(string chain) => Chains.TryGetValue(chain, out var rules) ? rules : [];

    public bool HasChain(string chain) => Chains.ContainsKey(chain);
}

/// <summary>The output of one <c>iptables-save</c> run, by table name.</summary>
public sealed class SavedRuleset
{
    public static readonly SavedRuleset Empty = new();

    public Dictionary<string, SavedTable> Tables { get; } = new(StringComparer.Ordinal);

    public SavedTable Table(string name) => Tables.TryGetValue(name, out var table) ? table : new SavedTable(name);

    public int RuleCount => Tables.Values.Sum(t => t.Chains.Values.Sum(c => c.Count));

    /// <summary>Parses <c>iptables-save</c> output (legacy or nft; without counters).</summary>
    public static SavedRuleset Parse(string text)
    {
        var result = new SavedRuleset();
        SavedTable? table = null;
        var lineNumber = 0;
        foreach (var raw in text.Split('\n'))
        {
            lineNumber++;
            var line = raw.TrimEnd('\r');
            if (line.Length == 0 || line[0] == '#')
            {
                continue;
            }

            switch (line[0])
            {
                case '*':
                    if (!result.Tables.TryGetValue(line[1..], out table))
                    {
                        table = new SavedTable(line[1..]);
                        result.Tables[table.Name] = table;
                    }

                    break;
                case ':':
                    var end = line.IndexOf(' ', StringComparison.Ordinal);
                    Require(table, lineNumber).Chains.TryAdd(end < 0 ? line[1..] : line[1..end], []);
                    break;
                case '-' when line.StartsWith("-A ", StringComparison.Ordinal):
                    var t = Require(table, lineNumber);
                    var space = line.IndexOf(' ', 3);
                    var chain = space < 0 ? line[3..] : line[3..space];
                    if (!t.Chains.TryGetValue(chain, out var rules))
                    {
                        t.Chains[chain] = rules = [];
                    }

                    rules.Add(space < 0 ? "" : line[(space + 1)..]);
                    break;
                case 'C' when line == "COMMIT":
                    table = null;
                    break;
                default:
                    throw new FormatException($"iptables-save line {lineNumber} not understood: {line}");
            }
        }

        return result;
    }

    private static SavedTable Require(SavedTable? table, int line) =>
        table ?? throw new FormatException($"iptables-save line {line} comes before any *table line");
}
