using System.Buffers;

namespace Stcache.Transport;

/// <summary>What a <see cref="FrameType.Join"/> frame asks or answers.</summary>
public enum JoinFrameKind : byte
{
    /// <summary>A node that knows only a member's raft address asks to join; the payload describes the joiner.</summary>
    Request = 1,

    /// <summary>The member added the joiner; the payload is the member list.</summary>
    Answer = 2,
}

/// <summary>
/// Joining through a member's raft address, where no HTTP address is known: a host-level exchange on the peer
/// connection that never reaches the Raft core. The sender is the connection's handshaken peer, so a frame cannot
/// speak for another node. The payload's format is the host's.
/// </summary>
public sealed record JoinFrame(JoinFrameKind Kind, ReadOnlyMemory<byte> Payload)
{
    /// <summary>Body: <c>[u8 kind][payload]</c>, the payload filling the rest of the frame.</summary>
    public byte[] EncodeBody()
    {
        var body = new byte[1 + Payload.Length];
        body[0] = (byte)Kind;
        Payload.Span.CopyTo(body.AsSpan(1));
        return body;
    }

    /// <summary>Decodes a frame body; never throws. A body without a known kind or without a payload is Malformed.</summary>
    public static DecodeStatus TryDecodeBody(ReadOnlySequence<byte> body, out JoinFrame? frame, out string? error)
    {
        frame = null;
        error = null;
        if (body.IsEmpty)
        {
            error = "join frame without a kind";
            return DecodeStatus.Malformed;
        }

        var kind = (JoinFrameKind)body.FirstSpan[0];
        if (kind is not (JoinFrameKind.Request or JoinFrameKind.Answer))
        {
            error = "unknown join frame kind";
            return DecodeStatus.Malformed;
        }

        if (body.Length == 1)
        {
            error = "join frame without a payload";
            return DecodeStatus.Malformed;
        }

        frame = new JoinFrame(kind, body.Slice(1).ToArray());
        return DecodeStatus.Complete;
    }
}
