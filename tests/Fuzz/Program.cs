using System.Diagnostics;
using System.Globalization;
using SharpFuzz;
using TsCgnat.Fuzz;

// ts-cgnat fuzz targets.
//   TsCgnat.Fuzz list                      the targets, one a line
//   TsCgnat.Fuzz TARGET                    AFL++ mode (afl-fuzz -- dotnet TsCgnat.Fuzz.dll TARGET): one input on stdin per run
//   TsCgnat.Fuzz replay TARGET FILE|DIR... each input once, in this process: its time, and any crash; exit 1 on a crash
// A crash is an exception that the target's parser does not document as its refusal (FuzzTargets).
if (args is ["list"])
{
    foreach (var name in FuzzTargets.All.Keys)
    {
        Console.WriteLine(name);
    }

    return 0;
}

if (args is ["replay", var replayed, .. var inputs] && FuzzTargets.All.TryGetValue(replayed, out var replay))
{
    var files = inputs.SelectMany(i => Directory.Exists(i) ? Directory.EnumerateFiles(i, "*", SearchOption.AllDirectories) : [i]).Order(StringComparer.Ordinal).ToList();
    var crashes = 0;
    var (slowest, slowestMs) = ("", 0.0);
    foreach (var file in files)
    {
        try
        {
            replay(File.ReadAllBytes(file)); // a first pass to compile: the times below are of compiled code, as in the NativeAOT programs
        }
        catch (Exception)
        {
            // reported below
        }
    }

    foreach (var file in files)
    {
        var bytes = File.ReadAllBytes(file);
        var clock = Stopwatch.StartNew();
        try
        {
            replay(bytes);
        }
        catch (Exception e)
        {
            crashes++;
            Console.WriteLine($"CRASH {file}: {e.GetType().FullName}: {e.Message}\n{e.StackTrace}");
        }

        if (clock.Elapsed.TotalMilliseconds > slowestMs)
        {
            (slowest, slowestMs) = (file, clock.Elapsed.TotalMilliseconds);
        }
    }

    Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{replayed}: {files.Count} inputs, {crashes} crashes, slowest {slowestMs:F1} ms ({slowest})"));
    return crashes == 0 ? 0 : 1;
}

if (args is [var fuzzed] && FuzzTargets.All.TryGetValue(fuzzed, out var target))
{
    Fuzzer.OutOfProcess.Run(stream =>
    {
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        target(copy.ToArray());
    });
    return 0;
}

Console.Error.WriteLine($"usage: TsCgnat.Fuzz list | TARGET | replay TARGET FILE|DIR...; targets: {string.Join(", ", FuzzTargets.All.Keys)}");
return 2;
