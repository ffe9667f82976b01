using System.Buffers.Binary;

namespace Stcache.Cache;

/// <summary>The normalized operations. Values are part of the log format: never renumber.</summary>
public enum Op : byte
{
    // Reads (never in the log on their own; inside a batch they run at the batch's log time).
    Get = 1,
    MGet = 2,
    StrLen = 3,
    GetRange = 4,
    Exists = 5,
    Type = 6,
    Keys = 7,
    Scan = 8,
    RandomKey = 9,
    DbSize = 10,
    Ttl = 11,
    PTtl = 12,
    ExpireTime = 13,
    PExpireTime = 14,
    HGet = 15,
    HMGet = 16,
    HGetAll = 17,
    HExists = 18,
    HLen = 19,
    HKeys = 20,
    HVals = 21,
    HStrLen = 22,
    Touch = 23,

    // Writes.
    Set = 64,
    SetNx = 65,
    GetEx = 66,
    GetDel = 67,
    MSet = 68,
    MSetNx = 69,
    Append = 70,
    SetRange = 71,
    IncrBy = 72,
    IncrByFloat = 73,
    Del = 74,
    Rename = 75,
    RenameNx = 76,
    Copy = 77,
    FlushAll = 78,
    Expire = 79,
    Persist = 80,
    HSet = 81,
    HSetNx = 82,
    HDel = 83,
    HIncrBy = 84,
    HIncrByFloat = 85,

    // Decided by the leader, never sent by clients.
    /// <summary>Delete each key whose expiry is at or before <see cref="Invocation.Number"/> (Unix ms).</summary>
    ExpireKeys = 112,

    /// <summary>Delete each key (args alternate key, 8-byte little-endian version) if it still has that version.</summary>
    Evict = 113,

    /// <summary>Record reads of the keys (LRU recency and LFU frequency) at the entry's log time.</summary>
    Access = 114,

    /// <summary>Set the replicated memory limit (<see cref="Invocation.Number"/> bytes, 0 = none) and the eviction
    /// policy (<see cref="Invocation.Flags"/>).</summary>
    MemoryPolicy = 115,

    /// <summary>WATCH's guard, only as the first item of a <see cref="Batch"/>: args alternate key and 8-byte
    /// little-endian version (0: absent). If any key's version differs, nothing in the batch is applied and the reply is
    /// a null (EXEC's abort), decided when the entry is applied, so no write can slip in between check and batch.</summary>
    IfVersions = 116,

    /// <summary>Several operations applied atomically, replying with an array (MULTI/EXEC).</summary>
    Batch = 127,
}

[Flags]
public enum OpFlags : ushort
{
    None = 0,
    Nx = 1,
    Xx = 2,
    Gt = 4,
    Lt = 8,
    KeepTtl = 16,
    Get = 32,

    /// <summary><see cref="Invocation.Number"/> holds an absolute expiry in Unix ms.</summary>
    HasExpiry = 64,
    Persist = 128,

    /// <summary>HMSET: reply +OK instead of the count of new fields.</summary>
    ReplyOk = 256,
    Replace = 512,

    // Read options.
    WithType = 1024,
    WithCount = 2048,
    WithMatch = 4096,
}

/// <summary>
/// One normalized Redis command: the operation, its option flags, one number (an absolute expiry in Unix ms, an
/// increment or an offset, already validated), and its remaining byte-string arguments. Relative times never
/// appear here: the parser has already turned them into absolute ones.
/// </summary>
public sealed class Invocation
{
    public const int ArgsMax = 1 << 20;

    public Invocation(Op op, OpFlags flags, long number, byte[][] args, Invocation[]? batch = null)
    {
        Op = op;
        Flags = flags;
        Number = number;
        Args = args;
        Batch = batch ?? [];
    }

    public Op Op { get; }

    public OpFlags Flags { get; }

    public long Number { get; }

    public byte[][] Args { get; }

    /// <summary>For <see cref="Op.Batch"/>: the operations, applied in order.</summary>
    public Invocation[] Batch { get; }

    public bool IsWrite => Op >= Op.Set;

    internal int EncodedSize()
    {
        int size = 1 + 2 + 8 + 4;
        if (Op == Op.Batch)
        {
            foreach (var item in Batch)
            {
                size += 4 + item.EncodedSize();
            }

            return size;
        }

        foreach (byte[] arg in Args)
        {
            size += 4 + arg.Length;
        }

        return size;
    }

    internal int WriteTo(Span<byte> span)
    {
        span[0] = (byte)Op;
        BinaryPrimitives.WriteUInt16LittleEndian(span[1..], (ushort)Flags);
        BinaryPrimitives.WriteInt64LittleEndian(span[3..], Number);
        int offset = 11;
        if (Op == Op.Batch)
        {
            BinaryPrimitives.WriteInt32LittleEndian(span[offset..], Batch.Length);
            offset += 4;
            foreach (var item in Batch)
            {
                int written = item.WriteTo(span[(offset + 4)..]);
                BinaryPrimitives.WriteInt32LittleEndian(span[offset..], written);
                offset += 4 + written;
            }

            return offset;
        }

        BinaryPrimitives.WriteInt32LittleEndian(span[offset..], Args.Length);
        offset += 4;
        foreach (byte[] arg in Args)
        {
            BinaryPrimitives.WriteInt32LittleEndian(span[offset..], arg.Length);
            offset += 4;
            arg.CopyTo(span[offset..]);
            offset += arg.Length;
        }

        return offset;
    }

    internal static Invocation? TryRead(ReadOnlySpan<byte> span, int depth, out string? error)
    {
        error = null;
        if (span.Length < 15)
        {
            error = "operation too short";
            return null;
        }

        var op = (Op)span[0];
        if (!Enum.IsDefined(op))
        {
            error = "unknown operation";
            return null;
        }

        var flags = (OpFlags)BinaryPrimitives.ReadUInt16LittleEndian(span[1..]);
        long number = BinaryPrimitives.ReadInt64LittleEndian(span[3..]);
        int count = BinaryPrimitives.ReadInt32LittleEndian(span[11..]);
        int offset = 15;
        if (count < 0 || count > ArgsMax || count > (span.Length - offset) / 4)
        {
            error = "bad argument count";
            return null;
        }

        if (op == Op.Batch)
        {
            if (depth > 0)
            {
                error = "nested batch";
                return null;
            }

            var items = new Invocation[count];
            for (int i = 0; i < count; i++)
            {
                if (!TryReadLength(span, ref offset, out int length))
                {
                    error = "bad batch item length";
                    return null;
                }

                items[i] = TryRead(span.Slice(offset, length), depth + 1, out error)!;
                if (items[i] is null)
                {
                    return null;
                }

                offset += length;
            }

            if (offset != span.Length)
            {
                error = "trailing bytes after batch";
                return null;
            }

            return new Invocation(op, flags, number, [], items);
        }

        var args = new byte[count][];
        for (int i = 0; i < count; i++)
        {
            if (!TryReadLength(span, ref offset, out int length))
            {
                error = "bad argument length";
                return null;
            }

            args[i] = span.Slice(offset, length).ToArray();
            offset += length;
        }

        if (offset != span.Length)
        {
            error = "trailing bytes after operation";
            return null;
        }

        return new Invocation(op, flags, number, args);
    }

    private static bool TryReadLength(ReadOnlySpan<byte> span, ref int offset, out int length)
    {
        length = 0;
        if (span.Length - offset < 4)
        {
            return false;
        }

        length = BinaryPrimitives.ReadInt32LittleEndian(span[offset..]);
        offset += 4;
        return length >= 0 && length <= span.Length - offset;
    }
}

/// <summary>A command that changes the state: it goes through the log as one entry and is applied atomically on
/// every replica by <see cref="CacheStateMachine.Apply"/>.</summary>
public sealed class WriteCommand
{
    /// <summary>First byte of an entry in this format (the older <see cref="CacheCommand"/> format is 1).</summary>
    public const byte FormatVersion = 2;

    public WriteCommand(Invocation invocation)
    {
        if (!invocation.IsWrite)
        {
            throw new ArgumentException("a write command needs a write operation", nameof(invocation));
        }

        Invocation = invocation;
    }

    public Invocation Invocation { get; }

    /// <summary>Builds a MULTI/EXEC batch: the writes and reads run in order in one entry; the reply is their array.</summary>
    public static WriteCommand Batch(IEnumerable<Invocation> items) =>
        new(new Invocation(Op.Batch, OpFlags.None, 0, [], items.ToArray()));

    /// <summary>A MULTI/EXEC batch under WATCH: applied only if every watched key still has the version it had when
    /// it was watched; otherwise nothing is applied and the reply is <see cref="Reply.Nil"/>.</summary>
    public static WriteCommand Batch(IEnumerable<Invocation> items, IReadOnlyCollection<(byte[] Key, ulong Version)> watched) =>
        watched.Count == 0 ? Batch(items) : new(new Invocation(Op.Batch, OpFlags.None, 0, [], [IfVersions(watched), .. items]));

    private static Invocation IfVersions(IEnumerable<(byte[] Key, ulong Version)> watched)
    {
        var args = new List<byte[]>();
        foreach (var (key, version) in watched)
        {
            args.Add(key);
            var versionBytes = new byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(versionBytes, version);
            args.Add(versionBytes);
        }

        return new Invocation(Op.IfVersions, OpFlags.None, 0, [.. args]);
    }

    /// <summary>The leader's replicated expiry: delete those of <paramref name="keys"/> that expire at or before
    /// <paramref name="expiredAtUnixMs"/> (a key rewritten since keeps its new life).</summary>
    public static WriteCommand ExpireKeys(long expiredAtUnixMs, IEnumerable<byte[]> keys) =>
        new(new Invocation(Op.ExpireKeys, OpFlags.None, expiredAtUnixMs, keys.ToArray()));

    /// <summary>The leader's eviction: delete each key if it still has the version the leader saw.</summary>
    public static WriteCommand Evict(IEnumerable<(byte[] Key, ulong Version)> victims)
    {
        var args = new List<byte[]>();
        foreach (var (key, version) in victims)
        {
            args.Add(key);
            var versionBytes = new byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(versionBytes, version);
            args.Add(versionBytes);
        }

        return new WriteCommand(new Invocation(Op.Evict, OpFlags.None, 0, args.ToArray()));
    }

    /// <summary>Reports reads (from any node) so LRU and LFU data stay identical on every replica.</summary>
    public static WriteCommand Access(IEnumerable<byte[]> keys) => new(new Invocation(Op.Access, OpFlags.None, 0, keys.ToArray()));

    public static WriteCommand MemoryPolicy(long maxMemoryBytes, EvictionPolicy policy) =>
        new(new Invocation(Op.MemoryPolicy, (OpFlags)policy, maxMemoryBytes, []));

    /// <summary>Encodes the log entry: <c>[format u8 = 2][log time i64 Unix ms][operation]</c>, where the operation is
    /// <c>[op u8][flags u16][number i64][count i32]</c> then count × <c>[length i32][bytes]</c> (a batch: count ×
    /// <c>[length i32][operation]</c>), all little-endian. <paramref name="logTimeUnixMs"/> is the leader's clock when
    /// it proposed the entry (at least the last log time).</summary>
    public byte[] Encode(long logTimeUnixMs)
    {
        var buffer = new byte[9 + Invocation.EncodedSize()];
        buffer[0] = FormatVersion;
        BinaryPrimitives.WriteInt64LittleEndian(buffer.AsSpan(1), logTimeUnixMs);
        int written = Invocation.WriteTo(buffer.AsSpan(9));
        if (written != buffer.Length - 9)
        {
            throw new InvalidOperationException("write command encoding size mismatch");
        }

        return buffer;
    }

    /// <summary>Decodes an entry written by <see cref="Encode"/>. Never throws on bad bytes.</summary>
    public static bool TryDecode(ReadOnlySpan<byte> data, out WriteCommand? command, out long logTimeUnixMs, out string? error)
    {
        command = null;
        logTimeUnixMs = 0;
        if (data.Length < 9 || data[0] != FormatVersion)
        {
            error = "not a version 2 write command";
            return false;
        }

        logTimeUnixMs = BinaryPrimitives.ReadInt64LittleEndian(data[1..]);
        var invocation = Invocation.TryRead(data[9..], 0, out error);
        if (invocation is null)
        {
            return false;
        }

        if (!invocation.IsWrite)
        {
            error = "a write entry holds a read operation";
            return false;
        }

        command = new WriteCommand(invocation);
        return true;
    }

    // A lone SET's entry: [format][log time i64] [op][flags u16][number i64][count i32], then the key and the value.
    private const int SetHeaderBytes = 9 + 15;

    /// <summary>
    /// The entry of <c>SET key value</c> with no option: the bytes <see cref="Encode"/> writes for that command and
    /// <see cref="TryReadSet"/> reads, made straight from <paramref name="key"/> and <paramref name="value"/> (a RESP
    /// front end's request bytes: one copy each, no argument arrays or command objects).
    /// </summary>
    public static byte[] EncodeSet(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value, long logTimeUnixMs)
    {
        var entry = new byte[SetHeaderBytes + 4 + key.Length + 4 + value.Length];
        entry[0] = FormatVersion;
        BinaryPrimitives.WriteInt64LittleEndian(entry.AsSpan(1), logTimeUnixMs);
        entry[9] = (byte)Op.Set;
        BinaryPrimitives.WriteInt32LittleEndian(entry.AsSpan(20), 2); // flags and number stay 0: no option
        BinaryPrimitives.WriteInt32LittleEndian(entry.AsSpan(SetHeaderBytes), key.Length);
        key.CopyTo(entry.AsSpan(SetHeaderBytes + 4));
        int valueAt = SetHeaderBytes + 4 + key.Length;
        BinaryPrimitives.WriteInt32LittleEndian(entry.AsSpan(valueAt), value.Length);
        value.CopyTo(entry.AsSpan(valueAt + 4));
        return entry;
    }

    /// <summary>Sets the log time of an entry of this format (one made before its log time was known, not proposed
    /// yet).</summary>
    public static void StampLogTime(Span<byte> entry, long logTimeUnixMs)
    {
        if (entry.Length < 9 || entry[0] != FormatVersion)
        {
            throw new ArgumentException("not a version 2 write command", nameof(entry));
        }

        BinaryPrimitives.WriteInt64LittleEndian(entry[1..], logTimeUnixMs);
    }

    /// <summary>
    /// Reads an entry written by <see cref="Encode"/> that holds one SET with a key and a value (the common write)
    /// without decoding it: <paramref name="key"/> and <paramref name="value"/> are views of
    /// <paramref name="data"/>. False for anything else, well-formed or not: <see cref="TryDecode"/> decides those.
    /// What it accepts, <see cref="TryDecode"/> accepts as the same operation.
    /// </summary>
    public static bool TryReadSet(ReadOnlySpan<byte> data, out long logTimeUnixMs, out OpFlags flags, out long number,
        out ReadOnlySpan<byte> key, out ReadOnlySpan<byte> value)
    {
        logTimeUnixMs = 0;
        flags = OpFlags.None;
        number = 0;
        key = value = default;

        // [format][log time i64] [op][flags u16][number i64][count i32] [length i32][key] [length i32][value]
        const int Header = SetHeaderBytes;
        if (data.Length < Header + 8 || data[0] != FormatVersion || data[9] != (byte)Op.Set
            || BinaryPrimitives.ReadInt32LittleEndian(data[20..]) != 2)
        {
            return false;
        }

        int keyLength = BinaryPrimitives.ReadInt32LittleEndian(data[Header..]);
        if (keyLength < 0 || keyLength > data.Length - Header - 8)
        {
            return false;
        }

        int valueAt = Header + 4 + keyLength;
        int valueLength = BinaryPrimitives.ReadInt32LittleEndian(data[valueAt..]);
        if (valueLength != data.Length - valueAt - 4)
        {
            return false; // negative, short, or trailing bytes
        }

        logTimeUnixMs = BinaryPrimitives.ReadInt64LittleEndian(data[1..]);
        flags = (OpFlags)BinaryPrimitives.ReadUInt16LittleEndian(data[10..]);
        number = BinaryPrimitives.ReadInt64LittleEndian(data[12..]);
        key = data.Slice(Header + 4, keyLength);
        value = data.Slice(valueAt + 4, valueLength);
        return true;
    }

    /// <summary>The log time stamped in an entry of this format, or null for other entries.</summary>
    public static long? ReadLogTime(ReadOnlySpan<byte> data) =>
        data.Length >= 9 && data[0] == FormatVersion ? BinaryPrimitives.ReadInt64LittleEndian(data[1..]) : null;
}

/// <summary>A command that only reads: served by <see cref="CacheStateMachine.Read"/> at a read time, not logged.</summary>
public sealed class ReadQuery
{
    public ReadQuery(Invocation invocation)
    {
        if (invocation.IsWrite)
        {
            throw new ArgumentException("a read query needs a read operation", nameof(invocation));
        }

        Invocation = invocation;
    }

    public Invocation Invocation { get; }
}
