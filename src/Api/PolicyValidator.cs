using System.Net;
using System.Text.RegularExpressions;
using k8s.Models;

namespace TsCgnat.Api;

/// <summary>
/// The rules of design section 3, enforced in code. The CRD schema enforces the same rules in the API
/// server; the agent still checks, because in host mode it reads files and must not trust its input.
/// </summary>
public static partial class PolicyValidator
{
    public const int MaxEntries = 1024;
    public const int MaxInterfacesPerSource = 16;
    public const int MaxDescriptionLength = 256;
    public const int MaxInterfaceNameLength = 15; // IFNAMSIZ - 1

    public static IReadOnlyList<FieldError> Validate(CgnatAllowPolicy policy, out ValidatedPolicy? valid)
    {
        var errors = new List<FieldError>();
        if (policy.ApiVersion != ApiGroup.ApiVersion)
        {
            errors.Add(new("apiVersion", $"\"{policy.ApiVersion}\" is not {ApiGroup.ApiVersion}"));
        }

        if (policy.Kind != CgnatAllowPolicy.KindName)
        {
            errors.Add(new("kind", $"\"{policy.Kind}\" is not {CgnatAllowPolicy.KindName}"));
        }

        var name = policy.Metadata?.Name;
        if (string.IsNullOrEmpty(name))
        {
            errors.Add(new("metadata.name", "is required"));
        }
        else if (name.Length > 253 || !DnsSubdomain().IsMatch(name))
        {
            errors.Add(new("metadata.name", $"\"{name}\" is not a valid name (lowercase letters, digits, '-' and '.', at most 253 characters, starting and ending with a letter or digit)"));
        }

        if (!string.IsNullOrEmpty(policy.Metadata?.NamespaceProperty))
        {
            errors.Add(new("metadata.namespace", $"\"{policy.Metadata.NamespaceProperty}\": {CgnatAllowPolicy.KindName} is cluster-scoped; remove metadata.namespace"));
        }

        var spec = policy.Spec;
        if (spec is null)
        {
            errors.Add(new("spec", "is required"));
            valid = null;
            return errors;
        }

        ValidateSelector(spec.NodeSelector, "spec.nodeSelector", errors);
        var allowBroad = spec.AllowBroadRanges ?? false;
        var sources = ValidateSources(spec.AllowedSources, allowBroad, errors);
        var subnets = ValidateSubnets(spec.RoutedSubnets, allowBroad, errors);

        valid = errors.Count == 0
            ? new ValidatedPolicy(name!, policy.Metadata?.Generation ?? 0, spec.NodeSelector, sources, subnets)
            : null;
        return errors;
    }

    private static List<SourceExemption> ValidateSources(IList<AllowedSource>? list, bool allowBroad, List<FieldError> errors)
    {
        var result = new List<SourceExemption>(list?.Count ?? 0);
        var seen = new Dictionary<string, int>(list?.Count ?? 0, StringComparer.Ordinal);
        foreach (var (item, at) in Entries(list, "spec.allowedSources", errors))
        {
            var cidrOk = CheckCidr(item.Cidr, allowBroad, at, seen, errors, out var prefix);
            var interfaces = ValidateInterfaces(item.Interfaces, at, errors);
            CheckDescription(item.Description, at, errors);
            if (cidrOk)
            {
                result.Add(new SourceExemption(prefix, interfaces));
            }
        }

        return result;
    }

    private static List<IPNetwork> ValidateSubnets(IList<RoutedSubnet>? list, bool allowBroad, List<FieldError> errors)
    {
        var result = new List<IPNetwork>(list?.Count ?? 0);
        var seen = new Dictionary<string, int>(list?.Count ?? 0, StringComparer.Ordinal);
        foreach (var (item, at) in Entries(list, "spec.routedSubnets", errors))
        {
            if (CheckCidr(item.Cidr, allowBroad, at, seen, errors, out var prefix))
            {
                result.Add(prefix);
            }

            CheckDescription(item.Description, at, errors);
        }

        return result;
    }

    /// <summary>
    /// Where an entry is ("spec.allowedSources[3]"), written out only when an error names it: 10,000 valid entries
    /// would otherwise build 40,000 path strings nobody reads (issue 11).
    /// </summary>
    private readonly record struct EntryPath(string List, int Index)
    {
        public override string ToString() => $"{List}[{Index}]";

        public string Field(string name) => $"{List}[{Index}].{name}";
    }

    /// <summary>The checks every list shares (its length, null entries), then each entry that is there, with where it is.</summary>
    private static IEnumerable<(T Item, EntryPath At)> Entries<T>(IList<T>? list, string path, List<FieldError> errors)
        where T : class
    {
        if (list is null)
        {
            yield break;
        }

        CheckCount(list.Count, path, errors);
        for (var i = 0; i < list.Count; i++)
        {
            if (list[i] is { } item)
            {
                yield return (item, new EntryPath(path, i));
            }
            else
            {
                errors.Add(new(new EntryPath(path, i).ToString(), "is null; each entry needs a cidr"));
            }
        }
    }

    private static void CheckCount(int count, string path, List<FieldError> errors)
    {
        if (count > MaxEntries)
        {
            errors.Add(new(path, $"has {count} entries; at most {MaxEntries} are allowed (one lookup per packet is cheap, but split very large lists across policies on purpose, not by accident)"));
        }
    }

    private static bool CheckCidr(
        string? cidr, bool allowBroad, EntryPath at, Dictionary<string, int> seen, List<FieldError> errors, out IPNetwork prefix)
    {
        var problem = CgnatPrefix.Check(cidr, allowBroad, out prefix);
        if (problem is not null)
        {
            errors.Add(new(at.Field("cidr"), problem));
            return false;
        }

        if (!seen.TryAdd(cidr!, at.Index))
        {
            errors.Add(new(at.Field("cidr"), $"Duplicate value \"{cidr}\" (also at {at.List}[{seen[cidr!]}]); list each cidr once"));
            return false;
        }

        return true;
    }

    private static IReadOnlyList<string> ValidateInterfaces(IList<string>? names, EntryPath at, List<FieldError> errors)
    {
        if (names is null || names.Count == 0)
        {
            return Array.Empty<string>(); // shared: most entries name no interface
        }

        var result = new List<string>(names.Count);
        if (names.Count > MaxInterfacesPerSource)
        {
            errors.Add(new(at.Field("interfaces"), $"has {names.Count} entries; at most {MaxInterfacesPerSource} are allowed"));
        }

        for (var i = 0; i < names.Count; i++)
        {
            var name = names[i];
            var problem = CheckInterfaceName(name);
            if (problem is not null)
            {
                errors.Add(new($"{at.Field("interfaces")}[{i}]", problem));
            }
            else if (result.Contains(name, StringComparer.Ordinal))
            {
                errors.Add(new($"{at.Field("interfaces")}[{i}]", $"Duplicate value \"{name}\"; list each interface once"));
            }
            else
            {
                result.Add(name);
            }
        }

        return result;
    }

    /// <summary>Null when <paramref name="name"/> is a Linux interface name we can put in a set.</summary>
    /// <remarks>
    /// The kernel accepts almost any byte in a name; we accept the portable subset that real
    /// interfaces (eth0, ens5, bond0.100, cni-podman0, veth_ab) use, so a name can never carry shell
    /// or iptables syntax, and we refuse iptables' trailing-'+' wildcard, which ipset would take literally.
    /// </remarks>
    public static string? CheckInterfaceName(string? name)
    {
        if (string.IsNullOrEmpty(name))
        {
            return "is empty; give an interface name such as eth0";
        }

        if (name.EndsWith('+'))
        {
            return $"\"{name}\": wildcards are not supported; list each interface by its full name";
        }

        if (name.Length > MaxInterfaceNameLength)
        {
            return $"\"{name}\" is {name.Length} characters long; Linux interface names have at most {MaxInterfaceNameLength}";
        }

        if (name is "." or ".." || !InterfaceName().IsMatch(name))
        {
            return $"\"{name}\" is not a valid Linux interface name (letters, digits, '.', '_' and '-' only, not \".\" or \"..\")";
        }

        return null;
    }

    private static void CheckDescription(string? description, EntryPath at, List<FieldError> errors)
    {
        if (description is { Length: > MaxDescriptionLength })
        {
            errors.Add(new(at.Field("description"), $"has {description.Length} characters; at most {MaxDescriptionLength} are allowed"));
        }
    }

    private static readonly HashSet<string> SelectorOperators = ["In", "NotIn", "Exists", "DoesNotExist"];

    private static void ValidateSelector(V1LabelSelector? selector, string path, List<FieldError> errors)
    {
        if (selector is null)
        {
            return;
        }

        foreach (var (key, value) in selector.MatchLabels ?? new Dictionary<string, string>())
        {
            CheckLabelKey(key, $"{path}.matchLabels", errors);
            CheckLabelValue(value, $"{path}.matchLabels[{key}]", errors);
        }

        var expressions = selector.MatchExpressions ?? [];
        for (var i = 0; i < expressions.Count; i++)
        {
            var e = expressions[i];
            var at = $"{path}.matchExpressions[{i}]";
            CheckLabelKey(e.Key, $"{at}.key", errors);
            if (!SelectorOperators.Contains(e.OperatorProperty ?? ""))
            {
                errors.Add(new($"{at}.operator", $"\"{e.OperatorProperty}\" is not one of In, NotIn, Exists, DoesNotExist"));
                continue;
            }

            var values = e.Values ?? [];
            if (e.OperatorProperty is "In" or "NotIn" && values.Count == 0)
            {
                errors.Add(new($"{at}.values", $"must be non-empty when operator is {e.OperatorProperty}"));
            }

            if (e.OperatorProperty is "Exists" or "DoesNotExist" && values.Count > 0)
            {
                errors.Add(new($"{at}.values", $"must be empty when operator is {e.OperatorProperty}"));
            }

            for (var j = 0; j < values.Count; j++)
            {
                CheckLabelValue(values[j], $"{at}.values[{j}]", errors);
            }
        }
    }

    private static void CheckLabelKey(string? key, string path, List<FieldError> errors)
    {
        var slash = key?.IndexOf('/', StringComparison.Ordinal) ?? -1;
        var prefix = slash >= 0 ? key![..slash] : null;
        var name = slash >= 0 ? key![(slash + 1)..] : key;
        var ok = !string.IsNullOrEmpty(name) && name.Length <= 63 && LabelName().IsMatch(name)
            && (prefix is null || (prefix.Length <= 253 && DnsSubdomain().IsMatch(prefix)));
        if (!ok)
        {
            errors.Add(new(path, $"\"{key}\" is not a valid label key ([prefix/]name, name at most 63 characters of alphanumerics, '-', '_' and '.')"));
        }
    }

    private static void CheckLabelValue(string? value, string path, List<FieldError> errors)
    {
        if (!string.IsNullOrEmpty(value) && (value.Length > 63 || !LabelName().IsMatch(value)))
        {
            errors.Add(new(path, $"\"{value}\" is not a valid label value (at most 63 characters of alphanumerics, '-', '_' and '.', starting and ending with an alphanumeric)"));
        }
    }

    // \z, not $: in .NET '$' also matches before a final "\n", which would let "eth0\n" into a set member.
    [GeneratedRegex(@"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*\z", RegexOptions.CultureInvariant)]
    private static partial Regex DnsSubdomain();

    [GeneratedRegex(@"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?\z", RegexOptions.CultureInvariant)]
    private static partial Regex LabelName();

    [GeneratedRegex(@"^[A-Za-z0-9_.\-]+\z", RegexOptions.CultureInvariant)]
    private static partial Regex InterfaceName();
}
