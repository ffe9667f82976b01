using System.Globalization;
using BenchmarkDotNet.Attributes;
using Stcache.Cache;
using Stcache.Raft;

namespace Stcache.Cache.Bench;

/// <summary>
/// The cost of applying a SET entry with a TTL against one without (issue 11: within 10%). "Overwrite" rewrites
/// keys of a filled cache (the steady state of a cache); "Insert" adds fresh keys to an empty one.
/// </summary>
[MemoryDiagnoser]
public class ApplyBenchmarks
{
    private const int Keys = 100_000;
    private const long LogTime = 1_700_000_000_000;

    private byte[][] _plain = [];
    private byte[][] _withTtl = [];
    private CacheStateMachine _cache = new();
    private ulong _index;
    private int _next;

    [Params(false, true)]
    public bool Ttl { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        var value = new string('v', 100);
        _plain = Encode(i => CommandParser.Parse(LogTime, "SET", Key(i), value));
        _withTtl = Encode(i => CommandParser.Parse(LogTime, "SET", Key(i), value, "EX", "3600"));
    }

    private static string Key(int i) => "key:" + i.ToString("D7", CultureInfo.InvariantCulture);

    private static byte[][] Encode(Func<int, ParsedCommand> parse) =>
        Enumerable.Range(0, Keys).Select(i => parse(i).Write!.Encode(LogTime)).ToArray();

    private byte[][] Entries => Ttl ? _withTtl : _plain;

    [IterationSetup(Target = nameof(Overwrite))]
    public void FillForOverwrite()
    {
        _cache = new CacheStateMachine();
        _index = 0;
        foreach (byte[] entry in Entries)
        {
            _cache.Apply(new LogIndex(++_index), entry);
        }
    }

    [IterationSetup(Target = nameof(Insert))]
    public void EmptyForInsert()
    {
        _cache = new CacheStateMachine();
        _index = 0;
        _next = 0;
    }

    [Benchmark(OperationsPerInvoke = Keys)]
    public void Overwrite()
    {
        var entries = Entries;
        for (int i = 0; i < entries.Length; i++)
        {
            _cache.Apply(new LogIndex(++_index), entries[i]);
        }
    }

    [Benchmark(OperationsPerInvoke = Keys)]
    public void Insert()
    {
        var entries = Entries;
        for (; _next < entries.Length; _next++)
        {
            _cache.Apply(new LogIndex(++_index), entries[_next]);
        }
    }
}
