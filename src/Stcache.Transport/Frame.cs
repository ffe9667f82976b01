using System.Buffers;
using System.Buffers.Binary;

namespace Stcache.Transport;

/// <summary>Kinds of frames on a peer connection.</summary>
public enum FrameType : byte
{
    /// <summary>Dialer to listener: cluster id, both node ids, the dialer's nonce.</summary>
    Hello = 1,

    /// <summary>Listener to dialer: both node ids, the listener's nonce and its proof over both nonces.</summary>
    Challenge = 2,

    /// <summary>Dialer to listener: the dialer's proof over both nonces.</summary>
    Proof = 3,

    /// <summary>
    /// Listener to dialer: the handshake succeeded; message frames may follow. The body is empty, or
    /// <c>[u64 index]</c> when the listener's configuration, as of its applied index <c>index</c>, does not list
    /// the dialer (a node removed while it was away learns so here).
    /// </summary>
    Accepted = 4,

    /// <summary>Dialer to listener: <c>[u32 count]</c> then that many encoded messages.</summary>
    Messages = 5,

    /// <summary>Dialer to listener: <c>[u64 dataLength]</c> then a snapshot message encoded without its data.</summary>
    SnapshotBegin = 6,

    /// <summary>Dialer to listener: the next bytes of the snapshot announced by the last SnapshotBegin or SnapshotFileBegin.</summary>
    SnapshotChunk = 7,

    /// <summary>
    /// Dialer to listener: <c>[u64 storedLength]</c> then a snapshot message encoded without its data. The chunks
    /// that follow carry the snapshot as the sender's store keeps it (checksummed), which the listener streams
    /// into its own store and verifies before delivering the message (see <c>ISnapshotStore.BeginReceive</c>).
    /// </summary>
    SnapshotFileBegin = 8,

    /// <summary>Either way: a <see cref="JoinFrame"/> (<c>[u8 kind][payload]</c>), for the host, never for Raft.</summary>
    Join = 9,
}

/// <summary>
/// Frame layout: <c>[u8 version][u8 type][u32 bodyLength, little-endian][body]</c>. Pure functions; the reader
/// rejects a wrong version, an unknown type or an oversized length as soon as those bytes arrive.
/// </summary>
public static class FrameCodec
{
    /// <summary>The only protocol version this build speaks.</summary>
    public const byte ProtocolVersion = 1;

    public const int HeaderBytes = 6;

    public static void WriteHeader(IBufferWriter<byte> writer, FrameType type, int bodyLength)
    {
        ArgumentNullException.ThrowIfNull(writer);
        ArgumentOutOfRangeException.ThrowIfNegative(bodyLength);
        var span = writer.GetSpan(HeaderBytes);
        WriteHeader(span, type, bodyLength);
        writer.Advance(HeaderBytes);
    }

    public static void WriteHeader(Span<byte> destination, FrameType type, int bodyLength)
    {
        destination[0] = ProtocolVersion;
        destination[1] = (byte)type;
        BinaryPrimitives.WriteUInt32LittleEndian(destination[2..], (uint)bodyLength);
    }

    /// <summary>Writes a whole frame whose body is already in memory.</summary>
    public static void WriteFrame(IBufferWriter<byte> writer, FrameType type, ReadOnlySpan<byte> body)
    {
        WriteHeader(writer, type, body.Length);
        writer.Write(body);
    }

    /// <summary>
    /// Reads one frame from the start of <paramref name="buffer"/>. On Complete, <paramref name="buffer"/> is
    /// advanced past the frame and <paramref name="body"/> is its body (a slice of the input).
    /// </summary>
    public static DecodeStatus TryReadFrame(
        ref ReadOnlySequence<byte> buffer,
        int bodyBytesMax,
        out FrameType type,
        out ReadOnlySequence<byte> body,
        out string? error)
    {
        type = default;
        body = default;
        error = null;
        if (buffer.IsEmpty)
        {
            return DecodeStatus.NeedMoreData;
        }

        Span<byte> header = stackalloc byte[HeaderBytes];
        int available = (int)Math.Min(buffer.Length, HeaderBytes);
        buffer.Slice(0, available).CopyTo(header);
        if (header[0] != ProtocolVersion)
        {
            error = "unsupported protocol version";
            return DecodeStatus.Malformed;
        }

        if (available < 2)
        {
            return DecodeStatus.NeedMoreData;
        }

        type = (FrameType)header[1];
        if (!Enum.IsDefined(type))
        {
            error = "unknown frame type";
            return DecodeStatus.Malformed;
        }

        if (available < HeaderBytes)
        {
            return DecodeStatus.NeedMoreData;
        }

        uint bodyLength = BinaryPrimitives.ReadUInt32LittleEndian(header[2..]);
        if (bodyLength > (uint)Math.Max(0, bodyBytesMax))
        {
            error = "frame length above the limit";
            return DecodeStatus.Malformed;
        }

        if (buffer.Length - HeaderBytes < bodyLength)
        {
            return DecodeStatus.NeedMoreData;
        }

        body = buffer.Slice(HeaderBytes, bodyLength);
        buffer = buffer.Slice(body.End);
        return DecodeStatus.Complete;
    }

    /// <summary>
    /// Decodes the messages of a <see cref="FrameType.Messages"/> body into <paramref name="messages"/>, which is
    /// left empty unless the whole body decoded and validated, so a bad frame delivers nothing.
    /// </summary>
    public static DecodeStatus TryDecodeMessages(
        ReadOnlySequence<byte> body, List<Raft.Message> messages, out string? error)
    {
        ArgumentNullException.ThrowIfNull(messages);
        messages.Clear();
        error = null;
        if (body.Length < 4)
        {
            error = "messages frame without a count";
            return DecodeStatus.Malformed;
        }

        var reader = new SequenceReader<byte>(body);
        reader.TryReadLittleEndian(out int signedCount);
        uint count = (uint)signedCount;
        if (count > (ulong)reader.Remaining / (MessageCodec.LengthPrefixBytes + MessageCodec.FixedBodyBytes))
        {
            error = "message count exceeds the frame length";
            return DecodeStatus.Malformed;
        }

        for (uint i = 0; i < count; i++)
        {
            if (!reader.TryReadLittleEndian(out int signedLength) || (uint)signedLength > (ulong)reader.Remaining)
            {
                messages.Clear();
                error = "truncated message inside a frame";
                return DecodeStatus.Malformed;
            }

            int length = signedLength;
            DecodeStatus status;
            Raft.Message? message;
            if (reader.UnreadSpan.Length >= length)
            {
                // The common case: the message lies in one buffer segment; decode in place.
                status = MessageCodec.TryDecodeBody(reader.UnreadSpan[..length], out message, out error);
            }
            else
            {
                byte[] rented = ArrayPool<byte>.Shared.Rent(length);
                try
                {
                    reader.UnreadSequence.Slice(0, length).CopyTo(rented);
                    status = MessageCodec.TryDecodeBody(rented.AsSpan(0, length), out message, out error);
                }
                finally
                {
                    ArrayPool<byte>.Shared.Return(rented);
                }
            }

            if (status != DecodeStatus.Complete)
            {
                messages.Clear();
                error ??= "malformed message inside a frame";
                return DecodeStatus.Malformed;
            }

            messages.Add(message!);
            reader.Advance(length);
        }

        if (!reader.End)
        {
            messages.Clear();
            error = "trailing bytes after the messages";
            return DecodeStatus.Malformed;
        }

        return DecodeStatus.Complete;
    }
}
