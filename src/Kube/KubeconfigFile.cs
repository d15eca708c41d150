using k8s.Exceptions;
using k8s.KubeConfigModels;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace TsCgnat.Kube;

/// <summary>
/// Reads kubeconfig files into KubernetesClient's own <see cref="K8SConfiguration"/>, which
/// <c>KubernetesClientConfiguration.BuildConfigFromConfigObject</c> turns into a client configuration.
/// </summary>
/// <remarks>
/// Hand-written because KubernetesClient reads kubeconfig through KubernetesYaml, whose static constructor
/// reflects over every model's properties and throws in a NativeAOT binary; YamlDotNet's representation model
/// needs no reflection. The package that reads kubeconfig without reflection (KubernetesClient.Aot) has no
/// watches and no leader election, which src/Kube is built on. Every field the client configuration uses is
/// read; <c>extensions</c> and <c>preferences</c> are ignored, as the client ignores them.
/// </remarks>
internal static class KubeconfigFile
{
    /// <summary>
    /// Reads and merges <paramref name="paths"/> as kubectl does: the first file that names a cluster, user or
    /// context wins, and the first <c>current-context</c> that is set. Relative certificate and key paths are
    /// made absolute against the file they appear in.
    /// </summary>
    public static K8SConfiguration Read(IReadOnlyList<string> paths)
    {
        var clusters = new List<Cluster>();
        var users = new List<User>();
        var contexts = new List<Context>();
        string? currentContext = null;
        foreach (var path in paths)
        {
            var root = Load(path);
            var directory = Path.GetDirectoryName(Path.GetFullPath(path))!;
            currentContext ??= Scalar(root, "current-context") is { Length: > 0 } current ? current : null;
            AddNew(clusters, Named(root, "clusters", path, "cluster", (name, c) => Endpoint(name, c, directory)), c => c.Name);
            AddNew(users, Named(root, "users", path, "user", (name, u) => Credentials(name, u, directory)), u => u.Name);
            AddNew(contexts, Named(root, "contexts", path, "context", Details), c => c.Name);
        }

        return new K8SConfiguration
        {
            ApiVersion = "v1",
            Kind = "Config",
            CurrentContext = currentContext,
            Clusters = clusters,
            Users = users,
            Contexts = contexts,
            FileName = paths[0],
        };
    }

    /// <summary>Larger than any kubeconfig (a few KB each, with certificates inline); refuses a wrong file before reading it.</summary>
    internal const long MaxFileBytes = 16 * 1024 * 1024;

    /// <summary>Lists and maps inside each other: a kubeconfig needs 5 (users[0].user.exec.env[0]).</summary>
    internal const int MaxDepth = 64;

    private static YamlMappingNode Load(string path)
    {
        var stream = new YamlStream();
        try
        {
            if (new FileInfo(path).Length > MaxFileBytes)
            {
                throw new KubeConfigException($"{path}: is {new FileInfo(path).Length} bytes; a kubeconfig file has at most {MaxFileBytes}");
            }

            var text = File.ReadAllText(path);
            CheckDepth(text, path);
            stream.Load(new StringReader(text));
        }
        catch (YamlException e)
        {
            throw new KubeConfigException($"{path}: not valid YAML (line {e.Start.Line}): {e.Message}");
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or InvalidOperationException or ArgumentException)
        {
            // InvalidOperationException: YamlDotNet's way of saying that a flow collection never closed.
            throw new KubeConfigException($"{path}: cannot be read: {e.Message}");
        }

        return stream.Documents.Count == 0
            ? new YamlMappingNode()
            : stream.Documents[0].RootNode as YamlMappingNode ?? throw new KubeConfigException($"{path}: not a kubeconfig (the document is not a mapping)");
    }

    /// <summary>
    /// Walks the parser's events before YamlStream builds its tree: the tree is built recursively (deep nesting
    /// would exhaust the stack, which no catch survives), and YamlDotNet's scanner slows with flow depth (issue 10).
    /// Aliases are allowed, as kubectl allows them: YamlStream shares an aliased node instead of copying it, and
    /// only a few known paths of the tree are read.
    /// </summary>
    private static void CheckDepth(string text, string path)
    {
        var parser = new Parser(new StringReader(text));
        var depth = 0;
        while (parser.MoveNext())
        {
            switch (parser.Current)
            {
                case YamlDotNet.Core.Events.MappingStart or YamlDotNet.Core.Events.SequenceStart when ++depth > MaxDepth:
                    throw new KubeConfigException($"{path}: line {parser.Current.Start.Line}: nested more than {MaxDepth} lists or maps deep; not a kubeconfig");
                case YamlDotNet.Core.Events.MappingEnd or YamlDotNet.Core.Events.SequenceEnd:
                    depth--;
                    break;
            }
        }
    }

    /// <summary>Entries of a list of <c>{name, KIND: {...}}</c> (clusters, users, contexts), made by <paramref name="make"/>.</summary>
    private static IEnumerable<T> Named<T>(YamlMappingNode root, string list, string path, string kind, Func<string, YamlMappingNode, T> make)
    {
        if (!root.Children.TryGetValue(list, out var node) || node is not YamlSequenceNode entries)
        {
            yield break;
        }

        foreach (var entry in entries.OfType<YamlMappingNode>())
        {
            var name = Scalar(entry, "name") ?? throw new KubeConfigException($"{path}: an entry of {list} has no name");
            yield return make(name, Mapping(entry, kind) ?? new YamlMappingNode());
        }
    }

    private static Cluster Endpoint(string name, YamlMappingNode cluster, string directory) => new()
    {
        Name = name,
        ClusterEndpoint = new ClusterEndpoint
        {
            Server = Scalar(cluster, "server"),
            CertificateAuthority = FilePath(cluster, "certificate-authority", directory),
            CertificateAuthorityData = Scalar(cluster, "certificate-authority-data"),
            TlsServerName = Scalar(cluster, "tls-server-name"),
            SkipTlsVerify = Flag(cluster, "insecure-skip-tls-verify"),
        },
    };

    private static User Credentials(string name, YamlMappingNode user, string directory) => new()
    {
        Name = name,
        UserCredentials = new UserCredentials
        {
            ClientCertificate = FilePath(user, "client-certificate", directory),
            ClientCertificateData = Scalar(user, "client-certificate-data"),
            ClientKey = FilePath(user, "client-key", directory),
            ClientKeyData = Scalar(user, "client-key-data"),
            // tokenFile is read by kubectl but not by KubernetesClient, so it would be silently ignored: read it here.
            Token = Scalar(user, "token") ?? (FilePath(user, "tokenFile", directory) is { } tokenFile ? File.ReadAllText(tokenFile).Trim() : null),
            UserName = Scalar(user, "username"),
            Password = Scalar(user, "password"),
            Impersonate = Scalar(user, "as"),
            ImpersonateGroups = Strings(user, "as-groups"),
            AuthProvider = Mapping(user, "auth-provider") is { } provider
                ? new AuthProvider
                {
                    Name = Scalar(provider, "name"),
                    Config = Mapping(provider, "config")?.Children.ToDictionary(e => Text(e.Key)!, e => Text(e.Value)!, StringComparer.Ordinal),
                }
                : null,
            ExternalExecution = Mapping(user, "exec") is { } exec
                ? new ExternalExecution
                {
                    ApiVersion = Scalar(exec, "apiVersion"),
                    Command = Scalar(exec, "command"),
                    Arguments = Strings(exec, "args"),
                    EnvironmentVariables = exec.Children.TryGetValue("env", out var env) && env is YamlSequenceNode variables
                        ? [.. variables.OfType<YamlMappingNode>().Select(v => new Dictionary<string, string>(StringComparer.Ordinal)
                        {
                            ["name"] = Scalar(v, "name") ?? "",
                            ["value"] = Scalar(v, "value") ?? "",
                        })]
                        : [],
                    InstallHint = Scalar(exec, "installHint"),
                    ProvideClusterInfo = Flag(exec, "provideClusterInfo"),
                }
                : null,
        },
    };

    private static Context Details(string name, YamlMappingNode context) => new()
    {
        Name = name,
        ContextDetails = new ContextDetails
        {
            Cluster = Scalar(context, "cluster"),
            User = Scalar(context, "user"),
            Namespace = Scalar(context, "namespace"),
        },
    };

    private static void AddNew<T>(List<T> into, IEnumerable<T> items, Func<T, string> name)
    {
        foreach (var item in items)
        {
            if (!into.Any(known => name(known) == name(item)))
            {
                into.Add(item);
            }
        }
    }

    private static YamlMappingNode? Mapping(YamlMappingNode node, string key) =>
        node.Children.TryGetValue(key, out var value) ? value as YamlMappingNode : null;

    private static string? Scalar(YamlMappingNode node, string key) =>
        node.Children.TryGetValue(key, out var value) ? Text(value) : null;

    private static string? Text(YamlNode node) =>
        node is YamlScalarNode { Value: var text } scalar && !(scalar.Style == ScalarStyle.Plain && text is "~" or "null") ? text : null;

    private static bool Flag(YamlMappingNode node, string key) =>
        Scalar(node, key) is { } text && bool.TryParse(text, out var flag) && flag;

    private static List<string>? Strings(YamlMappingNode node, string key) =>
        node.Children.TryGetValue(key, out var value) && value is YamlSequenceNode items
            ? [.. items.Select(Text).OfType<string>()]
            : null;

    private static string? FilePath(YamlMappingNode node, string key, string directory) =>
        Scalar(node, key) is { Length: > 0 } path ? Path.GetFullPath(path.StartsWith("~/", StringComparison.Ordinal) ? Path.Combine(Home, path[2..]) : path, directory) : null;

    private static string Home => Environment.GetFolderPath(Environment.SpecialFolder.UserProfile);
}
