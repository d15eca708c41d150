using System.Text.Json.Nodes;
using k8s;
using k8s.Models;
using TsCgnat.Api;

namespace TsCgnat.Kube.Tests;

/// <summary>When a status write is needed, and what it sends: JSON comparison and merge patches, no API server.</summary>
public class StatusComparisonTests
{
    private static readonly DateTime T0 = new(2026, 1, 1, 12, 0, 0, DateTimeKind.Utc);

    private static CgnatAllowPolicyStatus Status(int applied = 2, string readyStatus = "True", IList<NodeIssue>? issues = null, int failed = 0) => new()
    {
        ObservedGeneration = 3,
        TargetNodes = 2,
        AppliedNodes = applied,
        FailedNodes = failed,
        Conditions = [new V1Condition { Type = "Ready", Status = readyStatus, Reason = "Applied", Message = "", LastTransitionTime = T0, ObservedGeneration = 3 }],
        NodeIssues = issues,
    };

    private static CgnatAllowPolicy Policy(CgnatAllowPolicyStatus? status) => new()
    {
        Metadata = new V1ObjectMeta { Name = "lab", ResourceVersion = "17" },
        Status = status,
    };

    [Fact]
    public void Equal_statuses_built_separately_are_the_same()
    {
        Assert.True(StatusWriter.SameStatus(Status(), Status()));
    }

    [Fact]
    public void A_missing_list_and_a_null_list_are_the_same()
    {
        var withNull = Status();
        withNull.NodeIssues = null;

        Assert.True(StatusWriter.SameStatus(Status(issues: null), withNull));
    }

    [Fact]
    public void A_status_read_back_from_the_servers_JSON_is_the_same_as_the_one_written()
    {
        var roundTripped = KubernetesJson.Deserialize<CgnatAllowPolicyStatus>(KubernetesJson.Serialize(Status()));

        Assert.True(StatusWriter.SameStatus(Status(), roundTripped));
    }

    [Theory]
    [InlineData("count")]
    [InlineData("condition")]
    [InlineData("issue")]
    public void Any_changed_field_is_a_difference(string changed)
    {
        var other = changed switch
        {
            "count" => Status(applied: 1),
            "condition" => Status(readyStatus: "False"),
            _ => Status(issues: [new NodeIssue { Node = "n1", Reason = "ApplyFailed", Message = "iptables-restore: exit 4" }]),
        };

        Assert.False(StatusWriter.SameStatus(Status(), other));
    }

    [Fact]
    public void No_patch_when_nothing_differs()
    {
        var policy = Policy(Status());

        Assert.Null(StatusWriter.StatusPatch(policy, policy.Status, Status()));
    }

    [Fact]
    public void The_patch_carries_the_resourceVersion_and_only_what_changed()
    {
        var policy = Policy(Status());

        var patch = StatusWriter.StatusPatch(policy, policy.Status, Status(failed: 1));

        Assert.Equal("""{"metadata":{"resourceVersion":"17"},"status":{"failedNodes":1}}""", patch!.ToJsonString());
    }

    [Fact]
    public void A_field_gone_from_the_desired_status_is_sent_as_null()
    {
        var policy = Policy(Status(issues: [new NodeIssue { Node = "n1", Reason = "ApplyFailed" }]));

        var patch = StatusWriter.StatusPatch(policy, policy.Status, Status(issues: null));

        Assert.Equal("""{"nodeIssues":null}""", patch!["status"]!.ToJsonString());
    }

    [Fact]
    public void A_first_status_is_sent_whole()
    {
        var policy = Policy(null);

        var patch = StatusWriter.StatusPatch(policy, policy.Status, Status());

        Assert.True(JsonNode.DeepEquals(JsonMergePatch.ToJson(Status()), patch!["status"]));
    }

    [Fact]
    public void Merge_patch_replaces_arrays_whole_and_merges_objects_key_by_key()
    {
        var from = JsonNode.Parse("""{"a":1,"b":{"c":2,"d":3},"list":[1,2],"gone":true}""");
        var to = JsonNode.Parse("""{"a":1,"b":{"c":2,"d":4,"e":5},"list":[2]}""");

        var patch = JsonMergePatch.Create(from, to);

        Assert.Equal("""{"gone":null,"b":{"d":4,"e":5},"list":[2]}""", patch!.ToJsonString());
    }

    [Fact]
    public void Merge_patch_from_a_scalar_or_to_a_scalar_replaces()
    {
        Assert.Equal("3", JsonMergePatch.Create(JsonNode.Parse("""{"a":1}"""), JsonNode.Parse("3"))!.ToJsonString());
        Assert.Equal("""{"a":1}""", JsonMergePatch.Create(null, JsonNode.Parse("""{"a":1}"""))!.ToJsonString());
    }
}
