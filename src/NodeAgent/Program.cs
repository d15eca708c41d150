using TsCgnat.NodeAgent.Cli;

// `version` is answered before anything else exists: no command tree (System.CommandLine), hosting, telemetry or
// Kubernetes type is touched, so it costs what the process itself costs (issue 11; the images run it as their
// build check). Every other command goes through the command line.
if (args is ["version"])
{
    return AgentVersion.Print();
}

return await AgentCommands.InvokeAsync(args);
