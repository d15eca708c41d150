using System.Globalization;
using System.Text.RegularExpressions;

namespace TsCgnat.Operator;

/// <summary>
/// Durations as Kubernetes tools write them (<c>300s</c>, <c>5m</c>, <c>1h30m</c>, <c>500ms</c>): Go's
/// <c>time.ParseDuration</c> for non-negative values. Hand-written because .NET's TimeSpan formats are
/// <c>00:05:00</c>, which nobody types in a Helm value.
/// </summary>
public static partial class Durations
{
    public static bool TryParse(string? text, out TimeSpan duration)
    {
        duration = TimeSpan.Zero;
        if (string.IsNullOrEmpty(text) || !Whole().IsMatch(text))
        {
            return false;
        }

        foreach (Match part in Part().Matches(text))
        {
            var value = double.Parse(part.Groups["value"].Value, CultureInfo.InvariantCulture);
            duration += part.Groups["unit"].Value switch
            {
                "ms" => TimeSpan.FromMilliseconds(value),
                "s" => TimeSpan.FromSeconds(value),
                "m" => TimeSpan.FromMinutes(value),
                _ => TimeSpan.FromHours(value),
            };
        }

        return true;
    }

    [GeneratedRegex(@"^(\d+(\.\d+)?(ms|s|m|h))+\z", RegexOptions.CultureInvariant)]
    private static partial Regex Whole();

    [GeneratedRegex(@"(?<value>\d+(\.\d+)?)(?<unit>ms|s|m|h)", RegexOptions.CultureInvariant)]
    private static partial Regex Part();
}
