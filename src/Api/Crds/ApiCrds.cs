using System.Text;
using k8s;
using k8s.Models;

namespace TsCgnat.Api.Crds;

/// <summary>Our CRDs, generated from the annotated types (<c>ts-cgnat-operator crds</c>, <c>config/crds/</c>).</summary>
public static class ApiCrds
{
    /// <summary>Both kinds, policy first. Listed, not discovered: no assembly scan under NativeAOT.</summary>
    public static IReadOnlyList<V1CustomResourceDefinition> All() =>
    [
        CrdTranspiler.Transpile(ApiJsonContext.Default.CgnatAllowPolicy),
        CrdTranspiler.Transpile(ApiJsonContext.Default.CgnatNodeState),
    ];

    /// <summary>The file a CRD is kept in under <c>config/crds/</c>, e.g. <c>tscgnat.io_cgnatallowpolicies.yaml</c>.</summary>
    public static string FileName(V1CustomResourceDefinition crd)
    {
        ArgumentNullException.ThrowIfNull(crd);
        return $"{crd.Spec.Group}_{crd.Spec.Names.Plural}.yaml";
    }

    /// <summary>One CRD as YAML, as <c>kubectl apply -f</c> reads it.</summary>
    public static string ToYaml(V1CustomResourceDefinition crd) => KubernetesYaml.Serialize(crd).ReplaceLineEndings("\n").TrimEnd('\n') + "\n";

    /// <summary>Several CRDs as one multi-document YAML stream.</summary>
    public static string ToYaml(IEnumerable<V1CustomResourceDefinition> crds)
    {
        ArgumentNullException.ThrowIfNull(crds);
        var text = new StringBuilder();
        foreach (var crd in crds)
        {
            text.Append("---\n").Append(ToYaml(crd));
        }

        return text.ToString();
    }
}
