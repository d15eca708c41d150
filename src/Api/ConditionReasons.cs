namespace TsCgnat.Api;

/// <summary>The CamelCase reasons the agent writes on its node state's conditions and events.</summary>
public static class NodeReasons
{
    /// <summary>Ready=True: the host's rules match the applied policies.</summary>
    public const string RulesApplied = "RulesApplied";

    /// <summary>Ready=False, and a Warning event: writing the rules failed.</summary>
    public const string ApplyFailed = "ApplyFailed";

    /// <summary>TailscaleCompatible=True: the strategy in use works with what tailscaled does.</summary>
    public const string StrategyWorks = "StrategyWorks";

    /// <summary>TailscaleCompatible=False: tailscaled runs with --netfilter-mode=off.</summary>
    public const string NetfilterModeOff = "NetfilterModeOff";

    /// <summary>TailscaleCompatible=False: the strategy asked for cannot work with tailscaled's runner or mode.</summary>
    public const string StrategyImpossible = "StrategyImpossible";

    /// <summary>TailscaleCompatible=False: tailscaled's nftables runner in nodivert, where nothing calls its chains; the agent writes nothing.</summary>
    public const string NativeRunnerNoDivert = "NativeRunnerNoDivert";

    /// <summary>TailscaleCompatible=Unknown: neither the LocalAPI nor the firewall shows tailscaled.</summary>
    public const string TailscaleNotDetected = "TailscaleNotDetected";

    /// <summary>Normal event: the agent put back rules that something else changed.</summary>
    public const string DriftRepaired = "DriftRepaired";

    /// <summary>Warning event: a policy that selects this node is invalid and is not applied here.</summary>
    public const string PolicyInvalid = "PolicyInvalid";
}

/// <summary>The CamelCase reasons the operator writes on a policy's conditions and node issues.</summary>
public static class PolicyReasons
{
    /// <summary>Accepted=True: the shared validator found nothing wrong.</summary>
    public const string Valid = "Valid";

    /// <summary>Accepted=False (and Ready=False, Degraded=False): agents refuse the spec too, so nothing is applied.</summary>
    public const string InvalidSpec = "InvalidSpec";

    /// <summary>Ready=True: every target node applied this generation.</summary>
    public const string AllNodesApplied = "AllNodesApplied";

    /// <summary>Ready=True: the selector selects no node that runs an agent, so there is nothing to wait for.</summary>
    public const string NoTargetNodes = "NoTargetNodes";

    /// <summary>Ready=False: some target nodes have not reported this generation applied and ready yet.</summary>
    public const string Applying = "Applying";

    /// <summary>Ready=False and Degraded=True, and a node issue: a node reports the policy Failed (the node's own word for it).</summary>
    public const string ApplyFailed = NodeReasons.ApplyFailed;

    /// <summary>Degraded=True and a node issue: a node's TailscaleCompatible is False, so its exemptions do not take effect.</summary>
    public const string TailscaleIncompatible = "TailscaleIncompatible";

    /// <summary>Degraded=False: no target node failed or is incompatible.</summary>
    public const string NoIssues = "NoIssues";

    /// <summary>Warning event: the deletion timeout passed before every target node confirmed the removal.</summary>
    public const string DeletionTimedOut = "DeletionTimedOut";

    /// <summary>Normal event: every target node confirmed the removal; the finalizer goes.</summary>
    public const string RemovedFromNodes = "RemovedFromNodes";
}
