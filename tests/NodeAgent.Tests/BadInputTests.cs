using System.Text;
using TsCgnat.Firewall.Processes;
using TsCgnat.TestSupport;

namespace TsCgnat.NodeAgent.Tests;

/// <summary>
/// Every bad input is refused by the real program with exit code 2 and a message that names the
/// file, document, field and value, and the host's rules are left exactly as they were.
/// </summary>
[Collection("netns")]
public sealed class BadInputTests : IDisposable
{
    private readonly TempDir _dir = new();

    public void Dispose() => _dir.Dispose();

    private static string Policy(string spec, string head = "apiVersion: tscgnat.io/v1alpha1\nkind: CgnatAllowPolicy\nmetadata:\n  name: bad\n") =>
        head + "spec:\n" + spec;

    private static string Sources(params string[] cidrs) =>
        "  allowedSources:\n" + string.Concat(cidrs.Select(c => $"    - cidr: {c}\n"));

    public static TheoryData<string, string, string> Cases() => new()
    {
        { "host bits set", Policy(Sources("100.64.0.1/24")), "spec.allowedSources[0].cidr: \"100.64.0.1/24\" has host bits set; write the network address \"100.64.0.0/24\"" },
        { "outside the range: 10.0.0.0/8", Policy(Sources("10.0.0.0/8")), "\"10.0.0.0/8\" is outside 100.64.0.0/10; Tailscale does not drop it, so it needs no exemption" },
        { "outside the range: 100.128.0.0/16", Policy(Sources("100.128.0.0/16")), "\"100.128.0.0/16\" is outside 100.64.0.0/10" },
        { "outside the range: 192.168.1.0/24", Policy("  routedSubnets:\n    - cidr: 192.168.1.0/24\n"), "spec.routedSubnets[0].cidr: \"192.168.1.0/24\" is outside 100.64.0.0/10" },
        { "IPv6", Policy(Sources("\"fd7a:115c:a1e0::/48\"")), "is an IPv6 prefix; Tailscale has no IPv6 CGNAT drop" },
        { "the whole range without allowBroadRanges", Policy(Sources("100.64.0.0/10")), "\"100.64.0.0/10\" is broader than /16; a broad exemption brings back the spoofing risk (CVE-2019-14899)" },
        { "a /12 without allowBroadRanges", Policy(Sources("100.64.0.0/12")), "or set spec.allowBroadRanges: true to accept that risk" },
        { "duplicates", Policy(Sources("100.64.0.0/24", "100.64.0.0/24")), "spec.allowedSources[1].cidr: Duplicate value \"100.64.0.0/24\" (also at spec.allowedSources[0])" },
        { "1,025 entries", Policy(Sources([.. Enumerable.Range(0, 1025).Select(i => $"100.{64 + (i / 256)}.{i % 256}.0/24")])), "spec.allowedSources: has 1025 entries; at most 1024 are allowed" },
        { "interface name with shell syntax", Policy("  allowedSources:\n    - cidr: 100.100.0.0/16\n      interfaces: [\"eth0;rm -rf /\"]\n"), "spec.allowedSources[0].interfaces[0]: \"eth0;rm -rf /\" is not a valid Linux interface name" },
        { "interface name ../x", Policy("  allowedSources:\n    - cidr: 100.100.0.0/16\n      interfaces: [../x]\n"), "\"../x\" is not a valid Linux interface name" },
        { "interface name of 16 characters", Policy("  allowedSources:\n    - cidr: 100.100.0.0/16\n      interfaces: [abcdefghijklmnop]\n"), "\"abcdefghijklmnop\" is 16 characters long; Linux interface names have at most 15" },
        { "unknown field", Policy("  allowedSources:\n    - cidr: 100.100.0.0/16\n      interface: eth0\n"), "unknown field \"interface\"" },
        { "wrong apiVersion", Policy(Sources("100.100.0.0/16"), "apiVersion: tscgnat.io/v1\nkind: CgnatAllowPolicy\nmetadata:\n  name: bad\n"), "apiVersion: \"tscgnat.io/v1\" is not tscgnat.io/v1alpha1" },
        { "wrong kind", Policy(Sources("100.100.0.0/16"), "apiVersion: tscgnat.io/v1alpha1\nkind: NetworkPolicy\nmetadata:\n  name: bad\n"), "kind: \"NetworkPolicy\" is not CgnatAllowPolicy" },
        { "empty file", "", "is empty; it must hold at least one CgnatAllowPolicy document" },
        { "YAML syntax error", "apiVersion: tscgnat.io/v1alpha1\nkind: [CgnatAllowPolicy\n", "YAML syntax error" },
    };

    [SkippableTheory]
    [MemberData(nameof(Cases))]
    public void Refused_with_its_message_and_nothing_changes(string name, string content, string message)
    {
        var file = _dir.File(name.Replace(' ', '-').Replace(':', '-').Replace('/', '-').Replace(',', '-') + ".yaml", content);
        AssertRefused(message, file, file);
    }

    /// <summary>Issue 10's hostile files (tests/fixtures/hostile): refused at their line with the limit, not chewed on or crashed over.</summary>
    [SkippableTheory]
    [InlineData("alias-bomb.yaml", "document 1 (line 8): the YAML anchor &a0 is refused: policy files may not use anchors and aliases")]
    [InlineData("nested-flow.yaml", "document 1 (line 5): nested more than 32 lists or maps deep")]
    [InlineData("nested-flow-mapping.yaml", "document 1 (line 5): nested more than 32 lists or maps deep")]
    [InlineData("nested-block.yaml", "document 1 (line 37): nested more than 32 lists or maps deep")]
    public void Hostile_file_is_refused_with_its_line_and_limit(string name, string message)
    {
        var file = _dir.File(name, File.ReadAllText(Repo.Fixture(Path.Combine("hostile", name))));
        AssertRefused($"{file}: {message}", file);
    }

    [SkippableFact]
    public void Binary_garbage_is_refused()
    {
        var file = Path.Combine(_dir.Path, "garbage.yaml");
        File.WriteAllBytes(file, [0x7f, 0x45, 0x4c, 0x46, 0x02, 0x01, 0x00, 0xff, 0xfe, 0x00, 0x10]);
        AssertRefused("looks like a binary file", file, file);
    }

    [SkippableFact]
    public void A_missing_file_is_refused()
    {
        var file = Path.Combine(_dir.Path, "nope.yaml");
        AssertRefused("no such file or directory", file, file);
    }

    [SkippableFact]
    public void An_unreadable_file_is_refused()
    {
        Privileges.RequireNetns();
        var file = _dir.File("secret.yaml", Policies.Seed);
        File.SetUnixFileMode(file, UnixFileMode.None);

        // Root with CAP_DAC_OVERRIDE reads any file, so the agent runs without capabilities here; it fails before touching any firewall.
        var output = DryRunWithoutCapabilities(file);

        Assert.Equal(2, output.ExitCode);
        Assert.Contains($"{file}: cannot be read: permission denied", output.StdErr, StringComparison.Ordinal);
    }

    [SkippableFact]
    public void Without_privileges_the_agent_says_what_it_needs_and_exits_1()
    {
        Privileges.RequireNetns();
        var output = DryRunWithoutCapabilities(_dir.File("seed.yaml", Policies.Seed));

        Assert.Equal(1, output.ExitCode);
        Assert.Contains("the agent needs root, or CAP_NET_ADMIN and CAP_NET_RAW", output.StdErr, StringComparison.Ordinal);
    }

    [SkippableFact]
    public void One_bad_document_among_good_ones_refuses_the_whole_set_and_names_document_2()
    {
        var good = _dir.File("good.yaml", Policies.Seed);
        var mixed = _dir.File("mixed.yaml", Policies.Seed.Replace("seed-lan", "first", StringComparison.Ordinal) + "---\n" + Policy(Sources("100.64.0.1/24")));
        AssertRefused($"{mixed}: document 2 (line 19): spec.allowedSources[0].cidr: \"100.64.0.1/24\" has host bits set", good, mixed);
    }

    [SkippableFact]
    public void The_same_policy_name_in_two_files_is_refused()
    {
        var a = _dir.File("a.yaml", Policies.Seed);
        var b = _dir.File("b.yaml", Policies.Seed);
        AssertRefused("policy \"seed-lan\" is defined more than once", a, b);
    }

    /// <summary>
    /// <c>apply --dry-run</c> of <paramref name="file"/> as root with every capability dropped: no
    /// CAP_DAC_OVERRIDE (a mode-000 file is unreadable) and no CAP_NET_ADMIN (no firewall access).
    /// Unlike switching to another user, this does not depend on the checkout being reachable by that user.
    /// </summary>
    private CommandOutput DryRunWithoutCapabilities(string file) =>
        Sh.Run("setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all", "--", Agent.Program, "apply", "--policy-file", file, "--dry-run", "--state-dir", Path.Combine(_dir.Path, "state"));

    /// <summary>Applies the seed policy in a namespace, then the bad input: exit 2, the message, and an unchanged host.</summary>
    private void AssertRefused(string message, params string[] files)
    {
        Privileges.RequireNetns();
        using var ns = new Netns();
        ns.Exec("iptables-legacy", "-w", "-N", "ts-input");
        ns.Exec("iptables-legacy", "-w", "-A", "ts-input", "!", "-i", "tailscale0", "-s", "100.64.0.0/10", "-j", "DROP");
        var state = Path.Combine(_dir.Path, "state");
        Agent.Ok("apply", "--netns", ns.Name, "--state-dir", state, "--policy-file", _dir.File("seed/seed.yaml", Policies.Seed));
        var before = Snapshot(ns);
        var cacheBefore = File.ReadAllText(Path.Combine(state, "applied-state.json"));

        var args = new List<string> { "apply", "--netns", ns.Name, "--state-dir", state };
        foreach (var file in files.Distinct())
        {
            args.AddRange(["--policy-file", file]);
        }

        var output = Agent.Run([.. args]);

        Assert.True(output.ExitCode == 2, $"exit {output.ExitCode}\n{output.StdOut}\n{output.StdErr}");
        Assert.Contains(message, output.StdErr, StringComparison.Ordinal);
        Assert.Contains("nothing was applied and the host's rules are unchanged", output.StdErr, StringComparison.Ordinal);
        Assert.Equal(before, Snapshot(ns));
        Assert.Equal(cacheBefore, File.ReadAllText(Path.Combine(state, "applied-state.json")));
    }

    private static string Snapshot(Netns ns)
    {
        var text = new StringBuilder();
        foreach (var tool in new[] { "iptables-legacy-save", "iptables-nft-save", "ip6tables-legacy-save", "ip6tables-nft-save" })
        {
            text.AppendJoin('\n', ns.Exec(tool).Split('\n').Where(l => !l.StartsWith('#')));
        }

        text.AppendJoin('\n', ns.Exec("ipset", "save").Split('\n').Where(l => !l.StartsWith("create", StringComparison.Ordinal)));
        return text.ToString();
    }
}
