using TsCgnat.NodeAgent.Cli;

return await AgentMain.RunAsync(args);
