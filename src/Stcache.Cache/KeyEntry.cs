using System.Diagnostics.CodeAnalysis;
using System.Runtime.InteropServices;

namespace Stcache.Cache;

/// <summary>Compares byte-string keys by content.</summary>
public sealed class ByteStringComparer : IEqualityComparer<byte[]>, IComparer<byte[]>
{
    public static ByteStringComparer Instance { get; } = new();

    public bool Equals(byte[]? x, byte[]? y) => ReferenceEquals(x, y) || (x is not null && y is not null && x.AsSpan().SequenceEqual(y));

    public int GetHashCode([DisallowNull] byte[] obj)
    {
        var hash = default(HashCode);
        hash.AddBytes(obj);
        return hash.ToHashCode();
    }

    public int Compare(byte[]? x, byte[]? y) => x.AsSpan().SequenceCompareTo(y);

    /// <summary>A stable 64-bit hash (FNV-1a, then a SplitMix finalizer): the same on every node and run, which
    /// SCAN cursors rely on.</summary>
    public static ulong StableHash(ReadOnlySpan<byte> key)
    {
        ulong hash = 14695981039346656037UL;
        foreach (byte b in key)
        {
            hash = (hash ^ b) * 1099511628211UL;
        }

        return Mix(hash);
    }

    public static ulong Mix(ulong x)
    {
        x ^= x >> 30;
        x *= 0xbf58476d1ce4e5b9UL;
        x ^= x >> 27;
        x *= 0x94d049bb133111ebUL;
        x ^= x >> 31;
        return x;
    }
}

/// <summary>A hash value: its fields and their summed accounted bytes.</summary>
internal sealed class HashValue
{
    public HashValue(Dictionary<byte[], byte[]> fields, long bytes)
    {
        Fields = fields;
        Bytes = bytes;
    }

    public Dictionary<byte[], byte[]> Fields { get; }

    // Invariant: Bytes == sum over fields of (FieldOverheadBytes + field length + value length).
    public long Bytes { get; set; }

    public HashValue Clone() => new(new Dictionary<byte[], byte[]>(Fields, ByteStringComparer.Instance), Bytes);

    public byte[][] SortedFields()
    {
        var names = Fields.Keys.ToArray();
        Array.Sort(names, ByteStringComparer.Instance);
        return names;
    }
}

/// <summary>One key's state. Mutated only by the applier, under the state machine's lock, and never while an open
/// snapshot may still read it (see <see cref="CacheStateMachine"/>'s copy-on-write rule).</summary>
[StructLayout(LayoutKind.Auto)]
internal sealed class KeyEntry
{
    public KeyEntry(byte[] key, object value)
    {
        Key = key;
        Value = value;
    }

    public byte[] Key { get; }

    /// <summary>A string's bytes (never changed in place: a new array replaces it) or a <see cref="HashValue"/>.</summary>
    public object Value { get; set; }

    /// <summary>Absolute expiry in Unix ms; 0 = none.</summary>
    public long ExpiresAtUnixMs { get; set; }

    /// <summary>Log index of the last write that changed the value or the expiry (compare-and-set).</summary>
    public ulong Version { get; set; }

    /// <summary>Log time in seconds of the last access (LRU), from writes and replicated access reports.</summary>
    public uint AccessSeconds { get; set; }

    /// <summary>Redis's logarithmic LFU counter.</summary>
    public byte Frequency { get; set; }

    // Bookkeeping, never part of the snapshot: positions in the sampling arrays and the copy-on-write generation.
    public int Slot { get; set; }

    public int VolatileSlot { get; set; } = -1;

    public byte Generation { get; set; }

    public bool IsString => Value is byte[];

    public byte[] Text => (byte[])Value;

    public HashValue Hash => (HashValue)Value;

    public KeyEntry Clone(byte generation) => new(Key, Value is HashValue hash ? hash.Clone() : Value)
    {
        ExpiresAtUnixMs = ExpiresAtUnixMs,
        Version = Version,
        AccessSeconds = AccessSeconds,
        Frequency = Frequency,
        Slot = Slot,
        VolatileSlot = VolatileSlot,
        Generation = generation,
    };
}

/// <summary>The set of entries, found by key bytes without a separate key-to-entry map (a hash set of the entries
/// with an alternate lookup by span saves a reference and a hash code per key over a dictionary).</summary>
internal sealed class KeyTable
{
    private readonly HashSet<KeyEntry> _entries = new(EntryComparer.Instance);
    private readonly HashSet<KeyEntry>.AlternateLookup<ReadOnlySpan<byte>> _byKey;

    public KeyTable()
    {
        _byKey = _entries.GetAlternateLookup<ReadOnlySpan<byte>>();
    }

    public int Count => _entries.Count;

    public bool TryGetValue(ReadOnlySpan<byte> key, [MaybeNullWhen(false)] out KeyEntry entry) => _byKey.TryGetValue(key, out entry);

    /// <summary>Adds a new entry; false when an entry with the same key is present.</summary>
    public bool TryAdd(KeyEntry entry) => _entries.Add(entry);

    public void Add(KeyEntry entry)
    {
        if (!_entries.Add(entry))
        {
            throw new InvalidOperationException("key already present");
        }
    }

    public bool Remove(KeyEntry entry) => _entries.Remove(entry);

    /// <summary>Puts <paramref name="replacement"/> in the place of the entry with the same key.</summary>
    public void Replace(KeyEntry replacement)
    {
        _entries.Remove(replacement);
        _entries.Add(replacement);
    }

    private sealed class EntryComparer : IEqualityComparer<KeyEntry>, IAlternateEqualityComparer<ReadOnlySpan<byte>, KeyEntry>
    {
        public static EntryComparer Instance { get; } = new();

        public bool Equals(KeyEntry? x, KeyEntry? y) => ReferenceEquals(x, y) || (x is not null && y is not null && x.Key.AsSpan().SequenceEqual(y.Key));

        public int GetHashCode(KeyEntry obj) => GetHashCode(obj.Key.AsSpan());

        public bool Equals(ReadOnlySpan<byte> alternate, KeyEntry other) => alternate.SequenceEqual(other.Key);

        public int GetHashCode(ReadOnlySpan<byte> alternate)
        {
            var hash = default(HashCode);
            hash.AddBytes(alternate);
            return hash.ToHashCode();
        }

        public KeyEntry Create(ReadOnlySpan<byte> alternate) => throw new NotSupportedException("entries are added whole");
    }
}
