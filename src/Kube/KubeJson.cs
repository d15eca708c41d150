using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;
using k8s;
using k8s.Models;

namespace TsCgnat.Kube;

/// <summary>
/// Source-generated JSON metadata for KubernetesClient's own serializer (<see cref="KubernetesJson"/>).
/// </summary>
/// <remarks>
/// KubernetesJson resolves a type from the library's source-generated context and falls back to reflection for
/// everything else. That context covers the built-in models but not the types our calls make it read: each watch
/// line as <c>Watcher&lt;T&gt;.WatchEvent</c> (first with T = KubernetesObject, to spot an error Status), lists of
/// custom kinds as <c>KubernetesList&lt;T&gt;</c>, and our CRD types. In a NativeAOT binary the reflection
/// fallback fails on them ("Deserialization of types without a parameterless constructor ... is not supported.
/// Type 'k8s.Watcher`1+WatchEvent[k8s.KubernetesObject]'", seen with tests/EndToEnd.Tests/AotBinaryTests.cs), so
/// every watch and every custom-object call broke. Contexts given to <see cref="Use"/> are asked first.
/// </remarks>
public static class KubeJson
{
    private static readonly Lock Gate = new();
    private static readonly List<IJsonTypeInfoResolver> Added = [];

    /// <summary>
    /// Puts <paramref name="resolver"/> before KubernetesClient's own resolvers. Call before the first API call:
    /// KubernetesJson's options cannot change once used. <see cref="KubeConfig.Load"/> adds the watch events.
    /// </summary>
    /// <exception cref="InvalidOperationException">KubernetesJson has already been used.</exception>
    public static void Use(IJsonTypeInfoResolver resolver)
    {
        ArgumentNullException.ThrowIfNull(resolver);
        lock (Gate)
        {
            if (Added.Contains(resolver))
            {
                return;
            }

            KubernetesJson.AddJsonOptions(options =>
            {
                if (options.IsReadOnly)
                {
                    throw new InvalidOperationException("KubernetesJson was used before KubeJson.Use: add source-generated contexts before the first API call");
                }

                options.TypeInfoResolverChain.Insert(0, resolver);
            });
            Added.Add(resolver);
        }
    }
}

/// <summary>The watch events of the kinds src/Kube watches (Nodes, Leases, custom objects read as JSON).</summary>
[JsonSourceGenerationOptions(
    DefaultIgnoreCondition = JsonIgnoreCondition.WhenWritingNull,
    PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase,
    UseStringEnumConverter = true)]
[JsonSerializable(typeof(Watcher<KubernetesObject>.WatchEvent))]
[JsonSerializable(typeof(Watcher<V1Status>.WatchEvent))]
[JsonSerializable(typeof(Watcher<V1Node>.WatchEvent))]
[JsonSerializable(typeof(Watcher<V1Lease>.WatchEvent))]
[JsonSerializable(typeof(Watcher<object>.WatchEvent))]
internal sealed partial class WatchEventJsonContext : JsonSerializerContext;
