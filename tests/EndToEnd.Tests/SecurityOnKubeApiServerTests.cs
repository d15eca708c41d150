using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using System.Text.Json;
using System.Text.Json.Nodes;
using k8s;
using k8s.Models;
using TsCgnat.KubeApiServer;
using TsCgnat.TestSupport;
using Xunit.Abstractions;

namespace TsCgnat.EndToEnd.Tests;

/// <summary>
/// Issue 9, item 5: what the chart's identities may and may not do, asked of a real kube-apiserver with real tokens
/// (the operator's service account token, and the agent's bound to a Pod on node-a as the kubelet's is). Each row is
/// one real request; the table is printed as markdown (docs/security.md holds a copy). Every grant in the chart's
/// ClusterRoles and Role, read back from the server after <c>helm install</c>, must be exercised by an allowed row,
/// so a grant added to the chart without a use fails here.
/// </summary>
public sealed class SecurityOnKubeApiServerTests(ITestOutputHelper output)
{
    private const string Tscgnat = "tscgnat.io";

    /// <summary>One request: who, which verb on which resource and object, and whether the chart means it to be allowed.</summary>
    /// <param name="Name">An alias of the object (node-a is the agent's own node, node-b and node-c are others).</param>
    private sealed record Row(string Identity, string Verb, string Resource, string Name, bool Allowed, string? DeniedBy = null, string? Phrase = null);

    [SkippableFact]
    public async Task The_chart_identities_can_do_what_their_roles_grant_and_nothing_the_table_denies()
    {
        var server = await SharedKubeApiServer.WithCrdsAsync();
        var id = UniqueName.For("sec-");
        var dir = Directory.CreateTempSubdirectory("tscgnat-security-");
        await using var release = await ChartRelease.InstallAsync(server, id, dir.FullName);
        var admin = release.Admin;
        var names = new Dictionary<string, string>
        {
            ["node-a"] = $"{id}-node-a",
            ["node-b"] = $"{id}-node-b",
            ["node-c"] = $"{id}-node-c",
            ["node-gone"] = $"{id}-node-gone",
            ["a-policy"] = $"{id}-policy",
            ["a-secret"] = $"{id}-secret",
            ["a-lease"] = $"{id}-lease",
            ["agent-event"] = $"{id}-agent-event",
            ["operator-event"] = $"{id}-operator-event",
            ["-"] = "",
        };
        try
        {
            foreach (var node in new[] { "node-a", "node-b" })
            {
                await admin.CoreV1.CreateNodeAsync(new V1Node { Metadata = new V1ObjectMeta { Name = names[node] } });
            }

            await admin.CustomObjects.CreateClusterCustomObjectAsync(NodeState(names["node-b"]), Tscgnat, "v1alpha1", "cgnatnodestates");
            await admin.CustomObjects.CreateClusterCustomObjectAsync(NodeState(names["node-gone"]), Tscgnat, "v1alpha1", "cgnatnodestates");
            await admin.CustomObjects.CreateClusterCustomObjectAsync(Policy(names["a-policy"]), Tscgnat, "v1alpha1", "cgnatallowpolicies");
            await admin.CoreV1.CreateNamespacedSecretAsync(new V1Secret { Metadata = new V1ObjectMeta { Name = names["a-secret"] }, StringData = new Dictionary<string, string> { ["k"] = "v" } }, release.Namespace);

            var tokens = new Dictionary<string, string>
            {
                ["agent on node-a"] = await release.AgentTokenAsync(names["node-a"]),
                ["agent, token of no pod"] = await release.UnboundAgentTokenAsync(),
                ["operator"] = await release.OperatorTokenAsync(),
            };
            using var http = Http(server);
            var requests = new Requests(http, server.BaseAddress, server.AdminToken, release.Namespace, names);

            var results = new List<(Row Row, HttpStatusCode Status, string Message)>();
            foreach (var row in Rows())
            {
                var (status, message) = await requests.SendAsync(tokens[row.Identity], row);
                results.Add((row, status, message.Replace(id + "-", "", StringComparison.Ordinal)));
            }

            output.WriteLine(Markdown(results, release));

            foreach (var (row, status, message) in results)
            {
                var what = $"{row.Identity} {row.Verb} {row.Resource} {row.Name}: {(int)status} {message}";
                if (row.Allowed)
                {
                    Assert.True((int)status is >= 200 and < 300, $"expected allowed: {what}");
                    continue;
                }

                Assert.True(status == HttpStatusCode.Forbidden, $"expected denied: {what}");
                Assert.Contains(row.DeniedBy == "admission" ? "ValidatingAdmissionPolicy" : "is forbidden: User", message, StringComparison.Ordinal);
                if (row.Phrase is { } phrase)
                {
                    Assert.Contains(phrase, message, StringComparison.Ordinal);
                }
            }

            // Every grant of the chart, as the server holds it, is used by an allowed row of its identity.
            var grants = await GrantsAsync(admin, release);
            Assert.NotEmpty(grants);
            var missing = grants.Where(g => !results.Any(r => r.Row.Allowed && r.Row.Identity.StartsWith(g.Identity, StringComparison.Ordinal)
                && r.Row.Verb == g.Verb && r.Row.Resource == g.Resource)).ToList();
            Assert.True(missing.Count == 0, "grants no row exercises: " + string.Join(", ", missing));
        }
        finally
        {
            foreach (var node in new[] { "node-a", "node-b", "node-c", "node-gone" })
            {
                await Quietly(() => admin.CustomObjects.DeleteClusterCustomObjectAsync(Tscgnat, "v1alpha1", "cgnatnodestates", names[node]));
                await Quietly(() => admin.CoreV1.DeleteNodeAsync(names[node]));
            }

            await Quietly(() => admin.CustomObjects.DeleteClusterCustomObjectAsync(Tscgnat, "v1alpha1", "cgnatallowpolicies", names["a-policy"]));
            await Quietly(() => admin.CoreV1.DeleteNamespacedEventAsync(names["agent-event"], "default"));
            await Quietly(() => admin.CoreV1.DeleteNamespacedEventAsync(names["operator-event"], "default"));
            dir.Delete(recursive: true);
        }
    }

    /// <summary>The rows, in the order they run (a create before the reads and writes of what it made).</summary>
    private static IEnumerable<Row> Rows()
    {
        const string Agent = "agent on node-a";
        const string Operator = "operator";
        const string Admission = "admission";
        const string Rbac = "RBAC";

        // The agent: its own node's state, the policies, its Node, events.
        yield return new(Agent, "create", "cgnatnodestates", "node-a", true);
        yield return new(Agent, "get", "cgnatnodestates", "node-a", true);
        yield return new(Agent, "update", "cgnatnodestates", "node-a", true);
        yield return new(Agent, "patch", "cgnatnodestates", "node-a", true);
        yield return new(Agent, "get", "cgnatnodestates/status", "node-a", true);
        yield return new(Agent, "update", "cgnatnodestates/status", "node-a", true);
        yield return new(Agent, "patch", "cgnatnodestates/status", "node-a", true);
        yield return new(Agent, "get", "cgnatallowpolicies", "a-policy", true);
        yield return new(Agent, "list", "cgnatallowpolicies", "-", true);
        yield return new(Agent, "watch", "cgnatallowpolicies", "-", true);
        yield return new(Agent, "get", "nodes", "node-a", true);
        yield return new(Agent, "list", "nodes", "-", true);
        yield return new(Agent, "watch", "nodes", "-", true);
        yield return new(Agent, "create", "events", "agent-event", true);
        yield return new(Agent, "patch", "events", "agent-event", true);

        // The agent and other nodes' states: RBAC lets it write node states, the chart's admission policy narrows that to its own.
        yield return new(Agent, "create", "cgnatnodestates", "node-c", false, Admission, "an agent may write only the CgnatNodeState of its own node node-a, not node-c");
        yield return new(Agent, "update", "cgnatnodestates", "node-b", false, Admission, "an agent may write only the CgnatNodeState of its own node node-a, not node-b");
        yield return new(Agent, "patch", "cgnatnodestates/status", "node-b", false, Admission, "an agent may write only the CgnatNodeState of its own node node-a, not node-b");
        yield return new("agent, token of no pod", "patch", "cgnatnodestates/status", "node-a", false, Admission, "the agent's token carries no node-name claim");
        yield return new(Agent, "list", "cgnatnodestates", "-", false, Rbac);
        yield return new(Agent, "delete", "cgnatnodestates", "node-b", false, Rbac);
        yield return new(Agent, "create", "cgnatallowpolicies", "a-policy", false, Rbac);
        yield return new(Agent, "patch", "cgnatallowpolicies", "a-policy", false, Rbac);
        yield return new(Agent, "patch", "cgnatallowpolicies/status", "a-policy", false, Rbac);
        yield return new(Agent, "get", "secrets", "a-secret", false, Rbac);
        yield return new(Agent, "list", "secrets", "-", false, Rbac);
        yield return new(Agent, "patch", "nodes", "node-a", false, Rbac);
        yield return new(Agent, "get", "leases", "a-lease", false, Rbac);

        // The operator: policies and their status, reading node states, Nodes, events, its Lease.
        yield return new(Operator, "get", "cgnatallowpolicies", "a-policy", true);
        yield return new(Operator, "list", "cgnatallowpolicies", "-", true);
        yield return new(Operator, "watch", "cgnatallowpolicies", "-", true);
        yield return new(Operator, "update", "cgnatallowpolicies", "a-policy", true);
        yield return new(Operator, "patch", "cgnatallowpolicies", "a-policy", true);
        yield return new(Operator, "update", "cgnatallowpolicies/status", "a-policy", true);
        yield return new(Operator, "patch", "cgnatallowpolicies/status", "a-policy", true);
        yield return new(Operator, "get", "cgnatnodestates", "node-b", true);
        yield return new(Operator, "list", "cgnatnodestates", "-", true);
        yield return new(Operator, "watch", "cgnatnodestates", "-", true);
        yield return new(Operator, "delete", "cgnatnodestates", "node-gone", true);
        yield return new(Operator, "get", "nodes", "node-a", true);
        yield return new(Operator, "list", "nodes", "-", true);
        yield return new(Operator, "watch", "nodes", "-", true);
        yield return new(Operator, "create", "events", "operator-event", true);
        yield return new(Operator, "patch", "events", "operator-event", true);
        yield return new(Operator, "create", "leases", "a-lease", true);
        yield return new(Operator, "get", "leases", "a-lease", true);
        yield return new(Operator, "update", "leases", "a-lease", true);

        yield return new(Operator, "create", "nodes", "node-c", false, Rbac);
        yield return new(Operator, "patch", "nodes", "node-a", false, Rbac);
        yield return new(Operator, "delete", "nodes", "node-b", false, Rbac);
        yield return new(Operator, "create", "cgnatallowpolicies", "a-policy", false, Rbac);
        yield return new(Operator, "delete", "cgnatallowpolicies", "a-policy", false, Rbac);
        yield return new(Operator, "create", "cgnatnodestates", "node-c", false, Rbac);
        yield return new(Operator, "patch", "cgnatnodestates/status", "node-b", false, Rbac);
        yield return new(Operator, "get", "secrets", "a-secret", false, Rbac);
        yield return new(Operator, "create", "leases in default", "a-lease", false, Rbac);
    }

    /// <summary>(identity, verb, resource) for every verb of every rule of the chart's ClusterRoles and Role, read from the server.</summary>
    private static async Task<List<(string Identity, string Verb, string Resource)>> GrantsAsync(Kubernetes admin, ChartRelease release)
    {
        var roles = new List<(string Identity, IList<V1PolicyRule> Rules)>
        {
            ("agent", (await admin.RbacAuthorizationV1.ReadClusterRoleAsync($"{release.FullName}-agent")).Rules),
            ("operator", (await admin.RbacAuthorizationV1.ReadClusterRoleAsync($"{release.FullName}-operator")).Rules),
            ("operator", (await admin.RbacAuthorizationV1.ReadNamespacedRoleAsync($"{release.FullName}-operator-leader-election", release.Namespace)).Rules),
        };
        return [.. roles.SelectMany(r => r.Rules.SelectMany(rule => rule.Resources.SelectMany(resource => rule.Verbs.Select(verb => (r.Identity, verb, resource)))))];
    }

    private static string Markdown(List<(Row Row, HttpStatusCode Status, string Message)> results, ChartRelease release)
    {
        var text = new StringBuilder();
        text.AppendLine($"helm install {release.Name}: agent = system:serviceaccount:{release.Namespace}:{release.AgentServiceAccount}, "
            + $"operator = system:serviceaccount:{release.Namespace}:{release.OperatorServiceAccount}; names below without the release's prefix");
        text.AppendLine();
        text.AppendLine("| identity | verb | resource | name | expected | server answered |");
        text.AppendLine("| --- | --- | --- | --- | --- | --- |");
        foreach (var (row, status, message) in results)
        {
            var answer = (int)status is >= 200 and < 300
                ? $"allowed ({(int)status})"
                : $"denied ({(int)status}{(message.Contains("ValidatingAdmissionPolicy", StringComparison.Ordinal) ? ", admission policy" : message.Contains("is forbidden: User", StringComparison.Ordinal) ? ", RBAC" : "")}): {Cell(message)}";
            text.AppendLine($"| {row.Identity} | {row.Verb} | {row.Resource} | {row.Name} | {(row.Allowed ? "allowed" : $"denied by {row.DeniedBy}")} | {answer} |");
        }

        return text.ToString();
    }

    private static string Cell(string message) => message.Replace("|", "\\|", StringComparison.Ordinal).Replace("\n", " ", StringComparison.Ordinal);

    private static JsonObject NodeState(string name) => new()
    {
        ["apiVersion"] = $"{Tscgnat}/v1alpha1",
        ["kind"] = "CgnatNodeState",
        ["metadata"] = new JsonObject { ["name"] = name },
        ["spec"] = new JsonObject { ["nodeName"] = name },
    };

    private static JsonObject Policy(string name) => new()
    {
        ["apiVersion"] = $"{Tscgnat}/v1alpha1",
        ["kind"] = "CgnatAllowPolicy",
        ["metadata"] = new JsonObject { ["name"] = name },
        ["spec"] = new JsonObject { ["allowedSources"] = new JsonArray(new JsonObject { ["cidr"] = "100.100.0.0/16" }) },
    };

    private static HttpClient Http(KubeApiServer.KubeApiServer server)
    {
        var ca = X509Certificate2.CreateFromPem(server.CaPem);
        return new HttpClient(new HttpClientHandler
        {
            ServerCertificateCustomValidationCallback = (_, cert, _, _) =>
            {
                using var chain = new X509Chain();
                chain.ChainPolicy.TrustMode = X509ChainTrustMode.CustomRootTrust;
                chain.ChainPolicy.CustomTrustStore.Add(ca);
                chain.ChainPolicy.RevocationMode = X509RevocationMode.NoCheck;
                return cert is not null && chain.Build(cert);
            },
        });
    }

    private static async Task Quietly(Func<Task> request)
    {
        try
        {
            await request();
        }
        catch (k8s.Autorest.HttpOperationException)
        {
            // Not made (a row that was denied as expected) or gone already.
        }
    }

    /// <summary>Turns a row into one HTTP request with the identity's token, as a client library would send it.</summary>
    private sealed class Requests(HttpClient http, Uri server, string adminToken, string releaseNamespace, IReadOnlyDictionary<string, string> names)
    {
        public async Task<(HttpStatusCode Status, string Message)> SendAsync(string token, Row row)
        {
            var name = names[row.Name];
            var (collection, subresource) = Path(row.Resource);
            var item = $"{collection}/{name}{subresource}";
            using var request = row.Verb switch
            {
                "get" => new HttpRequestMessage(HttpMethod.Get, item),
                "list" => new HttpRequestMessage(HttpMethod.Get, collection),
                "watch" => new HttpRequestMessage(HttpMethod.Get, $"{collection}?watch=true&timeoutSeconds=1"),
                "create" => Json(HttpMethod.Post, collection, Body(row.Resource, name), "application/json"),
                "update" => Json(HttpMethod.Put, item, await CurrentAsync(item), "application/json"),
                "patch" => Json(HttpMethod.Patch, item, Patch(row.Resource, row.Identity), "application/merge-patch+json"),
                "delete" => new HttpRequestMessage(HttpMethod.Delete, item),
                _ => throw new ArgumentException($"verb {row.Verb}"),
            };
            request.RequestUri = new Uri(server, request.RequestUri!.ToString());
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", token);
            using var response = await http.SendAsync(request, HttpCompletionOption.ResponseHeadersRead);
            if (response.IsSuccessStatusCode)
            {
                return (response.StatusCode, "");
            }

            var content = await response.Content.ReadAsStringAsync();
            return (response.StatusCode, JsonNode.Parse(content)?["message"]?.GetValue<string>() ?? content);
        }

        private (string Collection, string Subresource) Path(string resource) => resource switch
        {
            "cgnatnodestates" or "cgnatallowpolicies" => ($"/apis/{Tscgnat}/v1alpha1/{resource}", ""),
            "cgnatnodestates/status" or "cgnatallowpolicies/status" => ($"/apis/{Tscgnat}/v1alpha1/{resource.Split('/')[0]}", "/status"),
            "nodes" => ("/api/v1/nodes", ""),
            "events" => ("/api/v1/namespaces/default/events", ""),
            "secrets" => ($"/api/v1/namespaces/{releaseNamespace}/secrets", ""),
            "leases" => ($"/apis/coordination.k8s.io/v1/namespaces/{releaseNamespace}/leases", ""),
            "leases in default" => ("/apis/coordination.k8s.io/v1/namespaces/default/leases", ""),
            _ => throw new ArgumentException($"resource {resource}"),
        };

        private static JsonObject Body(string resource, string name) => resource switch
        {
            "cgnatnodestates" => NodeState(name),
            "cgnatallowpolicies" => Policy(name + "-new"),
            "nodes" => new JsonObject { ["apiVersion"] = "v1", ["kind"] = "Node", ["metadata"] = new JsonObject { ["name"] = name } },
            "events" => new JsonObject
            {
                ["apiVersion"] = "v1",
                ["kind"] = "Event",
                ["metadata"] = new JsonObject { ["name"] = name, ["namespace"] = "default" },
                ["involvedObject"] = new JsonObject { ["apiVersion"] = "v1", ["kind"] = "Node", ["name"] = name },
                ["reason"] = "SecurityTable",
                ["message"] = "written by the security table test",
                ["type"] = "Normal",
                ["source"] = new JsonObject { ["component"] = "ts-cgnat-e2e" },
                ["firstTimestamp"] = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", System.Globalization.CultureInfo.InvariantCulture),
                ["lastTimestamp"] = DateTime.UtcNow.ToString("yyyy-MM-ddTHH:mm:ssZ", System.Globalization.CultureInfo.InvariantCulture),
                ["count"] = 1,
            },
            "leases" or "leases in default" => new JsonObject
            {
                ["apiVersion"] = "coordination.k8s.io/v1",
                ["kind"] = "Lease",
                ["metadata"] = new JsonObject { ["name"] = name },
                ["spec"] = new JsonObject { ["holderIdentity"] = "security-table", ["leaseDurationSeconds"] = 15 },
            },
            _ => throw new ArgumentException($"no body for {resource}"),
        };

        /// <summary>A change each writer would make: a label on the object, a count in a status.</summary>
        private static JsonObject Patch(string resource, string identity) => resource switch
        {
            "cgnatnodestates/status" => new JsonObject { ["status"] = new JsonObject { ["driftRepairs"] = 1 } },
            "cgnatallowpolicies/status" => new JsonObject { ["status"] = new JsonObject { ["targetNodes"] = 0 } },
            _ => new JsonObject { ["metadata"] = new JsonObject { ["labels"] = new JsonObject { ["e2e.tscgnat.io/patched-by"] = identity.Split(' ')[0].TrimEnd(',') } } },
        };

        /// <summary>The object as the administrator reads it now, for an update (PUT) that carries its resourceVersion.</summary>
        private async Task<JsonObject> CurrentAsync(string item)
        {
            using var request = new HttpRequestMessage(HttpMethod.Get, new Uri(server, item.EndsWith("/status", StringComparison.Ordinal) ? item[..^"/status".Length] : item));
            request.Headers.Authorization = new AuthenticationHeaderValue("Bearer", adminToken);
            using var response = await http.SendAsync(request);
            var current = JsonNode.Parse(await response.Content.ReadAsStringAsync())!.AsObject();
            current["metadata"]!["labels"] = new JsonObject { ["e2e.tscgnat.io/updated"] = "yes" };
            return current;
        }

        private static HttpRequestMessage Json(HttpMethod method, string path, JsonObject body, string mediaType) => new(method, path)
        {
            Content = new StringContent(body.ToJsonString(), Encoding.UTF8, mediaType),
        };
    }
}
