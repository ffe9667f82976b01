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

    /// <summary>Listener to dialer: the handshake succeeded; message frames may follow. Empty body.</summary>
    Accepted = 4,

    /// <summary>Dialer to listener: <c>[u32 count]</c> then that many encoded messages.</summary>
    Messages = 5,

    /// <summary>Dialer to listener: <c>[u64 dataLength]</c> then a snapshot message encoded without its data.</summary>
    SnapshotBegin = 6,

    /// <summary>Dialer to listener: the next bytes of the snapshot data announced by the last SnapshotBegin.</summary>
    SnapshotChunk = 7,
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

        Span<byte> countBytes = stackalloc byte[4];
        body.Slice(0, 4).CopyTo(countBytes);
        uint count = BinaryPrimitives.ReadUInt32LittleEndian(countBytes);
        var rest = body.Slice(4);
        if (count > (ulong)rest.Length / (MessageCodec.LengthPrefixBytes + MessageCodec.FixedBodyBytes))
        {
            error = "message count exceeds the frame length";
            return DecodeStatus.Malformed;
        }

        int bodyBytesMax = (int)Math.Min(int.MaxValue, rest.Length);
        for (uint i = 0; i < count; i++)
        {
            var status = MessageCodec.TryDecode(rest, bodyBytesMax, out var message, out long consumed, out error);
            if (status != DecodeStatus.Complete)
            {
                messages.Clear();
                error ??= "truncated message inside a frame";
                return DecodeStatus.Malformed;
            }

            messages.Add(message!);
            rest = rest.Slice(consumed);
        }

        if (!rest.IsEmpty)
        {
            messages.Clear();
            error = "trailing bytes after the messages";
            return DecodeStatus.Malformed;
        }

        return DecodeStatus.Complete;
    }
}
