using System.Buffers.Binary;
using System.Text;
using Stcache.Raft;

namespace Stcache.Cache;

public sealed partial class CacheStateMachine
{
    private const uint SnapshotMagic = 0x53435453; // "STCS"
    private const byte SnapshotFormatV1 = 1;
    private const byte SnapshotFormatV2 = 2;
    private const byte SnapshotFormatV3 = 3;
    private const byte RecordEntry = 1;
    private const byte RecordEnd = 0;
    private const byte TypeString = 1;
    private const byte TypeHash = 2;
    private const int HashFieldsMax = 1 << 24;

    /// <summary>An HTTP API command (<see cref="CacheCommand"/>), applied from its entry's bytes: no command object
    /// and no key string on any node (the lookup and the store copy what they keep).</summary>
    private ApplyResult ApplyLegacy(ulong index, in CacheCommand.View command)
    {
        _now = AdvanceLogTime(command.LogTimeUnixMs);
        _index = index;
        var key = command.Key;
        var current = LookupForWrite(key);
        bool existed = current is not null;
        ulong currentVersion = current?.Version ?? 0;
        switch (command.Compare)
        {
            case CompareKind.Version when command.ExpectedVersion != currentVersion:
                return new ApplyResult(ApplyStatus.CompareFailed, currentVersion, existed);
            case CompareKind.Value when current is not { IsString: true } || !command.ExpectedValue.SequenceEqual(current.Text):
                return new ApplyResult(ApplyStatus.CompareFailed, currentVersion, existed);
        }

        if (command.Kind == CommandKind.Set)
        {
            if (!MakeRoom())
            {
                return new ApplyResult(ApplyStatus.OutOfMemory, currentVersion, existed, RedisErrors.OutOfMemory);
            }

            if (command.ExpiresAtUnixMs != 0 && command.ExpiresAtUnixMs <= _now)
            {
                // Already expired at its log time: as for SET … PXAT in the past, the key is gone. (Looked up again:
                // an eviction may have moved or removed it.)
                if (_keys.TryGetValue(key, out var present))
                {
                    Remove(present);
                }

                return new ApplyResult(ApplyStatus.Ok, index, existed);
            }

            Store(key, command.Value, command.ExpiresAtUnixMs, keepTtl: false);
            return new ApplyResult(ApplyStatus.Ok, index, existed);
        }

        if (current is not null)
        {
            Remove(current);
        }

        return new ApplyResult(ApplyStatus.Ok, currentVersion, existed);
    }

    /// <summary>Opens a point-in-time view of the current state at <see cref="AppliedIndex"/>. Only one snapshot may
    /// be open at a time; dispose it when written. Writing it may happen on any thread while Apply continues.</summary>
    public CacheSnapshot BeginSnapshot()
    {
        lock (_lock)
        {
            if (_openSnapshot is not null)
            {
                throw new InvalidOperationException("a snapshot is already open");
            }

            // From here on, the captured chunks are frozen: the table copies a chunk before changing a slot of it, and
            // Own() clones a hash before changing it.
            int count = _keys.Count;
            var chunks = _keys.BeginCapture();
            _openSnapshot = new CacheSnapshot(this, chunks, count, (ulong[])_deletedAt.Clone(), AppliedIndex,
                _lastLogTimeUnixMs, _maxMemoryBytes, _policy);
            return _openSnapshot;
        }
    }

    internal void EndSnapshot(CacheSnapshot snapshot)
    {
        lock (_lock)
        {
            if (ReferenceEquals(_openSnapshot, snapshot))
            {
                _openSnapshot = null;
                _keys.EndCapture();
            }
        }
    }

    /// <summary>Replaces the whole state with a snapshot written by <see cref="CacheSnapshot.WriteTo"/> (or by the
    /// format-1 writer before expiry and hashes, or the format-2 one before the deletion record). Validates the stream fully before swapping; on bad data throws
    /// <see cref="InvalidDataException"/> and keeps the old state.</summary>
    public void Restore(Stream stream)
    {
        var loaded = ReadSnapshot(stream);
        lock (_lock)
        {
            if (_openSnapshot is not null)
            {
                throw new InvalidOperationException("cannot restore while a snapshot is being written");
            }

            ReplaceState(loaded.Keys, loaded.Volatile, loaded.DeletedAt, loaded.Used, loaded.MaxMemory, loaded.Policy,
                loaded.LastLogTime, loaded.Index);
        }
    }

    internal static void WriteHeader(Stream stream, CacheSnapshot snapshot)
    {
        Span<byte> header = stackalloc byte[30];
        BinaryPrimitives.WriteUInt32LittleEndian(header, SnapshotMagic);
        header[4] = SnapshotFormatV3;
        BinaryPrimitives.WriteUInt64LittleEndian(header[5..], snapshot.Index.Value);
        BinaryPrimitives.WriteInt64LittleEndian(header[13..], snapshot.LastLogTimeUnixMs);
        BinaryPrimitives.WriteInt64LittleEndian(header[21..], snapshot.MaxMemoryBytes);
        header[29] = (byte)snapshot.Policy;
        stream.Write(header);

        // Format 3: the deletion record WATCH uses, its buckets that ever saw a deletion, in increasing order:
        // [count u32] then count x ([bucket u32][index u64]).
        var deletedAt = snapshot.DeletedAt;
        int used = deletedAt.Count(index => index != 0);
        Span<byte> item = stackalloc byte[12];
        BinaryPrimitives.WriteInt32LittleEndian(item, used);
        stream.Write(item[..4]);
        for (int bucket = 0; bucket < deletedAt.Length; bucket++)
        {
            if (deletedAt[bucket] != 0)
            {
                BinaryPrimitives.WriteInt32LittleEndian(item, bucket);
                BinaryPrimitives.WriteUInt64LittleEndian(item[4..], deletedAt[bucket]);
                stream.Write(item);
            }
        }
    }

    // Record: [1][type u8][key length i32][key][version u64][expiry i64][volatile slot i32][access u32][frequency u8]
    // then a string: [length i32][bytes]; a hash: [field count i32] then count x ([length i32][field][length i32][value]).
    internal static void WriteEntry(Stream stream, in KeySlot entry)
    {
        Span<byte> head = stackalloc byte[35];
        bool isString = entry.Data is byte[];
        var key = KeyData.KeyOf(entry.Data);
        head[0] = RecordEntry;
        head[1] = isString ? TypeString : TypeHash;
        BinaryPrimitives.WriteInt32LittleEndian(head[2..], key.Length);
        stream.Write(head[..6]);
        stream.Write(key);
        BinaryPrimitives.WriteUInt64LittleEndian(head, entry.Version);
        BinaryPrimitives.WriteInt64LittleEndian(head[8..], entry.ExpiresAtUnixMs);
        BinaryPrimitives.WriteInt32LittleEndian(head[16..], entry.VolatileSlot);
        BinaryPrimitives.WriteUInt32LittleEndian(head[20..], entry.AccessSeconds);
        head[24] = entry.Frequency;
        stream.Write(head[..25]);
        if (isString)
        {
            WriteBlob(stream, KeyData.TextOf(entry.Data));
            return;
        }

        var hash = (HashValue)entry.Data;
        BinaryPrimitives.WriteInt32LittleEndian(head, hash.Fields.Count);
        stream.Write(head[..4]);
        foreach (var pair in hash.Fields)
        {
            WriteBlob(stream, pair.Key);
            WriteBlob(stream, pair.Value);
        }
    }

    private static void WriteBlob(Stream stream, ReadOnlySpan<byte> blob)
    {
        Span<byte> length = stackalloc byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(length, blob.Length);
        stream.Write(length);
        stream.Write(blob);
    }

    internal static void WriteEnd(Stream stream, long count)
    {
        Span<byte> end = stackalloc byte[9];
        end[0] = RecordEnd;
        BinaryPrimitives.WriteInt64LittleEndian(end[1..], count);
        stream.Write(end);
    }

    private sealed record LoadedState(KeyTable Keys, List<int> Volatile, ulong[] DeletedAt, long Used,
        long MaxMemory, EvictionPolicy Policy, long LastLogTime, ulong Index);

    private static LoadedState ReadSnapshot(Stream stream)
    {
        var reader = new SnapshotReader(stream);
        Span<byte> start = stackalloc byte[5];
        reader.Read(start);
        if (BinaryPrimitives.ReadUInt32LittleEndian(start) != SnapshotMagic || start[4] is not (SnapshotFormatV1 or SnapshotFormatV2 or SnapshotFormatV3))
        {
            throw new InvalidDataException("not a cache snapshot or unknown format version");
        }

        // Format 2 is format 3 without the deletion record, format 1 has neither the header's fields nor types.
        bool v2 = start[4] >= SnapshotFormatV2;
        ulong index = reader.UInt64();
        long lastLogTime = v2 ? reader.Int64() : 0;
        long maxMemory = v2 ? reader.Int64() : 0;
        var policy = v2 ? (EvictionPolicy)reader.Byte() : EvictionPolicy.NoEviction;
        if (lastLogTime < 0 || maxMemory < 0 || !Enum.IsDefined(policy))
        {
            throw new InvalidDataException("bad snapshot header");
        }

        // Before format 3 there was no record: none of the keys absent now counts as deleted (WATCH's tokens of an
        // absent key made before this node ran a version with the record are not trusted across such a restore).
        var deletedAt = start[4] == SnapshotFormatV3 ? ReadDeletionRecord(reader, index) : new ulong[DeletionBuckets];

        var keys = new KeyTable();
        var volatileSlots = new List<(int Slot, int Position)>();
        long used = 0;
        long count = 0;
        while (true)
        {
            byte marker = reader.Byte();
            if (marker == RecordEnd)
            {
                if (reader.Int64() != count)
                {
                    throw new InvalidDataException("snapshot entry count mismatch");
                }

                break;
            }

            if (marker != RecordEntry)
            {
                throw new InvalidDataException("unknown snapshot record");
            }

            count++;
            var (key, entry) = v2 ? ReadEntryV2(reader, index) : ReadEntryV1(reader, index);
            int position = keys.TryAdd(key, entry);
            if (position < 0)
            {
                var first = keys.At(keys.Find(key));

                // The format-1 writer could write a key twice, both times with its state at the index.
                if (v2 || first.Version != entry.Version || !KeyData.TextOf(first.Data).SequenceEqual(KeyData.TextOf(entry.Data)))
                {
                    throw new InvalidDataException("duplicate key in snapshot");
                }

                continue;
            }

            if (entry.ExpiresAtUnixMs != 0)
            {
                volatileSlots.Add((v2 ? entry.VolatileSlot : volatileSlots.Count, position));
            }
            else if (entry.VolatileSlot != -1)
            {
                throw new InvalidDataException("snapshot key without expiry has a volatile slot");
            }

            used += Cost(new KeyEntry(keys, position));
        }

        var volatileKeys = new int[volatileSlots.Count];
        Array.Fill(volatileKeys, -1);
        foreach (var (slot, position) in volatileSlots)
        {
            if (slot < 0 || slot >= volatileKeys.Length || volatileKeys[slot] >= 0)
            {
                throw new InvalidDataException("bad volatile slot in snapshot");
            }

            keys.Writable(position).VolatileSlot = slot;
            volatileKeys[slot] = position;
        }

        return new LoadedState(keys, [.. volatileKeys], deletedAt, used, maxMemory, policy, lastLogTime, index);
    }

    private static ulong[] ReadDeletionRecord(SnapshotReader reader, ulong index)
    {
        int count = reader.Int32();
        if (count < 0 || count > DeletionBuckets)
        {
            throw new InvalidDataException("bad snapshot deletion record count");
        }

        var deletedAt = new ulong[DeletionBuckets];
        int previous = -1;
        for (int i = 0; i < count; i++)
        {
            int bucket = reader.Int32();
            ulong at = reader.UInt64();
            if (bucket <= previous || bucket >= DeletionBuckets || at == 0 || at > index)
            {
                throw new InvalidDataException("bad snapshot deletion record");
            }

            deletedAt[bucket] = at;
            previous = bucket;
        }

        return deletedAt;
    }

    private static (byte[] Key, KeySlot Slot) ReadEntryV1(SnapshotReader reader, ulong index)
    {
        Span<byte> head = stackalloc byte[6];
        reader.Read(head);
        int keyBytes = BinaryPrimitives.ReadUInt16LittleEndian(head);
        int valueBytes = BinaryPrimitives.ReadInt32LittleEndian(head[2..]);
        if (keyBytes == 0 || keyBytes > CacheCommand.KeyBytesMax || valueBytes < 0 || valueBytes > CacheCommand.ValueBytesMax)
        {
            throw new InvalidDataException("bad snapshot record lengths");
        }

        byte[] key = reader.Bytes(keyBytes);
        byte[] value = reader.Bytes(valueBytes);
        ulong version = reader.UInt64();
        long expires = reader.Int64();
        if (version == 0 || version > index || version > KeySlot.VersionMax || expires < 0)
        {
            throw new InvalidDataException("bad snapshot entry version");
        }

        return (key, new KeySlot { Data = KeyData.Compose(key, value), Version = version, ExpiresAtUnixMs = expires, Frequency = LfuInitialValue, VolatileSlot = -1 });
    }

    private static (byte[] Key, KeySlot Slot) ReadEntryV2(SnapshotReader reader, ulong index)
    {
        byte type = reader.Byte();
        if (type is not (TypeString or TypeHash))
        {
            throw new InvalidDataException("unknown snapshot value type");
        }

        byte[] key = reader.Blob();
        ulong version = reader.UInt64();
        long expires = reader.Int64();
        int volatileSlot = reader.Int32();
        uint access = reader.UInt32();
        byte frequency = reader.Byte();
        if (version == 0 || version > index || version > KeySlot.VersionMax || expires < 0 || (expires == 0) != (volatileSlot == -1))
        {
            throw new InvalidDataException("bad snapshot entry version or expiry");
        }

        object value;
        if (type == TypeString)
        {
            value = reader.Blob();
        }
        else
        {
            int fieldCount = reader.Int32();
            if (fieldCount <= 0 || fieldCount > HashFieldsMax)
            {
                throw new InvalidDataException("bad snapshot hash field count");
            }

            var hash = new HashValue(new Dictionary<byte[], byte[]>(ByteStringComparer.Instance), 0);
            for (int i = 0; i < fieldCount; i++)
            {
                byte[] field = reader.Blob();
                byte[] fieldValue = reader.Blob();
                if (!hash.Fields.TryAdd(field, fieldValue))
                {
                    throw new InvalidDataException("duplicate hash field in snapshot");
                }

                hash.Bytes += FieldOverheadBytes + field.Length + fieldValue.Length;
            }

            value = hash;
        }

        return (key, new KeySlot
        {
            Data = KeyData.Compose(key, value),
            Version = version,
            ExpiresAtUnixMs = expires,
            VolatileSlot = volatileSlot,
            AccessSeconds = access,
            Frequency = frequency,
        });
    }

    private sealed class SnapshotReader(Stream stream)
    {
        private readonly byte[] _scratch = new byte[8];

        public void Read(Span<byte> buffer)
        {
            try
            {
                stream.ReadExactly(buffer);
            }
            catch (EndOfStreamException e)
            {
                throw new InvalidDataException("truncated snapshot", e);
            }
        }

        public byte Byte()
        {
            Read(_scratch.AsSpan(0, 1));
            return _scratch[0];
        }

        public int Int32()
        {
            Read(_scratch.AsSpan(0, 4));
            return BinaryPrimitives.ReadInt32LittleEndian(_scratch);
        }

        public uint UInt32()
        {
            Read(_scratch.AsSpan(0, 4));
            return BinaryPrimitives.ReadUInt32LittleEndian(_scratch);
        }

        public long Int64()
        {
            Read(_scratch);
            return BinaryPrimitives.ReadInt64LittleEndian(_scratch);
        }

        public ulong UInt64()
        {
            Read(_scratch);
            return BinaryPrimitives.ReadUInt64LittleEndian(_scratch);
        }

        public byte[] Bytes(int length)
        {
            var bytes = new byte[length];
            Read(bytes);
            return bytes;
        }

        /// <summary>A length-prefixed byte string, bounded so that bad bytes cannot ask for a huge allocation.</summary>
        public byte[] Blob()
        {
            int length = Int32();
            if (length < 0 || length > CacheCommand.ValueBytesMax)
            {
                throw new InvalidDataException("bad snapshot byte-string length");
            }

            return Bytes(length);
        }
    }
}

/// <summary>A point-in-time view of a <see cref="CacheStateMachine"/> at <see cref="Index"/>.</summary>
public sealed class CacheSnapshot : IDisposable
{
    private readonly CacheStateMachine _owner;
    private readonly KeySlot[]?[] _chunks;
    private readonly int _count;
    private int _disposed;

    internal CacheSnapshot(CacheStateMachine owner, KeySlot[]?[] chunks, int count, ulong[] deletedAt, LogIndex index,
        long lastLogTimeUnixMs, long maxMemoryBytes, EvictionPolicy policy)
    {
        _owner = owner;
        _chunks = chunks;
        _count = count;
        DeletedAt = deletedAt;
        Index = index;
        LastLogTimeUnixMs = lastLogTimeUnixMs;
        MaxMemoryBytes = maxMemoryBytes;
        Policy = policy;
    }

    /// <summary>The applied index the view reflects.</summary>
    public LogIndex Index { get; }

    public long LastLogTimeUnixMs { get; }

    public long MaxMemoryBytes { get; }

    public EvictionPolicy Policy { get; }

    /// <summary>The deletion record at <see cref="Index"/> (a copy).</summary>
    internal ulong[] DeletedAt { get; }

    public int Count => _count;

    /// <summary>Streams the view. Safe to call on any thread while the applier keeps applying: the captured chunks
    /// of slots and hashes are never changed (the applier copies one before changing it).</summary>
    public long WriteTo(Stream stream)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        // Not disposed: that would close the caller's stream. It is flushed at the end.
#pragma warning disable CA2000
        var buffered = new BufferedStream(stream, 1 << 16);
#pragma warning restore CA2000
        CacheStateMachine.WriteHeader(buffered, this);

        for (int i = 0; i < _count; i++)
        {
            CacheStateMachine.WriteEntry(buffered, KeyTable.At(_chunks, i));
        }

        CacheStateMachine.WriteEnd(buffered, _count);
        buffered.Flush();
        return _count;
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _owner.EndSnapshot(this);
        }
    }
}

/// <summary>One key as a test or tool sees it: a copy of everything the snapshot holds.</summary>
/// <param name="Fields">A hash's fields and values sorted by field; null for a string.</param>
public sealed record KeyDump(byte[] Key, byte[]? Text, (byte[] Field, byte[] Value)[]? Fields, long ExpiresAtUnixMs, ulong Version,
    uint AccessSeconds, byte Frequency, int VolatileSlot)
{
    /// <summary>A one-line rendering that compares equal when the keys are equal.</summary>
    public string Describe(bool withAccess) =>
        $"{System.Text.Encoding.UTF8.GetString(Key)}=" +
        (Text is not null ? "'" + System.Text.Encoding.UTF8.GetString(Text) + "'" : "{" + string.Join(",", Fields!.Select(pair => System.Text.Encoding.UTF8.GetString(pair.Field) + ":" + System.Text.Encoding.UTF8.GetString(pair.Value))) + "}") +
        $" exp={ExpiresAtUnixMs} v={Version}" + (withAccess ? $" at={AccessSeconds} f={Frequency} vs={VolatileSlot}" : "");
}

public sealed partial class CacheStateMachine
{
    /// <summary>Copies the whole state in its sampling order (the order snapshots keep). O(keys); for tests and tools.</summary>
    public IReadOnlyList<KeyDump> Dump()
    {
        lock (_lock)
        {
            return Enumerable.Range(0, _keys.Count).Select(position => new KeyEntry(_keys, position)).Select(entry => new KeyDump(
                entry.KeyArray(),
                entry.IsString ? entry.TextArray() : null,
                entry.IsString ? null : entry.Hash.SortedFields().Select(field => (field, entry.Hash.Fields[field])).ToArray(),
                entry.ExpiresAtUnixMs,
                entry.Version,
                entry.AccessSeconds,
                entry.Frequency,
                entry.VolatileSlot)).ToArray();
        }
    }
}
