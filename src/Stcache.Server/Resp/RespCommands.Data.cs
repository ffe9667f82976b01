using Stcache.Cache;
using Stcache.Resp;

namespace Stcache.Server.Resp;

/// <summary>
/// The data commands are the cache's (Stcache.Cache's <see cref="CommandParser"/>: strings, keys, expiry, hashes):
/// this layer only lists them for COMMAND, sends reads to the state after their confirmation round, sends writes
/// to the leader as requests (the leader parses them again with its clock), and renders the cache's replies.
/// </summary>
internal sealed partial class RespCommands
{
    private readonly List<RespCommand> _data = [];

    private void AddDataCommands()
    {
        foreach (string name in CommandParser.CommandNames.Select(n => n.ToUpperInvariant()).Distinct().Order(StringComparer.Ordinal))
        {
            if (_table.ContainsKey(name))
            {
                continue;
            }

            bool read = CommandParser.Parse(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), name, "k").IsRead;
            _data.Add(new RespCommand(name, -1, read ? CommandKind.Read : CommandKind.Write, [], 1, 1, 1) { Group = "data", Summary = "See docs/RESP.md." });
        }
    }

    /// <summary>Whether a name is a data command (served by the cache) rather than one of this table's.</summary>
    public static bool IsData(byte[] name) => CommandParser.IsKnown(name);

    /// <summary>Parses a data command at <paramref name="logTimeUnixMs"/>, this node's log time
    /// (<see cref="CommandService.LogTime"/>), to classify and validate it. A write's entry is made by the leader at
    /// its own log time: from the same parse if that time is the same, else parsed again (<see cref="WriteRequest"/>).</summary>
    /// <remarks>The parse keeps the argument arrays, not copies (<see cref="CommandParser.ParseOwned"/>): they are the
    /// parser's fresh arrays, and nothing changes them afterwards.</remarks>
    public static ParsedCommand ParseData(byte[][] argv, long logTimeUnixMs) => CommandParser.ParseOwned(argv, logTimeUnixMs);

    /// <summary>Serves a parsed read from this node's state (its confirmation round already done).</summary>
    public Stcache.Cache.Reply Read(ParsedCommand parsed, ReadOutcome barrier) =>
        Host.Cache.Read(parsed.Read!, Service.ReadTime(barrier));

    /// <summary>The cache's reply, or the failure of the write that should have produced it.</summary>
    public static Reply Render(WriteOutcome outcome) =>
        outcome.Status != WriteStatus.Applied ? WriteFailure(outcome)
        : outcome.Result.Reply is { } reply ? Render(reply)
        : outcome.Result.Error is { } error ? w => w.CodedError(WithCode(error))
        : s_ok;

    public static Reply Render(Stcache.Cache.Reply reply) => w => Write(w, reply);

    /// <summary>Writes what <see cref="Render(WriteOutcome)"/> renders, with no delegate made for a write that
    /// was applied.</summary>
    public static void Write(RespWriter w, WriteOutcome outcome)
    {
        if (outcome.Status != WriteStatus.Applied)
        {
            WriteFailure(outcome)(w);
        }
        else if (outcome.Result.Reply is { } reply)
        {
            Write(w, reply);
        }
        else if (outcome.Result.Error is { } error)
        {
            w.CodedError(WithCode(error));
        }
        else
        {
            w.Ok();
        }
    }

    /// <summary>Writes the cache's reply in the connection's protocol.</summary>
    public static void Write(RespWriter w, Stcache.Cache.Reply reply)
    {
        if (ReferenceEquals(reply, Stcache.Cache.Reply.Ok))
        {
            w.Ok(); // a SET's reply: its bytes as they are, not "OK" encoded again for every write
            return;
        }

        switch (reply.Kind)
        {
            case ReplyKind.SimpleString:
                w.SimpleString(reply.Text ?? string.Empty);
                break;
            case ReplyKind.Error:
                w.CodedError(WithCode(reply.Text ?? "ERR"));
                break;
            case ReplyKind.Integer:
                w.Integer(reply.Integer);
                break;
            case ReplyKind.Bulk:
                w.Bulk(reply.Bulk ?? []);
                break;
            case ReplyKind.Array:
                w.Array(reply.Items.Count);
                foreach (var item in reply.Items)
                {
                    Write(w, item);
                }

                break;
            case ReplyKind.Map:
                w.Map(reply.Items.Count / 2);
                foreach (var item in reply.Items)
                {
                    Write(w, item);
                }

                break;
            case ReplyKind.Double:
                w.DoubleText(reply.Text ?? "0");
                break;
            default:
                w.Null();
                break;
        }
    }

    /// <summary>Error texts carry their code (ERR, WRONGTYPE, OOM); a bare message gets ERR.</summary>
    private static string WithCode(string text)
    {
        int space = text.IndexOf(' ', StringComparison.Ordinal);
        return space > 0 && text[..space].All(c => c is >= 'A' and <= 'Z') ? text : "ERR " + text;
    }
}
