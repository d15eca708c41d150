using System.Text.RegularExpressions;
using k8s.Models;
using TsCgnat.Api.Crds;

namespace TsCgnat.Api.Tests;

/// <summary>
/// The validator is the single source of truth in code, and the CRD must refuse the same input in the
/// API server. Each case goes through the validator, and the test asserts that the generated CRD
/// carries the rule for that check, with a message that says the same thing.
/// </summary>
/// <remarks>
/// The CEL rules themselves cannot run here: there is no CEL engine with the Kubernetes CIDR library
/// for .NET, so what is checked is that each rule is present, where a rule is plain data (a length,
/// a pattern) it is evaluated, and the end-to-end tests against a real API server do the rest.
/// </remarks>
public class CrdValidatorAgreementTests
{
    private static readonly V1JSONSchemaProps Spec = ApiCrds.All()[0].Spec.Versions[0].Schema.OpenAPIV3Schema.Properties["spec"];

    public static TheoryData<string> Lists => ["allowedSources", "routedSubnets"];

    /// <summary>cidr; a phrase both the validator's and the rule's message hold; the CEL rule on the cidr field.</summary>
    public static TheoryData<string, string, string> BadCidrs => new()
    {
        { "lab-network", "is not an IPv4 prefix in canonical CIDR notation", CidrRules.IsCidr },
        { "100.64.0.0", "is not an IPv4 prefix in canonical CIDR notation", CidrRules.IsCidr },
        { "100.64.0.0/33", "is not an IPv4 prefix in canonical CIDR notation", CidrRules.IsCidr },
        { "", "e.g. 100.100.0.0/16", CidrRules.IsCidr },
        { "100.064.0.0/16", "no leading zeros", CidrRules.Canonical },
        { "100.64.0.0/016", "no leading zeros", CidrRules.Canonical },
        { "fd00::/8", "Tailscale has no IPv6 CGNAT drop, so it needs no exemption", CidrRules.IPv4 },
        { "100.64.0.1/24", "has host bits set; write the network address", CidrRules.HostBitsZero },
        { "100.100.0.0/8", "has host bits set; write the network address", CidrRules.HostBitsZero },
        { "10.0.0.0/8", "is outside 100.64.0.0/10; Tailscale does not drop it, so it needs no exemption", CidrRules.NotOutside },
        { "100.128.0.0/16", "is outside 100.64.0.0/10; Tailscale does not drop it, so it needs no exemption", CidrRules.NotOutside },
        { "100.63.255.255/32", "is outside 100.64.0.0/10; Tailscale does not drop it, so it needs no exemption", CidrRules.NotOutside },
        { "100.0.0.0/8", "is wider than 100.64.0.0/10; only prefixes inside 100.64.0.0/10 are dropped by Tailscale", CidrRules.NotWider },
        { "0.0.0.0/0", "is wider than 100.64.0.0/10; only prefixes inside 100.64.0.0/10 are dropped by Tailscale", CidrRules.NotWider },
    };

    /// <summary>Accepted by the validator (with allowBroadRanges where broader than /16).</summary>
    public static TheoryData<string, bool> GoodCidrs => new()
    {
        { "100.100.0.0/16", false },
        { "100.64.0.0/24", false },
        { "100.64.0.1/32", false },
        { "100.127.255.255/32", false },
        { "100.64.0.0/10", true },
        { "100.96.0.0/12", true },
    };

    [Theory]
    [MemberData(nameof(BadCidrs))]
    public void Bad_cidr_refused_by_the_validator_has_a_CEL_rule_that_says_the_same(string cidr, string phrase, string rule)
    {
        foreach (var list in Lists)
        {
            var error = Assert.Single(Validate(list, [cidr], allowBroad: true));
            Assert.Equal($"spec.{list}[0].cidr", error.Path);
            Assert.Contains(phrase, error.Message, StringComparison.Ordinal);

            var celRule = Assert.Single(CidrField(list).XKubernetesValidations, r => r.Rule == rule);
            Assert.Contains(phrase, celRule.Message, StringComparison.Ordinal);
        }
    }

    [Theory]
    [InlineData("100.064.0.0/16")]
    [InlineData("100.64.0.0/016")]
    [InlineData("100.64.00.0/16")]
    public void Leading_zeros_fail_the_canonical_pattern_the_CEL_rule_matches(string cidr)
    {
        Assert.NotNull(CgnatPrefix.Check(cidr, allowBroad: true, out _));
        Assert.DoesNotMatch(AsDotNet(CidrRules.CanonicalPattern), cidr);
    }

    [Theory]
    [MemberData(nameof(GoodCidrs))]
    public void Good_cidr_accepted_by_the_validator_fits_the_field_bounds_and_the_canonical_pattern(string cidr, bool allowBroad)
    {
        foreach (var list in Lists)
        {
            Assert.Empty(Validate(list, [cidr], allowBroad));
            Assert.InRange(cidr.Length, 1, CidrField(list).MaxLength!.Value);
            Assert.Matches(AsDotNet(CidrRules.CanonicalPattern), cidr);
        }
    }

    [Theory]
    [InlineData("100.64.0.0/12")]
    [InlineData("100.64.0.0/15")]
    public void Broad_prefix_refused_without_allowBroadRanges_has_a_rule_on_spec_that_says_the_same(string cidr)
    {
        foreach (var list in Lists)
        {
            var error = Assert.Single(Validate(list, [cidr], allowBroad: false));
            Assert.Contains("CVE-2019-14899", error.Message, StringComparison.Ordinal);
            Assert.Contains("spec.allowBroadRanges: true", error.Message, StringComparison.Ordinal);
            Assert.Empty(Validate(list, [cidr], allowBroad: true));

            var rule = Assert.Single(Spec.XKubernetesValidations, r => r.FieldPath == "." + list);
            Assert.Contains($"self.{list}.all(", rule.Rule, StringComparison.Ordinal);
            Assert.Contains("self.allowBroadRanges", rule.Rule, StringComparison.Ordinal);
            Assert.Contains("CVE-2019-14899", rule.Message, StringComparison.Ordinal);
            Assert.Contains("spec.allowBroadRanges: true", rule.Message, StringComparison.Ordinal);
        }
    }

    [Theory]
    [MemberData(nameof(Lists))]
    public void Duplicate_cidr_refused_by_the_validator_is_refused_by_the_list_map_key(string list)
    {
        var error = Assert.Single(Validate(list, ["100.64.0.0/24", "100.64.0.0/24"], allowBroad: false));
        Assert.Contains("Duplicate value", error.Message, StringComparison.Ordinal);

        // The API server answers a duplicate map key with "Duplicate value" (design section 11).
        var schema = Spec.Properties[list];
        Assert.Equal("map", schema.XKubernetesListType);
        Assert.Equal(["cidr"], schema.XKubernetesListMapKeys);
    }

    [Theory]
    [MemberData(nameof(Lists))]
    public void List_longer_than_the_validator_allows_is_longer_than_maxItems(string list)
    {
        var cidrs = Enumerable.Range(0, PolicyValidator.MaxEntries + 1).Select(i => $"100.64.{i / 256}.{i % 256}/32").ToList();

        var error = Assert.Single(Validate(list, cidrs, allowBroad: false));
        Assert.Equal($"spec.{list}", error.Path);
        Assert.Equal(PolicyValidator.MaxEntries, Spec.Properties[list].MaxItems);
        Assert.Empty(Validate(list, cidrs[..^1], allowBroad: false));
    }

    [Theory]
    [InlineData("eth0", true)]
    [InlineData("bond0.100", true)]
    [InlineData("cni-podman0", true)]
    [InlineData("veth_ab", true)]
    [InlineData("abcdefghijklmno", true)]
    [InlineData("abcdefghijklmnop", false)]
    [InlineData("eth+", false)]
    [InlineData("eth 0", false)]
    [InlineData("eth0\n", false)]
    [InlineData("eth0;reboot", false)]
    [InlineData("", false)]
    public void Interface_name_pattern_agrees_with_the_validator(string name, bool valid)
    {
        var item = (V1JSONSchemaProps)Interfaces().Items;

        Assert.Equal(valid, PolicyValidator.CheckInterfaceName(name) is null);
        Assert.Equal(valid, AsDotNet(item.Pattern).IsMatch(name) && name.Length <= item.MaxLength);
    }

    [Theory]
    [InlineData(".")]
    [InlineData("..")]
    public void Dot_names_match_the_pattern_so_a_list_rule_refuses_them_as_the_validator_does(string name)
    {
        Assert.NotNull(PolicyValidator.CheckInterfaceName(name));
        Assert.Matches(AsDotNet(((V1JSONSchemaProps)Interfaces().Items).Pattern), name);
        Assert.Contains(Interfaces().XKubernetesValidations, r => r.Rule.Contains($"n != '{name}'", StringComparison.Ordinal));
    }

    [Fact]
    public void Duplicate_interface_refused_by_the_validator_is_refused_by_the_set_list_type()
    {
        var policy = Policy("allowedSources", ["100.64.0.0/24"], allowBroad: false);
        policy.Spec.AllowedSources![0].Interfaces = ["eth0", "eth0"];

        var error = Assert.Single(PolicyValidator.Validate(policy, out _));

        Assert.Contains("Duplicate value", error.Message, StringComparison.Ordinal);
        Assert.Equal("set", Interfaces().XKubernetesListType);
    }

    [Fact]
    public void Interface_count_bound_is_the_validators()
    {
        var policy = Policy("allowedSources", ["100.64.0.0/24"], allowBroad: false);
        policy.Spec.AllowedSources![0].Interfaces = [.. Enumerable.Range(0, PolicyValidator.MaxInterfacesPerSource + 1).Select(i => $"eth{i}")];

        var error = Assert.Single(PolicyValidator.Validate(policy, out _));

        Assert.Equal("spec.allowedSources[0].interfaces", error.Path);
        Assert.Equal(PolicyValidator.MaxInterfacesPerSource, Interfaces().MaxItems);
    }

    [Theory]
    [MemberData(nameof(Lists))]
    public void Description_bound_is_the_validators(string list)
    {
        var policy = Policy(list, ["100.64.0.0/24"], allowBroad: false);
        var description = new string('x', PolicyValidator.MaxDescriptionLength + 1);
        if (list == "allowedSources")
        {
            policy.Spec.AllowedSources![0].Description = description;
        }
        else
        {
            policy.Spec.RoutedSubnets![0].Description = description;
        }

        var error = Assert.Single(PolicyValidator.Validate(policy, out _));

        Assert.Equal($"spec.{list}[0].description", error.Path);
        Assert.Equal(PolicyValidator.MaxDescriptionLength, ((V1JSONSchemaProps)Spec.Properties[list].Items).Properties["description"].MaxLength);
    }

    private static V1JSONSchemaProps CidrField(string list) => ((V1JSONSchemaProps)Spec.Properties[list].Items).Properties["cidr"];

    private static V1JSONSchemaProps Interfaces() => ((V1JSONSchemaProps)Spec.Properties["allowedSources"].Items).Properties["interfaces"];

    /// <summary>
    /// The API server matches patterns with RE2, where '$' is the end of the text; in .NET it also
    /// matches before a final newline, so it becomes \z here. The patterns use nothing else that differs.
    /// </summary>
    private static Regex AsDotNet(string pattern)
    {
        Assert.EndsWith("$", pattern, StringComparison.Ordinal);
        return new Regex(pattern[..^1] + @"\z", RegexOptions.CultureInvariant);
    }

    private static IReadOnlyList<FieldError> Validate(string list, IReadOnlyList<string> cidrs, bool allowBroad) =>
        PolicyValidator.Validate(Policy(list, cidrs, allowBroad), out _);

    private static CgnatAllowPolicy Policy(string list, IReadOnlyList<string> cidrs, bool allowBroad) => new()
    {
        Metadata = new V1ObjectMeta { Name = "lab" },
        Spec = new CgnatAllowPolicySpec
        {
            AllowBroadRanges = allowBroad,
            AllowedSources = list == "allowedSources" ? [.. cidrs.Select(c => new AllowedSource { Cidr = c })] : null,
            RoutedSubnets = list == "routedSubnets" ? [.. cidrs.Select(c => new RoutedSubnet { Cidr = c })] : null,
        },
    };
}
