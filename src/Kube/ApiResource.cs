using System.Reflection;
using k8s.Models;

namespace TsCgnat.Kube;

/// <summary>
/// Where a kind lives on the API server, read from the <see cref="KubernetesEntityAttribute"/> that
/// KubernetesClient's models and our CRD types carry, so nothing repeats a group or plural by hand.
/// </summary>
/// <param name="Group">API group; empty for the core group (<c>/api/v1</c>).</param>
public sealed record ApiResource(string Group, string Version, string Kind, string Plural)
{
    /// <summary><c>group/version</c>, or <c>version</c> alone for the core group.</summary>
    public string ApiVersion => Group.Length == 0 ? Version : $"{Group}/{Version}";

    /// <summary>True for kinds served through the custom-objects API (any non-core group).</summary>
    public bool IsCustom => Group.Length != 0;

    public static ApiResource Of<T>() => Of(typeof(T));

    public static ApiResource Of(Type type)
    {
        ArgumentNullException.ThrowIfNull(type);
        var entity = type.GetCustomAttribute<KubernetesEntityAttribute>()
            ?? throw new ArgumentException($"{type.Name} has no [KubernetesEntity] attribute, so its group, version and plural are unknown", nameof(type));
        if (string.IsNullOrEmpty(entity.ApiVersion) || string.IsNullOrEmpty(entity.Kind) || string.IsNullOrEmpty(entity.PluralName))
        {
            throw new ArgumentException($"{type.Name}'s [KubernetesEntity] needs ApiVersion, Kind and PluralName", nameof(type));
        }

        return new ApiResource(entity.Group ?? "", entity.ApiVersion, entity.Kind, entity.PluralName);
    }
}
