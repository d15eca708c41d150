using System.Reflection;

// The operator (validation, finalizers, status aggregation) is built in the Kubernetes issue; until
// then this program only identifies itself, and says so rather than pretending to run.
var version = typeof(Program).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";
switch (args)
{
    case ["version"]:
        Console.WriteLine($"ts-cgnat-operator {version}");
        return 0;
    default:
        Console.Error.WriteLine("usage: ts-cgnat-operator version\n(run and crds are not built yet)");
        return 2;
}
