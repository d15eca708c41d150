using k8s.Exceptions;

namespace TsCgnat.Kube.Tests;

/// <summary>A kubeconfig is outside text: deep nesting is refused before YamlDotNet builds its tree (issue 10).</summary>
public sealed class KubeconfigLimitsTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("tscgnat-kubeconfig-").FullName;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    [Theory]
    [InlineData(50_000)] // flow lists on one line: would be slow to scan, and recursive to build
    [InlineData(65)]
    public void Nesting_deeper_than_the_limit_is_refused_naming_the_file(int depth)
    {
        var path = Path.Combine(_dir, "config");
        File.WriteAllText(path, "apiVersion: v1\nclusters: " + new string('[', depth) + new string(']', depth) + "\n");

        var error = Assert.Throws<KubeConfigException>(() => KubeconfigFile.Read([path]));

        Assert.Contains($"{path}: line 2: nested more than {KubeconfigFile.MaxDepth} lists or maps deep", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Aliases_are_read_as_kubectl_reads_them()
    {
        var path = Path.Combine(_dir, "config");
        File.WriteAllText(path, """
            apiVersion: v1
            clusters:
              - name: lab
                cluster: &lab {server: "https://127.0.0.1:6443"}
              - name: copy
                cluster: *lab
            """);

        var config = KubeconfigFile.Read([path]);

        Assert.Equal(["https://127.0.0.1:6443", "https://127.0.0.1:6443"], config.Clusters.Select(c => c.ClusterEndpoint.Server));
    }
}
