using System.Buffers.Binary;
using System.Text;
using Stcache.Raft;

namespace Stcache.Cache;

/// <summary>A stored string value as the HTTP API sees it. <see cref="Version"/> is the log index of the command
/// that last wrote it.</summary>
public sealed record CacheEntry(byte[] Value, ulong Version, long ExpiresAtUnixMs)
{
    public bool IsExpired(long nowUnixMs) => ExpiresAtUnixMs != 0 && nowUnixMs >= ExpiresAtUnixMs;
}

public enum ApplyStatus : byte
{
    Ok = 1,

    /// <summary>The command's compare did not hold; nothing changed.</summary>
    CompareFailed = 2,

    /// <summary>The entry was not a valid command; nothing changed (identically on every replica).</summary>
    Invalid = 3,

    /// <summary>The memory limit was reached and the policy is noeviction (or found no victim); nothing changed.</summary>
    OutOfMemory = 4,
}

/// <summary>The deterministic outcome of applying one entry.</summary>
/// <param name="Version">After a successful Set: the new version (the entry's index). After a Delete or a failed
/// compare: the key's version before the command (0 when it did not exist). For a <see cref="WriteCommand"/>: the
/// entry's index.</param>
/// <param name="PreviousExisted">Whether the key held a value before the command (<see cref="CacheCommand"/> only).</param>
public readonly record struct ApplyResult(ApplyStatus Status, ulong Version, bool PreviousExisted, string? Error = null)
{
    public bool Succeeded => Status == ApplyStatus.Ok;

    /// <summary>The Redis reply of a <see cref="WriteCommand"/> entry (null for the older <see cref="CacheCommand"/>).</summary>
    public Reply? Reply { get; init; }
}

/// <summary>
/// The replicated cache: strings and hashes with expiry, versions, LRU/LFU data and a memory limit.
/// <para>Determinism: <see cref="Apply"/> depends only on the state and the entry, whose log time the leader
/// stamped (<see cref="WriteCommand.Encode"/>); it never reads a clock. A key is visible while its expiry is later
/// than the time of the operation (the entry's log time, or a read's time). Expired keys are deleted only by
/// entries (<see cref="WriteCommand.ExpireKeys"/>, or a write that touches them); evictions are chosen by a
/// sampler seeded with the entry's index over the replicated state, so every replica evicts the same keys.</para>
/// <para>Threads: one applier calls <see cref="Apply"/>, <see cref="MarkApplied"/>, <see cref="Restore"/>; readers
/// call <see cref="Read"/> and <see cref="TryGet"/> concurrently (all under one lock). A snapshot is written
/// without the lock: <see cref="BeginSnapshot"/> captures the key table's chunks of slots, and from then on the
/// applier copies a chunk before changing a slot of it, and a hash before changing it (copy-on-write,
/// <see cref="KeyTable"/>), so what the snapshot reads stays exactly as it was at the index.</para>
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001",
    Justification = "_openSnapshot is not owned: the caller disposes the snapshot view, which clears the field")]
public sealed partial class CacheStateMachine
{
    /// <summary>Accounted bytes per key beyond its key and value bytes (roughly what the runtime spends on it).</summary>
    public const int KeyOverheadBytes = 96;

    /// <summary>Accounted bytes per hash field beyond its field and value bytes.</summary>
    public const int FieldOverheadBytes = 48;

    /// <summary>Keys sampled per eviction (Redis's maxmemory-samples default).</summary>
    public const int EvictionSamples = 5;

    /// <summary>Expired keys remembered from reads until the driver drains them (beyond, the active cycle finds them).</summary>
    public const int LazyExpiredMax = 4096;

    /// <summary>Bytes a Raft log holds in memory for one entry beyond its data: the entry's slot in the log's array
    /// (with the array's growth slack) and the data array's header.</summary>
    public const int LogEntryOverheadBytes = 96;

    /// <summary>Buckets of the deletion record WATCH uses for absent keys (see <see cref="WatchToken"/>).</summary>
    public const int DeletionBuckets = 4096;

    /// <summary>Marks a watch token of an absent key; the low bits are its deletion bucket's index then.</summary>
    public const ulong AbsentWatchMark = 1UL << 63;

    private const byte LfuInitialValue = 5;

    private readonly Lock _lock = new();
    private readonly HashSet<byte[]> _lazyExpired = new(ByteStringComparer.Instance);

    // Every key, in a deterministic order (swap-remove), for sampling; snapshots keep the order.
    private KeyTable _keys = new();

    // The positions in _keys of the keys with an expiry, the same way (each key's VolatileSlot is its index here).
    private List<int> _volatile = [];
    private long _usedBytes;
    private long _maxMemoryBytes;
    private EvictionPolicy _policy;
    private long _lastLogTimeUnixMs;
    private long _appliedIndex;
    private long _evictedKeys;
    private long _expiredKeys;
    private long _appliedEntryBytes;

    // Replicated: for each bucket of the stable key hash, the index of the last entry that deleted a key in it. A
    // WATCH of an absent key records its bucket's value; EXEC aborts if it moved (the key may have been created and
    // deleted in between). Part of the snapshot, so every replica holds the same values at the same index.
    private ulong[] _deletedAt = new ulong[DeletionBuckets];

    // Copy-on-write: while _openSnapshot is set, the key table copies what the snapshot may read before a change.
    private CacheSnapshot? _openSnapshot;

    // The operation being executed: its time, its log index (0 for a read), and where reads report what they saw.
    private long _now;
    private ulong _index;
    private List<byte[]>? _expiredSeen;

    public CacheStateMachine()
    {
        AccessRecorder = new AccessRecorder();
    }

    /// <summary>Index of the last log entry reflected in the state.</summary>
    public LogIndex AppliedIndex => new((ulong)Volatile.Read(ref _appliedIndex));

    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _keys.Count;
            }
        }
    }

    /// <summary>The deterministic accounted memory of the state (the same on every replica at the same index).</summary>
    public long UsedMemoryBytes => Interlocked.Read(ref _usedBytes);

    /// <summary>The replicated memory limit (0 = none), set by <see cref="WriteCommand.MemoryPolicy"/>.</summary>
    public long MaxMemoryBytes => Interlocked.Read(ref _maxMemoryBytes);

    public EvictionPolicy Policy => _policy;

    /// <summary>Whether reads feed the access recorder: only a memory limit with an LRU or LFU policy uses what it
    /// collects, so under any other policy a read records nothing (no lock, no dictionary update).</summary>
    public bool TracksAccess => MaxMemoryBytes > 0
        && _policy is EvictionPolicy.AllKeysLru or EvictionPolicy.AllKeysLfu or EvictionPolicy.VolatileLru or EvictionPolicy.VolatileLfu;

    /// <summary>The greatest log time applied so far. A new leader stamps entries with at least this, and a stale
    /// read on this node uses it as its read time.</summary>
    public long LastLogTimeUnixMs => Interlocked.Read(ref _lastLogTimeUnixMs);

    public long EvictedKeys => Interlocked.Read(ref _evictedKeys);

    /// <summary>The in-memory size of the log entries applied by this process so far (their data plus
    /// <see cref="LogEntryOverheadBytes"/> each), counted locally, not replicated: the node driver's snapshot policy
    /// compares it with the cache's size, because the log holds every entry until a snapshot covers it.</summary>
    public long AppliedEntryBytes => Interlocked.Read(ref _appliedEntryBytes);

    public long ExpiredKeys => Interlocked.Read(ref _expiredKeys);

    /// <summary>Expired keys this node's reads met (at most <see cref="LazyExpiredMax"/> until drained), for the
    /// leader's lazy expiry: the node driver drains them and, on the leader, proposes their deletion.</summary>
    public IReadOnlyList<byte[]> DrainLazyExpired()
    {
        lock (_lock)
        {
            if (_lazyExpired.Count == 0)
            {
                return [];
            }

            var keys = _lazyExpired.ToArray();
            _lazyExpired.Clear();
            return keys;
        }
    }

    private void NoteLazyExpired(byte[] key)
    {
        if (_lazyExpired.Count < LazyExpiredMax)
        {
            _lazyExpired.Add(key);
        }
    }

    /// <summary>Reads served by this node, for the access reports that keep LRU/LFU replicated (see docs/CACHE.md).</summary>
    public AccessRecorder AccessRecorder { get; }

    /// <summary>Reads a string key for the HTTP API. Entries past their expiry are reported absent when
    /// <paramref name="nowUnixMs"/> is given. A hash is reported absent.</summary>
    public bool TryGet(string key, out CacheEntry entry, long nowUnixMs = 0)
    {
        // The key's bytes on the stack when short (the HTTP read path), so a lookup allocates only its answer.
        int length = Encoding.UTF8.GetMaxByteCount(key.Length) <= 512 ? 512 : Encoding.UTF8.GetByteCount(key);
        Span<byte> bytes = length <= 512 ? stackalloc byte[512] : new byte[length];
        bytes = bytes[..Encoding.UTF8.GetBytes(key, bytes)];
        lock (_lock)
        {
            int position = _keys.Find(bytes);
            if (position >= 0 && _keys.At(position) is { Data: byte[] data } found)
            {
                if (nowUnixMs == 0 || found.ExpiresAtUnixMs == 0 || found.ExpiresAtUnixMs > nowUnixMs)
                {
                    entry = new CacheEntry(KeyData.TextOf(data).ToArray(), found.Version, found.ExpiresAtUnixMs);
                    return true;
                }

                NoteLazyExpired(KeyData.KeyOf(data).ToArray());
            }
        }

        entry = null!;
        return false;
    }

    /// <summary>The version of any key (string or hash): the index of the entry that last changed it, 0 when
    /// absent. Physical, like the check a guarded batch makes when applied.</summary>
    public ulong VersionOf(ReadOnlySpan<byte> key)
    {
        lock (_lock)
        {
            int position = _keys.Find(key);
            return position >= 0 ? _keys.At(position).Version : 0;
        }
    }

    /// <summary>What WATCH records for a key, for <see cref="Op.IfVersions"/>: a present key's version; for an absent
    /// key, <see cref="AbsentWatchMark"/> with the index of the last deletion in the key's bucket. A guard holding the
    /// latter fails if the key exists or a key of its bucket was deleted since: so a key created and deleted again
    /// between WATCH and EXEC aborts the transaction, as in Redis (a deletion of another key of the bucket aborts it
    /// too, a conservative false abort).</summary>
    public ulong WatchToken(ReadOnlySpan<byte> key)
    {
        lock (_lock)
        {
            int position = _keys.Find(key);
            return position >= 0 ? _keys.At(position).Version : AbsentWatchMark | _deletedAt[DeletionBucket(key)];
        }
    }

    private static int DeletionBucket(ReadOnlySpan<byte> key) => (int)(ByteStringComparer.StableHash(key) % DeletionBuckets);

    /// <summary>Applies the entry at <paramref name="index"/>: a <see cref="WriteCommand"/> (its reply is in
    /// <see cref="ApplyResult.Reply"/>) or an older <see cref="CacheCommand"/>. Deterministic: no clock, no
    /// randomness but seeded by the index; malformed data yields <see cref="ApplyStatus.Invalid"/> and changes
    /// nothing but the applied index.</summary>
    public ApplyResult Apply(LogIndex index, ReadOnlyMemory<byte> data)
    {
        lock (_lock)
        {
            CheckNextIndex(index);
            ApplyResult result;
            if (WriteCommand.TryReadSet(data.Span, out long setTime, out var setFlags, out long setNumber, out var setKey, out var setValue))
            {
                // The common write, applied from the entry's bytes: no command, argument arrays or value copy.
                _now = AdvanceLogTime(setTime);
                _index = index.Value;
                var reply = !MakeRoom() ? s_outOfMemory
                    : setFlags == OpFlags.None ? SetPlain(setKey, setValue)
                    : Set(setKey, setValue, setFlags, setNumber);
                result = new ApplyResult(ApplyStatus.Ok, index.Value, false) { Reply = reply };
            }
            else if (!data.IsEmpty && data.Span[0] == WriteCommand.FormatVersion)
            {
                if (!WriteCommand.TryDecode(data.Span, out var command, out long logTime, out string? error))
                {
                    result = new ApplyResult(ApplyStatus.Invalid, 0, false, error) { Reply = Reply.Error("ERR invalid log entry: " + error) };
                }
                else
                {
                    var reply = Execute(command!.Invocation, index.Value, AdvanceLogTime(logTime));
                    result = new ApplyResult(ApplyStatus.Ok, index.Value, false) { Reply = reply };
                }
            }
            else if (!CacheCommand.TryRead(data.Span, out var command, out string? error))
            {
                result = new ApplyResult(ApplyStatus.Invalid, 0, false, error);
            }
            else
            {
                result = ApplyLegacy(index.Value, command);
            }

            Volatile.Write(ref _appliedIndex, (long)index.Value);
            Interlocked.Add(ref _appliedEntryBytes, data.Length + LogEntryOverheadBytes);
            AssertInvariantsCheap();
            return result;
        }
    }

    /// <summary>The time an entry with <paramref name="logTime"/> is applied at: log time never runs backwards,
    /// whatever a new leader's clock says.</summary>
    private long AdvanceLogTime(long logTime)
    {
        long time = Math.Max(logTime, _lastLogTimeUnixMs);
        Interlocked.Exchange(ref _lastLogTimeUnixMs, time);
        return time;
    }

    /// <summary>Records that an entry with no effect on the cache (no-op, membership change) was applied.</summary>
    public void MarkApplied(LogIndex index)
    {
        lock (_lock)
        {
            CheckNextIndex(index);
            Volatile.Write(ref _appliedIndex, (long)index.Value);
            Interlocked.Add(ref _appliedEntryBytes, LogEntryOverheadBytes);
        }
    }

    /// <summary>Serves a read at <paramref name="readTimeUnixMs"/> (see docs/CACHE.md for which time each read
    /// consistency uses). Keys it found expired are added to <paramref name="expiredKeys"/>, for the leader to
    /// delete through the log (lazy expiry); the read itself changes nothing.</summary>
    public Reply Read(ReadQuery query, long readTimeUnixMs, List<byte[]>? expiredKeys = null)
    {
        lock (_lock)
        {
            _expiredSeen = expiredKeys;
            try
            {
                return Execute(query.Invocation, 0, readTimeUnixMs);
            }
            finally
            {
                _expiredSeen = null;
            }
        }
    }

    /// <summary>
    /// GET served from a key given as bytes, without a query, an entry or a reply object: the value is handed to
    /// <paramref name="sink"/> inside the state's lock, so the sink must copy it and return (it must not block or
    /// call back into this state). The same answer as <see cref="Read"/> of a GET at <paramref name="readTimeUnixMs"/>:
    /// a key past its expiry is absent (and noted for lazy expiry), and a read feeds the access recorder when the
    /// eviction policy uses it.
    /// </summary>
    public StringRead ReadString<TSink>(ReadOnlySpan<byte> key, long readTimeUnixMs, ref TSink sink)
        where TSink : IValueSink, allows ref struct
    {
        lock (_lock)
        {
            int position = _keys.Find(key);
            if (position < 0)
            {
                return StringRead.Missing;
            }

            ref readonly var slot = ref _keys.At(position);
            if (slot.ExpiresAtUnixMs != 0 && slot.ExpiresAtUnixMs <= readTimeUnixMs)
            {
                NoteLazyExpired(key.ToArray());
                return StringRead.Missing;
            }

            if (TracksAccess)
            {
                AccessRecorder.Record(key.ToArray());
            }

            if (slot.Data is not byte[])
            {
                return StringRead.WrongType;
            }

            sink.Value(KeyData.TextOf(slot.Data));
            return StringRead.Found;
        }
    }

    /// <summary>Resets to the empty state at index 0 (a node whose data was discarded).</summary>
    public void Clear()
    {
        lock (_lock)
        {
            // An open snapshot keeps its own captured entries, none of which the new state shares.
            ReplaceState(new KeyTable(), [], new ulong[DeletionBuckets], 0, 0, EvictionPolicy.NoEviction, 0, 0);
        }
    }

    private void ReplaceState(KeyTable keys, List<int> volatileKeys, ulong[] deletedAt, long used,
        long maxMemory, EvictionPolicy policy, long lastLogTime, ulong index)
    {
        _keys = keys;
        _volatile = volatileKeys;
        _deletedAt = deletedAt;
        Interlocked.Exchange(ref _usedBytes, used);
        Interlocked.Exchange(ref _maxMemoryBytes, maxMemory);
        _policy = policy;
        Interlocked.Exchange(ref _lastLogTimeUnixMs, lastLogTime);
        Volatile.Write(ref _appliedIndex, (long)index);
    }

    private void CheckNextIndex(LogIndex index)
    {
        if (index.Value <= (ulong)_appliedIndex)
        {
            throw new InvariantViolationException($"apply out of order: {index} after {_appliedIndex}");
        }
    }

    private void AssertInvariantsCheap()
    {
        if (_volatile.Count > _keys.Count || _usedBytes < 0)
        {
            throw new InvariantViolationException($"cache bookkeeping broken: keys {_keys.Count}, volatile {_volatile.Count}, used {_usedBytes}");
        }
    }

    /// <summary>Checks every invariant; O(keys). For tests and the simulator.</summary>
    public void AssertInvariants()
    {
        lock (_lock)
        {
            AssertInvariantsCheap();
            long used = 0;
            int volatileCount = 0;
            for (int i = 0; i < _keys.Count; i++)
            {
                var entry = new KeyEntry(_keys, i);
                if (_keys.Find(entry.Key) != i)
                {
                    throw new InvariantViolationException($"slot {i} does not match the key table");
                }

                if (entry.ExpiresAtUnixMs != 0)
                {
                    volatileCount++;
                    if (entry.VolatileSlot < 0 || entry.VolatileSlot >= _volatile.Count || _volatile[entry.VolatileSlot] != i)
                    {
                        throw new InvariantViolationException("a key with an expiry is missing from the volatile set");
                    }
                }
                else if (entry.VolatileSlot != -1)
                {
                    throw new InvariantViolationException("a key without expiry is in the volatile set");
                }

                if (!entry.IsString)
                {
                    var hash = entry.Hash;
                    long bytes = hash.Fields.Sum(pair => (long)FieldOverheadBytes + pair.Key.Length + pair.Value.Length);
                    if (bytes != hash.Bytes || hash.Fields.Count == 0)
                    {
                        throw new InvariantViolationException("hash accounting broken");
                    }
                }

                used += Cost(entry);
            }

            if (volatileCount != _volatile.Count || used != _usedBytes)
            {
                throw new InvariantViolationException($"accounting broken: used {_usedBytes} but entries sum to {used}");
            }
        }
    }

    private static long Cost(KeyEntry entry) =>
        KeyOverheadBytes + entry.Key.Length + entry.ValueBytes;

    // ---- Key table primitives: every change of the table goes through these. ----

    /// <summary>The entry if it exists and is visible at the operation's time. An expired entry met by a write is
    /// deleted (deterministic: the entry's log time decides); one met by a read is reported for lazy expiry.</summary>
    private KeyEntry? Lookup(byte[] key)
    {
        if (_index != 0)
        {
            return LookupForWrite(key);
        }

        if (!_keys.TryGetValue(key, out var entry))
        {
            return null;
        }

        if (entry.ExpiresAtUnixMs != 0 && entry.ExpiresAtUnixMs <= _now)
        {
            _expiredSeen?.Add(key);
            NoteLazyExpired(key);
            return null;
        }

        if (TracksAccess)
        {
            AccessRecorder.Record(key);
        }

        return entry;
    }

    /// <summary><see cref="Lookup"/> for a write (an entry being applied, so <see cref="_index"/> is not 0): an entry
    /// past its expiry at the entry's log time is deleted, and nothing is recorded.</summary>
    private KeyEntry? LookupForWrite(ReadOnlySpan<byte> key)
    {
        if (!_keys.TryGetValue(key, out var entry))
        {
            return null;
        }

        if (entry.ExpiresAtUnixMs != 0 && entry.ExpiresAtUnixMs <= _now)
        {
            Remove(entry);
            Interlocked.Increment(ref _expiredKeys);
            return null;
        }

        return entry;
    }

    /// <summary>Returns the entry, ready to be changed in place: its hash (whose fields the caller may change)
    /// cloned first when an open snapshot may be reading it. Slots themselves are copied on write by the table.</summary>
    private KeyEntry Own(KeyEntry entry)
    {
        if (_keys.Capturing && !entry.IsString && entry.Hash.Generation != _keys.Generation)
        {
            var clone = entry.Hash.Clone();
            clone.Generation = _keys.Generation;
            entry.SetValue(clone);
        }

        return entry;
    }

    private KeyEntry Add(byte[] key, object value)
    {
        if (value is HashValue hash)
        {
            hash.Generation = _keys.Generation;
        }

        return AddComposed(key, KeyData.Compose(key, value));
    }

    /// <summary>Adds <paramref name="data"/> (from <see cref="KeyData"/>) under <paramref name="key"/>.</summary>
    private KeyEntry AddComposed(ReadOnlySpan<byte> key, object data) => new(_keys, AddSlot(key, data));

    /// <summary><see cref="AddComposed"/> without a handle: returns the new key's position.</summary>
    private int AddSlot(ReadOnlySpan<byte> key, object data)
    {
        var slot = new KeySlot
        {
            Data = data,
            Version = _index,
            VolatileSlot = -1,
            AccessSeconds = NowSeconds,
            Frequency = LfuInitialValue,
        };
        int position = _keys.TryAdd(key, slot);
        if (position < 0)
        {
            throw new InvalidOperationException("key already present");
        }

        Interlocked.Add(ref _usedBytes, KeyOverheadBytes + key.Length + KeyData.ValueBytesOf(data));
        return position;
    }

    /// <summary>Removes the key; any handle taken before is stale afterwards (the last key moves into its place).</summary>
    private void Remove(KeyEntry entry)
    {
        _deletedAt[DeletionBucket(entry.Key)] = _index;
        Interlocked.Add(ref _usedBytes, -Cost(entry));
        int position = entry.Slot;
        int volatileSlot = entry.VolatileSlot;
        if (volatileSlot >= 0)
        {
            RemoveVolatile(volatileSlot);
        }

        if (_keys.RemoveAt(position))
        {
            // The last key moved into the position: its place among the volatile keys follows it.
            int moved = _keys.At(position).VolatileSlot;
            if (moved >= 0)
            {
                _volatile[moved] = position;
            }
        }
    }

    /// <summary>Swap-removes a key from the volatile list; the key moved into its place learns its new index.</summary>
    private void RemoveVolatile(int volatileSlot)
    {
        int last = _volatile.Count - 1;
        if (volatileSlot != last)
        {
            int moved = _volatile[last];
            _volatile[volatileSlot] = moved;
            _keys.Writable(moved).VolatileSlot = volatileSlot;
        }

        _volatile.RemoveAt(last);
    }

    /// <summary>Changes an owned entry's value (any type), keeping the accounting right.</summary>
    private void SetValue(KeyEntry entry, object value)
    {
        long before = Cost(entry);
        entry.SetValue(value);
        Interlocked.Add(ref _usedBytes, Cost(entry) - before);
    }

    /// <summary>Changes an owned entry's value to a string of <paramref name="text"/> (copied), keeping the accounting
    /// right.</summary>
    private void SetText(KeyEntry entry, ReadOnlySpan<byte> text)
    {
        long before = Cost(entry);
        entry.SetText(text);
        Interlocked.Add(ref _usedBytes, Cost(entry) - before);
    }

    private void SetExpiry(KeyEntry entry, long expiresAtUnixMs)
    {
        if (entry.ExpiresAtUnixMs == 0 && expiresAtUnixMs != 0)
        {
            entry.VolatileSlot = _volatile.Count;
            _volatile.Add(entry.Slot);
        }
        else if (entry.ExpiresAtUnixMs != 0 && expiresAtUnixMs == 0)
        {
            RemoveVolatile(entry.VolatileSlot);
            entry.VolatileSlot = -1;
        }

        entry.ExpiresAtUnixMs = expiresAtUnixMs;
    }

    /// <summary>Creates or overwrites a string key. Returns the entry.</summary>
    /// <param name="current">The key's live entry, when the caller just looked it up (<see cref="Lookup"/>, with no
    /// removal since): it is used as it is, without a second lookup and handle.</param>
    private KeyEntry Store(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value, long expiresAtUnixMs, bool keepTtl, KeyEntry? current = null)
    {
        if (current is not null || _keys.TryGetValue(key, out current))
        {
            var existing = current;
            bool expired = existing.ExpiresAtUnixMs != 0 && existing.ExpiresAtUnixMs <= _now;
            var entry = Own(existing);
            SetText(entry, value);
            entry.Version = _index;
            if (!keepTtl || expired)
            {
                SetExpiry(entry, expiresAtUnixMs);
            }

            Touch(entry);
            return entry;
        }

        var added = AddComposed(key, KeyData.ComposeText(key, value));
        SetExpiry(added, expiresAtUnixMs);
        return added;
    }

    /// <summary>
    /// SET without options from an applied entry's bytes: the effect of <c>Set(key, value, OpFlags.None, 0)</c>
    /// (<see cref="Store"/>), done on the key's slot, with no <see cref="KeyEntry"/> handle and one lookup. A key
    /// with an expiry (live or past) takes the general path, which keeps the volatile list and lazy expiry.
    /// </summary>
    private Reply SetPlain(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value)
    {
        int position = _keys.Find(key);
        if (position < 0)
        {
            AddSlot(key, KeyData.ComposeText(key, value));
            return Reply.Ok;
        }

        if (_keys.At(position).ExpiresAtUnixMs != 0)
        {
            return Set(key, value, OpFlags.None, 0);
        }

        // A hash is replaced whole, so it needs no clone for an open snapshot (Own): Writable copies the slot's chunk.
        ref var slot = ref _keys.Writable(position);
        long before = KeyData.ValueBytesOf(slot.Data);
        slot.Data = KeyData.ComposeText(key, value);
        Interlocked.Add(ref _usedBytes, value.Length - before);
        slot.Version = _index;
        uint nowSeconds = NowSeconds;
        slot.Frequency = LfuAfterAccess(key, slot.Frequency, slot.AccessSeconds, nowSeconds);
        slot.AccessSeconds = nowSeconds;
        return Reply.Ok;
    }

    private void Changed(KeyEntry entry)
    {
        entry.Version = _index;
        Touch(entry);
    }

    /// <summary>Updates LRU and LFU data at the operation's log time (writes, and replicated access reports).</summary>
    private void Touch(KeyEntry entry)
    {
        uint nowSeconds = NowSeconds;
        entry.Frequency = LfuAfterAccess(entry, nowSeconds);
        entry.AccessSeconds = nowSeconds;
    }

    // Redis's LFU: the counter decays by one per minute idle (lfu-decay-time 1), then grows logarithmically
    // (lfu-log-factor 10). The coin is a hash of the index and key, so every replica draws the same.
    private byte LfuAfterAccess(KeyEntry entry, uint nowSeconds) =>
        LfuAfterAccess(entry.Key, entry.Frequency, entry.AccessSeconds, nowSeconds);

    private byte LfuAfterAccess(ReadOnlySpan<byte> key, byte frequency, uint accessSeconds, uint nowSeconds)
    {
        int counter = DecayedFrequency(frequency, accessSeconds, nowSeconds);
        if (counter < 255)
        {
            double baseValue = Math.Max(0, counter - LfuInitialValue);
            double probability = 1.0 / ((baseValue * 10) + 1);
            ulong coin = ByteStringComparer.Mix(ByteStringComparer.StableHash(key) ^ (_index * 0x9E3779B97F4A7C15UL) ^ nowSeconds);
            if ((coin >> 11) * (1.0 / (1UL << 53)) < probability)
            {
                counter++;
            }
        }

        return (byte)counter;
    }

    private uint NowSeconds => (uint)Math.Clamp(_now / 1000, 0, uint.MaxValue);

    private static int DecayedFrequency(KeyEntry entry, uint nowSeconds) =>
        DecayedFrequency(entry.Frequency, entry.AccessSeconds, nowSeconds);

    private static int DecayedFrequency(byte frequency, uint accessSeconds, uint nowSeconds)
    {
        long idleMinutes = nowSeconds > accessSeconds ? (nowSeconds - accessSeconds) / 60 : 0;
        return (int)Math.Max(0, frequency - Math.Min(idleMinutes, 255));
    }
}

/// <summary>What <see cref="CacheStateMachine.ReadString"/> found.</summary>
public enum StringRead : byte
{
    /// <summary>No such key (or it is past its expiry).</summary>
    Missing,

    /// <summary>A string: its value went to the sink.</summary>
    Found,

    /// <summary>The key holds a hash (GET answers WRONGTYPE).</summary>
    WrongType,
}

/// <summary>Receives a value read inside the state's lock (<see cref="CacheStateMachine.ReadString"/>).</summary>
public interface IValueSink
{
    void Value(ReadOnlySpan<byte> value);
}
