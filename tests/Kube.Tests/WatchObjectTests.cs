using System.Text.Json;
using k8s.Models;

namespace TsCgnat.Kube.Tests;

/// <summary>A watched object that cannot be read is one reported error, never an exception that ends the watch (issue 10).</summary>
public class WatchObjectTests
{
    /// <summary>Found by fuzzing (tests/Fuzz, target watch-event): KubernetesClient's timestamp converter throws FormatException.</summary>
    [Theory]
    [InlineData("""{"metadata":{"name":"n1","creationTimestamp":"2026801-01T00:00:00Z"}}""")]
    [InlineData("""{"metadata":{"name":"n1","creationTimestamp":"x"}}""")]
    public void An_object_with_a_malformed_timestamp_is_a_JSON_error(string json)
    {
        using var document = JsonDocument.Parse(json);

        var error = Assert.Throws<JsonException>(() => ListWatch.Read<V1Node>(document.RootElement));

        Assert.Contains("V1Node", error.Message, StringComparison.Ordinal);
        Assert.IsType<FormatException>(error.InnerException);
    }

    [Fact]
    public void A_well_formed_object_is_read()
    {
        using var document = JsonDocument.Parse("""{"metadata":{"name":"n1","creationTimestamp":"2026-01-01T00:00:00Z"}}""");

        Assert.Equal("n1", ListWatch.Read<V1Node>(document.RootElement)?.Metadata.Name);
    }
}
