using TsCgnat.Api.Crds;
using TsCgnat.TestSupport;

namespace TsCgnat.Api.Tests;

/// <summary>config/crds/ holds exactly what the generator makes from the C# types (design section 9).</summary>
public class CrdFilesTests
{
    private const string Regenerate = "dotnet run --project src/Operator -- crds --output-dir config/crds";

    private static readonly string Directory = Path.Combine(Repo.Root, "config", "crds");

    public static TheoryData<string> Files => [.. ApiCrds.All().Select(ApiCrds.FileName)];

    [Theory]
    [MemberData(nameof(Files))]
    public void Checked_in_CRD_matches_the_generator(string file)
    {
        var generated = ApiCrds.ToYaml(ApiCrds.All().Single(c => ApiCrds.FileName(c) == file));
        var path = Path.Combine(Directory, file);

        Assert.True(File.Exists(path), $"config/crds/{file} is missing; regenerate with: {Regenerate}");
        Assert.True(
            File.ReadAllText(path) == generated,
            $"config/crds/{file} differs from the CRD generated from the C# types in src/Api; regenerate with: {Regenerate}");
    }

    [Fact]
    public void No_stale_CRD_file_is_left_in_config_crds()
    {
        var expected = ApiCrds.All().Select(ApiCrds.FileName).ToHashSet(StringComparer.Ordinal);

        var stale = System.IO.Directory.EnumerateFiles(Directory, "*.yaml").Select(Path.GetFileName).Where(f => !expected.Contains(f!)).ToList();

        Assert.True(stale.Count == 0, $"config/crds holds {string.Join(", ", stale)}, which no C# type generates; delete it, then: {Regenerate}");
    }
}
