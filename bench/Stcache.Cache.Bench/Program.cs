using System.Diagnostics;
using System.Globalization;
using Stcache.Cache;
using Stcache.Raft;

namespace Stcache.Cache.Bench;

/// <summary>
/// Measures the longest pause the applier sees while a snapshot of N keys is written on another thread.
/// Usage: dotnet run -c Release --project bench/Stcache.Cache.Bench -- [keys=1000000] [valueBytes=100]
/// </summary>
public static class Program
{
    public static void Main(string[] args)
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
        double baselineMax = Measure(cache, encoded, random, ref index, TimeSpan.FromSeconds(2), out long baselineCount);
        Console.WriteLine($"baseline: {baselineCount:N0} applies, longest {baselineMax:F3} ms");

        // Snapshot to a temp file on another thread while the applier keeps going.
        string path = Path.GetTempFileName();
        long written = 0;
        double beginMs = 0;
        double writeMs = 0;
        var snapshotDone = new ManualResetEventSlim();
        var applier = new Thread(() => { });
        double duringMax = 0;
        long duringCount = 0;
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
        writer.Start();
        duringMax = MeasureUntil(cache, encoded, random, ref index, snapshotDone, out duringCount);
        writer.Join();
        int gen2 = GC.CollectionCount(2) - gcBefore;
        long fileBytes = new FileInfo(path).Length;
        File.Delete(path);
        Console.WriteLine($"snapshot: BeginSnapshot {beginMs:F3} ms (the only step that excludes the applier), " +
            $"written {written:N0} entries / {fileBytes / (1024.0 * 1024):F1} MiB in {writeMs:F0} ms");
        Console.WriteLine($"during snapshot: {duringCount:N0} applies, longest apply pause {duringMax:F3} ms (gen2 GCs: {gen2})");
    }

    private static double Measure(CacheStateMachine cache, byte[][] encoded, Random random, ref ulong index, TimeSpan duration, out long count)
    {
        var until = Stopwatch.StartNew();
        double max = 0;
        count = 0;
        while (until.Elapsed < duration)
        {
            max = Math.Max(max, ApplyOne(cache, encoded, random, ref index));
            count++;
        }

        return max;
    }

    private static double MeasureUntil(CacheStateMachine cache, byte[][] encoded, Random random, ref ulong index, ManualResetEventSlim done, out long count)
    {
        double max = 0;
        count = 0;
        while (!done.IsSet)
        {
            max = Math.Max(max, ApplyOne(cache, encoded, random, ref index));
            count++;
        }

        return max;
    }

    private static double ApplyOne(CacheStateMachine cache, byte[][] encoded, Random random, ref ulong index)
    {
        var command = encoded[random.Next(encoded.Length)];
        long start = Stopwatch.GetTimestamp();
        cache.Apply(new LogIndex(++index), command);
        return Stopwatch.GetElapsedTime(start).TotalMilliseconds;
    }
}
