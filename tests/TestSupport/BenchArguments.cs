using System.Globalization;

namespace TsCgnat.TestSupport;

/// <summary>
/// The command line of a benchmark under bench/: <c>--name value</c> pairs and bare flags, each read once through
/// a handler the benchmark registers, with one usage text and one error path for all of them. Every benchmark used
/// to carry its own copy of this loop.
/// </summary>
public sealed class BenchArguments(string program, string usage)
{
    private readonly Dictionary<string, Action<Func<string>>> _handlers = new(StringComparer.Ordinal);

    /// <summary>An option with a value: <paramref name="read"/> gets the raw text and throws <see cref="FormatException"/> when it is wrong.</summary>
    public BenchArguments Option(string name, Action<string> read)
    {
        _handlers[name] = value => read(value());
        return this;
    }

    /// <summary>A whole number between <paramref name="min"/> and <paramref name="max"/>.</summary>
    public BenchArguments Number(string name, int min, int max, Action<int> read) => Option(name, text =>
    {
        var value = int.TryParse(text, CultureInfo.InvariantCulture, out var n) ? n : throw new FormatException($"{name} needs a whole number, not '{text}'");
        read(value >= min && value <= max ? value : throw new FormatException($"{name} must be between {min} and {max}"));
    });

    /// <summary>A comma-separated list, each item mapped by <paramref name="item"/> (which throws <see cref="FormatException"/> on a bad one); duplicates dropped.</summary>
    public BenchArguments List<T>(string name, Func<string, T> item, Action<List<T>> read) => Option(name, text =>
    {
        var items = text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries).Select(item).Distinct().ToList();
        read(items.Count > 0 ? items : throw new FormatException($"{name}: give at least one value"));
    });

    /// <summary>A flag without a value.</summary>
    public BenchArguments Flag(string name, Action read)
    {
        _handlers[name] = _ => read();
        return this;
    }

    /// <summary>Reads <paramref name="args"/>; false (after printing the problem and the usage to <paramref name="error"/>) on a bad line or --help.</summary>
    public bool TryParse(IReadOnlyList<string> args, TextWriter error)
    {
        ArgumentNullException.ThrowIfNull(args);
        ArgumentNullException.ThrowIfNull(error);
        try
        {
            for (var i = 0; i < args.Count; i++)
            {
                var name = args[i];
                if (name is "-h" or "--help")
                {
                    error.WriteLine(usage);
                    return false;
                }

                if (!_handlers.TryGetValue(name, out var handle))
                {
                    throw new FormatException($"unknown argument '{name}'");
                }

                handle(() => i + 1 < args.Count ? args[++i] : throw new FormatException($"{name} needs a value"));
            }

            return true;
        }
        catch (FormatException e)
        {
            error.WriteLine($"{program}: {e.Message}");
            error.WriteLine(usage);
            return false;
        }
    }
}
