using System.Buffers;
using System.Buffers.Binary;
using Stcache.Raft;

namespace Stcache.Transport;

/// <summary>Outcome of a decode attempt. Decoders never throw on bad input.</summary>
public enum DecodeStatus : byte
{
    /// <summary>A whole item was decoded and validated.</summary>
    Complete = 1,

    /// <summary>The input ends before the item does; retry with more bytes.</summary>
    NeedMoreData = 2,

    /// <summary>The input can never decode; the connection must be closed.</summary>
    Malformed = 3,
}

/// <summary>
/// Binary encoding of <see cref="Message"/>, little-endian. An encoded message is
/// <c>[u32 bodyLength][body]</c> with the body
/// <c>[u8 type][u64 from][u64 to][u64 term][u64 logTerm][u64 index][u64 commit][u8 flags][u64 rejectHint]
/// [u64 context][u32 entryCount]{[u64 term][u64 index][u8 type][u32 length][data]}*</c>
/// followed, when flags bit 1 is set, by the snapshot
/// <c>[u64 index][u64 term][u32 voterCount][u64]*[u32 learnerCount][u64]*[u32 dataLength][data]</c>.
/// and, when flags bit 2 is set, by <c>[i64 readTimeUnixMs]</c> (<see cref="Message.ReadTimeUnixMs"/>).
/// Flags bit 0 is <see cref="Message.Reject"/>. The context slot is <see cref="Message.Campaign"/> on Vote and PreVote,
/// <see cref="Message.Round"/> on Heartbeat and HeartbeatResponse, <see cref="Message.RequestId"/> on ReadIndex and
/// ReadIndexResponse, and zero (ignored) on the others. Every decoded message passes <see cref="Message.Validate"/>.
/// </summary>
public static class MessageCodec
{
    /// <summary>Bytes of the length prefix in front of every encoded message.</summary>
    public const int LengthPrefixBytes = 4;

    internal const int FixedBodyBytes = 1 + (8 * 6) + 1 + 8 + 8 + 4;
    internal const int EntryHeaderBytes = 8 + 8 + 1 + 4;
    internal const int SnapshotFixedBytes = 8 + 8 + 4 + 4 + 4;

    private const byte FlagReject = 1;
    private const byte FlagSnapshot = 2;
    private const byte FlagReadTime = 4;
    private const byte FlagsKnown = FlagReject | FlagSnapshot | FlagReadTime;

    /// <summary>Bytes <see cref="Encode(Message, Span{byte})"/> writes for <paramref name="message"/>, prefix included.</summary>
    public static long GetEncodedLength(Message message) => LengthPrefixBytes + GetBodyLength(message);

    /// <summary>Encodes <paramref name="message"/> with its length prefix into <paramref name="writer"/>.</summary>
    public static void Encode(Message message, IBufferWriter<byte> writer)
    {
        ArgumentNullException.ThrowIfNull(writer);
        int length = checked((int)GetEncodedLength(message));
        var span = writer.GetSpan(length);
        Write(message, span[..length]);
        writer.Advance(length);
    }

    /// <summary>Encodes <paramref name="message"/> with its length prefix; returns the bytes written.</summary>
    public static int Encode(Message message, Span<byte> destination)
    {
        int length = checked((int)GetEncodedLength(message));
        if (destination.Length < length)
        {
            throw new ArgumentException("destination too small", nameof(destination));
        }

        Write(message, destination[..length]);
        return length;
    }

    /// <summary>Encodes <paramref name="message"/> into a new array (tests and tools; the transport writes into pipes).</summary>
    public static byte[] Encode(Message message)
    {
        var bytes = new byte[checked((int)GetEncodedLength(message))];
        Write(message, bytes);
        return bytes;
    }

    /// <summary>
    /// Decodes one length-prefixed message from the start of <paramref name="buffer"/>. On Complete,
    /// <paramref name="consumed"/> is its encoded length. Messages longer than <paramref name="messageBytesMax"/>
    /// are Malformed.
    /// </summary>
    public static DecodeStatus TryDecode(
        ReadOnlySpan<byte> buffer, int messageBytesMax, out Message? message, out int consumed, out string? error)
    {
        message = null;
        consumed = 0;
        error = null;
        if (buffer.Length < LengthPrefixBytes)
        {
            return DecodeStatus.NeedMoreData;
        }

        uint bodyLength = BinaryPrimitives.ReadUInt32LittleEndian(buffer);
        if (bodyLength > (uint)Math.Max(0, messageBytesMax - LengthPrefixBytes))
        {
            error = "message length above the limit";
            return DecodeStatus.Malformed;
        }

        if (buffer.Length - LengthPrefixBytes < bodyLength)
        {
            return DecodeStatus.NeedMoreData;
        }

        var status = TryDecodeBody(buffer.Slice(LengthPrefixBytes, (int)bodyLength), out message, out error);
        if (status == DecodeStatus.Complete)
        {
            consumed = LengthPrefixBytes + (int)bodyLength;
        }

        return status;
    }

    /// <summary>Sequence overload of <see cref="TryDecode(ReadOnlySpan{byte}, int, out Message?, out int, out string?)"/>.</summary>
    public static DecodeStatus TryDecode(
        ReadOnlySequence<byte> buffer, int messageBytesMax, out Message? message, out long consumed, out string? error)
    {
        message = null;
        consumed = 0;
        error = null;
        if (buffer.IsSingleSegment)
        {
            var status = TryDecode(buffer.FirstSpan, messageBytesMax, out message, out int used, out error);
            consumed = used;
            return status;
        }

        if (buffer.Length < LengthPrefixBytes)
        {
            return DecodeStatus.NeedMoreData;
        }

        Span<byte> prefix = stackalloc byte[LengthPrefixBytes];
        buffer.Slice(0, LengthPrefixBytes).CopyTo(prefix);
        uint bodyLength = BinaryPrimitives.ReadUInt32LittleEndian(prefix);
        if (bodyLength > (uint)Math.Max(0, messageBytesMax - LengthPrefixBytes))
        {
            error = "message length above the limit";
            return DecodeStatus.Malformed;
        }

        if (buffer.Length - LengthPrefixBytes < bodyLength)
        {
            return DecodeStatus.NeedMoreData;
        }

        var body = buffer.Slice(LengthPrefixBytes, bodyLength);
        DecodeStatus result;
        if (body.IsSingleSegment)
        {
            result = TryDecodeBody(body.FirstSpan, out message, out error);
        }
        else
        {
            byte[] rented = ArrayPool<byte>.Shared.Rent((int)bodyLength);
            try
            {
                body.CopyTo(rented);
                result = TryDecodeBody(rented.AsSpan(0, (int)bodyLength), out message, out error);
            }
            finally
            {
                ArrayPool<byte>.Shared.Return(rented);
            }
        }

        if (result == DecodeStatus.Complete)
        {
            consumed = LengthPrefixBytes + bodyLength;
        }

        return result;
    }

    /// <summary>
    /// Decodes exactly one message body (no length prefix) that fills <paramref name="body"/>. Never
    /// NeedMoreData: the body's length is known, so a short body is Malformed.
    /// </summary>
    public static DecodeStatus TryDecodeBody(ReadOnlySpan<byte> body, out Message? message, out string? error)
    {
        message = null;
        var reader = new SpanReader(body);
        if (!reader.TryReadByte(out byte type)
            || !reader.TryReadUInt64(out ulong from)
            || !reader.TryReadUInt64(out ulong to)
            || !reader.TryReadUInt64(out ulong term)
            || !reader.TryReadUInt64(out ulong logTerm)
            || !reader.TryReadUInt64(out ulong index)
            || !reader.TryReadUInt64(out ulong commit)
            || !reader.TryReadByte(out byte flags)
            || !reader.TryReadUInt64(out ulong rejectHint)
            || !reader.TryReadUInt64(out ulong context)
            || !reader.TryReadUInt32(out uint entryCount))
        {
            error = "message shorter than its fixed fields";
            return DecodeStatus.Malformed;
        }

        if ((flags & ~FlagsKnown) != 0)
        {
            error = "unknown message flags";
            return DecodeStatus.Malformed;
        }

        if (type is (byte)MessageType.Vote or (byte)MessageType.PreVote && context > (ulong)CampaignKind.Transfer)
        {
            error = "unknown campaign kind";
            return DecodeStatus.Malformed;
        }

        // Each entry needs at least its header, so the count is bounded by the body length before any allocation.
        if (entryCount > (uint)(reader.Remaining / EntryHeaderBytes))
        {
            error = "entry count exceeds the message length";
            return DecodeStatus.Malformed;
        }

        // The entries' data go into one array per message, each entry a slice of it: the log keeps entries until a
        // snapshot covers them, and one object per message instead of one per entry is less for the GC to copy and
        // mark as they age. The entries of one message are kept and dropped together (a follower's log only
        // truncates a conflicting suffix), and apply copies what it keeps, so no slice holds a region alive for long.
        int dataBytes = 0;
        var scan = reader;
        for (uint i = 0; i < entryCount; i++)
        {
            if (!scan.TryReadFixed(EntryHeaderBytes - 4, out _) || !scan.TryReadBytes(out ReadOnlySpan<byte> data))
            {
                error = "truncated entry";
                return DecodeStatus.Malformed;
            }

            dataBytes += data.Length;
        }

        byte[]? region = dataBytes == 0 ? null : GC.AllocateUninitializedArray<byte>(dataBytes);
        int regionOffset = 0;
        var entries = entryCount == 0 ? [] : new Entry[entryCount];
        for (int i = 0; i < entries.Length; i++)
        {
            reader.TryReadUInt64(out ulong entryTerm);
            reader.TryReadUInt64(out ulong entryIndex);
            reader.TryReadByte(out byte entryType);
            reader.TryReadBytes(out ReadOnlySpan<byte> data);
            ReadOnlyMemory<byte> copy = default;
            if (!data.IsEmpty)
            {
                data.CopyTo(region.AsSpan(regionOffset));
                copy = new ReadOnlyMemory<byte>(region, regionOffset, data.Length);
                regionOffset += data.Length;
            }

            entries[i] = new Entry(new Term(entryTerm), new LogIndex(entryIndex), (EntryType)entryType, copy);
        }

        Snapshot? snapshot = null;
        if ((flags & FlagSnapshot) != 0)
        {
            if (!TryReadSnapshot(ref reader, out snapshot, out error))
            {
                return DecodeStatus.Malformed;
            }
        }

        ulong readTime = 0;
        if ((flags & FlagReadTime) != 0 && !reader.TryReadUInt64(out readTime))
        {
            error = "truncated read time";
            return DecodeStatus.Malformed;
        }

        if (reader.Remaining != 0)
        {
            error = "trailing bytes after the message";
            return DecodeStatus.Malformed;
        }

        var decoded = new Message
        {
            Type = (MessageType)type,
            From = new NodeId(from),
            To = new NodeId(to),
            Term = new Term(term),
            LogTerm = new Term(logTerm),
            Index = new LogIndex(index),
            Commit = new LogIndex(commit),
            Reject = (flags & FlagReject) != 0,
            RejectHint = new LogIndex(rejectHint),
            ReadTimeUnixMs = unchecked((long)readTime),
            Campaign = type is (byte)MessageType.Vote or (byte)MessageType.PreVote ? (CampaignKind)context : CampaignKind.Election,
            Round = type is (byte)MessageType.Heartbeat or (byte)MessageType.HeartbeatResponse ? context : 0,
            RequestId = type is (byte)MessageType.ReadIndex or (byte)MessageType.ReadIndexResponse ? context : 0,
            Entries = entries,
            Snapshot = snapshot,
        };

        error = decoded.Validate();
        if (error is not null)
        {
            return DecodeStatus.Malformed;
        }

        message = decoded;
        return DecodeStatus.Complete;
    }

    /// <summary>
    /// The one u64 slot the fields that travel in it share, each on the types that carry it: the campaign kind on
    /// votes, the heartbeat round on heartbeats, the read request id on read-index messages. Zero on the others.
    /// </summary>
    private static ulong WireContext(Message message) => message.Type switch
    {
        MessageType.Vote or MessageType.PreVote => (ulong)message.Campaign,
        MessageType.Heartbeat or MessageType.HeartbeatResponse => message.Round,
        MessageType.ReadIndex or MessageType.ReadIndexResponse => message.RequestId,
        _ => 0,
    };

    internal static long GetBodyLength(Message message)
    {
        ArgumentNullException.ThrowIfNull(message);
        long length = FixedBodyBytes;
        foreach (var entry in message.Entries)
        {
            length += EntryHeaderBytes + entry.Data.Length;
        }

        if (message.Snapshot is { } snapshot)
        {
            var conf = snapshot.Metadata.ConfState;
            length += SnapshotFixedBytes + (8L * conf.Voters.Count) + (8L * conf.Learners.Count) + snapshot.Data.Length;
        }

        if (message.ReadTimeUnixMs != 0)
        {
            length += 8;
        }

        return length;
    }

    private static bool TryReadSnapshot(ref SpanReader reader, out Snapshot? snapshot, out string? error)
    {
        snapshot = null;
        error = "truncated snapshot";
        if (!reader.TryReadUInt64(out ulong index)
            || !reader.TryReadUInt64(out ulong term)
            || !TryReadNodeIds(ref reader, out var voters, out error)
            || !TryReadNodeIds(ref reader, out var learners, out error)
            || !reader.TryReadBytes(out ReadOnlySpan<byte> data))
        {
            error ??= "truncated snapshot";
            return false;
        }

        var metadata = new SnapshotMetadata(new LogIndex(index), new Term(term), new ConfState(voters, learners));
        snapshot = new Snapshot(metadata, data.IsEmpty ? default : data.ToArray());
        error = null;
        return true;
    }

    private static bool TryReadNodeIds(ref SpanReader reader, out NodeId[] ids, out string? error)
    {
        ids = [];
        error = null;
        if (!reader.TryReadUInt32(out uint count))
        {
            error = "truncated member list";
            return false;
        }

        if (count > (uint)(reader.Remaining / 8))
        {
            error = "member count exceeds the message length";
            return false;
        }

        ids = count == 0 ? [] : new NodeId[count];
        for (int i = 0; i < ids.Length; i++)
        {
            reader.TryReadUInt64(out ulong id);
            if (id == 0)
            {
                error = "member with node id zero";
                return false;
            }

            ids[i] = new NodeId(id);
        }

        return true;
    }

    private static void Write(Message message, Span<byte> destination)
    {
        long bodyLength = GetBodyLength(message);
        var writer = new SpanWriter(destination);
        writer.WriteUInt32(checked((uint)bodyLength));
        writer.WriteByte((byte)message.Type);
        writer.WriteUInt64(message.From.Value);
        writer.WriteUInt64(message.To.Value);
        writer.WriteUInt64(message.Term.Value);
        writer.WriteUInt64(message.LogTerm.Value);
        writer.WriteUInt64(message.Index.Value);
        writer.WriteUInt64(message.Commit.Value);
        byte flags = (byte)((message.Reject ? FlagReject : 0) | (message.Snapshot is null ? 0 : FlagSnapshot) |
            (message.ReadTimeUnixMs == 0 ? 0 : FlagReadTime));
        writer.WriteByte(flags);
        writer.WriteUInt64(message.RejectHint.Value);
        writer.WriteUInt64(WireContext(message));
        writer.WriteUInt32((uint)message.Entries.Length);
        foreach (var entry in message.Entries)
        {
            writer.WriteUInt64(entry.Term.Value);
            writer.WriteUInt64(entry.Index.Value);
            writer.WriteByte((byte)entry.Type);
            writer.WriteBytes(entry.Data.Span);
        }

        if (message.Snapshot is { } snapshot)
        {
            writer.WriteUInt64(snapshot.Metadata.Index.Value);
            writer.WriteUInt64(snapshot.Metadata.Term.Value);
            WriteNodeIds(ref writer, snapshot.Metadata.ConfState.Voters);
            WriteNodeIds(ref writer, snapshot.Metadata.ConfState.Learners);
            writer.WriteBytes(snapshot.Data.Span);
        }

        if (message.ReadTimeUnixMs != 0)
        {
            writer.WriteUInt64(unchecked((ulong)message.ReadTimeUnixMs));
        }

        Invariant(writer.Written == destination.Length, "encoded length differs from the computed length");
    }

    private static void WriteNodeIds(ref SpanWriter writer, IReadOnlyList<NodeId> ids)
    {
        writer.WriteUInt32((uint)ids.Count);
        for (int i = 0; i < ids.Count; i++)
        {
            writer.WriteUInt64(ids[i].Value);
        }
    }

    private static void Invariant(bool condition, string text)
    {
        if (!condition)
        {
            throw new InvalidOperationException(text);
        }
    }
}

/// <summary>Bounds-checked little-endian reads over a span; every read fails instead of throwing.</summary>
internal ref struct SpanReader
{
    private readonly ReadOnlySpan<byte> _buffer;
    private int _position;

    public SpanReader(ReadOnlySpan<byte> buffer)
    {
        _buffer = buffer;
        _position = 0;
    }

    public readonly int Remaining => _buffer.Length - _position;

    public readonly int Position => _position;

    public bool TryReadByte(out byte value)
    {
        if (Remaining < 1)
        {
            value = 0;
            return false;
        }

        value = _buffer[_position];
        _position++;
        return true;
    }

    public bool TryReadUInt16(out ushort value)
    {
        if (Remaining < 2)
        {
            value = 0;
            return false;
        }

        value = BinaryPrimitives.ReadUInt16LittleEndian(_buffer[_position..]);
        _position += 2;
        return true;
    }

    public bool TryReadUInt32(out uint value)
    {
        if (Remaining < 4)
        {
            value = 0;
            return false;
        }

        value = BinaryPrimitives.ReadUInt32LittleEndian(_buffer[_position..]);
        _position += 4;
        return true;
    }

    public bool TryReadUInt64(out ulong value)
    {
        if (Remaining < 8)
        {
            value = 0;
            return false;
        }

        value = BinaryPrimitives.ReadUInt64LittleEndian(_buffer[_position..]);
        _position += 8;
        return true;
    }

    /// <summary>Reads <c>[u32 length][bytes]</c>.</summary>
    public bool TryReadBytes(out ReadOnlySpan<byte> value)
    {
        value = default;
        int start = _position;
        if (!TryReadUInt32(out uint length))
        {
            return false;
        }

        if (length > (uint)Remaining)
        {
            _position = start;
            return false;
        }

        value = _buffer.Slice(_position, (int)length);
        _position += (int)length;
        return true;
    }

    public bool TryReadFixed(int length, out ReadOnlySpan<byte> value)
    {
        if (length < 0 || Remaining < length)
        {
            value = default;
            return false;
        }

        value = _buffer.Slice(_position, length);
        _position += length;
        return true;
    }
}

/// <summary>Little-endian writes into a span sized in advance; overruns are bugs and throw.</summary>
internal ref struct SpanWriter
{
    private readonly Span<byte> _buffer;
    private int _position;

    public SpanWriter(Span<byte> buffer)
    {
        _buffer = buffer;
        _position = 0;
    }

    public readonly int Written => _position;

    public void WriteByte(byte value)
    {
        _buffer[_position] = value;
        _position++;
    }

    public void WriteUInt16(ushort value)
    {
        BinaryPrimitives.WriteUInt16LittleEndian(_buffer[_position..], value);
        _position += 2;
    }

    public void WriteUInt32(uint value)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(_buffer[_position..], value);
        _position += 4;
    }

    public void WriteUInt64(ulong value)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(_buffer[_position..], value);
        _position += 8;
    }

    /// <summary>Writes <c>[u32 length][bytes]</c>.</summary>
    public void WriteBytes(ReadOnlySpan<byte> value)
    {
        WriteUInt32((uint)value.Length);
        WriteFixed(value);
    }

    public void WriteFixed(ReadOnlySpan<byte> value)
    {
        value.CopyTo(_buffer[_position..]);
        _position += value.Length;
    }
}
