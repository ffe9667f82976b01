using System.Diagnostics;
using System.Globalization;
using BenchmarkDotNet.Configs;
using BenchmarkDotNet.Jobs;
using Stcache.Cache;
using Stcache.Raft;

namespace Stcache.Cache.Bench;

/// <summary>
/// Cache benchmarks. Usage: dotnet run -c Release --project bench/Stcache.Cache.Bench -- MODE ...
/// <list type="bullet">
/// <item><c>snapshot [keys=1000000] [valueBytes=100]</c> (also the default when the first argument is a number):
/// the longest pause the applier sees while a snapshot is written on another thread.</item>
/// <item><c>memory [keys=1000000] [valueBytes=100] [ttl]</c>: bytes per key, managed heap and RSS, after applying
/// SET entries for that many keys.</item>
/// <item><c>apply [BenchmarkDotNet arguments]</c>: BenchmarkDotNet, applying SET with and without a TTL.</item>
/// <item><c>ttl-ab [rounds=40]</c>: the same comparison interleaved round by round, for a loaded machine.</item>
/// <item><c>lookup [keys=10000] [rounds=15]</c>: GET's key lookup alone, ns per lookup.</item>
/// </list>
/// </summary>
public static class Program
{
    public static void Main(string[] args)
    {
        string mode = args.Length > 0 && !char.IsDigit(args[0][0]) ? args[0] : "snapshot";
        string[] rest = args.Length > 0 && !char.IsDigit(args[0][0]) ? args[1..] : args;
        switch (mode)
        {
            case "snapshot":
                SnapshotPause(rest);
                break;
            case "memory":
                MemoryPerKey.Run(rest);
                break;
            case "ttl-ab":
                TtlAb.Run(rest);
                break;
            case "lookup":
                LookupBench.Run(rest);
                break;
            case "apply":
                // In process: building a separate benchmark project times out on a loaded machine.
                BenchmarkDotNet.Running.BenchmarkRunner.Run<ApplyBenchmarks>(
                    DefaultConfig.Instance.AddJob(Job.Default
                        .WithToolchain(BenchmarkDotNet.Toolchains.InProcess.Emit.InProcessEmitToolchain.Instance)
                        .WithWarmupCount(3)
                        .WithIterationCount(15)),
                    rest);
                break;
            default:
                Console.Error.WriteLine($"unknown mode '{mode}': snapshot, memory, apply, ttl-ab or lookup");
                Environment.Exit(2);
                break;
        }
    }

    private static void SnapshotPause(string[] args)
    {
        int keys = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 1_000_000;
        int valueBytes = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 100;
        var cache = new CacheStateMachine();
        var value = new byte[valueBytes];
        ulong index = 0;
        var encoded = new byte[keys][];
        for (int i = 0; i < keys; i++)
        {
            encoded[i] = CacheCommand.Set("key" + i.ToString(CultureInfo.InvariantCulture), value).Encode();
        }

        var fill = Stopwatch.StartNew();
        for (int i = 0; i < keys; i++)
        {
            cache.Apply(new LogIndex(++index), encoded[i]);
        }

        Console.WriteLine($"filled {keys:N0} keys of {valueBytes} B in {fill.ElapsedMilliseconds} ms");

        // Baseline: the longest single apply while nothing else runs.
        var random = new Random(7);
        var pauseBefore = GC.GetTotalPauseDuration();
        var baseline = new List<double>();
        Measure(cache, encoded, random, ref index, TimeSpan.FromSeconds(5), baseline);
        Console.WriteLine($"baseline (5 s, no snapshot): {Describe(baseline)}; GC pause total {(GC.GetTotalPauseDuration() - pauseBefore).TotalMilliseconds:F0} ms");

        // Snapshot to a temp file on another thread while the applier keeps going.
        string path = Path.GetTempFileName();
        long written = 0;
        double beginMs = 0;
        double writeMs = 0;
        var snapshotDone = new ManualResetEventSlim();
        var begin = Stopwatch.StartNew();
        var snapshot = cache.BeginSnapshot();
        beginMs = begin.Elapsed.TotalMilliseconds;
        var writer = new Thread(() =>
        {
            var sw = Stopwatch.StartNew();
            using (var file = new FileStream(path, FileMode.Create, FileAccess.Write, FileShare.None, 1 << 16))
            {
                written = snapshot.WriteTo(file);
                file.Flush(true);
            }

            writeMs = sw.Elapsed.TotalMilliseconds;
            snapshot.Dispose();
            snapshotDone.Set();
        });
        int gcBefore = GC.CollectionCount(2);
        pauseBefore = GC.GetTotalPauseDuration();
        var during = new List<double>();
        writer.Start();
        MeasureUntil(cache, encoded, random, ref index, snapshotDone, during);
        var gcPause = GC.GetTotalPauseDuration() - pauseBefore;
        writer.Join();
        int gen2 = GC.CollectionCount(2) - gcBefore;
        long fileBytes = new FileInfo(path).Length;
        File.Delete(path);
        Console.WriteLine($"snapshot: BeginSnapshot {beginMs:F3} ms (the only step that excludes the applier), " +
            $"written {written:N0} entries / {fileBytes / (1024.0 * 1024):F1} MiB in {writeMs:F0} ms");
        Console.WriteLine($"during snapshot: {Describe(during)}; gen2 GCs {gen2}, GC pause total {gcPause.TotalMilliseconds:F0} ms");
    }

    private static void Measure(CacheStateMachine cache, byte[][] encoded, Random random, ref ulong index, TimeSpan duration, List<double> latencies)
    {
        var until = Stopwatch.StartNew();
        while (until.Elapsed < duration)
        {
            latencies.Add(ApplyOne(cache, encoded, random, ref index));
        }
    }

    private static void MeasureUntil(CacheStateMachine cache, byte[][] encoded, Random random, ref ulong index, ManualResetEventSlim done, List<double> latencies)
    {
        while (!done.IsSet)
        {
            latencies.Add(ApplyOne(cache, encoded, random, ref index));
        }
    }

    private static string Describe(List<double> latencies)
    {
        var sorted = latencies.Order().ToArray();
        double At(double q) => sorted[Math.Min(sorted.Length - 1, (int)(q * sorted.Length))];
        return $"{sorted.Length:N0} applies, p50 {At(0.5) * 1000:F1} us, p99 {At(0.99) * 1000:F1} us, p99.9 {At(0.999) * 1000:F1} us, max {sorted[^1]:F1} ms";
    }

    private static double ApplyOne(CacheStateMachine cache, byte[][] encoded, Random random, ref ulong index)
    {
        var command = encoded[random.Next(encoded.Length)];
        long start = Stopwatch.GetTimestamp();
        cache.Apply(new LogIndex(++index), command);
        return Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    }
}
