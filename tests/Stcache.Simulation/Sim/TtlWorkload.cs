using System.Globalization;
using System.Text;
using Stcache.Cache;
using Stcache.Node;
using Stcache.Raft;

namespace Stcache.Simulation.Sim;

/// <summary>
/// The TTL workload of a seed, drawn from its own random stream so that the seed's other options stay as they were.
/// <see cref="Clients"/> 0 means no TTL workload.
/// </summary>
internal sealed record TtlOptions
{
    public int Clients { get; init; }

    public int KeyCount { get; init; } = 3;

    /// <summary>A replicated memory limit (noeviction) proposed at the start; 0 for none.</summary>
    public long MaxMemoryBytes { get; init; }

    /// <summary>Longest value written; with a limit the values are larger, so it is reached.</summary>
    public int ValueBytesMax { get; init; } = 24;

    public static TtlOptions FromSeed(int seed)
    {
        var random = new SplitMix(((ulong)seed * 0x9E3779B97F4A7C15UL) ^ 0x5454_4C00UL);
        if (!random.Chance(1, 2))
        {
            return new TtlOptions();
        }

        bool limited = random.Chance(1, 3);
        return new TtlOptions
        {
            Clients = random.Between(1, 3),
            KeyCount = random.Between(2, 5),
            MaxMemoryBytes = limited ? random.Between(1_500, 4_000) : 0,
            ValueBytesMax = limited ? random.Between(100, 400) : 24,
        };
    }

    public override string ToString() =>
        Clients == 0 ? "ttl=off" : $"ttl={Clients}x{KeyCount} maxMemory={MaxMemoryBytes} valueMax={ValueBytesMax}";
}

/// <summary>What the TTL workload did, so a green run can be told from an idle one.</summary>
public sealed class TtlStats
{
    public long Writes { get; set; }

    public long Reads { get; set; }

    /// <summary>Reads that found the key absent because its stamped expiry had passed at the read's time.</summary>
    public long ExpiredReads { get; set; }

    public long VisibleReads { get; set; }

    public long OutOfMemory { get; set; }

    public void Add(TtlStats other)
    {
        Writes += other.Writes;
        Reads += other.Reads;
        ExpiredReads += other.ExpiredReads;
        VisibleReads += other.VisibleReads;
        OutOfMemory += other.OutOfMemory;
    }

    public override string ToString() =>
        $"ttlWrites={Writes} ttlReads={Reads} ttlVisible={VisibleReads} ttlExpired={ExpiredReads} ttlOom={OutOfMemory}";
}

/// <summary>
/// TTL clients and their checkers. The clients write the TTL keys through the leader, which stamps the entry with its
/// clock as the server does (SET with PX/EX/PXAT or none, PEXPIRE/EXPIRE, PERSIST, DEL), and read them linearizably,
/// with a lease, or stale, on any node. The checkers follow each key's stamped expiry from the committed log (a model
/// fed by whichever node applies an index first) and, after every event and every read, require:
/// <list type="bullet">
/// <item>every node's log time and every TTL key (liveness, value, expiry) equal the log's at its applied index: a
/// TTL is never extended, reset or lost by a failover, a restart or a snapshot restore;</item>
/// <item>no read returns a key at or after its stamped expiry, at the read's time; that time is the leader's when it
/// confirmed the read (between the clocks of the nodes that led while the read was in flight, or the log time if
/// that is later), never behind the serving node's log time; a stale read's is its node's log time;</item>
/// <item>with a memory limit (noeviction), used memory never exceeds it by more than one write, and a write is
/// refused only when it would exceed it.</item>
/// </list>
/// Entries of other writers (eviction, expiry deletes) are followed: an evicted key becomes unknown until it is set
/// again, an expiry delete removes only what had expired.
/// </summary>
internal sealed class TtlWorkload
{
    private const int ClientTimeoutMs = 1_000;

    private readonly TtlOptions _options;
    private readonly ISimEnvironment _env;
    private readonly Func<IEnumerable<SimNode>> _upNodes;
    private readonly Func<SimNode?> _leader;
    private readonly Func<bool> _stopped;
    private readonly SplitMix _random;
    private readonly TtlModel _model;
    private readonly List<PendingRead> _pending = [];
    private long _sequence;
    private bool _policyApplied;

    public TtlWorkload(int seed, TtlOptions options, ISimEnvironment env, Func<IEnumerable<SimNode>> upNodes, Func<SimNode?> leader, Func<bool> stopped)
    {
        _options = options;
        _env = env;
        _upNodes = upNodes;
        _leader = leader;
        _stopped = stopped;
        _random = new SplitMix(((ulong)seed * 0xBF58476D1CE4E5B9UL) ^ 0x5454_4C01UL);
        Keys = [.. Enumerable.Range(0, options.KeyCount).Select(k => "t" + k.ToString(CultureInfo.InvariantCulture))];
        _model = new TtlModel(Keys, Stats);
        WriteCostMax = CacheStateMachine.KeyOverheadBytes + Keys.Max(k => k.Length) + options.ValueBytesMax;
    }

    public IReadOnlyList<string> Keys { get; }

    public TtlStats Stats { get; } = new();

    /// <summary>The accounted bytes of the largest single write of this workload.</summary>
    public long WriteCostMax { get; }

    /// <summary>Follows every entry <paramref name="node"/> applies (call once per node, before it starts).</summary>
    public void Attach(SimNode node) => node.EntryApplied += (n, entry) => _model.Applied(n, entry);

    public void Start()
    {
        if (_options.MaxMemoryBytes > 0)
        {
            _env.Schedule(_random.Between(0, 100), ProposePolicy);
        }

        for (int c = 0; c < _options.Clients; c++)
        {
            int client = c;
            _env.Schedule(_random.Between(0, 100), () => ClientStep(client));
        }
    }

    /// <summary>After every event: node states against the log, the memory limit, and the leader clocks seen by
    /// reads in flight.</summary>
    public void Check(IEnumerable<SimNode> nodes)
    {
        foreach (var node in nodes)
        {
            if (!node.IsUp || node.IsWaiting || node.Cache is null)
            {
                continue;
            }

            _model.CheckNode(node);
            long limit = node.Cache.MaxMemoryBytes;
            if (limit > 0 && node.Cache.UsedMemoryBytes > limit + WriteCostMax)
            {
                throw new SimulationFailureException(
                    $"ttl memory: node {node.Id} at applied index {node.Applied} uses {node.Cache.UsedMemoryBytes} bytes, over its limit {limit} by more than one write ({WriteCostMax})");
            }
        }

        SampleLeaderClocks();
    }

    /// <summary>Records the clock of every node leading now in each read in flight (the simulator calls it before
    /// every event, and the checks after it).</summary>
    public void SampleLeaderClocks()
    {
        if (_pending.Count == 0)
        {
            return;
        }

        foreach (var node in _upNodes())
        {
            if (node.Node is { Role: RaftRole.Leader } && node.Cache is { } cache)
            {
                long time = Math.Max(node.Clock.GetUtcNow().ToUnixTimeMilliseconds(), cache.LastLogTimeUnixMs);
                foreach (var read in _pending)
                {
                    read.Observe(time);
                }
            }
        }
    }

    private void ProposePolicy()
    {
        if (_policyApplied || _stopped())
        {
            return;
        }

        var leader = _leader();
        if (leader is not null)
        {
            long time = LeaderTime(leader);
            var entry = WriteCommand.MemoryPolicy(_options.MaxMemoryBytes, EvictionPolicy.NoEviction).Encode(time);
            leader.ProposeEntry(entry, proposal =>
            {
                if (proposal.Result is not null)
                {
                    _policyApplied = true;
                }
            }, out _);
        }

        _env.Schedule(200, ProposePolicy);
    }

    private void ClientStep(int client)
    {
        if (_stopped())
        {
            return;
        }

        string key = Keys[_random.Next(Keys.Count)];
        int choice = _random.Next(10);
        if (choice >= 6)
        {
            Read(client, key, choice switch { 6 or 7 => ReadKind.Linearizable, 8 => ReadKind.Lease, _ => ReadKind.Stale });
            return;
        }

        var leader = _leader();
        if (leader is null)
        {
            Next(client, 20, 60);
            return;
        }

        string value = Value(client);
        string[] argv = choice switch
        {
            < 3 => Set(key, value, leader),
            3 => _random.Chance(1, 2)
                ? ["PEXPIRE", key, Number(_random.Between(-50, 2_000))]
                : ["EXPIRE", key, Number(_random.Between(0, 3))],
            4 => ["PERSIST", key],
            _ => _random.Chance(1, 2) ? ["DEL", key] : Set(key, value, leader),
        };

        // The leader stamps: its clock, never behind the log time, and relative times made absolute with it.
        long time = LeaderTime(leader);
        var parsed = CommandParser.Parse(time, argv);
        if (parsed.Write is null)
        {
            throw new SimulationFailureException($"ttl workload: {string.Join(' ', argv)} did not parse as a write: {parsed.Error}");
        }

        bool answered = false;
        var status = leader.ProposeEntry(parsed.Write.Encode(time), proposal =>
        {
            if (!answered)
            {
                answered = true;
                Next(client, 0, 30);
            }
        }, out _);
        if (status != ProposeStatus.Accepted)
        {
            Next(client, 5, 40);
            return;
        }

        Stats.Writes++;
        _env.Trace($"ttl client {client} {string.Join(' ', argv.Select(a => a.Length > 16 ? a[..16] + "…" : a))} at n{leader.Id} time={time}");
        _env.Schedule(ClientTimeoutMs, () =>
        {
            if (!answered)
            {
                answered = true;
                Next(client, 0, 30);
            }
        });
    }

    private string[] Set(string key, string value, SimNode leader) => _random.Next(5) switch
    {
        0 => ["SET", key, value],
        1 => ["SET", key, value, "PX", Number(_random.Between(1, 2_500))],
        2 => ["SET", key, value, "EX", Number(_random.Between(1, 3))],
        3 => ["SET", key, value, "PXAT", Number(ClientTime() + _random.Between(-300, 2_500))],
        _ => ["PSETEX", key, Number(_random.Between(1, 1_500)), value],
    };

    private void Read(int client, string key, ReadKind kind)
    {
        var targets = _upNodes().Where(n => !n.IsWaiting && n.Cache is not null).ToList();
        if (targets.Count == 0)
        {
            Next(client, 10, 50);
            return;
        }

        var node = _random.Pick(targets);
        if (kind == ReadKind.Stale)
        {
            // Served at once at the node's last applied log time.
            Serve(node, key, kind, node.Cache!.LastLogTimeUnixMs, null);
            Next(client, 0, 30);
            return;
        }

        var read = new PendingRead(node, key, kind);
        _pending.Add(read);
        SampleLeaderClocks();
        bool accepted = node.ReadPoint(kind == ReadKind.Lease, point =>
        {
            if (read.Done)
            {
                return;
            }

            read.Done = true;
            _pending.Remove(read);
            if (point is { } p && node.Cache is not null)
            {
                // The leader confirming in this very event has not been sampled yet.
                SampleLeaderClocks();
                read.Observe(ObserveNowIfLeader(node));
                Serve(node, key, kind, Math.Max(p.TimeUnixMs, node.Cache.LastLogTimeUnixMs), read);
            }

            Next(client, 0, 30);
        });
        if (!accepted)
        {
            read.Done = true;
            _pending.Remove(read);
            Next(client, 5, 40);
            return;
        }

        _env.Schedule(ClientTimeoutMs, () =>
        {
            if (!read.Done)
            {
                read.Done = true;
                _pending.Remove(read);
                Next(client, 0, 30);
            }
        });
    }

    private static long? ObserveNowIfLeader(SimNode node) =>
        node.Node is { Role: RaftRole.Leader } && node.Cache is { } cache
            ? Math.Max(node.Clock.GetUtcNow().ToUnixTimeMilliseconds(), cache.LastLogTimeUnixMs)
            : null;

    /// <summary>Serves a read at <paramref name="readTime"/> from the node's state, as the server does, and checks it.</summary>
    private void Serve(SimNode node, string key, ReadKind kind, long readTime, PendingRead? read)
    {
        var cache = node.Cache!;
        bool visible = cache.TryGet(key, out var entry, Math.Max(1, readTime));
        Stats.Reads++;
        if (visible)
        {
            Stats.VisibleReads++;
        }

        _env.Trace($"ttl read {kind} {key} at n{node.Id} index={node.Applied} time={readTime} -> {(visible ? $"expires {entry.ExpiresAtUnixMs}" : "absent")}");
        if (visible && entry.ExpiresAtUnixMs != 0 && entry.ExpiresAtUnixMs <= readTime)
        {
            throw new SimulationFailureException(
                $"ttl read: node {node.Id} returned {key} at read time {readTime}, at or after its expiry {entry.ExpiresAtUnixMs}");
        }

        _model.CheckRead(node, key, kind, readTime, visible, visible ? entry : null, read);
    }

    private void Next(int client, int low, int high) => _env.Schedule(_random.Between(low, high), () => ClientStep(client));

    private string Value(int client)
    {
        string value = string.Create(CultureInfo.InvariantCulture, $"t{client}-{++_sequence}-");
        int length = _random.Between(value.Length, Math.Max(value.Length, _options.ValueBytesMax));
        return value.PadRight(length, 'x');
    }

    private static long LeaderTime(SimNode leader) =>
        Math.Max(leader.Clock.GetUtcNow().ToUnixTimeMilliseconds(), leader.Cache!.LastLogTimeUnixMs);

    /// <summary>A client's idea of now (for PXAT): true simulated time.</summary>
    private long ClientTime() => SimClock.EpochUnixMs + _env.Now;

    private static string Number(long value) => value.ToString(CultureInfo.InvariantCulture);
}

internal enum ReadKind : byte
{
    Linearizable,
    Lease,
    Stale,
}

/// <summary>A read in flight, and the times of every node that led while it was.</summary>
internal sealed class PendingRead(SimNode node, string key, ReadKind kind)
{
    public SimNode Node => node;

    public string Key => key;

    public ReadKind Kind => kind;

    public bool Done { get; set; }

    public long LeaderTimeMin { get; private set; } = long.MaxValue;

    public long LeaderTimeMax { get; private set; } = long.MinValue;

    public void Observe(long? time)
    {
        if (time is { } t)
        {
            LeaderTimeMin = Math.Min(LeaderTimeMin, t);
            LeaderTimeMax = Math.Max(LeaderTimeMax, t);
        }
    }
}

/// <summary>
/// Each TTL key's state as the committed log says, by index: whether it is present, its value, its stamped expiry;
/// and the log time at each index. Fed by the first node to apply each index (all apply the same entry there).
/// </summary>
internal sealed class TtlModel(IReadOnlyList<string> keys, TtlStats stats)
{
    private readonly HashSet<string> _keys = [.. keys];
    private readonly Dictionary<string, List<(ulong Index, KeyState State)>> _history = keys.ToDictionary(k => k, _ => new List<(ulong, KeyState)> { (0, KeyState.Absent) });
    private readonly List<(ulong Index, long Time)> _logTimes = [(0, 0)];
    private ulong _cursor;
    private long _time;
    private long _maxMemory;

    public void Applied(SimNode node, Entry entry)
    {
        ulong index = entry.Index.Value;
        if (index <= _cursor)
        {
            return;
        }

        if (index != _cursor + 1)
        {
            throw new SimulationFailureException($"ttl model: node {node.Id} applied index {index}, but no node had applied {_cursor + 1}");
        }

        _cursor = index;
        if (entry.Type != EntryType.Normal || !WriteCommand.TryDecode(entry.Data.Span, out var command, out long logTime, out _))
        {
            return;
        }

        long time = Math.Max(logTime, _time);
        if (time != _time)
        {
            _time = time;
            _logTimes.Add((index, time));
        }

        Execute(command!.Invocation, index, node);
    }

    /// <summary>The node's log time and every TTL key at its applied index equal the log's.</summary>
    public void CheckNode(SimNode node)
    {
        ulong index = node.Applied.Value;
        if (index > _cursor)
        {
            return; // cannot happen: the node's own apply fed the model
        }

        long time = LogTimeAt(index);
        var cache = node.Cache!;
        if (cache.LastLogTimeUnixMs != time)
        {
            throw new SimulationFailureException(
                $"ttl log time: node {node.Id} at applied index {index} has log time {cache.LastLogTimeUnixMs}, the log says {time}");
        }

        if (time == 0)
        {
            return;
        }

        foreach (string key in _keys)
        {
            Compare(node, key, index, time, "state");
        }
    }

    public void CheckRead(SimNode node, string key, ReadKind kind, long readTime, bool visible, CacheEntry? entry, PendingRead? read)
    {
        ulong index = node.Applied.Value;
        long logTime = LogTimeAt(index);
        if (readTime < logTime)
        {
            throw new SimulationFailureException($"ttl read time: a {kind} read of {key} on node {node.Id} at index {index} was served at {readTime}, behind the log time {logTime}");
        }

        if (kind == ReadKind.Stale && readTime != logTime)
        {
            throw new SimulationFailureException($"ttl read time: a stale read of {key} on node {node.Id} at index {index} was served at {readTime}, not at the log time {logTime}");
        }

        if (read is not null && read.LeaderTimeMin <= read.LeaderTimeMax)
        {
            // The leader's time when it confirmed (one of the leaders' times seen while the read was in flight), or
            // the log time when that was later.
            bool leaderTime = readTime >= read.LeaderTimeMin && readTime <= read.LeaderTimeMax;
            bool logTimeLater = readTime == logTime && logTime >= read.LeaderTimeMin;
            if (!leaderTime && !logTimeLater)
            {
                throw new SimulationFailureException(
                    $"ttl read time: a {kind} read of {key} on node {node.Id} (clock {node.Clock.GetUtcNow().ToUnixTimeMilliseconds()}) was served at {readTime}, " +
                    $"outside the leaders' times [{read.LeaderTimeMin}, {read.LeaderTimeMax}] while it was in flight (log time {logTime})");
            }
        }

        var state = StateAt(key, index);
        if (state.Unknown)
        {
            return;
        }

        bool live = state.LiveAt(readTime);
        if (!visible && state.Present && !live)
        {
            stats.ExpiredReads++;
        }

        if (live != visible || (live && (entry!.ExpiresAtUnixMs != state.ExpiresAt || Encoding.UTF8.GetString(entry.Value) != state.Value)))
        {
            throw new SimulationFailureException(
                $"ttl read: a {kind} read of {key} on node {node.Id} at index {index}, time {readTime} returned " +
                $"{(visible ? $"a value expiring at {entry!.ExpiresAtUnixMs}" : "nothing")}; the log says {state}");
        }
    }

    private void Compare(SimNode node, string key, ulong index, long time, string what)
    {
        var state = StateAt(key, index);
        if (state.Unknown)
        {
            return;
        }

        bool visible = node.Cache!.TryGet(key, out var entry, time);
        bool live = state.LiveAt(time);
        if (live == visible && (!live || (entry.ExpiresAtUnixMs == state.ExpiresAt && Encoding.UTF8.GetString(entry.Value) == state.Value)))
        {
            return;
        }

        string problem = !visible ? "lost"
            : !live ? "visible after its stamped expiry"
            : entry.ExpiresAtUnixMs == 0 || entry.ExpiresAtUnixMs > state.ExpiresAt && state.ExpiresAt != 0 ? "TTL extended"
            : entry.ExpiresAtUnixMs != state.ExpiresAt ? "TTL changed"
            : "value differs";
        throw new SimulationFailureException(
            $"ttl {what}: node {node.Id} at applied index {index} (log time {time}): key {key} {problem}: it holds " +
            $"{(visible ? $"'{Short(entry.Value)}' expiring at {entry.ExpiresAtUnixMs}" : "nothing")}; the log says {state}");
    }

    private static string Short(byte[] value)
    {
        string text = Encoding.UTF8.GetString(value);
        return text.Length > 16 ? text[..16] + "…" : text;
    }

    private void Execute(Invocation call, ulong index, SimNode node)
    {
        switch (call.Op)
        {
            case Op.Batch:
                foreach (var item in call.Batch)
                {
                    Execute(item, index, node);
                }

                return;
            case Op.MemoryPolicy:
                _maxMemory = call.Number;
                return;
            case Op.FlushAll:
                foreach (string key in _keys)
                {
                    Change(key, index, KeyState.Absent);
                }

                return;
            case Op.Set when call.Args.Length >= 2 && (call.Flags & (OpFlags.Nx | OpFlags.Xx | OpFlags.KeepTtl)) == 0:
                Set(call, index, node);
                return;
            case Op.Expire when call.Args.Length == 1 && call.Flags == OpFlags.None:
                Key(call.Args[0], index, state => !state.LiveAt(_time) ? state
                    : call.Number <= _time ? KeyState.Absent
                    : state with { ExpiresAt = call.Number });
                return;
            case Op.Persist:
                Key(call.Args[0], index, state => state.LiveAt(_time) ? state with { ExpiresAt = 0 } : state);
                return;
            case Op.Del:
                foreach (byte[] key in call.Args)
                {
                    Key(key, index, _ => KeyState.Absent);
                }

                return;
            case Op.ExpireKeys:
                foreach (byte[] key in call.Args)
                {
                    Key(key, index, state => state.Present && state.ExpiresAt != 0 && state.ExpiresAt <= call.Number ? KeyState.Absent : state);
                }

                return;
            case Op.Access:
                return;
            default:
                // Anything else naming a TTL key (an eviction, a command this model does not follow): unknown
                // until the key is set again.
                foreach (byte[] key in call.Args)
                {
                    Key(key, index, state => state with { Unknown = true });
                }

                return;
        }
    }

    private void Set(Invocation call, ulong index, SimNode node)
    {
        string key = Encoding.UTF8.GetString(call.Args[0]);
        if (!_keys.Contains(key))
        {
            return;
        }

        string value = Encoding.UTF8.GetString(call.Args[1]);
        long expiresAt = (call.Flags & OpFlags.HasExpiry) != 0 ? call.Number : 0;
        var next = expiresAt != 0 && expiresAt <= _time ? KeyState.Absent : new KeyState(true, value, expiresAt, false);
        if (_maxMemory > 0)
        {
            // Under noeviction a SET is refused while used memory is over the limit, and changes nothing (Redis
            // refuses before it knows what the write needs). Take the refusal from the node that applied the entry
            // (it just did), but only where its memory explains it.
            var cache = node.Cache!;
            bool applied = next.Present
                ? cache.TryGet(key, out var entry) && Encoding.UTF8.GetString(entry.Value) == value && entry.ExpiresAtUnixMs == expiresAt
                : !cache.TryGet(key, out _);
            if (!applied)
            {
                if (cache.UsedMemoryBytes <= _maxMemory)
                {
                    throw new SimulationFailureException(
                        $"ttl memory: node {node.Id} did not apply SET {key} at index {index} though it uses {cache.UsedMemoryBytes} bytes, within the limit {_maxMemory}");
                }

                stats.OutOfMemory++;
                return;
            }
        }

        Change(key, index, next);
    }

    private void Key(byte[] keyBytes, ulong index, Func<KeyState, KeyState> change)
    {
        string key = Encoding.UTF8.GetString(keyBytes);
        if (_keys.Contains(key))
        {
            var history = _history[key];
            Change(key, index, change(history[^1].State));
        }
    }

    private void Change(string key, ulong index, KeyState state)
    {
        var history = _history[key];
        if (history[^1].State == state)
        {
            return;
        }

        if (history[^1].Index == index)
        {
            history[^1] = (index, state); // a batch changed it twice
        }
        else
        {
            history.Add((index, state));
        }
    }

    private KeyState StateAt(string key, ulong index)
    {
        var history = _history[key];
        int i = Last(history, index, h => h.Index);
        return history[i].State;
    }

    private long LogTimeAt(ulong index) => _logTimes[Last(_logTimes, index, t => t.Index)].Time;

    private static int Last<T>(List<T> items, ulong index, Func<T, ulong> indexOf)
    {
        int low = 0;
        int high = items.Count - 1;
        while (low < high)
        {
            int middle = (low + high + 1) / 2;
            if (indexOf(items[middle]) <= index)
            {
                low = middle;
            }
            else
            {
                high = middle - 1;
            }
        }

        return low;
    }

    private readonly record struct KeyState(bool Present, string? Value, long ExpiresAt, bool Unknown)
    {
        public static readonly KeyState Absent = new(false, null, 0, false);

        public bool LiveAt(long time) => !Unknown && Present && (ExpiresAt == 0 || ExpiresAt > time);

        public override string ToString() =>
            Unknown ? "unknown (evicted?)" : !Present ? "absent" : $"'{(Value!.Length > 16 ? Value[..16] + "…" : Value)}' expiring at {(ExpiresAt == 0 ? "never" : ExpiresAt.ToString(CultureInfo.InvariantCulture))}";
    }
}
