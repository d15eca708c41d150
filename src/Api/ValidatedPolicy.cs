using System.Net;
using k8s.Models;

namespace TsCgnat.Api;

/// <summary>A policy that passed <see cref="PolicyValidator"/>: parsed prefixes, nothing left to check.</summary>
public sealed record ValidatedPolicy(
    string Name,
    long Generation,
    V1LabelSelector? NodeSelector,
    IReadOnlyList<SourceExemption> AllowedSources,
    IReadOnlyList<IPNetwork> RoutedSubnets);

/// <summary>An allowed source; <see cref="Interfaces"/> empty means any interface but Tailscale's.</summary>
public sealed record SourceExemption(IPNetwork Cidr, IReadOnlyList<string> Interfaces);

/// <summary>One thing wrong with one field: <see cref="Path"/> as in <c>spec.allowedSources[2].cidr</c>.</summary>
public sealed record FieldError(string Path, string Message)
{
    public override string ToString() => $"{Path}: {Message}";
}
