using k8s;
using k8s.Models;
using TsCgnat.Api;

namespace TsCgnat.Kube.Tests;

public class ApiResourceTests
{
    [Fact]
    public void Our_policy_kind_is_served_under_its_group()
    {
        var resource = ApiResource.Of<CgnatAllowPolicy>();

        Assert.Equal(new ApiResource("tscgnat.io", "v1alpha1", "CgnatAllowPolicy", "cgnatallowpolicies"), resource);
        Assert.Equal("tscgnat.io/v1alpha1", resource.ApiVersion);
        Assert.True(resource.IsCustom);
    }

    [Fact]
    public void Nodes_are_in_the_core_group()
    {
        var resource = ApiResource.Of<V1Node>();

        Assert.Equal(new ApiResource("", "v1", "Node", "nodes"), resource);
        Assert.Equal("v1", resource.ApiVersion);
        Assert.False(resource.IsCustom);
    }

    [Fact]
    public void A_type_without_KubernetesEntity_is_refused_with_the_reason()
    {
        var error = Assert.Throws<ArgumentException>(() => ApiResource.Of<string>());

        Assert.StartsWith("String has no [KubernetesEntity] attribute, so its group, version and plural are unknown", error.Message);
    }

    [Fact]
    public void A_custom_list_watch_of_a_core_kind_is_refused()
    {
        using var client = new Kubernetes(new KubernetesClientConfiguration { Host = "http://127.0.0.1:1" });

        var error = Assert.Throws<ArgumentException>(() => ListWatch.ClusterCustom<V1Node>(client));

        Assert.StartsWith("V1Node is a core-group kind; use its typed list-watch", error.Message);
    }

    [Fact]
    public void KubernetesJson_reads_and_writes_our_custom_kind_with_its_field_names()
    {
        const string json = """
            {"apiVersion":"tscgnat.io/v1alpha1","kind":"CgnatAllowPolicy",
             "metadata":{"name":"lab","resourceVersion":"7","creationTimestamp":"2026-01-01T12:00:00Z"},
             "spec":{"allowedSources":[{"cidr":"100.100.0.0/16","interfaces":["eth0"]}],"allowBroadRanges":false},
             "status":{"observedGeneration":2,"conditions":[{"type":"Ready","status":"True","reason":"Applied","message":"","lastTransitionTime":"2026-01-01T12:00:00Z"}]}}
            """;

        var policy = KubernetesJson.Deserialize<CgnatAllowPolicy>(json);

        Assert.Equal("lab", policy.Metadata.Name);
        Assert.Equal("100.100.0.0/16", policy.Spec.AllowedSources![0].Cidr);
        Assert.Equal(new DateTime(2026, 1, 1, 12, 0, 0, DateTimeKind.Utc), policy.Status!.Conditions![0].LastTransitionTime);
        Assert.Contains("\"allowedSources\":[{\"cidr\":\"100.100.0.0/16\"", KubernetesJson.Serialize(policy), StringComparison.Ordinal);
    }
}
