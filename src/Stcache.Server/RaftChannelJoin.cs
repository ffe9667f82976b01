using System.Text.Json;
using Stcache.Transport;

namespace Stcache.Server;

/// <summary>
/// Joining through a member's raft address (the shaj13 seed's <c>-join :8080</c>), where no HTTP address is known.
/// Two host-level frames ride the peer transport as <see cref="FrameType.Join"/> frames, never as Raft messages: a
/// request carrying the joiner's addresses, and an answer carrying the member list (JSON). The transport names the
/// sender (the connection's handshaken peer).
/// </summary>
public static class RaftChannelJoin
{
    public static JoinFrame Request(MemberInfo self) => new(JoinFrameKind.Request, self.ToContext());

    public static JoinFrame Answer(IReadOnlyList<MemberInfo> members) =>
        new(JoinFrameKind.Answer, JsonSerializer.SerializeToUtf8Bytes(members.ToArray(), MembershipJson.Default.MemberInfoArray));

    /// <summary>The joiner a request describes, or null if it is not a well-formed request.</summary>
    public static MemberInfo? ParseRequest(JoinFrame frame) =>
        frame.Kind == JoinFrameKind.Request ? MemberInfo.FromContext(frame.Payload.Span) : null;

    /// <summary>The member list an answer carries, or null if it is not a well-formed answer.</summary>
    public static MemberInfo[]? ParseAnswer(JoinFrame frame)
    {
        if (frame.Kind != JoinFrameKind.Answer)
        {
            return null;
        }

        try
        {
            return MemberBook.Deserialize(frame.Payload.Span);
        }
        catch (JsonException)
        {
            return null;
        }
    }
}
