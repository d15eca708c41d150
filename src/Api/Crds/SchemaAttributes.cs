namespace TsCgnat.Api.Crds;

// The attributes below carry what the CRD needs beyond what the platform and KubernetesClient give:
// descriptions use System.ComponentModel.DescriptionAttribute, and group, version, kind and plural
// KubernetesClient's KubernetesEntityAttribute. The bounds are our own rather than DataAnnotations'
// because MaxLength and MinLength there are marked RequiresUnreferencedCode (their IsValid reflects
// over Count), which fails a NativeAOT build by merely being applied; and MaxItems apart from
// MaxLength says in the type which schema keyword a bound becomes.

/// <summary>The field must be present (the schema's <c>required</c>; list-map keys must be).</summary>
[AttributeUsage(AttributeTargets.Property, Inherited = false)]
public sealed class RequiredAttribute : Attribute;

/// <summary>At most this many characters (<c>maxLength</c>).</summary>
[AttributeUsage(AttributeTargets.Property, Inherited = false)]
public sealed class MaxLengthAttribute(int length) : Attribute
{
    public int Length { get; } = length;
}

/// <summary>At least this many characters (<c>minLength</c>).</summary>
[AttributeUsage(AttributeTargets.Property, Inherited = false)]
public sealed class MinLengthAttribute(int length) : Attribute
{
    public int Length { get; } = length;
}

/// <summary>At most this many list entries (<c>maxItems</c>); a bound the CEL cost estimate relies on.</summary>
[AttributeUsage(AttributeTargets.Property, Inherited = false)]
public sealed class MaxItemsAttribute(int count) : Attribute
{
    public int Count { get; } = count;
}

/// <summary>A regular expression the string must match (<c>pattern</c>), in the API server's dialect (RE2).</summary>
[AttributeUsage(AttributeTargets.Property, Inherited = false)]
public sealed class PatternAttribute(string pattern) : Attribute
{
    public string Pattern { get; } = pattern;
}

/// <summary>The kind is cluster-scoped; without this attribute a kind is namespaced.</summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
public sealed class ClusterScopedAttribute : Attribute;

/// <summary>Short names for <c>kubectl get</c> (<c>kubectl get cgap</c>).</summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
public sealed class ShortNamesAttribute(params string[] names) : Attribute
{
    public IReadOnlyList<string> Names { get; } = names;
}

/// <summary>Categories the kind belongs to (<c>kubectl get tscgnat</c> lists every kind in one).</summary>
[AttributeUsage(AttributeTargets.Class, Inherited = false)]
public sealed class CategoriesAttribute(params string[] categories) : Attribute
{
    public IReadOnlyList<string> Categories { get; } = categories;
}

/// <summary>
/// A column of <c>kubectl get</c>. Columns appear in the order the attributes are written (the C#
/// compiler keeps source order in metadata; the CRD drift test notices if that ever changed).
/// </summary>
/// <param name="type">OpenAPI type of the column: string, integer, number, boolean or date.</param>
[AttributeUsage(AttributeTargets.Class, AllowMultiple = true, Inherited = false)]
public sealed class PrinterColumnAttribute(string name, string type, string jsonPath) : Attribute
{
    public string Name { get; } = name;

    public string Type { get; } = type;

    public string JsonPath { get; } = jsonPath;

    public string? Description { get; set; }

    /// <summary>0 shows the column always, higher only with <c>-o wide</c>.</summary>
    public int Priority { get; set; }
}

/// <summary>
/// A CEL rule (<c>x-kubernetes-validations</c>) on the type or property it is written on; the API
/// server refuses an object for which it is false, with <paramref name="message"/>.
/// </summary>
[AttributeUsage(AttributeTargets.Class | AttributeTargets.Property, AllowMultiple = true, Inherited = false)]
public sealed class ValidationRuleAttribute(string rule, string message) : Attribute
{
    public string Rule { get; } = rule;

    public string Message { get; } = message;

    /// <summary>Where the API server reports a failure (e.g. <c>.allowedSources</c>), for a rule on a parent object.</summary>
    public string? FieldPath { get; set; }
}

/// <summary>
/// The list is a map keyed by <paramref name="keys"/> (<c>x-kubernetes-list-type: map</c>): the API
/// server refuses duplicate keys ("Duplicate value") and server-side apply merges entries by key.
/// The key fields must be [Required].
/// </summary>
[AttributeUsage(AttributeTargets.Property, Inherited = false)]
public sealed class ListMapAttribute(params string[] keys) : Attribute
{
    public IReadOnlyList<string> Keys { get; } = keys;
}

/// <summary>The list is a set of scalars (<c>x-kubernetes-list-type: set</c>): duplicates are refused.</summary>
[AttributeUsage(AttributeTargets.Property, Inherited = false)]
public sealed class ListSetAttribute : Attribute;

/// <summary>Bounds on each string in a list of strings (DataAnnotations' attributes bound the list itself).</summary>
[AttributeUsage(AttributeTargets.Property, Inherited = false)]
public sealed class ItemsAttribute : Attribute
{
    /// <summary>A regular expression in the API server's dialect (RE2, ECMA-262 compatible here).</summary>
    public string? Pattern { get; set; }

    /// <summary>0 for no bound.</summary>
    public int MinLength { get; set; }

    /// <summary>0 for no bound.</summary>
    public int MaxLength { get; set; }
}

/// <summary>The smallest value an integer field may take.</summary>
[AttributeUsage(AttributeTargets.Property, Inherited = false)]
public sealed class MinimumAttribute(long minimum) : Attribute
{
    public long Minimum { get; } = minimum;
}
