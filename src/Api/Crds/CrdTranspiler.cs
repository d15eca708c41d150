using System.ComponentModel;
using System.Reflection;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;
using k8s.Models;

namespace TsCgnat.Api.Crds;

/// <summary>
/// Derives a <see cref="V1CustomResourceDefinition"/> from an annotated C# kind, as KubeOps' transpiler
/// does, so the schema the API server enforces cannot drift from the types the code reads and writes.
/// </summary>
/// <remarks>
/// The walk goes over System.Text.Json's source-generated contract (<see cref="JsonTypeInfo"/>), not
/// over the CLR types: field names, nesting and enum spellings are then exactly what goes over the
/// wire, and the generator keeps each property's <see cref="JsonPropertyInfo.AttributeProvider"/>
/// reachable, so reading the attributes needs no reflection that NativeAOT trimming could break and
/// no assembly scan. Every object is structural (no <c>x-kubernetes-preserve-unknown-fields</c>), so
/// the API server prunes and, with strict field validation, refuses unknown fields.
/// </remarks>
public static class CrdTranspiler
{
    public static V1CustomResourceDefinition Transpile(JsonTypeInfo entity)
    {
        ArgumentNullException.ThrowIfNull(entity);
        var type = entity.Type;
        var kind = type.GetCustomAttribute<KubernetesEntityAttribute>()
            ?? throw new ArgumentException($"{type.Name} has no [KubernetesEntity] attribute", nameof(entity));
        if (string.IsNullOrEmpty(kind.Group) || string.IsNullOrEmpty(kind.PluralName))
        {
            throw new ArgumentException($"{type.Name}'s [KubernetesEntity] needs Group and PluralName", nameof(entity));
        }

        var schema = Schema(entity, Description(type));

        var hasStatus = schema.Properties?.ContainsKey("status") == true;
        return new V1CustomResourceDefinition
        {
            ApiVersion = "apiextensions.k8s.io/v1",
            Kind = "CustomResourceDefinition",
            Metadata = new V1ObjectMeta { Name = $"{kind.PluralName}.{kind.Group}" },
            Spec = new V1CustomResourceDefinitionSpec
            {
                Group = kind.Group,
                Scope = type.IsDefined(typeof(ClusterScopedAttribute), inherit: false) ? "Cluster" : "Namespaced",
                Names = new V1CustomResourceDefinitionNames
                {
                    Kind = kind.Kind,
                    ListKind = kind.Kind + "List",
                    Plural = kind.PluralName,
                    Singular = kind.Kind.ToLowerInvariant(),
                    ShortNames = NullIfEmpty(type.GetCustomAttribute<ShortNamesAttribute>()?.Names),
                    Categories = NullIfEmpty(type.GetCustomAttribute<CategoriesAttribute>()?.Categories),
                },
                Versions =
                [
                    new V1CustomResourceDefinitionVersion
                    {
                        Name = kind.ApiVersion,
                        Served = true,
                        Storage = true,
                        Schema = new V1CustomResourceValidation { OpenAPIV3Schema = schema },
                        // An empty object is how the API expresses "status is a subresource": spec and
                        // status are then written by different requests, so the agent or operator
                        // writing status never races a user editing spec.
                        Subresources = hasStatus ? new V1CustomResourceSubresources { Status = new Dictionary<string, object>() } : null,
                        AdditionalPrinterColumns = NullIfEmpty(
                            type.GetCustomAttributes<PrinterColumnAttribute>(inherit: false)
                                .Select(c => new V1CustomResourceColumnDefinition
                                {
                                    Name = c.Name,
                                    Type = c.Type,
                                    JsonPath = c.JsonPath,
                                    Description = c.Description,
                                    Priority = c.Priority == 0 ? null : c.Priority,
                                })
                                .ToList()),
                    },
                ],
            },
        };
    }

    private static V1JSONSchemaProps Schema(JsonTypeInfo info, string? description)
    {
        var type = Nullable.GetUnderlyingType(info.Type) ?? info.Type;
        if (type == typeof(V1ObjectMeta))
        {
            // The API server refuses a CRD whose metadata schema says anything but `type: object` (or
            // restricts more than name and generateName), a description included: "must not specify
            // anything other than name and generateName". Seen on kube-apiserver v1.36 (issue 9).
            return KnownSchemas.ObjectMeta();
        }

        if (KnownSchemas.For(type) is { } known)
        {
            known.Description = description ?? known.Description;
            return known;
        }

        if (type.IsEnum)
        {
            var enumInfo = info.Options.GetTypeInfo(type);
            return new V1JSONSchemaProps
            {
                Type = "string",
                Description = description,
                // The spellings the serializer writes, so JsonStringEnumMemberName renames are honoured.
                EnumProperty = [.. Enum.GetValuesAsUnderlyingType(type).Cast<object>()
                    .Select(v => (object)JsonSerializer.SerializeToElement(Enum.ToObject(type, v), enumInfo).GetString()!)],
            };
        }

        var scalar = Scalar(type);
        if (scalar is not null)
        {
            scalar.Description = description;
            return scalar;
        }

        switch (info.Kind)
        {
            case JsonTypeInfoKind.Enumerable:
                return new V1JSONSchemaProps
                {
                    Type = "array",
                    Description = description,
                    Items = Schema(info.Options.GetTypeInfo(info.ElementType!), Description(info.ElementType!)),
                };
            case JsonTypeInfoKind.Dictionary when info.KeyType == typeof(string):
                return new V1JSONSchemaProps
                {
                    Type = "object",
                    Description = description,
                    AdditionalProperties = Schema(info.Options.GetTypeInfo(info.ElementType!), null),
                };
            case JsonTypeInfoKind.Object:
                return ObjectSchema(info, description);
            default:
                throw new NotSupportedException($"{type} has no OpenAPI mapping in the CRD transpiler; add one");
        }
    }

    private static V1JSONSchemaProps ObjectSchema(JsonTypeInfo info, string? description)
    {
        var properties = new Dictionary<string, V1JSONSchemaProps>(StringComparer.Ordinal);
        var required = new List<string>();
        foreach (var property in info.Properties)
        {
            var attributes = property.AttributeProvider;
            var schema = Schema(
                info.Options.GetTypeInfo(property.PropertyType),
                Attribute<DescriptionAttribute>(attributes)?.Description ?? Description(property.PropertyType));
            Constrain(schema, attributes);
            properties.Add(property.Name, schema);
            if (Attribute<RequiredAttribute>(attributes) is not null)
            {
                required.Add(property.Name);
            }
        }

        return new V1JSONSchemaProps
        {
            Type = "object",
            Description = description,
            Properties = properties,
            Required = NullIfEmpty(required),
            // Rules written on the type: those that read several of its fields (design section 11).
            XKubernetesValidations = NullIfEmpty(info.Type.GetCustomAttributes<ValidationRuleAttribute>(inherit: false).Select(Rule)),
        };
    }

    /// <summary>Applies a property's validation attributes to its schema.</summary>
    private static void Constrain(V1JSONSchemaProps schema, ICustomAttributeProvider? attributes)
    {
        if (Attribute<MaxLengthAttribute>(attributes) is { } maxLength)
        {
            schema.MaxLength = maxLength.Length;
        }

        if (Attribute<MinLengthAttribute>(attributes) is { } minLength)
        {
            schema.MinLength = minLength.Length;
        }

        if (Attribute<MaxItemsAttribute>(attributes) is { } maxItems)
        {
            schema.MaxItems = maxItems.Count;
        }

        if (Attribute<PatternAttribute>(attributes) is { } pattern)
        {
            schema.Pattern = pattern.Pattern;
        }

        if (Attribute<MinimumAttribute>(attributes) is { } minimum)
        {
            schema.Minimum = minimum.Minimum;
        }

        if (Attribute<ItemsAttribute>(attributes) is { } items && schema.Items is V1JSONSchemaProps item)
        {
            item.Pattern = items.Pattern;
            item.MinLength = items.MinLength > 0 ? items.MinLength : null;
            item.MaxLength = items.MaxLength > 0 ? items.MaxLength : null;
        }

        if (Attribute<ListMapAttribute>(attributes) is { } map)
        {
            schema.XKubernetesListType = "map";
            schema.XKubernetesListMapKeys = [.. map.Keys];
        }
        else if (Attribute<ListSetAttribute>(attributes) is not null)
        {
            schema.XKubernetesListType = "set";
        }

        foreach (var rule in Attributes<ValidationRuleAttribute>(attributes))
        {
            (schema.XKubernetesValidations ??= []).Add(Rule(rule));
        }
    }

    private static V1ValidationRule Rule(ValidationRuleAttribute rule) =>
        new() { Rule = rule.Rule, Message = rule.Message, FieldPath = rule.FieldPath };

    private static V1JSONSchemaProps? Scalar(Type type) =>
        type == typeof(string) ? new V1JSONSchemaProps { Type = "string" }
        : type == typeof(bool) ? new V1JSONSchemaProps { Type = "boolean" }
        : type == typeof(int) ? new V1JSONSchemaProps { Type = "integer", Format = "int32" }
        : type == typeof(long) ? new V1JSONSchemaProps { Type = "integer", Format = "int64" }
        : type == typeof(DateTime) || type == typeof(DateTimeOffset) ? new V1JSONSchemaProps { Type = "string", Format = "date-time" }
        : null;

    private static string? Description(Type type) =>
        (Nullable.GetUnderlyingType(type) ?? type).GetCustomAttribute<DescriptionAttribute>(inherit: false)?.Description;

    private static T? Attribute<T>(ICustomAttributeProvider? provider)
        where T : Attribute => Attributes<T>(provider).FirstOrDefault();

    private static IEnumerable<T> Attributes<T>(ICustomAttributeProvider? provider)
        where T : Attribute => provider?.GetCustomAttributes(typeof(T), inherit: false).Cast<T>() ?? [];

    private static List<T>? NullIfEmpty<T>(IEnumerable<T>? items) => items?.ToList() is { Count: > 0 } list ? list : null;
}
