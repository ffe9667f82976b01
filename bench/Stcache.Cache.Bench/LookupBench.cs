using System.Diagnostics;
using System.Globalization;
using Stcache.Cache;
using Stcache.Raft;

namespace Stcache.Cache.Bench;

/// <summary>
/// GET's lookup alone (<see cref="CacheStateMachine.ReadString"/>): the key table filled with <c>keys</c> keys of
/// 100 B, then rounds of random present and absent keys looked up; prints the median wall and process CPU time per
/// lookup over the rounds. For comparing two builds of the table run one after the other (docs/PERFORMANCE.md,
/// "READONLY GET, session 9").
/// </summary>
internal static class LookupBench
{
    private struct Discard : IValueSink
    {
        public int Bytes;

        void IValueSink.Value(ReadOnlySpan<byte> value) => Bytes += value.Length;
    }

    public static void Run(string[] args)
    {
        int keys = args.Length > 0 ? int.Parse(args[0], CultureInfo.InvariantCulture) : 10_000;
        int rounds = args.Length > 1 ? int.Parse(args[1], CultureInfo.InvariantCulture) : 15;
        const int lookups = 2_000_000; // process CPU time ticks in 10 ms steps: a round must be far longer
        const long logTime = 1_700_000_000_000;
        string Key(int i) => "key:" + i.ToString("D12", CultureInfo.InvariantCulture);
        var cache = new CacheStateMachine();
        var value = new string('v', 100);
        ulong index = 0;
        for (int i = 0; i < keys; i++)
        {
            cache.Apply(new LogIndex(++index), CommandParser.Parse(logTime, "SET", Key(i), value).Write!.Encode(logTime));
        }

        // Three present keys to one absent (a key never set), in a fixed random order.
        var random = new Random(12);
        byte[][] probes = Enumerable.Range(0, 65_536)
            .Select(i => System.Text.Encoding.ASCII.GetBytes(i % 4 == 3 ? "nokey:" + random.Next(keys) : Key(random.Next(keys))))
            .ToArray();
        var sink = new Discard();
        var wall = new List<double>();
        var cpu = new List<double>();
        var process = Process.GetCurrentProcess();
        for (int round = -2; round < rounds; round++)
        {
            process.Refresh();
            var cpuBefore = process.TotalProcessorTime;
            var watch = Stopwatch.StartNew();
            for (int i = 0; i < lookups; i++)
            {
                cache.ReadString(probes[i & 0xFFFF], logTime, ref sink);
            }

            watch.Stop();
            process.Refresh();
            if (round >= 0)
            {
                wall.Add(watch.Elapsed.TotalNanoseconds / lookups);
                cpu.Add((process.TotalProcessorTime - cpuBefore).TotalNanoseconds / lookups);
            }
        }

        static double Median(List<double> values) => values.Order().ElementAt(values.Count / 2);
        Console.WriteLine($"{keys:N0} keys, {rounds} rounds of {lookups:N0} lookups (1 in 4 absent): median {Median(wall):F1} ns wall, {Median(cpu):F1} ns CPU per lookup");
        GC.KeepAlive(sink.Bytes);
    }
}
