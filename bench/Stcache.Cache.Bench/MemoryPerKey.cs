using System.Diagnostics;
using System.Globalization;
using Stcache.Cache;
using Stcache.Raft;

namespace Stcache.Cache.Bench;

/// <summary>Loads N keys of V bytes into a state machine through SET entries (as a replica applies them) and
/// reports bytes per key: managed heap (after a full GC) and process RSS, each against the empty state. Keys are
/// <c>key:0000000</c> (11 bytes), like <c>redis-benchmark</c>'s.</summary>
internal static class MemoryPerKey
{
    public static void Run(string[] args)
    {
        int keys = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 1_000_000;
        int valueBytes = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 100;
        bool ttl = args.Length > 2 && args[2] == "ttl";
        const long logTime = 1_700_000_000_000;
        var value = new string('v', valueBytes);

        var cache = new CacheStateMachine();
        long heapBefore = GC.GetTotalMemory(forceFullCollection: true);
        long rssBefore = Rss();
        var watch = Stopwatch.StartNew();
        for (int i = 0; i < keys; i++)
        {
            string key = "key:" + i.ToString("D7", CultureInfo.InvariantCulture);
            var parsed = ttl
                ? CommandParser.Parse(logTime, "SET", key, value, "EX", "3600")
                : CommandParser.Parse(logTime, "SET", key, value);
            cache.Apply(new LogIndex((ulong)i + 1), parsed.Write!.Encode(logTime));
        }

        double loadSeconds = watch.Elapsed.TotalSeconds;
        long heapAfter = GC.GetTotalMemory(forceFullCollection: true);
        var pause = Stopwatch.StartNew();
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        pause.Stop();
        long rssAfter = Rss();
        Console.WriteLine($"{keys:N0} keys of {valueBytes} B{(ttl ? " with a TTL" : "")} loaded in {loadSeconds:F1} s");
        Console.WriteLine($"managed heap: {(heapAfter - heapBefore) / (double)keys:F1} B/key ({(heapAfter - heapBefore) / 1048576.0:F0} MiB)");
        Console.WriteLine($"RSS:          {(rssAfter - rssBefore) / (double)keys:F1} B/key ({(rssAfter - rssBefore) / 1048576.0:F0} MiB; process RSS {rssAfter / 1048576.0:F0} MiB)");
        Console.WriteLine($"accounted:    {cache.UsedMemoryBytes / (double)keys:F1} B/key (UsedMemoryBytes, what --max-memory limits)");
        Console.WriteLine($"an aggressive compacting full GC of the loaded heap took {pause.Elapsed.TotalMilliseconds:F0} ms");
        GC.KeepAlive(cache);
    }

    private static long Rss()
    {
        using var process = Process.GetCurrentProcess();
        process.Refresh();
        return process.WorkingSet64;
    }
}
