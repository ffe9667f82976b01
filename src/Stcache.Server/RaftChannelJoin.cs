using System.Text.Json;
using Stcache.Raft;

namespace Stcache.Server;

/// <summary>
/// Joining through a member's raft address (the shaj13 seed's <c>-join :8080</c>), where no HTTP address is known.
/// Two host-level messages ride the peer transport and never reach the core: a request carrying the joiner's
/// addresses, and an answer carrying the member list. Both are Append messages at term 0 (which no real Raft
/// message uses) marked by a magic context, with one entry holding JSON.
/// </summary>
public static class RaftChannelJoin
{
    public const ulong RequestMagic = 0x4A4F494E52455131; // "JOINREQ1"
    public const ulong AnswerMagic = 0x4A4F494E414E5331; // "JOINANS1"

    public static bool IsJoinMessage(Message message) =>
        message.Type == MessageType.Append && message.Term == Term.Zero && message.Context is RequestMagic or AnswerMagic;

    public static Message Request(NodeId from, NodeId to, MemberInfo self) => Wrap(from, to, RequestMagic, self.ToContext());

    public static Message Answer(NodeId from, NodeId to, IReadOnlyList<MemberInfo> members) =>
        Wrap(from, to, AnswerMagic, JsonSerializer.SerializeToUtf8Bytes(members.ToArray(), MembershipJson.Default.MemberInfoArray));

    public static MemberInfo? ParseRequest(Message message) =>
        message.Context == RequestMagic && message.Entries.Length == 1 ? MemberInfo.FromContext(message.Entries[0].Data.Span) : null;

    public static MemberInfo[]? ParseAnswer(Message message)
    {
        if (message.Context != AnswerMagic || message.Entries.Length != 1)
        {
            return null;
        }

        try
        {
            return MemberBook.Deserialize(message.Entries[0].Data.Span);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    private static Message Wrap(NodeId from, NodeId to, ulong magic, byte[] payload) => new()
    {
        Type = MessageType.Append,
        From = from,
        To = to,
        Term = Term.Zero,
        Context = magic,
        Entries = [new Entry(Term.Zero, new LogIndex(1), EntryType.Normal, payload)],
    };
}
