using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Runtime.InteropServices;
using System.Text;
using TsCgnat.Api;
using TsCgnat.Firewall.Model;
using TsCgnat.Firewall.Rules;

// Reading policies, stage by stage (issue 11, item 2: 10,000 entries read and validated in at most 20 ms):
//   yamldotnet YamlDotNet's parser alone, every event pulled (not a stage: what the YAML stage cost before the fast
//              reader of the plain subset, src/Api/PlainYaml.cs, and still costs for texts outside that subset);
//   yaml       PolicyDocuments.Read: YAML to JSON (PlainYaml, or YamlDotNet's events), bound to CgnatAllowPolicy,
//              every limit of issue 10 checked;
//   validate   PolicyValidator.Validate of each policy (CIDRs parsed, canonical, in range, no duplicates);
//   desired    Exemptions.From and the ipset members (IndirectLayout.Sets), what the engine then diffs;
//   total      the three, and PolicyDocuments.Parse + desired state timed as one, as the agent runs them.
// Each figure is the median of --runs runs after --warmup runs in this process (JIT: the shipped agent is
// NativeAOT, whose first run is close to these), plus the first run's total ("cold", JIT included).
// Usage: bench-policy-read [--runs 31] [--warmup 5] [--sizes 10,1000,10000]
var runs = 31;
var warmup = 5;
int[] sizes = [10, 1_000, 10_000];
for (var i = 0; i + 1 < args.Length; i += 2)
{
    switch (args[i])
    {
        case "--runs": runs = int.Parse(args[i + 1], CultureInfo.InvariantCulture); break;
        case "--warmup": warmup = int.Parse(args[i + 1], CultureInfo.InvariantCulture); break;
        case "--sizes": sizes = [.. args[i + 1].Split(',').Select(s => int.Parse(s, CultureInfo.InvariantCulture))]; break;
        default: Console.Error.WriteLine($"unknown option {args[i]}"); return 2;
    }
}

const double TargetMs = 20;
Console.WriteLine($"policy read: median of {runs} runs after {warmup} warm-up runs; load average {File.ReadAllText("/proc/loadavg").Trim()}");
Console.WriteLine("each figure: wall ms / this thread's CPU ms (on a loaded machine the CPU figure is the fairer one; PASS needs both <= 20 ms)");
Console.WriteLine($"{"entries",8} {"bytes",8} {"yamldotnet",13} {"yaml",13} {"validate",13} {"desired",13} {"total",13} {"cold",13}");
var missed = false;
foreach (var n in sizes)
{
    var texts = Texts(n);
    var bytes = texts.Sum(t => Encoding.UTF8.GetByteCount(t));
    Lap? cold = null;
    var events = new List<Lap>();
    var yaml = new List<Lap>();
    var validate = new List<Lap>();
    var desired = new List<Lap>();
    var total = new List<Lap>();
    for (var run = 0; run < warmup + runs; run++)
    {
        // YamlDotNet's parser alone, every event pulled and dropped: the YAML stage's cost without the fast reader.
        var clock = Clock.Start();
        foreach (var text in texts)
        {
            var parser = new YamlDotNet.Core.Parser(new StringReader(text));
            while (parser.MoveNext())
            {
            }
        }

        var tEvents = clock.Lap();

        // Stage by stage.
        var read = texts.Select((t, i) => PolicyDocuments.Read(t, $"p{i}.yaml")).ToList();
        var tYaml = clock.Lap();
        var valid = new List<ValidatedPolicy>();
        foreach (var (policies, problems) in read)
        {
            Check(problems.Count == 0, "a generated policy was refused");
            foreach (var p in policies)
            {
                Check(PolicyValidator.Validate(p.Policy, out var v).Count == 0 && v is not null, "a generated policy is invalid");
                valid.Add(v!);
            }
        }

        var tValidate = clock.Lap();
        var sets = IndirectLayout.Sets(Exemptions.From(valid));
        var tDesired = clock.Lap();
        Check(sets[0].Members.Count + sets[1].Members.Count == n, "the sets lost entries");

        // As the agent does it: Parse (read + validate), then the desired state.
        var parsed = texts.Select((t, i) => PolicyDocuments.Parse(t, $"p{i}.yaml")).SelectMany(r => r.Policies).Select(p => p.Valid).ToList();
        var whole = IndirectLayout.Sets(Exemptions.From(parsed));
        var tTotal = clock.Lap();
        Check(whole[0].Members.Count + whole[1].Members.Count == n, "Parse lost entries");

        cold ??= tTotal;
        if (run >= warmup)
        {
            events.Add(tEvents);
            yaml.Add(tYaml);
            validate.Add(tValidate);
            desired.Add(tDesired);
            total.Add(tTotal);
        }
    }

    var t50 = Lap.Median(total);
    var pass = t50.Wall <= TargetMs && t50.Cpu <= TargetMs;
    missed |= !pass;
    Console.WriteLine($"{n,8} {bytes,8} {Lap.Median(events),13} {Lap.Median(yaml),13} {Lap.Median(validate),13} {Lap.Median(desired),13} {t50,13} {cold,13}  {(pass ? "PASS" : "MISS")}");
}

return missed ? 1 : 0;


static void Check(bool condition, string message)
{
    if (!condition)
    {
        throw new InvalidOperationException(message);
    }
}

// n entries as policies of at most 1,000 allowed sources (the validator's cap is 1,024 per list), one policy per
// file as a policy directory holds them; a /32 per entry, every tenth with an interface and a description.
static List<string> Texts(int n)
{
    var texts = new List<string>();
    for (var start = 0; start < n; start += 1_000)
    {
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"apiVersion: tscgnat.io/v1alpha1\nkind: CgnatAllowPolicy\nmetadata:\n  name: bench-{start / 1_000}\nspec:\n  allowedSources:\n");
        for (var i = start; i < Math.Min(n, start + 1_000); i++)
        {
            var address = new IPAddress(BitConverter.GetBytes(IPAddress.HostToNetworkOrder((100 << 24) | (64 << 16) | i)));
            text.Append(CultureInfo.InvariantCulture, $"    - cidr: {address}/32\n");
            if (i % 10 == 0)
            {
                text.Append(CultureInfo.InvariantCulture, $"      interfaces: [eth0]\n      description: \"entry {i}\"\n");
            }
        }

        texts.Add(text.ToString());
    }

    return texts;
}

/// <summary>Wall time and the CPU time of this thread (clock_gettime CLOCK_THREAD_CPUTIME_ID), in milliseconds.</summary>
internal readonly record struct Lap(double Wall, double Cpu)
{
    public static Lap Median(List<Lap> laps) =>
        new(laps.Select(l => l.Wall).Order().ElementAt(laps.Count / 2), laps.Select(l => l.Cpu).Order().ElementAt(laps.Count / 2));

    public override string ToString() => string.Create(CultureInfo.InvariantCulture, $"{Wall,6:F2}/{Cpu,6:F2}");
}

internal sealed partial class Clock
{
    private readonly Stopwatch _wall = Stopwatch.StartNew();
    private double _cpu = ThreadCpuMs();

    public static Clock Start() => new();

    public Lap Lap()
    {
        var (wall, cpu) = (_wall.Elapsed.TotalMilliseconds, ThreadCpuMs());
        var lap = new Lap(wall, cpu - _cpu);
        _wall.Restart();
        _cpu = ThreadCpuMs();
        return lap;
    }

    private static double ThreadCpuMs()
    {
        if (ClockGetTime(3 /* CLOCK_THREAD_CPUTIME_ID */, out var now) != 0)
        {
            throw new InvalidOperationException("clock_gettime failed");
        }

        return (now.Seconds * 1e9 + now.Nanoseconds) / 1e6;
    }

    [LibraryImport("libc", EntryPoint = "clock_gettime")]
    private static partial int ClockGetTime(int clock, out Timespec time);

    [StructLayout(LayoutKind.Sequential)]
    private struct Timespec
    {
        public long Seconds;
        public long Nanoseconds;
    }
}
