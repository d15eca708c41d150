using System.CommandLine;
using k8s;
using k8s.Exceptions;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using TsCgnat.Api;
using TsCgnat.Firewall;
using TsCgnat.Firewall.Model;
using TsCgnat.Firewall.Processes;
using TsCgnat.NodeAgent.Cluster;
using TsCgnat.NodeAgent.HostMode;
using TsCgnat.NodeAgent.Reconciling;
using TsCgnat.NodeAgent.State;
using TsCgnat.NodeAgent.Tailscale;
using TsCgnat.NodeAgent.Triggers;
using TsCgnat.Telemetry;

namespace TsCgnat.NodeAgent.Cli;

/// <summary>Exit codes of design section 7.</summary>
public static class ExitCodes
{
    public const int Done = 0;
    public const int Failure = 1;
    public const int InvalidInput = 2;
}

/// <summary>The <c>ts-cgnat-agent</c> command line.</summary>
public static class AgentCommands
{
    internal static readonly Option<string[]> PolicyFile = new("--policy-file")
    {
        Description = "A policy file (one or more CgnatAllowPolicy YAML documents) or a directory of *.yaml files. Repeatable.",
        AllowMultipleArgumentsPerToken = false,
    };

    private static readonly Option<string> StateDir = new("--state-dir")
    {
        Description = "Where the last applied state is kept for the fail-static start.",
        DefaultValueFactory = _ => "/var/lib/ts-cgnat",
    };

    internal static readonly Option<string> Strategy = new("--strategy")
    {
        Description = "How exemptions are wired to Tailscale's chains: auto picks from what it detects (indirect for the iptables runner in nodivert, in-chain for mode on and the nftables runner); indirect needs tailscaled in --netfilter-mode=nodivert with its iptables runner.",
        DefaultValueFactory = _ => "auto",
    };

    internal static readonly Option<string> TailscaleSocket = new("--tailscale-socket")
    {
        Description = "tailscaled's LocalAPI socket; when it is not there, what tailscaled does is learned from the firewall alone.",
        DefaultValueFactory = _ => "/var/run/tailscale/tailscaled.sock",
    };

    internal static readonly Option<string> TailscaleInterface = new("--tailscale-interface")
    {
        Description = "tailscaled's tun interface (tailscaled --tun).",
        DefaultValueFactory = _ => "tailscale0",
    };

    private static readonly Option<string?> Backend = new("--backend")
    {
        Description = "Force the iptables back end (legacy or nft) instead of detecting the one tailscaled uses.",
    };

    internal static readonly Option<string?> Netns = new("--netns")
    {
        Description = "Run the firewall commands inside this named network namespace (ip netns) while the agent stays outside.",
    };

    private static readonly Option<string?> NodeName = new("--node-name")
    {
        Description = "This node's name: in cluster mode the Node whose labels select policies and whose CgnatNodeState is written (default NODE_NAME); in host mode, for logs.",
    };

    private static readonly Option<int> ResyncSeconds = new("--resync-interval")
    {
        Description = "Seconds between full resyncs, the safety net behind file and signal triggers.",
        DefaultValueFactory = _ => 30,
    };

    private static readonly Option<double> LegacyPollSeconds = new("--legacy-poll-interval")
    {
        Description = "Seconds between polls of iptables-legacy for changes, while the rules live there (nf_tables changes are seen as they happen).",
        DefaultValueFactory = _ => 1.0,
    };

    private static readonly Option<bool> EnforceNoDivert = new("--enforce-nodivert")
    {
        Description = "Switch tailscaled from netfilter mode on to nodivert through its LocalAPI, so the Indirect strategy can be used (off by default).",
    };

    private static readonly Option<int> MetricsPort = new("--metrics-port")
    {
        Description = "Serve /metrics (Prometheus), /healthz and /readyz on this port, on every address; 0 (the default) serves nothing "
            + "(OTLP still exports when OTEL_EXPORTER_OTLP_ENDPOINT is set). Off by default because on a plain VM an open, "
            + "unauthenticated port is a choice the admin should make; the Helm chart passes 9479.",
        DefaultValueFactory = _ => 0,
    };

    /// <summary>The arguments as given, for <see cref="ClusterMode.Exec"/>.</summary>
    private static string[] _args = [];

    private static readonly Option<bool> DryRun = new("--dry-run") { Description = "Print what would be written; write nothing." };

    public static RootCommand Build()
    {
        Strategy.AcceptOnlyFromAmong("auto", "indirect", "in-chain");
        Backend.AcceptOnlyFromAmong("legacy", "nft");
        TailscaleInterface.Validators.Add(r =>
        {
            if (PolicyValidator.CheckInterfaceName(r.GetValueOrDefault<string>()) is { } problem)
            {
                r.AddError($"--tailscale-interface {problem}");
            }
        });
        ResyncSeconds.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int>() is < 1 or > 86400)
            {
                r.AddError("--resync-interval must be between 1 and 86400 seconds");
            }
        });

        MetricsPort.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<int>() is < 0 or > 65535)
            {
                r.AddError("--metrics-port must be a port between 0 (off) and 65535");
            }
        });

        LegacyPollSeconds.Validators.Add(r =>
        {
            if (r.GetValueOrDefault<double>() is < 0.05 or > 3600)
            {
                r.AddError("--legacy-poll-interval must be between 0.05 and 3600 seconds");
            }
        });

        var run = new Command("run", "Keep this host's rules matching the policies: from --policy-file (host mode), or without it from the API server (cluster mode: in-cluster config or KUBECONFIG, node name from NODE_NAME or --node-name).")
        {
            PolicyFile, NodeName, Strategy, StateDir, TailscaleSocket, TailscaleInterface, Backend, Netns, ResyncSeconds, LegacyPollSeconds, EnforceNoDivert, MetricsPort,
        };
        run.SetAction((parse, ct) => RunAsync(parse, ct));

        var apply = new Command("apply", "One reconcile from policy files; prints what it found and wrote.")
        {
            PolicyFile, DryRun, Strategy, StateDir, TailscaleInterface, Backend, Netns,
        };
        apply.SetAction((parse, ct) => ApplyAsync(parse, ct));

        var cleanup = new Command("cleanup", "Remove every chain, rule and set the agent created, in every back end and family, and the cached state.")
        {
            StateDir, Netns,
        };
        cleanup.SetAction((parse, ct) => CleanupAsync(parse, ct));

        var version = new Command("version", "Print the version.");
        version.SetAction(_ => AgentVersion.Print()); // Program.cs answers a bare "version" before this tree is built

        return new RootCommand("ts-cgnat-agent: exempts chosen CGNAT sources from Tailscale's firewall drop, precisely and durably.")
        {
            run, apply, cleanup, DoctorCommand.Build(), version,
        };
    }

    public static async Task<int> InvokeAsync(string[] args)
    {
        _args = args;
        var parse = Build().Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var error in parse.Errors)
            {
                await Console.Error.WriteLineAsync($"error: {error.Message}");
            }

            await Console.Error.WriteLineAsync("run 'ts-cgnat-agent --help' for usage");
            return ExitCodes.InvalidInput;
        }

        return await parse.InvokeAsync();
    }

    private static FirewallSettings Settings(ParseResult parse) => new(
        parse.GetValue(TailscaleInterface)!,
        parse.GetValue(Backend) switch { "legacy" => IptablesBackend.Legacy, "nft" => IptablesBackend.Nft, _ => null },
        parse.GetValue(Strategy) switch { "indirect" => StrategyRequest.Indirect, "in-chain" => StrategyRequest.InChain, _ => StrategyRequest.Auto });

    private static ICommandRunner Runner(ParseResult parse) =>
        parse.GetValue(Netns) is { } netns ? new NetnsRunner(new ProcessRunner(), netns) : new ProcessRunner();

    /// <summary>Loads the policy files, or prints every problem and returns null (nothing is applied then).</summary>
    private static PolicySet? LoadPolicies(ParseResult parse)
    {
        var paths = parse.GetValue(PolicyFile) ?? [];
        if (paths.Length == 0)
        {
            Console.Error.WriteLine("error: --policy-file is required");
            return null;
        }

        var set = PolicyFiles.Load(paths);
        if (!set.IsValid)
        {
            Console.Error.WriteLine($"error: {set.Problems.Count} problem(s) in the policy files; nothing was applied and the host's rules are unchanged:");
            foreach (var problem in set.Problems)
            {
                Console.Error.WriteLine($"  {problem}");
            }

            return null;
        }

        return set;
    }

    private static async Task<int> ApplyAsync(ParseResult parse, CancellationToken cancellationToken)
    {
        // The host is read while the policy files are: neither needs the other (issue 11).
        var firewall = new HostFirewall(Runner(parse));
        firewall.Prefetch(cancellationToken);
        var set = LoadPolicies(parse);
        if (set is null)
        {
            await firewall.DropPrefetchAsync();
            return ExitCodes.InvalidInput;
        }

        var dryRun = parse.GetValue(DryRun);
        var reconciler = new Reconciler(
            firewall, Settings(parse), new AppliedStateCache(parse.GetValue(StateDir)!), TimeProvider.System, NullLogger.Instance);
        try
        {
            var result = await reconciler.ApplyAsync([.. set.Policies.Select(p => p.Valid)], dryRun, cancellationToken);
            Report(result, set);
            if (dryRun)
            {
                Console.Write(result.Plan.Describe());
            }
            else
            {
                Console.WriteLine(result.Wrote
                    ? $"applied: {Steps(result.Plan)} in {result.Elapsed.TotalMilliseconds:F0} ms"
                    : "in sync: nothing written");
            }

            return ExitCodes.Done;
        }
        catch (Exception e) when (e is FirewallToolException or InvalidOperationException or IOException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return ExitCodes.Failure;
        }
    }

    private static async Task<int> CleanupAsync(ParseResult parse, CancellationToken cancellationToken)
    {
        var firewall = new HostFirewall(Runner(parse));
        try
        {
            var result = await firewall.ReconcileAsync(null, new FirewallSettings(), null, dryRun: false, cancellationToken);
            new AppliedStateCache(parse.GetValue(StateDir)!).Delete();
            Console.WriteLine(result.Wrote ? $"removed: {Steps(result.Plan)}" : "nothing of ours was left");
            return ExitCodes.Done;
        }
        catch (Exception e) when (e is FirewallToolException or InvalidOperationException or IOException)
        {
            Console.Error.WriteLine($"error: {e.Message}");
            return ExitCodes.Failure;
        }
    }

    private static async Task<int> RunAsync(ParseResult parse, CancellationToken cancellationToken)
    {
        var paths = parse.GetValue(PolicyFile) ?? [];
        var cluster = paths.Length == 0;
        if (cluster && !ClusterMode.IsSupported)
        {
            return ClusterMode.Exec(_args);
        }

        var nodeName = parse.GetValue(NodeName) ?? Environment.GetEnvironmentVariable("NODE_NAME");
        KubernetesClientConfiguration? kubeconfig = null;
        if (cluster && ClusterMode.IsSupported) // the switch in every cluster-only branch: ILC removes them when it is off
        {
            if (string.IsNullOrEmpty(nodeName))
            {
                Console.Error.WriteLine("error: cluster mode (run without --policy-file) needs this node's name: set NODE_NAME or give --node-name");
                return ExitCodes.InvalidInput;
            }

            try
            {
                Kube.KubeJson.Use(KubernetesClientJsonContext.Default); // our kinds without reflection (NativeAOT)
                kubeconfig = Kube.KubeConfig.Load();
            }
            catch (Exception e) when (e is KubeConfigException or IOException or UnauthorizedAccessException)
            {
                Console.Error.WriteLine($"error: cluster mode (run without --policy-file) found no API server to talk to: {e.Message}; "
                    + "run in a pod with a service account, or set KUBECONFIG (or give --policy-file for host mode)");
                return ExitCodes.Failure;
            }
        }

        var builder = Host.CreateApplicationBuilder(new HostApplicationBuilderSettings { DisableDefaults = true });
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fffZ ";
            o.UseUtcTimestamp = true;
        });
        builder.Services.AddSingleton(TimeProvider.System);
        var resync = TimeSpan.FromSeconds(parse.GetValue(ResyncSeconds));
        var metricsPort = parse.GetValue(MetricsPort);
        builder.Services.AddTsCgnatTelemetry(new TelemetryOptions
        {
            ServiceName = "ts-cgnat-agent",
            Port = metricsPort,
            // The resync timer makes a pass at least once per interval, so three missed ones mean a wedged loop.
            LivenessBound = 3 * resync,
            RequireCachesSynced = cluster,
        });
        builder.Services.AddSingleton(sp => new HostFirewall(Runner(parse), sp.GetRequiredService<ILogger<HostFirewall>>()));
        builder.Services.AddSingleton(sp => new Reconciler(
            sp.GetRequiredService<HostFirewall>(), Settings(parse), new AppliedStateCache(parse.GetValue(StateDir)!),
            TimeProvider.System, sp.GetRequiredService<ILogger<Reconciler>>()));
        builder.Services.AddSingleton(new AgentLoopOptions(
            resync, TimeSpan.FromMilliseconds(5), parse.GetValue(EnforceNoDivert), nodeName ?? Environment.MachineName));
        builder.Services.AddSingleton<RepairStats>();
        builder.Services.AddSingleton<Func<Action<Trigger>, FirewallWatch>>(sp => changed => new FirewallWatch(
            Runner(parse), changed, sp.GetRequiredService<ILogger<FirewallWatch>>(), TimeProvider.System)
        {
            PollInterval = TimeSpan.FromSeconds(parse.GetValue(LegacyPollSeconds)),
        });
        builder.Services.AddSingleton(sp => new LocalApiClient(parse.GetValue(TailscaleSocket)!));
        builder.Services.AddSingleton<Func<Action<TailscaleView>, TailscaleWatcher>>(sp => changed => new TailscaleWatcher(
            sp.GetRequiredService<LocalApiClient>(), changed, sp.GetRequiredService<ILogger<TailscaleWatcher>>(), TimeProvider.System));
        if (cluster && ClusterMode.IsSupported)
        {
            AddClusterSource(builder.Services, kubeconfig!, nodeName!);
        }
        else
        {
            builder.Services.AddSingleton<IPolicySource>(sp => new PolicyFileSource(paths, sp.GetRequiredService<ILogger<PolicyFileSource>>()));
        }

        builder.Services.AddHostedService<AgentLoop>();
        using var host = builder.Build();
        var log = host.Services.GetRequiredService<ILogger<AgentLoop>>();
        if (cluster)
        {
            log.LogInformation("ts-cgnat-agent {Version} cluster mode on node {Node}: policies from the API server at {Server}", AgentVersion.Text, nodeName, kubeconfig!.Host);
        }
        else
        {
            log.LogInformation("ts-cgnat-agent {Version} host mode on {Node}: policies from {Paths}", AgentVersion.Text, nodeName ?? Environment.MachineName, string.Join(", ", paths));
        }

        try
        {
            // The telemetry listener starts before the loop (hosted services start in order), so a port that is
            // taken stops the agent before it touches the firewall.
            await host.RunAsync(cancellationToken);
        }
        catch (IOException e) when (metricsPort != 0)
        {
            log.LogCritical("--metrics-port {Port}: cannot listen: {Error}", metricsPort, e.Message);
            return ExitCodes.Failure;
        }

        return ExitCodes.Done;
    }

    /// <summary>Cluster mode: the policies and the Node come from the API server, and the node state goes back to it.</summary>
    private static void AddClusterSource(IServiceCollection services, KubernetesClientConfiguration kubeconfig, string nodeName)
    {
        services.AddSingleton<IKubernetes>(_ => new Kubernetes(kubeconfig));
        services.AddSingleton(sp => new Kube.EventRecorder(
            sp.GetRequiredService<IKubernetes>(), "ts-cgnat-agent", nodeName, time: TimeProvider.System, logger: sp.GetRequiredService<ILogger<Kube.EventRecorder>>()));
        services.AddSingleton(sp => new NodeStateWriter(
            sp.GetRequiredService<IKubernetes>(), nodeName, sp.GetRequiredService<Kube.EventRecorder>(), sp.GetRequiredService<ILogger<NodeStateWriter>>(), TimeProvider.System,
            metrics: sp.GetRequiredService<TsCgnatMetrics>()));
        services.AddSingleton<IPolicySource>(sp => new ClusterPolicySource(
            sp.GetRequiredService<IKubernetes>(), nodeName, sp.GetRequiredService<NodeStateWriter>(), sp.GetRequiredService<RepairStats>(),
            sp.GetRequiredService<ILogger<ClusterPolicySource>>(), TimeProvider.System));
    }

    private static void Report(ReconcileResult result, PolicySet set)
    {
        var plan = result.Plan;
        Console.WriteLine($"back end: {plan.BackendName} ({plan.Backend.Reason})");
        if (plan.Runner is { } runner)
        {
            Console.WriteLine($"tailscaled runner: {runner.Runner} ({runner.Reason})");
        }

        if (plan.Strategy is { } strategy)
        {
            Console.WriteLine($"strategy: {strategy.Strategy} ({strategy.Reason})");
        }

        foreach (var (family, ts) in plan.Tailscale)
        {
            Console.WriteLine($"tailscale {family}: {ts.Mode}" + (ts.Input ? $", ts-input has {ts.InputRules} rules" : ""));
        }

        Console.WriteLine($"stateful filtering: {(plan.Stateful ? "on" : "off")}");
        Console.WriteLine($"policies: {string.Join(", ", set.Policies.Select(p => $"{p.Valid.Name} ({p.Valid.AllowedSources.Count} allowed sources, {p.Valid.RoutedSubnets.Count} routed subnets)"))}");
        foreach (var warning in plan.Warnings)
        {
            Console.Error.WriteLine($"warning: {warning}");
        }
    }

    private static string Steps(FirewallPlan plan)
    {
        var steps = new List<string>();
        if (plan.IpsetDestroyStaging is not null || plan.IpsetUpdate is not null)
        {
            steps.Add("ipset sets");
        }

        if (plan.NftScript is not null)
        {
            steps.Add("nft");
        }

        steps.AddRange(plan.Restores.Select(s => $"{Tools.Restore(s.Backend, s.Family)}"));
        if (plan.IpsetDestroyStale is not null)
        {
            steps.Add("ipset removals");
        }

        return string.Join(", ", steps);
    }
}
