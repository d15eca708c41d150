using System.CommandLine;
using System.Reflection;
using TsCgnat.Api.Crds;

namespace TsCgnat.Operator;

/// <summary>
/// The <c>ts-cgnat-operator</c> command line (design section 7). Each command is built by one method
/// and listed in <see cref="Build"/>; <c>run</c> (validation, finalizers, status aggregation) joins
/// them with the operator itself.
/// </summary>
internal static class Program
{
    /// <summary>Exit codes of design section 7.</summary>
    private const int Done = 0;
    private const int Failure = 1;
    private const int InvalidInput = 2;

    public static async Task<int> Main(string[] args)
    {
        var parse = Build().Parse(args);
        if (parse.Errors.Count > 0)
        {
            foreach (var error in parse.Errors)
            {
                await Console.Error.WriteLineAsync($"error: {error.Message}");
            }

            await Console.Error.WriteLineAsync("run 'ts-cgnat-operator --help' for usage");
            return InvalidInput;
        }

        return await parse.InvokeAsync();
    }

    public static RootCommand Build() => new("ts-cgnat-operator: validates CgnatAllowPolicies and aggregates what the node agents report.")
    {
        Crds(), Version(),
    };

    private static Command Crds()
    {
        var outputDir = new Option<DirectoryInfo?>("--output-dir")
        {
            Description = "Write one file per CRD into this directory (as config/crds/ holds them) instead of printing them.",
        };
        var crds = new Command("crds", "Print the CRDs generated from the C# types, as one multi-document YAML stream.") { outputDir };
        crds.SetAction(async (parse, ct) =>
        {
            var definitions = ApiCrds.All();
            if (parse.GetValue(outputDir) is not { } dir)
            {
                await Console.Out.WriteAsync(ApiCrds.ToYaml(definitions));
                return Done;
            }

            try
            {
                dir.Create();
                foreach (var crd in definitions)
                {
                    var path = Path.Combine(dir.FullName, ApiCrds.FileName(crd));
                    await File.WriteAllTextAsync(path, ApiCrds.ToYaml(crd), ct);
                    await Console.Out.WriteLineAsync($"wrote {path}");
                }

                return Done;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                await Console.Error.WriteLineAsync($"error: {e.Message}");
                return Failure;
            }
        });
        return crds;
    }

    private static Command Version()
    {
        var version = new Command("version", "Print the version.");
        version.SetAction(_ =>
        {
            var text = typeof(Program).Assembly.GetCustomAttribute<AssemblyInformationalVersionAttribute>()?.InformationalVersion ?? "unknown";
            Console.WriteLine($"ts-cgnat-operator {text}");
            return Done;
        });
        return version;
    }
}
