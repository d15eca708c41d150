using TsCgnat.Firewall.Formats;

namespace TsCgnat.Firewall.Tests;

/// <summary>
/// <c>nft -j</c> output is another program's text: any shape other than nft's is one <see cref="FormatException"/>,
/// and the accessors of a parsed rule never throw for a value of an unexpected kind (issue 10).
/// </summary>
public class NftRulesetTests
{
    private static string Rule(string expr, string handle = "7") =>
        $$$"""{"nftables":[{"chain":{"family":"ip","table":"filter","name":"ts-input","handle":1}},{"rule":{"family":"ip","table":"filter","chain":"ts-input","handle":{{{handle}}},"expr":{{{expr}}}}}]}""";

    [Theory]
    [InlineData("[1,2]")]                                             // not an object at all
    [InlineData("""{"nftables":{}}""")]                               // not a list
    [InlineData("""{"other":[]}""")]                                  // no nftables key
    [InlineData("""{"nftables":[{"chain":{"family":1}}]}""")]         // a name that is a number
    [InlineData("""{"nftables":[{"set":{"family":"ip","table":"t","name":"s","type":5}}]}""")]
    [InlineData("""{"nftables":[{"rule":{"family":"ip","table":"t","chain":"c","handle":"x","expr":[]}}]}""")]
    [InlineData("""{"nftables":[{"rule":{"family":"ip","table":"t","chain":"c","handle":1,"expr":{}}}]}""")]
    [InlineData("""{"nftables":[""")]                                 // cut short
    public void Output_of_another_shape_is_a_FormatException(string json)
    {
        var error = Assert.Throws<FormatException>(() => NftRuleset.Parse(json));

        Assert.StartsWith("nft -j output not understood", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Values_of_unexpected_kinds_in_a_rule_are_read_as_absent()
    {
        var rule = Assert.Single(NftRuleset.Parse(Rule("""
            [5, {"match": 3}, {"match": {"op": 1, "left": {"meta": {"key": 2}}, "right": "tailscale0"}},
             {"match": {"op": [], "left": {"payload": {"field": "saddr"}}, "right": {"prefix": {"addr": 1, "len": "x"}}}},
             {"jump": {"target": 9}}]
            """)).Chains).Rules.Single();

        Assert.Empty(rule.InterfaceMatches());
        Assert.Equal(("==", """{"prefix": {"addr": 1, "len": "x"}}"""), rule.SourceMatch());
        Assert.Equal("jump ", rule.Verdict());
    }
}
