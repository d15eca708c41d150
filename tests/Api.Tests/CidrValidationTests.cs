using System.Net;
using System.Text;
using static TsCgnat.Api.Tests.PolicyText;

namespace TsCgnat.Api.Tests;

/// <summary>
/// Design section 3: every cidr is a canonical IPv4 prefix inside 100.64.0.0/10, /16 or narrower unless
/// spec.allowBroadRanges, at most 1024 per list, no duplicates. Read through PolicyDocuments.Parse so
/// that the document, line and field path are part of each case.
/// </summary>
public class CidrValidationTests
{
    private const string FirstCidr = "spec.allowedSources[0].cidr";

    [Fact]
    public void Host_bits_set_is_refused_and_the_network_address_is_suggested()
    {
        var problem = SingleProblem(WithAllowedSource("100.64.0.1/24"));

        AssertAt(problem, document: 1, line: 7, FirstCidr);
        AssertSays(problem, "\"100.64.0.1/24\"", "host bits set", "write the network address \"100.64.0.0/24\"");
    }

    [Fact]
    public void Host_bits_set_reads_as_file_document_line_path_and_message()
    {
        var problem = SingleProblem(WithAllowedSource("100.64.0.1/24"));

        Assert.Equal(
            "policy.yaml: document 1 (line 7): spec.allowedSources[0].cidr: \"100.64.0.1/24\" has host bits set; "
            + "write the network address \"100.64.0.0/24\"",
            problem.ToString());
    }

    [Fact]
    public void Host_bits_set_in_a_routed_subnet_is_refused_at_its_own_path()
    {
        var problem = SingleProblem(WithSpec("routedSubnets:", "  - cidr: 100.64.1.0/16"));

        AssertAt(problem, document: 1, line: 7, "spec.routedSubnets[0].cidr");
        AssertSays(problem, "host bits set", "\"100.64.0.0/16\"");
    }

    [Theory]
    [InlineData("10.0.0.0/8")]
    [InlineData("100.128.0.0/16")]
    [InlineData("192.168.1.0/24")]
    [InlineData("100.63.255.255/32")]
    [InlineData("100.128.0.0/32")]
    public void Prefix_outside_the_CGNAT_range_is_refused_because_Tailscale_does_not_drop_it(string cidr)
    {
        var problem = SingleProblem(WithAllowedSource(cidr));

        AssertAt(problem, document: 1, line: 7, FirstCidr);
        AssertSays(problem, $"\"{cidr}\"", "outside 100.64.0.0/10", "Tailscale does not drop it", "needs no exemption");
    }

    [Theory]
    [InlineData("100.0.0.0/8")]
    [InlineData("100.0.0.0/9")]
    [InlineData("0.0.0.0/0")]
    public void Prefix_wider_than_the_CGNAT_range_is_refused(string cidr)
    {
        var problem = SingleProblem(WithAllowedSource(cidr));

        AssertAt(problem, document: 1, line: 7, FirstCidr);
        AssertSays(problem, $"\"{cidr}\"", "wider than 100.64.0.0/10", "only prefixes inside 100.64.0.0/10 are dropped by Tailscale");
    }

    [Fact]
    public void IPv6_prefix_is_refused_because_Tailscale_has_no_IPv6_CGNAT_drop()
    {
        var problem = SingleProblem(WithAllowedSource("fd7a:115c:a1e0::/48"));

        AssertAt(problem, document: 1, line: 7, FirstCidr);
        AssertSays(problem, "\"fd7a:115c:a1e0::/48\"", "IPv6", "no IPv6 CGNAT drop");
    }

    [Theory]
    [InlineData("100.64.0.0/10")]
    [InlineData("100.64.0.0/12")]
    [InlineData("100.64.0.0/15")]
    public void Prefix_broader_than_16_without_allowBroadRanges_is_refused_naming_the_CVE_and_the_switch(string cidr)
    {
        var problem = SingleProblem(WithAllowedSource(cidr));

        AssertAt(problem, document: 1, line: 7, FirstCidr);
        AssertSays(problem, $"\"{cidr}\"", "broader than /16", "CVE-2019-14899", "spec.allowBroadRanges: true");
    }

    [Fact]
    public void Broad_routed_subnet_without_allowBroadRanges_is_refused_too()
    {
        var problem = SingleProblem(WithSpec("routedSubnets:", "  - cidr: 100.64.0.0/10"));

        AssertAt(problem, document: 1, line: 7, "spec.routedSubnets[0].cidr");
        AssertSays(problem, "CVE-2019-14899", "allowBroadRanges");
    }

    [Theory]
    [InlineData("100.64.0.0/10")]
    [InlineData("100.64.0.0/12")]
    public void Prefix_broader_than_16_is_accepted_with_allowBroadRanges_true(string cidr)
    {
        var policy = SinglePolicy(WithSpec(
            "allowBroadRanges: true",
            "allowedSources:",
            $"  - cidr: {cidr}",
            "routedSubnets:",
            $"  - cidr: {cidr}"));

        Assert.Equal(IPNetwork.Parse(cidr), Assert.Single(policy.Valid.AllowedSources).Cidr);
        Assert.Equal(IPNetwork.Parse(cidr), Assert.Single(policy.Valid.RoutedSubnets));
    }

    [Fact]
    public void Prefix_of_exactly_16_needs_no_allowBroadRanges()
    {
        var policy = SinglePolicy(WithAllowedSource("100.100.0.0/16"));

        Assert.Equal(IPNetwork.Parse("100.100.0.0/16"), Assert.Single(policy.Valid.AllowedSources).Cidr);
    }

    [Fact]
    public void Allow_broad_ranges_false_still_refuses_a_broad_prefix()
    {
        var problem = SingleProblem(WithSpec("allowBroadRanges: false", "allowedSources:", "  - cidr: 100.64.0.0/12"));

        AssertAt(problem, document: 1, line: 8, FirstCidr);
        AssertSays(problem, "CVE-2019-14899");
    }

    [Theory]
    [InlineData("100.64.0.1/32")]
    [InlineData("100.127.255.255/32")]
    public void Host_prefix_of_32_is_accepted(string cidr)
    {
        var policy = SinglePolicy(WithAllowedSource(cidr));

        var source = Assert.Single(policy.Valid.AllowedSources);
        Assert.Equal(IPNetwork.Parse(cidr), source.Cidr);
        Assert.Equal(32, source.Cidr.PrefixLength);
    }

    [Theory]
    [InlineData("100.064.0.0/16", "\"100.064.0.0/16\"")] // leading zero: legacy parsers read it as octal
    [InlineData("100.64/16", "\"100.64/16\"")] // short form of 100.64.0.0/16
    [InlineData("100.64.0.0/016", "\"100.64.0.0/016\"")] // leading zero in the length
    [InlineData("\" 100.64.0.0/24\"", "\" 100.64.0.0/24\"")] // quoted, so the leading space is part of the value
    [InlineData("\"100.64.0.0/24 \"", "\"100.64.0.0/24 \"")] // quoted, so the trailing space is part of the value
    [InlineData("100.64.0.0", "\"100.64.0.0\"")] // no prefix length
    [InlineData("100.64.0.0/33", "\"100.64.0.0/33\"")] // length beyond 32
    [InlineData("lab-network", "\"lab-network\"")]
    public void Non_canonical_cidr_is_refused_with_the_form_to_use(string yamlValue, string quotedInMessage)
    {
        var problem = SingleProblem(WithAllowedSource(yamlValue));

        AssertAt(problem, document: 1, line: 7, FirstCidr);
        AssertSays(problem, quotedInMessage, "is not an IPv4 prefix in canonical CIDR notation", "no leading zeros");
    }

    [Theory]
    [InlineData("''")]
    [InlineData("null")]
    public void Missing_cidr_is_refused_with_an_example(string yamlValue)
    {
        var problem = SingleProblem(WithAllowedSource(yamlValue));

        AssertAt(problem, document: 1, line: 7, FirstCidr);
        AssertSays(problem, "is required", "inside 100.64.0.0/10", "e.g. 100.100.0.0/16");
    }

    [Fact]
    public void Entry_without_a_cidr_key_is_refused_at_the_cidr_path()
    {
        var problem = SingleProblem(WithSpec("allowedSources:", "  - description: forgot the cidr"));

        AssertAt(problem, document: 1, line: 7, FirstCidr); // the entry's line, as the cidr has none
        AssertSays(problem, "is required");
    }

    [Fact]
    public void Empty_list_entry_is_refused()
    {
        var problem = SingleProblem(WithSpec("allowedSources:", "  -"));

        AssertAt(problem, document: 1, line: 7, "spec.allowedSources[0]");
        AssertSays(problem, "is null", "needs a cidr");
    }

    [Fact]
    public void Duplicate_allowed_source_is_refused_naming_the_first_index()
    {
        var problem = SingleProblem(WithSpec(
            "allowedSources:",
            "  - cidr: 100.64.0.0/24",       // line 7
            "  - cidr: 100.100.0.0/16",      // line 8
            "  - cidr: 100.64.0.0/24"));     // line 9

        AssertAt(problem, document: 1, line: 9, "spec.allowedSources[2].cidr");
        AssertSays(problem, "Duplicate value \"100.64.0.0/24\"", "also at spec.allowedSources[0]");
    }

    [Fact]
    public void Duplicate_routed_subnet_is_refused_naming_the_first_index()
    {
        var problem = SingleProblem(WithSpec(
            "routedSubnets:",
            "  - cidr: 100.65.0.0/24",       // line 7
            "  - cidr: 100.66.0.0/24",       // line 8
            "  - cidr: 100.65.0.0/24"));     // line 9

        AssertAt(problem, document: 1, line: 9, "spec.routedSubnets[2].cidr");
        AssertSays(problem, "Duplicate value \"100.65.0.0/24\"", "also at spec.routedSubnets[0]");
    }

    [Fact]
    public void Duplicate_written_once_quoted_and_once_plain_is_still_a_duplicate()
    {
        var problem = SingleProblem(WithSpec("allowedSources:", "  - cidr: 100.64.0.0/24", "  - cidr: \"100.64.0.0/24\""));

        AssertAt(problem, document: 1, line: 8, "spec.allowedSources[1].cidr");
        AssertSays(problem, "Duplicate value", "also at spec.allowedSources[0]");
    }

    [Fact]
    public void Same_cidr_as_allowed_source_and_routed_subnet_is_not_a_duplicate()
    {
        var policy = SinglePolicy(WithSpec(
            "allowedSources:",
            "  - cidr: 100.64.0.0/24",
            "routedSubnets:",
            "  - cidr: 100.64.0.0/24"));

        Assert.Equal(IPNetwork.Parse("100.64.0.0/24"), Assert.Single(policy.Valid.AllowedSources).Cidr);
        Assert.Equal(IPNetwork.Parse("100.64.0.0/24"), Assert.Single(policy.Valid.RoutedSubnets));
    }

    [Theory]
    [InlineData("allowedSources")]
    [InlineData("routedSubnets")]
    public void List_of_1025_entries_is_refused_at_the_list(string list)
    {
        var problem = SingleProblem(WithEntries(list, 1025));

        AssertAt(problem, document: 1, line: 7, $"spec.{list}");
        AssertSays(problem, "has 1025 entries", "at most 1024");
    }

    [Fact]
    public void List_of_1024_entries_is_accepted()
    {
        var policy = SinglePolicy(WithEntries("allowedSources", 1024));

        Assert.Equal(1024, policy.Valid.AllowedSources.Count);
        Assert.Equal(IPNetwork.Parse("100.64.3.255/32"), policy.Valid.AllowedSources[^1].Cidr);
    }

    /// <summary>A list of distinct /32s, 100.64.0.0/32 upwards, starting on line 7.</summary>
    private static string WithEntries(string list, int count)
    {
        var lines = new List<string> { $"{list}:" };
        for (var i = 0; i < count; i++)
        {
            lines.Add(new StringBuilder("  - cidr: 100.64.").Append(i / 256).Append('.').Append(i % 256).Append("/32").ToString());
        }

        return WithSpec([.. lines]);
    }
}
