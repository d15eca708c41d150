using TsCgnat.NodeAgent.Cli;

// ts-cgnat-agent with cluster mode in the process (src/NodeAgent/Cli/ClusterMode.cs): the NativeAOT ts-cgnat-agent
// execs this for `run` without --policy-file. Every other command works here too, as in ts-cgnat-agent.
return await AgentMain.RunAsync(args);
