namespace TsCgnat.Api.Crds;

/// <summary>The descriptions Kubernetes gives the fields every object has (from its OpenAPI).</summary>
internal static class StandardDescriptions
{
    public const string ApiVersion = "APIVersion defines the versioned schema of this representation of an object. "
        + "Servers should convert recognized schemas to the latest internal value, and may reject unrecognized values.";

    public const string Kind = "Kind is a string value representing the REST resource this object represents. "
        + "Servers may infer this from the endpoint the client submits requests to. In CamelCase.";
}
