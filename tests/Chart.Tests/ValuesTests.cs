using System.Text.Json;
using System.Text.Json.Nodes;
using Json.Schema;

namespace TsCgnat.Chart.Tests;

/// <summary>values.yaml, values.schema.json and the templates agree, and the schema refuses bad values.</summary>
public sealed class ValuesTests
{
    private static readonly JsonSchema Schema = JsonSchema.FromText(File.ReadAllText(ChartPaths.Schema));

    private static readonly JsonObject DefaultValues = (JsonObject)Yaml.ToJson(Yaml.Document(File.ReadAllText(ChartPaths.Values)))!;

    private static readonly JsonObject SchemaDocument = JsonNode.Parse(File.ReadAllText(ChartPaths.Schema))!.AsObject();

    public static TheoryData<string> Templates => [.. ChartPaths.TemplateNames()];

    [Fact]
    public void The_schema_is_draft_07()
    {
        Assert.Equal("http://json-schema.org/draft-07/schema#", (string?)SchemaDocument["$schema"]);
    }

    [Fact]
    public void Values_yaml_is_valid_against_the_schema()
    {
        Assert.Empty(Problems(DefaultValues));
    }

    [Theory]
    [InlineData("unknown top-level key", "agnet: {}", "/agnet: not allowed")]
    [InlineData("misspelt nested key", "agent: { stateDirectory: /x }", "/agent/stateDirectory: not allowed")]
    [InlineData("unknown strategy", "agent: { strategy: fast }", "/agent/strategy: enum")]
    [InlineData("metrics port out of range", "agent: { metricsPort: 70000 }", "/agent/metricsPort: maximum")]
    [InlineData("port given as text", "operator: { metricsPort: \"8080\" }", "/operator/metricsPort: type")]
    [InlineData("interface name with a wildcard", "agent: { tailscaleInterface: \"tailscale+\" }", "/agent/tailscaleInterface: pattern")]
    [InlineData("interface name longer than 15", "agent: { tailscaleInterface: tailscale0123456 }", "/agent/tailscaleInterface: pattern")]
    [InlineData("relative state directory", "agent: { stateDir: var/lib/ts-cgnat }", "/agent/stateDir: pattern")]
    [InlineData("zero unavailable agents", "agent: { updateStrategy: { maxUnavailable: 0 } }", "/agent/updateStrategy/maxUnavailable: minimum")]
    [InlineData("zero replicas", "operator: { replicas: 0 }", "/operator/replicas: minimum")]
    [InlineData("leader election as text", "operator: { leaderElection: \"yes\" }", "/operator/leaderElection: type")]
    [InlineData("digest that is a tag", "agent: { image: { digest: latest } }", "/agent/image/digest: pattern")]
    [InlineData("unknown pull policy", "agent: { image: { pullPolicy: Sometimes } }", "/agent/image/pullPolicy: enum")]
    [InlineData("unknown OTLP protocol", "otel: { protocol: http }", "/otel/protocol: enum")]
    [InlineData("OTLP endpoint without a scheme", "otel: { endpoint: collector:4317 }", "/otel/endpoint: pattern")]
    [InlineData("node selector value that is not text", "agent: { nodeSelector: { gpu: true } }", "/agent/nodeSelector/gpu: type")]
    [InlineData("dashboard in a namespace that is no DNS label", "metrics: { dashboard: { enabled: true, namespace: Monitoring } }", "/metrics/dashboard/namespace: pattern")]
    [InlineData("misspelt alert rules switch", "metrics: { prometheusRules: { enabled: true } }", "/metrics/prometheusRules: not allowed")]
    [InlineData("admission policy switch as text", "agent: { ownNodeStateOnly: { enabled: \"false\" } }", "/agent/ownNodeStateOnly/enabled: type")]
    public void The_schema_refuses_bad_values(string name, string overrides, string expected)
    {
        _ = name; // the case's name in the test report
        var values = Merge(DefaultValues.DeepClone().AsObject(), (JsonObject)Yaml.ToJson(Yaml.Document(overrides))!);

        Assert.Contains(Problems(values), p => p.StartsWith(expected, StringComparison.Ordinal));
    }

    [Theory]
    [InlineData("percent of nodes unavailable", "agent: { updateStrategy: { maxUnavailable: \"10%\" } }")]
    [InlineData("a pinned digest", "agent: { image: { digest: \"sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef\" } }")]
    [InlineData("OTLP over HTTP with headers", "otel: { endpoint: \"https://otlp.example:4318\", protocol: http/protobuf, headersSecret: { name: otlp, key: headers } }")]
    [InlineData("ServiceMonitor with a release label", "metrics: { serviceMonitor: { enabled: true, interval: 1m, labels: { release: prom } } }")]
    [InlineData("alert rules and dashboard switched on", "metrics: { prometheusRule: { enabled: true, labels: { release: prom } }, dashboard: { enabled: true, namespace: monitoring, annotations: { grafana_folder: Networking } } }")]
    [InlineData("admission policy off for Kubernetes 1.31", "agent: { ownNodeStateOnly: { enabled: false } }")]
    public void The_schema_accepts_good_values(string name, string overrides)
    {
        _ = name; // the case's name in the test report
        var values = Merge(DefaultValues.DeepClone().AsObject(), (JsonObject)Yaml.ToJson(Yaml.Document(overrides))!);

        Assert.Empty(Problems(values));
    }

    [Theory]
    [MemberData(nameof(Templates))]
    public void Every_values_path_a_template_reads_is_in_values_yaml(string template)
    {
        var paths = GoTemplate.Parse(ChartPaths.ReadTemplate(template)).ValuesPaths();

        Assert.Empty(paths.Where(p => !InValues(p)).Select(p => $".Values.{p}"));
    }

    [Theory]
    [MemberData(nameof(Templates))]
    public void Every_values_path_a_template_reads_is_in_the_schema(string template)
    {
        var paths = GoTemplate.Parse(ChartPaths.ReadTemplate(template)).ValuesPaths();

        Assert.Empty(paths.Where(p => !InSchema(p)).Select(p => $".Values.{p}"));
    }

    /// <summary>
    /// "instance location: keyword message" for each failed keyword ("not allowed" for a key that
    /// additionalProperties: false refuses), "(root)" for the top. Only failures that make the
    /// whole document invalid: the failed branches of a oneOf that another branch satisfied are not.
    /// </summary>
    private static List<string> Problems(JsonObject values)
    {
        using var document = JsonDocument.Parse(values.ToJsonString());
        var results = Schema.Evaluate(document.RootElement, new EvaluationOptions { OutputFormat = OutputFormat.Hierarchical });
        var problems = new List<string>();
        Collect(results, problems);
        return problems;
    }

    private static void Collect(EvaluationResults results, List<string> problems)
    {
        if (results.IsValid)
        {
            return;
        }

        var location = results.InstanceLocation.ToString();
        foreach (var (keyword, message) in results.Errors ?? new Dictionary<string, string>())
        {
            problems.Add($"{(location.Length == 0 ? "(root)" : location)}: {(keyword.Length == 0 ? "not allowed" : keyword)} {message}");
        }

        foreach (var detail in results.Details ?? [])
        {
            Collect(detail, problems);
        }
    }

    private static JsonObject Merge(JsonObject target, JsonObject overrides)
    {
        foreach (var (key, value) in overrides)
        {
            if (value is JsonObject child && target[key] is JsonObject existing)
            {
                Merge(existing, child);
            }
            else
            {
                target[key] = value?.DeepClone();
            }
        }

        return target;
    }

    private static bool InValues(string path)
    {
        JsonNode? node = DefaultValues;
        foreach (var key in path.Split('.'))
        {
            if (node is not JsonObject map || !map.TryGetPropertyValue(key, out node))
            {
                return false;
            }
        }

        return true;
    }

    private static bool InSchema(string path)
    {
        JsonNode? schema = SchemaDocument;
        foreach (var key in path.Split('.'))
        {
            schema = Resolve(schema);
            if (schema?["properties"]?[key] is { } property)
            {
                schema = property;
            }
            else if (schema?["additionalProperties"] is JsonObject free)
            {
                schema = free;
            }
            else
            {
                return false;
            }
        }

        return true;
    }

    private static JsonNode? Resolve(JsonNode? schema) =>
        schema?["$ref"] is JsonValue reference && ((string?)reference)?.StartsWith("#/definitions/", StringComparison.Ordinal) == true
            ? SchemaDocument["definitions"]![((string)reference!)["#/definitions/".Length..]]
            : schema;
}
