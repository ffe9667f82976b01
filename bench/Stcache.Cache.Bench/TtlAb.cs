using System.Diagnostics;
using System.Globalization;
using Stcache.Cache;
using Stcache.Raft;

namespace Stcache.Cache.Bench;

/// <summary>
/// An interleaved A/B of applying SET with and without a TTL, for a loaded machine where BenchmarkDotNet's
/// sequential runs drift with the load: rounds alternate the two variants (and their order), and the medians of
/// the per-round wall time and process CPU time are compared.
/// </summary>
internal static class TtlAb
{
    public static void Run(string[] args)
    {
        int rounds = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 40;
        const int keys = 100_000;
        const int batch = 100_000; // process CPU time ticks in 10 ms steps: a round must be far longer
        const long logTime = 1_700_000_000_000;
        var value = new string('v', 100);
        string Key(int i) => "key:" + i.ToString("D7", CultureInfo.InvariantCulture);
        byte[][] plain = Enumerable.Range(0, keys).Select(i => CommandParser.Parse(logTime, "SET", Key(i), value).Write!.Encode(logTime)).ToArray();
        byte[][] ttl = Enumerable.Range(0, keys).Select(i => CommandParser.Parse(logTime, "SET", Key(i), value, "EX", "3600").Write!.Encode(logTime)).ToArray();
        var variants = new[] { ("no TTL", plain, new CacheStateMachine()), ("TTL", ttl, new CacheStateMachine()) };
        var indexes = new ulong[2];
        var positions = new int[2];
        var wall = new List<double>[] { [], [] };
        var cpu = new List<double>[] { [], [] };
        for (int v = 0; v < 2; v++)
        {
            foreach (byte[] entry in variants[v].Item2)
            {
                variants[v].Item3.Apply(new LogIndex(++indexes[v]), entry);
            }
        }

        for (int round = 0; round < rounds; round++)
        {
            for (int turn = 0; turn < 2; turn++)
            {
                int v = (round + turn) % 2;
                var (_, entries, cache) = variants[v];
                var cpuStart = Process.GetCurrentProcess().TotalProcessorTime;
                long start = Stopwatch.GetTimestamp();
                for (int i = 0; i < batch; i++)
                {
                    cache.Apply(new LogIndex(++indexes[v]), entries[positions[v]]);
                    positions[v] = (positions[v] + 1) % entries.Length;
                }

                wall[v].Add(Stopwatch.GetElapsedTime(start).TotalNanoseconds / batch);
                cpu[v].Add((Process.GetCurrentProcess().TotalProcessorTime - cpuStart).TotalNanoseconds / batch);
            }
        }

        static double Median(List<double> values) => values.Order().ElementAt(values.Count / 2);
        Console.WriteLine($"SET apply, overwrite of {keys:N0} keys, {rounds} interleaved rounds of {batch:N0}:");
        for (int v = 0; v < 2; v++)
        {
            Console.WriteLine($"  {variants[v].Item1,-7} median wall {Median(wall[v]),7:F0} ns/op, median CPU {Median(cpu[v]),7:F0} ns/op");
        }

        Console.WriteLine($"  TTL / no TTL: wall {Median(wall[1]) / Median(wall[0]):F3}, CPU {Median(cpu[1]) / Median(cpu[0]):F3}");
    }
}
