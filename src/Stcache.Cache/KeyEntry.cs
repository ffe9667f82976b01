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

    /// <summary>The key of the entry holding this hash (set by the entry when it takes the hash).</summary>
    public byte[] Key { get; set; } = [];

    public HashValue Clone() => new(new Dictionary<byte[], byte[]>(Fields, ByteStringComparer.Instance), Bytes) { Key = Key };

    public byte[][] SortedFields()
    {
        var names = Fields.Keys.ToArray();
        Array.Sort(names, ByteStringComparer.Instance);
        return names;
    }
}

/// <summary>One key's state. Mutated only by the applier, under the state machine's lock, and never while an open
/// snapshot may still read it (see <see cref="CacheStateMachine"/>'s copy-on-write rule).</summary>
/// <remarks>A string key's bytes and its value share one array, <c>[key length in 7-bit groups][key][value]</c>, and
/// the entry has one reference field for both: a key of 11 B with a value of 100 B costs a 56 B entry and a 136 B
/// array, against 64 + 40 + 128 B for an entry with a key array and a value array (docs/PERFORMANCE.md, "Memory").
/// The array is never changed in place: a new one replaces it, so a snapshot holding the old entry or array reads
/// the old value. A hash's key is held by its <see cref="HashValue"/>.</remarks>
[StructLayout(LayoutKind.Auto)]
internal sealed class KeyEntry
{
    // byte[]: a string (layout above); HashValue: a hash.
    private object _data;

    /// <param name="value">A string's bytes (byte[], copied) or a <see cref="HashValue"/> (taken).</param>
    public KeyEntry(ReadOnlySpan<byte> key, object value)
    {
        _data = Compose(key, value);
    }

    private KeyEntry(object data)
    {
        _data = data;
    }

    public ReadOnlySpan<byte> Key
    {
        get
        {
            if (_data is byte[] bytes)
            {
                int start = ReadKeyLength(bytes, out int length);
                return bytes.AsSpan(start, length);
            }

            return ((HashValue)_data).Key;
        }
    }

    /// <summary>The key as an array, for callers that keep it: a copy for a string; a hash's own key array, which is
    /// never changed in place.</summary>
    public byte[] KeyArray() => _data is HashValue hash ? hash.Key : Key.ToArray();

    public bool IsString => _data is byte[];

    /// <summary>A string's value bytes (a view of the entry's array, which is never changed in place).</summary>
    public ReadOnlySpan<byte> Text
    {
        get
        {
            var bytes = (byte[])_data;
            int start = ReadKeyLength(bytes, out int length);
            return bytes.AsSpan(start + length);
        }
    }

    /// <summary>A copy of a string's value, for a reply.</summary>
    public byte[] TextArray() => Text.ToArray();

    public HashValue Hash => (HashValue)_data;

    /// <summary>A string's length, or a hash's accounted bytes.</summary>
    public long ValueBytes => _data is HashValue hash ? hash.Bytes : Text.Length;

    /// <summary>The value for another key (COPY, RENAME): a copy of the string's bytes or a clone of the hash.</summary>
    public object CopyValue() => _data is HashValue hash ? hash.Clone() : TextArray();

    /// <summary>Replaces the value: a string's bytes (byte[], copied) or a <see cref="HashValue"/> (taken).</summary>
    public void SetValue(object value) => _data = Compose(Key, value);

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

    public KeyEntry Clone(byte generation) => new(_data is HashValue hash ? hash.Clone() : _data)
    {
        ExpiresAtUnixMs = ExpiresAtUnixMs,
        Version = Version,
        AccessSeconds = AccessSeconds,
        Frequency = Frequency,
        Slot = Slot,
        VolatileSlot = VolatileSlot,
        Generation = generation,
    };

    private static object Compose(ReadOnlySpan<byte> key, object value)
    {
        if (value is HashValue hash)
        {
            if (!key.SequenceEqual(hash.Key))
            {
                hash.Key = key.ToArray();
            }

            return hash;
        }

        var text = (byte[])value;
        int prefix = KeyLengthBytes(key.Length);
        byte[] bytes = GC.AllocateUninitializedArray<byte>(prefix + key.Length + text.Length);
        WriteKeyLength(bytes, key.Length);
        key.CopyTo(bytes.AsSpan(prefix));
        text.CopyTo(bytes.AsSpan(prefix + key.Length));
        return bytes;
    }

    private static int KeyLengthBytes(int length)
    {
        int bytes = 1;
        for (uint rest = (uint)length >> 7; rest != 0; rest >>= 7)
        {
            bytes++;
        }

        return bytes;
    }

    private static void WriteKeyLength(Span<byte> destination, int length)
    {
        int i = 0;
        uint rest = (uint)length;
        while (rest >= 0x80)
        {
            destination[i++] = (byte)(rest | 0x80);
            rest >>= 7;
        }

        destination[i] = (byte)rest;
    }

    /// <summary>Reads the key length at the start of a string's array; returns where the key starts.</summary>
    private static int ReadKeyLength(byte[] bytes, out int length)
    {
        byte first = bytes[0];
        if (first < 0x80)
        {
            length = first;
            return 1;
        }

        uint value = 0;
        int i = 0;
        int shift = 0;
        byte b;
        do
        {
            b = bytes[i++];
            value |= (uint)(b & 0x7f) << shift;
            shift += 7;
        }
        while (b >= 0x80);

        length = (int)value;
        return i;
    }
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

        public bool Equals(KeyEntry? x, KeyEntry? y) => ReferenceEquals(x, y) || (x is not null && y is not null && x.Key.SequenceEqual(y.Key));

        public int GetHashCode(KeyEntry obj) => GetHashCode(obj.Key);

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
