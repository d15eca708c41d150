using TsCgnat.NodeAgent.Cli;

return await AgentCommands.InvokeAsync(args);
