using System.Net;
using k8s.Models;

namespace TsCgnat.Api.Tests;

/// <summary>
/// PolicyValidator.Validate on objects, as the operator sees them from the API server (no YAML, no lines).
/// </summary>
public class PolicyValidatorTests
{
    private static CgnatAllowPolicy Policy(CgnatAllowPolicySpec? spec) => new()
    {
        Metadata = new V1ObjectMeta { Name = "lab", Generation = 3 },
        Spec = spec!,
    };

    [Fact]
    public void Valid_policy_gives_the_validated_form_and_no_errors()
    {
        var errors = PolicyValidator.Validate(
            Policy(new CgnatAllowPolicySpec
            {
                AllowedSources = [new AllowedSource { Cidr = "100.100.0.0/16", Interfaces = ["eth0", "ens5"] }],
                RoutedSubnets = [new RoutedSubnet { Cidr = "100.64.0.0/24" }],
            }),
            out var valid);

        Assert.Empty(errors);
        Assert.NotNull(valid);
        Assert.Equal("lab", valid.Name);
        Assert.Equal(3, valid.Generation);
        var source = Assert.Single(valid.AllowedSources);
        Assert.Equal(IPNetwork.Parse("100.100.0.0/16"), source.Cidr);
        Assert.Equal(["eth0", "ens5"], source.Interfaces);
        Assert.Equal(IPNetwork.Parse("100.64.0.0/24"), Assert.Single(valid.RoutedSubnets));
    }

    [Fact]
    public void Null_spec_is_required_and_gives_no_validated_policy()
    {
        var errors = PolicyValidator.Validate(Policy(null), out var valid);

        Assert.Null(valid);
        var error = Assert.Single(errors);
        Assert.Equal(new FieldError("spec", "is required"), error);
        Assert.Equal("spec: is required", error.ToString());
    }

    [Fact]
    public void Null_list_entry_is_refused()
    {
        var errors = PolicyValidator.Validate(Policy(new CgnatAllowPolicySpec { RoutedSubnets = [null!] }), out var valid);

        Assert.Null(valid);
        Assert.Equal(new FieldError("spec.routedSubnets[0]", "is null; each entry needs a cidr"), Assert.Single(errors));
    }

    [Fact]
    public void One_bad_entry_refuses_the_whole_policy()
    {
        var errors = PolicyValidator.Validate(
            Policy(new CgnatAllowPolicySpec
            {
                AllowedSources =
                [
                    new AllowedSource { Cidr = "100.100.0.0/16" },
                    new AllowedSource { Cidr = "100.64.0.0/24", Interfaces = ["eth+"] },
                ],
            }),
            out var valid);

        Assert.Null(valid);
        Assert.Equal("spec.allowedSources[1].interfaces[0]", Assert.Single(errors).Path);
    }

    [Fact]
    public void Errors_in_both_lists_are_all_reported_in_order()
    {
        var errors = PolicyValidator.Validate(
            Policy(new CgnatAllowPolicySpec
            {
                AllowedSources = [new AllowedSource { Cidr = "100.64.0.1/24" }],
                RoutedSubnets = [new RoutedSubnet { Cidr = "fd7a:115c:a1e0::/48" }],
            }),
            out _);

        Assert.Equal(["spec.allowedSources[0].cidr", "spec.routedSubnets[0].cidr"], errors.Select(e => e.Path));
    }

    [Fact]
    public void Namespaced_object_is_refused_even_when_it_came_from_code()
    {
        var policy = Policy(new CgnatAllowPolicySpec());
        policy.Metadata.NamespaceProperty = "kube-system";

        var errors = PolicyValidator.Validate(policy, out var valid);

        Assert.Null(valid);
        Assert.Equal("metadata.namespace", Assert.Single(errors).Path);
    }

    [Theory]
    [InlineData(null, "is empty")]
    [InlineData("", "is empty")]
    [InlineData("eth+", "wildcards are not supported")]
    [InlineData("abcdefghijklmnop", "at most 15")]
    [InlineData("eth0;reboot", "is not a valid Linux interface name")]
    [InlineData("..", "is not a valid Linux interface name")]
    [InlineData("eth0/1", "is not a valid Linux interface name")]
    [InlineData("eth0\n", "is not a valid Linux interface name")]
    public void Bad_interface_name_is_refused_on_its_own(string? name, string expected)
    {
        var problem = PolicyValidator.CheckInterfaceName(name);

        Assert.NotNull(problem);
        Assert.Contains(expected, problem, StringComparison.Ordinal);
    }
}
