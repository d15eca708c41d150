using static TsCgnat.Api.Tests.PolicyText;

namespace TsCgnat.Api.Tests;

/// <summary>
/// Design section 3: interface names are valid Linux names. They end up in ipset/nft set elements and
/// restore scripts, so nothing that could carry shell or firewall syntax may pass.
/// </summary>
public class InterfaceNameTests
{
    [Fact]
    public void Name_with_shell_syntax_is_refused()
    {
        var problem = SingleProblem(WithInterfaces("['eth0;rm -rf /']"));

        AssertAt(problem, document: 1, line: 8, "spec.allowedSources[0].interfaces[0]");
        AssertSays(problem, "\"eth0;rm -rf /\"", "is not a valid Linux interface name", "letters, digits, '.', '_' and '-' only");
    }

    [Fact]
    public void Name_with_a_path_is_refused()
    {
        var problem = SingleProblem(WithInterfaces("['../x']"));

        AssertAt(problem, document: 1, line: 8, "spec.allowedSources[0].interfaces[0]");
        AssertSays(problem, "\"../x\"", "is not a valid Linux interface name");
    }

    [Theory]
    [InlineData("'.'", "\".\"")]
    [InlineData("'..'", "\"..\"")]
    [InlineData("'eth 0'", "\"eth 0\"")]
    [InlineData("'eth0:1'", "\"eth0:1\"")]
    public void Name_the_kernel_would_refuse_is_refused(string yamlValue, string quotedInMessage)
    {
        var problem = SingleProblem(WithInterfaces($"[{yamlValue}]"));

        AssertAt(problem, document: 1, line: 8, "spec.allowedSources[0].interfaces[0]");
        AssertSays(problem, quotedInMessage, "is not a valid Linux interface name");
    }

    [Fact]
    public void Name_of_16_characters_is_refused_as_longer_than_IFNAMSIZ_allows()
    {
        var problem = SingleProblem(WithInterfaces("[abcdefghijklmnop]"));

        AssertAt(problem, document: 1, line: 8, "spec.allowedSources[0].interfaces[0]");
        AssertSays(problem, "\"abcdefghijklmnop\" is 16 characters long", "at most 15");
    }

    [Fact]
    public void Name_of_15_characters_is_accepted()
    {
        var policy = SinglePolicy(WithInterfaces("[abcdefghijklmno]"));

        Assert.Equal(["abcdefghijklmno"], Assert.Single(policy.Valid.AllowedSources).Interfaces);
    }

    [Fact]
    public void Iptables_wildcard_is_refused()
    {
        var problem = SingleProblem(WithInterfaces("[eth+]"));

        AssertAt(problem, document: 1, line: 8, "spec.allowedSources[0].interfaces[0]");
        AssertSays(problem, "\"eth+\"", "wildcards are not supported", "full name");
    }

    [Fact]
    public void Empty_name_is_refused()
    {
        var problem = SingleProblem(WithInterfaces("['']"));

        AssertAt(problem, document: 1, line: 8, "spec.allowedSources[0].interfaces[0]");
        AssertSays(problem, "is empty", "such as eth0");
    }

    [Fact]
    public void Duplicate_interface_is_refused_at_the_second_occurrence()
    {
        var problem = SingleProblem(WithInterfaces("[eth0, ens5, eth0]"));

        AssertAt(problem, document: 1, line: 8, "spec.allowedSources[0].interfaces[2]");
        AssertSays(problem, "Duplicate value \"eth0\"", "list each interface once");
    }

    [Fact]
    public void Each_bad_name_in_a_block_list_is_reported_on_its_own_line()
    {
        var (policies, problems) = Parse(WithSpec(
            "allowedSources:",
            "  - cidr: 100.64.0.0/24",
            "    interfaces:",   // line 8
            "      - eth0",      // line 9
            "      - eth+",      // line 10
            "      - '../x'"));  // line 11

        Assert.Empty(policies);
        Assert.Collection(
            problems,
            p => AssertAt(p, document: 1, line: 10, "spec.allowedSources[0].interfaces[1]"),
            p => AssertAt(p, document: 1, line: 11, "spec.allowedSources[0].interfaces[2]"));
    }

    [Fact]
    public void More_than_16_interfaces_on_one_source_is_refused()
    {
        var names = string.Join(", ", Enumerable.Range(0, 17).Select(i => $"eth{i}"));

        var problem = SingleProblem(WithInterfaces($"[{names}]"));

        AssertAt(problem, document: 1, line: 8, "spec.allowedSources[0].interfaces");
        AssertSays(problem, "has 17 entries", "at most 16");
    }

    [Fact]
    public void Interfaces_as_a_plain_string_is_the_wrong_type()
    {
        var problem = SingleProblem(WithSpec("allowedSources:", "  - cidr: 100.64.0.0/24", "    interfaces: eth0"));

        AssertAt(problem, document: 1, line: 8, "spec.allowedSources[0].interfaces");
        AssertSays(problem, "wrong type", "a list of strings");
    }

    /// <summary>.NET's "$" also matches before a final "\n", so an anchored pattern alone lets "eth0\n" through.</summary>
    [Fact]
    public void Name_ending_in_a_newline_is_refused()
    {
        var problem = SingleProblem(WithInterfaces("[\"eth0\\n\"]"));

        AssertAt(problem, document: 1, line: 8, "spec.allowedSources[0].interfaces[0]");
        AssertSays(problem, "is not a valid Linux interface name");
    }

    [Theory]
    [InlineData("eth0")]
    [InlineData("ens5")]
    [InlineData("bond0.100")]
    [InlineData("cni-podman0")]
    [InlineData("veth_ab")]
    public void Real_interface_names_are_accepted(string name)
    {
        Assert.Null(PolicyValidator.CheckInterfaceName(name));

        var policy = SinglePolicy(WithInterfaces($"[{name}]"));
        Assert.Equal([name], Assert.Single(policy.Valid.AllowedSources).Interfaces);
    }

    [Fact]
    public void Empty_interface_list_means_any_interface()
    {
        var policy = SinglePolicy(WithInterfaces("[]"));

        Assert.Empty(Assert.Single(policy.Valid.AllowedSources).Interfaces);
    }
}
