using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Text;
using Stcache.Raft;

namespace Stcache.Cache;

/// <summary>An immutable stored value. <see cref="Version"/> is the log index of the command that last wrote it.</summary>
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
}

/// <summary>The deterministic outcome of applying one command.</summary>
/// <param name="Version">After a successful Set: the new version (the entry's index). After a Delete or a failed
/// compare: the key's version before the command (0 when it did not exist).</param>
/// <param name="PreviousExisted">Whether the key held a value before the command.</param>
public readonly record struct ApplyResult(ApplyStatus Status, ulong Version, bool PreviousExisted, string? Error = null)
{
    public bool Succeeded => Status == ApplyStatus.Ok;
}

/// <summary>
/// The replicated key-value state machine. One applier thread calls <see cref="Apply"/>, <see cref="MarkApplied"/>,
/// <see cref="Restore"/>; any number of threads read concurrently with <see cref="TryGet"/>.
/// <para>Snapshots are point-in-time without stopping writes: <see cref="BeginSnapshot"/> freezes the applied index
/// S; while the snapshot is open, the applier preserves the state-at-S of a key the first time it overwrites or
/// deletes it (copy-on-write per key), so the snapshot reader sees exactly the state at S while writes go on.</para>
/// </summary>
public sealed class CacheStateMachine
{
    private const uint SnapshotMagic = 0x53435453; // "STCS"
    private const byte SnapshotFormatVersion = 1;
    private const byte RecordEntry = 1;
    private const byte RecordEnd = 0;

    private readonly Lock _applyLock = new();
    private ConcurrentDictionary<string, CacheEntry> _entries = new(StringComparer.Ordinal);

    // Invariant: non-null exactly while a snapshot is open. Its Preserved map holds the state at its index of every
    // key that existed then and was changed since (keys created later need no copy: the walk skips them).
    private CacheSnapshot? _openSnapshot;
    private long _appliedIndex;
    private long _approximateBytes;

    /// <summary>Index of the last log entry reflected in the state.</summary>
    public LogIndex AppliedIndex => new((ulong)Volatile.Read(ref _appliedIndex));

    public int Count => _entries.Count;

    /// <summary>Sum of key and value bytes; approximate while writes are in flight.</summary>
    public long ApproximateBytes => Interlocked.Read(ref _approximateBytes);

    /// <summary>Reads a key. Entries past their expiry are reported absent when <paramref name="nowUnixMs"/> is given.</summary>
    public bool TryGet(string key, out CacheEntry entry, long nowUnixMs = 0)
    {
        if (_entries.TryGetValue(key, out var found) && (nowUnixMs == 0 || !found.IsExpired(nowUnixMs)))
        {
            entry = found;
            return true;
        }

        entry = null!;
        return false;
    }

    /// <summary>Applies the command in the entry at <paramref name="index"/>. Deterministic: no clock, no randomness;
    /// malformed data yields <see cref="ApplyStatus.Invalid"/> and changes nothing but the applied index.</summary>
    public ApplyResult Apply(LogIndex index, ReadOnlyMemory<byte> data)
    {
        lock (_applyLock)
        {
            CheckNextIndex(index);
            ApplyResult result;
            if (!CacheCommand.TryDecode(data, out var command, out string? error))
            {
                result = new ApplyResult(ApplyStatus.Invalid, 0, false, error);
            }
            else
            {
                result = ApplyCommand(index, command!);
            }

            Volatile.Write(ref _appliedIndex, (long)index.Value);
            return result;
        }
    }

    /// <summary>Records that an entry with no effect on the cache (no-op, membership change) was applied.</summary>
    public void MarkApplied(LogIndex index)
    {
        lock (_applyLock)
        {
            CheckNextIndex(index);
            Volatile.Write(ref _appliedIndex, (long)index.Value);
        }
    }

    /// <summary>Opens a point-in-time view of the current state at <see cref="AppliedIndex"/>. Only one snapshot may
    /// be open at a time; dispose it when written. Writing it may happen on any thread while Apply continues.</summary>
    public CacheSnapshot BeginSnapshot()
    {
        lock (_applyLock)
        {
            if (_openSnapshot is not null)
            {
                throw new InvalidOperationException("a snapshot is already open");
            }

            _openSnapshot = new CacheSnapshot(this, _entries, AppliedIndex);
            return _openSnapshot;
        }
    }

    internal void EndSnapshot(CacheSnapshot snapshot)
    {
        lock (_applyLock)
        {
            if (ReferenceEquals(_openSnapshot, snapshot))
            {
                _openSnapshot = null;
            }
        }
    }

    /// <summary>Replaces the whole state with a snapshot written by <see cref="CacheSnapshot.WriteTo"/>. Validates the
    /// stream fully before swapping; on bad data throws <see cref="InvalidDataException"/> and keeps the old state.</summary>
    public void Restore(Stream stream)
    {
        var restored = new ConcurrentDictionary<string, CacheEntry>(StringComparer.Ordinal);
        long bytes = 0;
        ulong index = ReadSnapshot(stream, restored, ref bytes);
        lock (_applyLock)
        {
            if (_openSnapshot is not null)
            {
                throw new InvalidOperationException("cannot restore while a snapshot is being written");
            }

            _entries = restored;
            Interlocked.Exchange(ref _approximateBytes, bytes);
            Volatile.Write(ref _appliedIndex, (long)index);
        }
    }

    /// <summary>Resets to the empty state at index 0 (a node whose data was discarded).</summary>
    public void Clear()
    {
        lock (_applyLock)
        {
            _entries = new ConcurrentDictionary<string, CacheEntry>(StringComparer.Ordinal);
            Interlocked.Exchange(ref _approximateBytes, 0);
            Volatile.Write(ref _appliedIndex, 0);
        }
    }

    private void CheckNextIndex(LogIndex index)
    {
        if (index.Value <= (ulong)_appliedIndex)
        {
            throw new InvariantViolationException($"apply out of order: {index} after {_appliedIndex}");
        }
    }

    private ApplyResult ApplyCommand(LogIndex index, CacheCommand command)
    {
        bool existed = _entries.TryGetValue(command.Key, out var current);
        ulong currentVersion = existed ? current!.Version : 0;
        switch (command.Compare)
        {
            case CompareKind.Version when command.ExpectedVersion != currentVersion:
                return new ApplyResult(ApplyStatus.CompareFailed, currentVersion, existed);
            case CompareKind.Value when !existed || !command.ExpectedValue.Span.SequenceEqual(current!.Value):
                return new ApplyResult(ApplyStatus.CompareFailed, currentVersion, existed);
        }

        if (existed)
        {
            Preserve(command.Key, current!);
        }

        if (command.Kind == CommandKind.Set)
        {
            var entry = new CacheEntry(command.Value.ToArray(), index.Value, command.ExpiresAtUnixMs);
            _entries[command.Key] = entry;
            Interlocked.Add(ref _approximateBytes, entry.Value.Length - (existed ? current!.Value.Length : -KeyCost(command.Key)));
            return new ApplyResult(ApplyStatus.Ok, index.Value, existed);
        }

        if (existed)
        {
            _entries.TryRemove(command.Key, out _);
            Interlocked.Add(ref _approximateBytes, -(current!.Value.Length + KeyCost(command.Key)));
        }

        return new ApplyResult(ApplyStatus.Ok, currentVersion, existed);
    }

    private void Preserve(string key, CacheEntry current)
    {
        var snapshot = _openSnapshot;
        if (snapshot is not null && current.Version <= snapshot.Index.Value)
        {
            // First change since the snapshot point: keep the value the snapshot must see.
            snapshot.Preserved.TryAdd(key, current);
        }
    }

    private static int KeyCost(string key) => key.Length * 2;

    internal static void WriteHeader(Stream stream, LogIndex index)
    {
        Span<byte> header = stackalloc byte[13];
        BinaryPrimitives.WriteUInt32LittleEndian(header, SnapshotMagic);
        header[4] = SnapshotFormatVersion;
        BinaryPrimitives.WriteUInt64LittleEndian(header[5..], index.Value);
        stream.Write(header);
    }

    internal static void WriteEntry(Stream stream, string key, CacheEntry entry, byte[] scratch)
    {
        int keyBytes = Encoding.UTF8.GetBytes(key, scratch.AsSpan(7));
        scratch[0] = RecordEntry;
        BinaryPrimitives.WriteUInt16LittleEndian(scratch.AsSpan(1), (ushort)keyBytes);
        BinaryPrimitives.WriteInt32LittleEndian(scratch.AsSpan(3), entry.Value.Length);
        stream.Write(scratch, 0, 7 + keyBytes);
        stream.Write(entry.Value);
        Span<byte> tail = stackalloc byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(tail, entry.Version);
        BinaryPrimitives.WriteInt64LittleEndian(tail[8..], entry.ExpiresAtUnixMs);
        stream.Write(tail);
    }

    internal static void WriteEnd(Stream stream, long count)
    {
        Span<byte> end = stackalloc byte[9];
        end[0] = RecordEnd;
        BinaryPrimitives.WriteInt64LittleEndian(end[1..], count);
        stream.Write(end);
    }

    private static ulong ReadSnapshot(Stream stream, ConcurrentDictionary<string, CacheEntry> into, ref long bytes)
    {
        var header = new byte[13];
        ReadExactly(stream, header);
        if (BinaryPrimitives.ReadUInt32LittleEndian(header) != SnapshotMagic || header[4] != SnapshotFormatVersion)
        {
            throw new InvalidDataException("not a cache snapshot or unknown format version");
        }

        ulong index = BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(5));
        var strictUtf8 = new UTF8Encoding(false, true);
        var recordHeader = new byte[7];
        var keyBuffer = new byte[CacheCommand.KeyBytesMax];
        var tail = new byte[16];
        long count = 0;
        while (true)
        {
            ReadExactly(stream, recordHeader.AsSpan(0, 1));
            if (recordHeader[0] == RecordEnd)
            {
                var end = new byte[8];
                ReadExactly(stream, end);
                if (BinaryPrimitives.ReadInt64LittleEndian(end) != count)
                {
                    throw new InvalidDataException("snapshot entry count mismatch");
                }

                return index;
            }

            if (recordHeader[0] != RecordEntry)
            {
                throw new InvalidDataException("unknown snapshot record");
            }

            ReadExactly(stream, recordHeader.AsSpan(1, 6));
            int keyBytes = BinaryPrimitives.ReadUInt16LittleEndian(recordHeader.AsSpan(1));
            int valueBytes = BinaryPrimitives.ReadInt32LittleEndian(recordHeader.AsSpan(3));
            if (keyBytes == 0 || keyBytes > CacheCommand.KeyBytesMax || valueBytes < 0 || valueBytes > CacheCommand.ValueBytesMax)
            {
                throw new InvalidDataException("bad snapshot record lengths");
            }

            ReadExactly(stream, keyBuffer.AsSpan(0, keyBytes));
            string key;
            try
            {
                key = strictUtf8.GetString(keyBuffer, 0, keyBytes);
            }
            catch (DecoderFallbackException e)
            {
                throw new InvalidDataException("snapshot key is not utf-8", e);
            }

            var value = new byte[valueBytes];
            ReadExactly(stream, value);
            ReadExactly(stream, tail);
            ulong version = BinaryPrimitives.ReadUInt64LittleEndian(tail);
            long expires = BinaryPrimitives.ReadInt64LittleEndian(tail.AsSpan(8));
            if (version == 0 || version > index || expires < 0)
            {
                throw new InvalidDataException("bad snapshot entry version");
            }

            count++;
            if (!into.TryAdd(key, new CacheEntry(value, version, expires)))
            {
                // A key changed while the snapshot was written may appear twice, both times with its state at
                // the snapshot index; anything else is corruption.
                if (into[key].Version != version || !into[key].Value.AsSpan().SequenceEqual(value))
                {
                    throw new InvalidDataException("conflicting duplicate key in snapshot");
                }

                continue;
            }

            bytes += value.Length + KeyCost(key);
        }
    }

    private static void ReadExactly(Stream stream, Span<byte> buffer)
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
}

/// <summary>A point-in-time view of a <see cref="CacheStateMachine"/> at <see cref="Index"/>.</summary>
public sealed class CacheSnapshot : IDisposable
{
    private readonly CacheStateMachine _owner;
    private readonly ConcurrentDictionary<string, CacheEntry> _entries;
    private int _disposed;

    internal CacheSnapshot(CacheStateMachine owner, ConcurrentDictionary<string, CacheEntry> entries, LogIndex index)
    {
        _owner = owner;
        _entries = entries;
        Index = index;
    }

    /// <summary>The applied index the view reflects.</summary>
    public LogIndex Index { get; }

    // The state at Index of every key changed since the view opened (written by the applier, read by the writer).
    internal ConcurrentDictionary<string, CacheEntry> Preserved { get; } = new(StringComparer.Ordinal);

    /// <summary>Streams the view. Safe to call on any thread while the applier keeps applying.</summary>
    public long WriteTo(Stream stream)
    {
        ObjectDisposedException.ThrowIf(_disposed != 0, this);
        var buffered = new BufferedStream(stream, 1 << 16);
        CacheStateMachine.WriteHeader(buffered, Index);
        var scratch = new byte[7 + CacheCommand.KeyBytesMax];
        long count = 0;

        // A current entry whose version is <= Index has not changed since Index, so it is the state at Index.
        // Anything newer was changed after Index, and the applier preserved its earlier state (if it had one)
        // before changing it; those are written from Preserved below. A key changed after the walk passed it is
        // written twice with the same state-at-Index; Restore accepts identical duplicates.
        foreach (var pair in _entries)
        {
            if (pair.Value.Version <= Index.Value)
            {
                CacheStateMachine.WriteEntry(buffered, pair.Key, pair.Value, scratch);
                count++;
            }
        }

        foreach (var pair in Preserved)
        {
            CacheStateMachine.WriteEntry(buffered, pair.Key, pair.Value, scratch);
            count++;
        }

        CacheStateMachine.WriteEnd(buffered, count);
        buffered.Flush();
        return count;
    }

    public void Dispose()
    {
        if (Interlocked.Exchange(ref _disposed, 1) == 0)
        {
            _owner.EndSnapshot(this);
        }
    }
}
