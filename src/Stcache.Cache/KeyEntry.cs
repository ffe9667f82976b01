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

    /// <summary>The key table's copy-on-write generation when this hash was made: an open snapshot may read a hash
    /// of an older generation, which is therefore cloned before a change (<see cref="KeyTable.Generation"/>).</summary>
    public byte Generation { get; set; }

    public HashValue Clone() => new(new Dictionary<byte[], byte[]>(Fields, ByteStringComparer.Instance), Bytes) { Key = Key };

    public byte[][] SortedFields()
    {
        var names = Fields.Keys.ToArray();
        Array.Sort(names, ByteStringComparer.Instance);
        return names;
    }
}


/// <summary>One key's state, held by value in the <see cref="KeyTable"/>'s slot chunks: no object per key but the
/// key's one data array (32 B a slot on 64-bit, against a 56 B entry object and a hash set slot before).</summary>
/// <remarks>A string key's bytes and its value share one array, <c>[key length in 7-bit groups][key][value]</c>
/// (<see cref="KeyData"/>), never changed in place: a new one replaces it, so a snapshot holding the old slot reads
/// the old value. A hash's key is held by its <see cref="HashValue"/>.</remarks>
internal struct KeySlot
{
    /// <summary>byte[]: a string (layout above); <see cref="HashValue"/>: a hash.</summary>
    public object Data;

    /// <summary>The largest version a slot holds: the LFU counter takes the top byte of the same field (2^56 log
    /// entries are out of reach: at a million entries a second, 2,000 years).</summary>
    public const ulong VersionMax = (1UL << 56) - 1;

    // The version in the low 56 bits, the LFU counter in the top 8.
    private ulong _versionAndFrequency;

    /// <summary>Absolute expiry in Unix ms; 0 = none.</summary>
    public long ExpiresAtUnixMs;

    /// <summary>Log time in seconds of the last access (LRU), from writes and replicated access reports.</summary>
    public uint AccessSeconds;

    /// <summary>Position among the keys with an expiry (the sampling list of volatile keys); -1 = none.</summary>
    public int VolatileSlot;

    /// <summary>Log index of the last write that changed the value or the expiry (compare-and-set).</summary>
    public ulong Version
    {
        readonly get => _versionAndFrequency & VersionMax;
        set
        {
            if (value > VersionMax)
            {
                throw new InvalidOperationException($"version {value} is beyond what a key slot holds ({VersionMax})");
            }

            _versionAndFrequency = (_versionAndFrequency & ~VersionMax) | value;
        }
    }

    /// <summary>Redis's logarithmic LFU counter.</summary>
    public byte Frequency
    {
        readonly get => (byte)(_versionAndFrequency >> 56);
        set => _versionAndFrequency = (_versionAndFrequency & VersionMax) | ((ulong)value << 56);
    }
}

/// <summary>The key and value of a slot's <see cref="KeySlot.Data"/>.</summary>
internal static class KeyData
{
    /// <param name="value">A string's bytes (byte[], copied) or a <see cref="HashValue"/> (taken; its key is set).</param>
    public static object Compose(ReadOnlySpan<byte> key, object value)
    {
        if (value is HashValue hash)
        {
            if (!key.SequenceEqual(hash.Key))
            {
                hash.Key = key.ToArray();
            }

            return hash;
        }

        return ComposeText(key, (byte[])value);
    }

    /// <summary>A string's data: <paramref name="key"/> and <paramref name="text"/> copied into one array.</summary>
    public static byte[] ComposeText(ReadOnlySpan<byte> key, ReadOnlySpan<byte> text)
    {
        int prefix = KeyLengthBytes(key.Length);
        byte[] bytes = GC.AllocateUninitializedArray<byte>(prefix + key.Length + text.Length);
        WriteKeyLength(bytes, key.Length);
        key.CopyTo(bytes.AsSpan(prefix));
        text.CopyTo(bytes.AsSpan(prefix + key.Length));
        return bytes;
    }

    public static ReadOnlySpan<byte> KeyOf(object data)
    {
        if (data is byte[] bytes)
        {
            int start = ReadKeyLength(bytes, out int length);
            return bytes.AsSpan(start, length);
        }

        return ((HashValue)data).Key;
    }

    public static ReadOnlySpan<byte> TextOf(object data)
    {
        var bytes = (byte[])data;
        int start = ReadKeyLength(bytes, out int length);
        return bytes.AsSpan(start + length);
    }

    /// <summary>The bytes a value is accounted at: a string's length, or a hash's accounted bytes.</summary>
    public static long ValueBytesOf(object data) => data is HashValue hash ? hash.Bytes : TextOf(data).Length;

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

/// <summary>A handle on one key of a <see cref="KeyTable"/>, for the commands: reads and writes go to the key's slot
/// (writes through the table's copy-on-write). A short-lived object of the operation, not stored: any removal from
/// the table may move a slot (swap-remove), so a handle taken before a removal refuses to be used after it.</summary>
internal sealed class KeyEntry
{
    private readonly KeyTable _table;
    private readonly int _position;
    private readonly int _epoch;

    public KeyEntry(KeyTable table, int position)
    {
        _table = table;
        _position = position;
        _epoch = table.Epoch;
    }

    /// <summary>The key's position in the table's order (sampling, KEYS, snapshots).</summary>
    public int Slot => _position;

    private ref readonly KeySlot Read => ref _table.At(Checked());

    private ref KeySlot Write => ref _table.Writable(Checked());

    public ReadOnlySpan<byte> Key => KeyData.KeyOf(Read.Data);

    /// <summary>The key as an array, for callers that keep it: a copy for a string; a hash's own key array, which is
    /// never changed in place.</summary>
    public byte[] KeyArray() => Read.Data is HashValue hash ? hash.Key : Key.ToArray();

    public bool IsString => Read.Data is byte[];

    /// <summary>A string's value bytes (a view of the key's array, which is never changed in place).</summary>
    public ReadOnlySpan<byte> Text => KeyData.TextOf(Read.Data);

    /// <summary>A copy of a string's value, for a reply.</summary>
    public byte[] TextArray() => Text.ToArray();

    public HashValue Hash => (HashValue)Read.Data;

    /// <summary>A string's length, or a hash's accounted bytes.</summary>
    public long ValueBytes => KeyData.ValueBytesOf(Read.Data);

    /// <summary>The value for another key (COPY, RENAME): a copy of the string's bytes or a clone of the hash.</summary>
    public object CopyValue() => Read.Data is HashValue hash ? hash.Clone() : TextArray();

    /// <summary>Replaces the value: a string's bytes (byte[], copied) or a <see cref="HashValue"/> (taken).</summary>
    public void SetValue(object value)
    {
        object data = KeyData.Compose(Key, value);
        Write.Data = data;
    }

    /// <summary>Replaces the value with a string of <paramref name="text"/> (copied).</summary>
    public void SetText(ReadOnlySpan<byte> text)
    {
        object data = KeyData.ComposeText(Key, text);
        Write.Data = data;
    }

    public long ExpiresAtUnixMs
    {
        get => Read.ExpiresAtUnixMs;
        set => Write.ExpiresAtUnixMs = value;
    }

    public ulong Version
    {
        get => Read.Version;
        set => Write.Version = value;
    }

    public uint AccessSeconds
    {
        get => Read.AccessSeconds;
        set => Write.AccessSeconds = value;
    }

    public byte Frequency
    {
        get => Read.Frequency;
        set => Write.Frequency = value;
    }

    public int VolatileSlot
    {
        get => Read.VolatileSlot;
        set => Write.VolatileSlot = value;
    }

    private int Checked()
    {
        if (_table.Epoch != _epoch)
        {
            throw new InvalidOperationException("a key handle was used after a removal from the table");
        }

        return _position;
    }
}

/// <summary>The keys: their slots in insertion order with swap-remove (the deterministic order sampling, KEYS and
/// snapshots use), in chunks of <see cref="ChunkSize"/>, and an open-addressing index (linear probing) from the
/// key's hash to its position.</summary>
/// <remarks>
/// <para>Memory: a slot (32 B) plus 4-8 B of index a key, and the key's data array; no object per key. The index
/// keeps no hash: a probe compares the key itself, and deletions and growth hash the keys they move again.</para>
/// <para>Copy-on-write: <see cref="BeginCapture"/> hands out the chunk list as it is and starts a new generation;
/// until <see cref="EndCapture"/>, a chunk of an older generation is cloned before a slot of it is written
/// (<see cref="Writable"/>), so the captured chunks stay exactly as they were. Data arrays are never changed in
/// place; a hash is (the state machine clones one of an older generation before changing it).</para>
/// </remarks>
internal sealed class KeyTable
{
    public const int ChunkShift = 9;
    public const int ChunkSize = 1 << ChunkShift;
    private const int ChunkMask = ChunkSize - 1;
    private const int MinimumBuckets = 16;

    private KeySlot[]?[] _chunks = new KeySlot[]?[4];
    private byte[] _chunkGenerations = new byte[4];
    private int _count;

    // Per bucket (0 = empty): in the bits under the mask (buckets - 1), position + 1 of the key whose home
    // (hash & mask) is this or an earlier bucket of its run; above them, the same bits of that key's hash, which a
    // lookup compares before it reads the key (positions stay below the bucket count: at most 3/4 are used).
    private int[] _buckets = new int[MinimumBuckets];
    private byte _generation;
    private bool _capturing;

    public int Count => _count;

    /// <summary>Changes on every removal: handles taken before it are stale.</summary>
    public int Epoch { get; private set; }

    /// <summary>The current copy-on-write generation (see the remarks).</summary>
    public byte Generation => _generation;

    public bool Capturing => _capturing;

    /// <summary>Index buckets (for tests and memory figures).</summary>
    public int BucketCount => _buckets.Length;

    public static int HashOf(ReadOnlySpan<byte> key)
    {
        var hash = default(HashCode);
        hash.AddBytes(key);
        return hash.ToHashCode();
    }

    public ref readonly KeySlot At(int position) => ref _chunks[position >> ChunkShift]![position & ChunkMask];

    /// <summary>The slot to change, copying its chunk first if an open capture may read it.</summary>
    public ref KeySlot Writable(int position)
    {
        int chunk = position >> ChunkShift;
        if (_capturing && _chunkGenerations[chunk] != _generation)
        {
            _chunks[chunk] = (KeySlot[])_chunks[chunk]!.Clone();
            _chunkGenerations[chunk] = _generation;
        }

        return ref _chunks[chunk]![position & ChunkMask];
    }

    /// <summary>The key's position, or -1.</summary>
    public int Find(ReadOnlySpan<byte> key)
    {
        int hash = HashOf(key);
        int mask = _buckets.Length - 1;
        int tag = hash & ~mask;
        for (int i = hash & mask; ; i = (i + 1) & mask)
        {
            int bucket = _buckets[i];
            if (bucket == 0)
            {
                return -1;
            }

            if ((bucket & ~mask) == tag && KeyData.KeyOf(At((bucket & mask) - 1).Data).SequenceEqual(key))
            {
                return (bucket & mask) - 1;
            }
        }
    }

    public bool TryGetValue(ReadOnlySpan<byte> key, [MaybeNullWhen(false)] out KeyEntry entry)
    {
        int position = Find(key);
        entry = position < 0 ? null : new KeyEntry(this, position);
        return position >= 0;
    }

    /// <summary>Appends a key (its <see cref="KeySlot.Data"/> composed for <paramref name="key"/>); returns its
    /// position, or -1 when the key is present (nothing changes then).</summary>
    public int TryAdd(ReadOnlySpan<byte> key, in KeySlot slot)
    {
        if ((_count + 1) * 4L > _buckets.Length * 3L)
        {
            Rehash(_buckets.Length * 2);
        }

        int hash = HashOf(key);
        int mask = _buckets.Length - 1;
        int tag = hash & ~mask;
        int i = hash & mask;
        for (; _buckets[i] != 0; i = (i + 1) & mask)
        {
            int bucket = _buckets[i];
            if ((bucket & ~mask) == tag && KeyData.KeyOf(At((bucket & mask) - 1).Data).SequenceEqual(key))
            {
                return -1;
            }
        }

        int position = _count;
        int chunk = position >> ChunkShift;
        if (chunk == _chunks.Length)
        {
            Array.Resize(ref _chunks, _chunks.Length * 2);
            Array.Resize(ref _chunkGenerations, _chunks.Length);
        }

        if (_chunks[chunk] is null)
        {
            _chunks[chunk] = new KeySlot[ChunkSize];
            _chunkGenerations[chunk] = _generation;
        }

        ref var stored = ref Writable(position);
        stored = slot;
        _buckets[i] = tag | (position + 1);
        _count++;
        return position;
    }

    /// <summary>Removes the key at <paramref name="position"/>; the last key takes its place. Returns whether a key
    /// moved into <paramref name="position"/>.</summary>
    public bool RemoveAt(int position)
    {
        if ((uint)position >= (uint)_count)
        {
            throw new ArgumentOutOfRangeException(nameof(position));
        }

        DeleteBucket(BucketOf(position));
        int last = _count - 1;
        bool moved = position != last;
        if (moved)
        {
            var lastSlot = At(last);
            int bucket = BucketOf(last);
            _buckets[bucket] = (_buckets[bucket] & ~(_buckets.Length - 1)) | (position + 1);
            Writable(position) = lastSlot;
        }

        Writable(last) = default;
        _count = last;
        if ((last & ChunkMask) == 0)
        {
            // The last chunk is empty (a capture keeps its own list of chunks).
            _chunks[last >> ChunkShift] = null;
        }

        Epoch++;
        if (_buckets.Length > MinimumBuckets && _count * 8L < _buckets.Length)
        {
            Rehash(_buckets.Length / 2);
        }

        return moved;
    }

    /// <summary>Opens a point-in-time view: the chunks as they are now (slots 0 to <see cref="Count"/> - 1), which
    /// stay unchanged until <see cref="EndCapture"/>.</summary>
    public KeySlot[]?[] BeginCapture()
    {
        if (_capturing)
        {
            throw new InvalidOperationException("a capture is already open");
        }

        // Every chunk's and hash's generation is at most the current one, so after the increment none equals it (a
        // byte: renumber on wrap).
        if (_generation == byte.MaxValue)
        {
            Array.Clear(_chunkGenerations);
            for (int i = 0; i < _count; i++)
            {
                if (At(i).Data is HashValue hash)
                {
                    hash.Generation = 0;
                }
            }

            _generation = 0;
        }

        _generation++;
        _capturing = true;
        return (KeySlot[]?[])_chunks.Clone();
    }

    public void EndCapture() => _capturing = false;

    public static ref readonly KeySlot At(KeySlot[]?[] chunks, int position) => ref chunks[position >> ChunkShift]![position & ChunkMask];

    private int HomeOf(int position, int mask) => HashOf(KeyData.KeyOf(At(position).Data)) & mask;

    private int BucketOf(int position)
    {
        int mask = _buckets.Length - 1;
        for (int i = HomeOf(position, mask); ; i = (i + 1) & mask)
        {
            if ((_buckets[i] & mask) == position + 1)
            {
                return i;
            }

            if (_buckets[i] == 0)
            {
                throw new InvalidOperationException("key table index broken");
            }
        }
    }

    // Backward-shift deletion: later keys of the probe run move up so that no lookup meets a gap before its key.
    private void DeleteBucket(int hole)
    {
        int mask = _buckets.Length - 1;
        for (int j = (hole + 1) & mask; _buckets[j] != 0; j = (j + 1) & mask)
        {
            int home = HomeOf((_buckets[j] & mask) - 1, mask);

            // The key at j may fill the hole when its home is not cyclically within (hole, j].
            bool staysPut = hole <= j ? home > hole && home <= j : home > hole || home <= j;
            if (!staysPut)
            {
                _buckets[hole] = _buckets[j];
                hole = j;
            }
        }

        _buckets[hole] = 0;
    }

    private void Rehash(int size)
    {
        var buckets = new int[Math.Max(MinimumBuckets, size)];
        int mask = buckets.Length - 1;
        for (int position = 0; position < _count; position++)
        {
            int hash = HashOf(KeyData.KeyOf(At(position).Data));
            int i = hash & mask;
            while (buckets[i] != 0)
            {
                i = (i + 1) & mask;
            }

            buckets[i] = (hash & ~mask) | (position + 1);
        }

        _buckets = buckets;
    }
}
