using System.Net;

namespace TsCgnat.Api.Tests;

/// <summary>CgnatPrefix.Check on its own: the boundaries of 100.64.0.0/10 and of the /16 guard.</summary>
public class CgnatPrefixTests
{
    [Theory]
    [InlineData("100.64.0.0/16")]
    [InlineData("100.127.0.0/16")]
    [InlineData("100.100.100.100/32")]
    [InlineData("100.127.255.255/32")]
    [InlineData("100.64.0.0/24")]
    public void Canonical_prefix_inside_the_range_is_accepted_as_written(string text)
    {
        var problem = CgnatPrefix.Check(text, allowBroad: false, out var prefix);

        Assert.Null(problem);
        Assert.Equal(text, prefix.ToString());
    }

    [Theory]
    [InlineData("100.64.0.0/10", 10)]
    [InlineData("100.96.0.0/11", 11)]
    [InlineData("100.64.0.0/15", 15)]
    public void Broad_prefix_is_accepted_only_when_allowed(string text, int length)
    {
        var refused = CgnatPrefix.Check(text, allowBroad: false, out _);
        var accepted = CgnatPrefix.Check(text, allowBroad: true, out var prefix);

        Assert.NotNull(refused);
        Assert.Contains("CVE-2019-14899", refused, StringComparison.Ordinal);
        Assert.Null(accepted);
        Assert.Equal(length, prefix.PrefixLength);
    }

    [Theory]
    [InlineData("100.63.255.255/32")]
    [InlineData("100.128.0.0/32")]
    [InlineData("100.128.0.0/9")]
    public void Prefix_just_outside_the_range_is_refused_even_when_broad_ranges_are_allowed(string text)
    {
        var problem = CgnatPrefix.Check(text, allowBroad: true, out var prefix);

        Assert.NotNull(problem);
        Assert.Contains("Tailscale does not drop it", problem, StringComparison.Ordinal);
        Assert.Equal(default, prefix);
    }

    [Fact]
    public void Range_itself_with_broad_ranges_allowed_is_the_widest_accepted_prefix()
    {
        Assert.Null(CgnatPrefix.Check("100.64.0.0/10", allowBroad: true, out var prefix));
        Assert.Equal(CgnatPrefix.Range, prefix);
        Assert.NotNull(CgnatPrefix.Check("100.64.0.0/9", allowBroad: true, out _));
    }

    [Theory]
    [InlineData(null)]
    [InlineData("")]
    public void Missing_text_is_required(string? text)
    {
        var problem = CgnatPrefix.Check(text, allowBroad: false, out _);

        Assert.Equal("is required: an IPv4 prefix inside 100.64.0.0/10, e.g. 100.100.0.0/16", problem);
    }

    [Theory]
    [InlineData("100.64.0.0/24\n")]
    [InlineData("100.64.0.0/24 ")]
    [InlineData("\t100.64.0.0/24")]
    [InlineData("100.64.0.0 /24")]
    [InlineData("100.64.0.0/+24")]
    [InlineData("100.64.0.0/0x18")]
    [InlineData("0x64.64.0.0/16")]
    [InlineData("100.64.0.0.0/24")]
    [InlineData("::ffff:100.64.0.0/120")]
    public void Anything_but_plain_dotted_decimal_is_refused(string text)
    {
        var problem = CgnatPrefix.Check(text, allowBroad: true, out var prefix);

        Assert.NotNull(problem);
        Assert.Equal(default, prefix);
    }

    [Fact]
    public void Host_bits_message_suggests_the_network_of_the_written_length()
    {
        var problem = CgnatPrefix.Check("100.100.100.100/16", allowBroad: false, out _);

        Assert.Equal("\"100.100.100.100/16\" has host bits set; write the network address \"100.100.0.0/16\"", problem);
    }
}
