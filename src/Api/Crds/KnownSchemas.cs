using k8s.Models;

namespace TsCgnat.Api.Crds;

/// <summary>
/// Schemas of the Kubernetes types our kinds embed, as the API server and controller-gen write them.
/// </summary>
/// <remarks>
/// Written by hand because KubernetesClient ships the models but not their OpenAPI schemas, and
/// deriving them from the models would lose what the API server enforces (the Condition reason
/// pattern, the selector operators). <c>metadata</c> is a bare object: the API server validates it
/// itself and refuses a CRD that constrains more than name and generateName.
/// </remarks>
internal static class KnownSchemas
{
    /// <summary><c>metadata</c>: a bare object, never with a description (see the remarks).</summary>
    public static V1JSONSchemaProps ObjectMeta() => new() { Type = "object" };

    public static V1JSONSchemaProps? For(Type type) =>
        type == typeof(V1LabelSelector) ? LabelSelector()
        : type == typeof(V1Condition) ? Condition()
        : null;

    private static V1JSONSchemaProps LabelSelector() => new()
    {
        Type = "object",
        Description = "A label query over a set of resources. The result of matchLabels and matchExpressions are ANDed. "
            + "An empty label selector matches all objects.",
        Properties = new Dictionary<string, V1JSONSchemaProps>
        {
            ["matchExpressions"] = new()
            {
                Type = "array",
                Description = "A list of label selector requirements. The requirements are ANDed.",
                XKubernetesListType = "atomic",
                Items = new V1JSONSchemaProps
                {
                    Type = "object",
                    Description = "A selector that contains values, a key, and an operator that relates the key and values.",
                    Required = ["key", "operator"],
                    Properties = new Dictionary<string, V1JSONSchemaProps>
                    {
                        ["key"] = new() { Type = "string", Description = "The label key that the selector applies to." },
                        ["operator"] = new()
                        {
                            Type = "string",
                            Description = "The key's relationship to a set of values: In, NotIn, Exists or DoesNotExist.",
                            EnumProperty = ["In", "NotIn", "Exists", "DoesNotExist"],
                        },
                        ["values"] = new()
                        {
                            Type = "array",
                            Description = "String values. Non-empty if the operator is In or NotIn, empty if it is Exists or DoesNotExist.",
                            XKubernetesListType = "atomic",
                            Items = new V1JSONSchemaProps { Type = "string" },
                        },
                    },
                },
            },
            ["matchLabels"] = new()
            {
                Type = "object",
                Description = "A map of {key,value} pairs. A single {key,value} in the matchLabels map is equivalent to an element "
                    + "of matchExpressions, whose key field is \"key\", the operator is \"In\", and the values array contains only \"value\".",
                AdditionalProperties = new V1JSONSchemaProps { Type = "string" },
            },
        },
        XKubernetesMapType = "atomic",
    };

    private static V1JSONSchemaProps Condition() => new()
    {
        Type = "object",
        Description = "One aspect of the current state of this object (metav1.Condition).",
        Required = ["lastTransitionTime", "message", "reason", "status", "type"],
        Properties = new Dictionary<string, V1JSONSchemaProps>
        {
            ["lastTransitionTime"] = new()
            {
                Type = "string",
                Format = "date-time",
                Description = "When the condition last transitioned from one status to another.",
            },
            ["message"] = new()
            {
                Type = "string",
                MaxLength = Conditions.MaxMessageLength,
                Description = "A human readable message with details about the transition. May be empty.",
            },
            ["observedGeneration"] = new()
            {
                Type = "integer",
                Format = "int64",
                Minimum = 0,
                Description = "The .metadata.generation the condition was set based upon; if older than the object's "
                    + "generation, the condition is out of date.",
            },
            ["reason"] = new()
            {
                Type = "string",
                MinLength = 1,
                MaxLength = 1024,
                Pattern = Conditions.ReasonPattern,
                Description = "A programmatic identifier for the condition's last transition, in CamelCase.",
            },
            ["status"] = new()
            {
                Type = "string",
                EnumProperty = [ConditionStatus.True, ConditionStatus.False, ConditionStatus.Unknown],
                Description = "Status of the condition: True, False or Unknown.",
            },
            ["type"] = new()
            {
                Type = "string",
                MaxLength = 316,
                Pattern = @"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$",
                Description = "Type of condition in CamelCase or in foo.example.com/CamelCase.",
            },
        },
    };
}
