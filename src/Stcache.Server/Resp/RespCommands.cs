using System.Globalization;
using System.Text;
using Stcache.Cache;
using Stcache.Raft;
using Stcache.Resp;

namespace Stcache.Server.Resp;

internal enum CommandKind
{
    /// <summary>Runs alone, in order (connection and server commands, read-modify-writes).</summary>
    Other,

    /// <summary>Served from local state behind a confirmation round shared with neighbouring reads.</summary>
    Read,

    /// <summary>Turns into log commands without reading state; proposed together with neighbouring writes.</summary>
    Write,
}

/// <summary>The log commands one write becomes, and how to answer once they are applied (or refused).</summary>
internal sealed record WritePlan(List<CacheCommand> Commands, Func<IReadOnlyList<WriteOutcome>, Reply> Finish)
{
    public static WritePlan Refuse(Reply reply) => new([], _ => reply);
}

/// <summary>A command name as sent, resolved: <see cref="RespCommands.Resolve"/>.</summary>
internal sealed record CommandName(string Upper, string Lower, RespCommand? Command, bool IsData);

/// <summary>One entry of the command table: what COMMAND reports, and the code that runs it.</summary>
internal sealed record RespCommand(string Name, int Arity, CommandKind Kind, string[] Flags, int FirstKey, int LastKey, int Step)
{
    public bool NoAuth { get; init; }

    public Func<RespConnection, byte[][], CancellationToken, ValueTask<Reply>>? Run { get; init; }

    public Func<RespConnection, byte[][], Reply>? Read { get; init; }

    public Func<RespConnection, byte[][], WritePlan>? Plan { get; init; }

    public string Group { get; init; } = "generic";

    public string Summary { get; init; } = string.Empty;
}

/// <summary>The command table and the connection, server, transaction and pub/sub commands.</summary>
internal sealed partial class RespCommands
{
    public const string RedisVersion = "7.2.0";

    private readonly RespServer _server;
    private readonly Dictionary<string, RespCommand> _table = new(StringComparer.Ordinal);

    // Every known command name (this table's and the cache's), resolved once: a command's name is looked up by its
    // bytes, case-insensitively, with no string made per command.
    private readonly Dictionary<string, CommandName> _names;
    private readonly Dictionary<string, CommandName>.AlternateLookup<ReadOnlySpan<char>> _namesBySpan;

    public RespCommands(RespServer server)
    {
        _server = server;
        AddConnectionCommands();
        AddServerCommands();
        AddDataCommands();
        _names = new Dictionary<string, CommandName>(StringComparer.OrdinalIgnoreCase);
        foreach (string name in _table.Keys.Concat(_data.Select(c => c.Name)))
        {
            _names[name] = NameOf(name);
        }

        _namesBySpan = _names.GetAlternateLookup<ReadOnlySpan<char>>();
    }

    /// <summary>What a command name (argv[0], any case) refers to: its upper- and lowercase forms, this table's
    /// command if it has one, and whether the cache serves it.</summary>
    public CommandName Resolve(byte[] name)
    {
        const int Longest = 32;
        if (name.Length <= Longest && System.Text.Ascii.IsValid(name))
        {
            Span<char> chars = stackalloc char[Longest];
            int length = Encoding.ASCII.GetChars(name, chars);
            if (_namesBySpan.TryGetValue(chars[..length], out var known))
            {
                return known;
            }
        }

        return NameOf(Encoding.UTF8.GetString(name).ToUpperInvariant(), name);
    }

    private CommandName NameOf(string upperName, byte[]? bytes = null) =>
        new(upperName, upperName.ToLowerInvariant(), Find(upperName), IsData(bytes ?? Encoding.UTF8.GetBytes(upperName)));

    /// <summary>Every command this node serves: this table's and the cache's data commands.</summary>
    public IEnumerable<RespCommand> All => _table.Values.Concat(_data).OrderBy(c => c.Name, StringComparer.Ordinal);

    public RespCommand? Find(string upperName) => _table.GetValueOrDefault(upperName);

    private RespCommand? FindAny(string upperName) => Find(upperName) ?? _data.Find(c => c.Name == upperName);

    private CommandService Service => _server.Service;

    private RaftHost Host => _server.Service.Host;

    private void Add(RespCommand command) => _table[command.Name] = command;

    private static string Text(byte[] argument) => Encoding.UTF8.GetString(argument);

    private static string Upper(byte[] argument) => Encoding.UTF8.GetString(argument).ToUpperInvariant();

    private static ValueTask<Reply> Done(Reply reply) => ValueTask.FromResult(reply);

    private static readonly Reply s_ok = w => w.Ok();
    private static readonly Reply s_syntaxError = w => w.Error("syntax error");
    private static readonly Reply s_notInteger = w => w.Error("value is not an integer or out of range");

    private static Reply Error(string text) => w => w.Error(text);

    private static Reply Integer(long value) => w => w.Integer(value);

    /// <summary>Redis's reply to an unknown command, with its first arguments quoted.</summary>
    public static Reply UnknownCommand(byte[][] arguments)
    {
        string name = Text(arguments[0]);
        name = name.Length > 128 ? name[..128] : name;
        var text = new StringBuilder($"unknown command '{name}', with args beginning with: ");
        foreach (byte[] argument in arguments.Skip(1))
        {
            string quoted = $"'{Text(argument)}' ";
            if (text.Length + quoted.Length > 128 + 60 + name.Length)
            {
                break;
            }

            text.Append(quoted);
        }

        string message = text.ToString();
        return w => w.Error(message);
    }

    private static Reply UnknownSubcommand(byte[] subcommand, string container) =>
        Error($"unknown subcommand '{Text(subcommand)}'. Try {container} HELP.");

    /// <summary>A write that did not complete. The code tells the client whether it may have taken effect.</summary>
    public static Reply WriteFailure(WriteOutcome outcome)
    {
        string detail = outcome.Detail;
        if (outcome.Status == WriteStatus.Unknown)
        {
            return w => w.CodedError("UNCERTAIN " + detail);
        }

        return outcome.Failure switch
        {
            FailureKind.ForwardingDisabled => w => w.CodedError("READONLY You can't write against a read only replica."),
            FailureKind.Invalid => w => w.CodedError(WithCode(detail)),
            FailureKind.NoLeader or FailureKind.LeaderUnreachable => w => w.CodedError("CLUSTERDOWN " + detail),
            _ => w => w.CodedError("TRYAGAIN " + detail),
        };
    }

    public static Reply ReadFailure(ReadOutcome outcome)
    {
        string detail = outcome.Detail;
        return outcome.Failure is FailureKind.NoLeader
            ? w => w.CodedError("CLUSTERDOWN " + detail)
            : w => w.CodedError("TRYAGAIN " + detail);
    }

    // ---- connection ------------------------------------------------------------------------------------------------

    private void AddConnectionCommands()
    {
        Add(new RespCommand("PING", -1, CommandKind.Other, ["fast", "stale"], 0, 0, 0) { Run = Ping, Group = "connection", Summary = "Returns the server's liveliness response." });
        Add(new RespCommand("ECHO", 2, CommandKind.Other, ["fast", "stale"], 0, 0, 0) { Run = (_, a, _) => Done(w => w.Bulk(a[1])), Group = "connection", Summary = "Returns the given string." });
        Add(new RespCommand("QUIT", -1, CommandKind.Other, ["noscript", "loading", "stale", "fast", "no_auth"], 0, 0, 0) { NoAuth = true, Run = Quit, Group = "connection", Summary = "Closes the connection." });
        Add(new RespCommand("AUTH", -2, CommandKind.Other, ["noscript", "loading", "stale", "fast", "no_auth"], 0, 0, 0) { NoAuth = true, Run = Auth, Group = "connection", Summary = "Authenticates the connection." });
        Add(new RespCommand("HELLO", -1, CommandKind.Other, ["noscript", "loading", "stale", "fast", "no_auth"], 0, 0, 0) { NoAuth = true, Run = Hello, Group = "connection", Summary = "Handshakes with the server." });
        Add(new RespCommand("SELECT", 2, CommandKind.Other, ["loading", "stale", "fast"], 0, 0, 0) { Run = Select, Group = "connection", Summary = "Changes the selected database (only 0 exists)." });
        Add(new RespCommand("RESET", 1, CommandKind.Other, ["noscript", "loading", "stale", "fast", "no_auth"], 0, 0, 0) { NoAuth = true, Run = Reset, Group = "connection", Summary = "Resets the connection." });
        Add(new RespCommand("CLIENT", -2, CommandKind.Other, ["loading", "stale"], 0, 0, 0) { Run = Client, Group = "connection", Summary = "A container for client connection commands." });
        Add(new RespCommand("READONLY", 1, CommandKind.Other, ["loading", "stale", "fast"], 0, 0, 0) { Run = (c, _, _) => { c.StaleReads = true; return Done(s_ok); }, Group = "cluster", Summary = "Serves reads from this node's state without confirming them (stale reads)." });
        Add(new RespCommand("READWRITE", 1, CommandKind.Other, ["loading", "stale", "fast"], 0, 0, 0) { Run = (c, _, _) => { c.StaleReads = false; return Done(s_ok); }, Group = "cluster", Summary = "Restores linearizable reads." });
    }

    private ValueTask<Reply> Ping(RespConnection connection, byte[][] arguments, CancellationToken _)
    {
        if (arguments.Length > 2)
        {
            return Done(Error("wrong number of arguments for 'ping' command"));
        }

        if (connection.Subscribed && connection.Protocol < 3)
        {
            byte[] message = arguments.Length == 2 ? arguments[1] : [];
            return Done(w =>
            {
                w.Array(2);
                w.Bulk("pong");
                w.Bulk(message);
            });
        }

        return Done(arguments.Length == 2 ? w => w.Bulk(arguments[1]) : w => w.SimpleString("PONG"));
    }

    private static ValueTask<Reply> Quit(RespConnection connection, byte[][] arguments, CancellationToken _)
    {
        connection.CloseAfterReply();
        return Done(s_ok);
    }

    private ValueTask<Reply> Auth(RespConnection connection, byte[][] arguments, CancellationToken _)
    {
        if (arguments.Length > 3)
        {
            return Done(s_syntaxError);
        }

        if (_server.Options.AuthToken is not { } token)
        {
            return Done(Error("AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?"));
        }

        bool ok = arguments.Length == 2
            ? Matches(arguments[1], token)
            : Text(arguments[1]) == "default" && Matches(arguments[2], token);
        if (!ok)
        {
            return Done(w => w.CodedError("WRONGPASS invalid username-password pair or user is disabled."));
        }

        connection.Authenticated = true;
        return Done(s_ok);
    }

    private static bool Matches(byte[] given, string token) =>
        System.Security.Cryptography.CryptographicOperations.FixedTimeEquals(given, Encoding.UTF8.GetBytes(token));

    private ValueTask<Reply> Hello(RespConnection connection, byte[][] arguments, CancellationToken _)
    {
        int protocol = connection.Protocol;
        if (arguments.Length >= 2)
        {
            if (!RespParser.TryParseInt64(arguments[1], out long version) || version > int.MaxValue || version < int.MinValue)
            {
                return Done(Error("Protocol version is not an integer or out of range"));
            }

            if (version is < 2 or > 3)
            {
                return Done(w => w.CodedError("NOPROTO unsupported protocol version"));
            }

            protocol = (int)version;
        }

        string? name = null;
        bool authenticate = false;
        for (int i = 2; i < arguments.Length; i++)
        {
            string option = Upper(arguments[i]);
            if (option == "AUTH" && i + 2 < arguments.Length)
            {
                if (_server.Options.AuthToken is not { } token || Text(arguments[i + 1]) != "default" || !Matches(arguments[i + 2], token))
                {
                    return Done(_server.Options.AuthToken is null
                        ? Error("AUTH <password> called without any password configured for the default user. Are you sure your configuration is correct?")
                        : w => w.CodedError("WRONGPASS invalid username-password pair or user is disabled."));
                }

                authenticate = true;
                i += 2;
            }
            else if (option == "SETNAME" && i + 1 < arguments.Length)
            {
                name = Text(arguments[i + 1]);
                if (!IsValidClientName(name))
                {
                    return Done(Error("Client names cannot contain spaces, newlines or special characters."));
                }

                i++;
            }
            else
            {
                return Done(Error($"Syntax error in HELLO option '{Text(arguments[i])}'"));
            }
        }

        if (authenticate)
        {
            connection.Authenticated = true;
        }

        if (!connection.Authenticated)
        {
            return Done(w => w.CodedError("NOAUTH HELLO must be called with the client already authenticated, otherwise the HELLO <proto> AUTH <user> <pass> option can be used to authenticate the client and select the RESP protocol version at the same time"));
        }

        if (name is not null)
        {
            connection.Name = name;
        }

        connection.Protocol = protocol;
        bool leader = Host.Status.IsLeader;
        long id = connection.Id;
        return Done(w =>
        {
            w.Map(7);
            w.Bulk("server");
            w.Bulk("redis");
            w.Bulk("version");
            w.Bulk(RedisVersion);
            w.Bulk("proto");
            w.Integer(protocol);
            w.Bulk("id");
            w.Integer(id);
            w.Bulk("mode");
            w.Bulk("standalone");
            w.Bulk("role");
            w.Bulk(leader ? "master" : "replica");
            w.Bulk("modules");
            w.Array(0);
        });
    }

    private static ValueTask<Reply> Select(RespConnection connection, byte[][] arguments, CancellationToken _)
    {
        if (!RespParser.TryParseInt64(arguments[1], out long db) || db > int.MaxValue || db < int.MinValue)
        {
            return Done(s_notInteger);
        }

        return Done(db == 0 ? s_ok : Error("DB index is out of range"));
    }

    private ValueTask<Reply> Reset(RespConnection connection, byte[][] arguments, CancellationToken _)
    {
        connection.Queued = null;
        connection.TransactionFailed = false;
        connection.Watched.Clear();
        foreach (string channel in connection.Channels)
        {
            _server.Unsubscribe(connection, channel, pattern: false);
        }

        foreach (string pattern in connection.Patterns)
        {
            _server.Unsubscribe(connection, pattern, pattern: true);
        }

        connection.Channels.Clear();
        connection.Patterns.Clear();
        connection.StaleReads = _server.Options.RespReadOnly;
        connection.Name = string.Empty;
        connection.Protocol = 2;
        connection.Authenticated = _server.Options.AuthToken is null;
        return Done(w => w.SimpleString("RESET"));
    }

    private static bool IsValidClientName(string name) => name.All(c => c is > ' ' and <= '~');

    private ValueTask<Reply> Client(RespConnection connection, byte[][] arguments, CancellationToken _)
    {
        string sub = Upper(arguments[1]);
        switch (sub)
        {
            case "ID" when arguments.Length == 2:
                return Done(Integer(connection.Id));
            case "GETNAME" when arguments.Length == 2:
                {
                    string name = connection.Name;
                    return Done(name.Length == 0 ? w => w.Null() : w => w.Bulk(name));
                }

            case "SETNAME" when arguments.Length == 3:
                {
                    string name = Text(arguments[2]);
                    if (!IsValidClientName(name) && name.Length > 0)
                    {
                        return Done(Error("Client names cannot contain spaces, newlines or special characters."));
                    }

                    connection.Name = name;
                    return Done(s_ok);
                }

            case "SETINFO" when arguments.Length == 4:
                {
                    string attribute = Upper(arguments[2]);
                    string value = Text(arguments[3]);
                    if (!IsValidClientName(value) && value.Length > 0)
                    {
                        return Done(Error($"{attribute.ToLowerInvariant()} cannot contain spaces, newlines or special characters."));
                    }

                    if (attribute == "LIB-NAME")
                    {
                        connection.LibName = value;
                    }
                    else if (attribute == "LIB-VER")
                    {
                        connection.LibVersion = value;
                    }
                    else
                    {
                        return Done(Error($"Unrecognized option '{Text(arguments[2])}'"));
                    }

                    return Done(s_ok);
                }

            case "INFO" when arguments.Length == 2:
                {
                    string line = ClientLine(connection);
                    return Done(w => w.Verbatim(line));
                }

            case "LIST":
                {
                    var connections = _server.Connections.OrderBy(c => c.Id).ToList();
                    if (arguments.Length >= 4 && Upper(arguments[2]) == "ID")
                    {
                        var ids = new HashSet<long>();
                        foreach (byte[] argument in arguments.Skip(3))
                        {
                            if (!RespParser.TryParseInt64(argument, out long id) || id <= 0)
                            {
                                return Done(Error("Invalid client ID"));
                            }

                            ids.Add(id);
                        }

                        connections = connections.Where(c => ids.Contains(c.Id)).ToList();
                    }
                    else if (arguments.Length >= 4 && Upper(arguments[2]) == "TYPE")
                    {
                        string type = Upper(arguments[3]);
                        connections = type switch
                        {
                            "NORMAL" => connections.Where(c => !c.Subscribed).ToList(),
                            "PUBSUB" => connections.Where(c => c.Subscribed).ToList(),
                            "MASTER" or "REPLICA" or "SLAVE" => [],
                            _ => null!,
                        };
                        if (connections is null)
                        {
                            return Done(Error($"Unknown client type '{Text(arguments[3])}'"));
                        }
                    }
                    else if (arguments.Length != 2)
                    {
                        return Done(s_syntaxError);
                    }

                    string text = string.Concat(connections.Select(ClientLine));
                    return Done(w => w.Verbatim(text));
                }

            case "KILL" when arguments.Length >= 3:
                return Done(ClientKill(connection, arguments));
            case "NO-EVICT" or "NO-TOUCH" when arguments.Length == 3:
                return Done(s_ok);
            case "REPLY" when arguments.Length == 3:
                return Done(Upper(arguments[2]) == "ON" ? s_ok : Error("CLIENT REPLY OFF|SKIP is not supported"));
            case "HELP":
                return Done(w =>
                {
                    string[] lines = ["CLIENT <subcommand> [<arg> [value] [opt] ...]. Subcommands are:", "ID", "GETNAME", "SETNAME <name>", "SETINFO <LIB-NAME|LIB-VER> <value>", "INFO", "LIST [TYPE <type>|ID <id> [...]]", "KILL <ip:port> | KILL <ID id|ADDR ip:port|LADDR ip:port|SKIPME yes|no> ...", "HELP"];
                    w.Array(lines.Length);
                    foreach (string line in lines)
                    {
                        w.SimpleString(line);
                    }
                });
            default:
                return Done(arguments.Length > 2 && sub is "ID" or "GETNAME" or "INFO"
                    ? Error($"wrong number of arguments for 'client|{sub.ToLowerInvariant()}' command")
                    : UnknownSubcommand(arguments[1], "CLIENT"));
        }
    }

    private Reply ClientKill(RespConnection self, byte[][] arguments)
    {
        if (arguments.Length == 3)
        {
            // The old form: CLIENT KILL ip:port, +OK or an error.
            string address = Text(arguments[2]);
            var target = _server.Connections.FirstOrDefault(c => c.Remote == address);
            if (target is null)
            {
                return Error("No such client");
            }

            Kill(self, target);
            return s_ok;
        }

        if (arguments.Length % 2 != 0)
        {
            return s_syntaxError;
        }

        IEnumerable<RespConnection> targets = _server.Connections.ToList();
        bool skipMe = true;
        for (int i = 2; i < arguments.Length; i += 2)
        {
            string filter = Upper(arguments[i]);
            string value = Text(arguments[i + 1]);
            switch (filter)
            {
                case "ID":
                    if (!RespParser.TryParseInt64(arguments[i + 1], out long id) || id <= 0)
                    {
                        return Error("client-id should be greater than 0");
                    }

                    targets = targets.Where(c => c.Id == id);
                    break;
                case "ADDR":
                    targets = targets.Where(c => c.Remote == value);
                    break;
                case "LADDR":
                    targets = targets.Where(c => c.Local == value);
                    break;
                case "SKIPME":
                    string answer = value.ToUpperInvariant();
                    if (answer is not ("YES" or "NO"))
                    {
                        return s_syntaxError;
                    }

                    skipMe = answer is "YES";
                    break;
                case "TYPE":
                    targets = value.ToUpperInvariant() switch
                    {
                        "NORMAL" => targets.Where(c => !c.Subscribed),
                        "PUBSUB" => targets.Where(c => c.Subscribed),
                        _ => [],
                    };
                    break;
                default:
                    return s_syntaxError;
            }
        }

        var killed = targets.Where(c => !skipMe || c != self).ToList();
        foreach (var target in killed)
        {
            Kill(self, target);
        }

        return Integer(killed.Count);
    }

    private static void Kill(RespConnection self, RespConnection target)
    {
        if (target == self)
        {
            self.CloseAfterReply();
        }
        else
        {
            target.Kill();
        }
    }

    private static string ClientLine(RespConnection c)
    {
        var now = DateTimeOffset.UtcNow;
        return string.Create(CultureInfo.InvariantCulture,
            $"id={c.Id} addr={c.Remote} laddr={c.Local} fd=0 name={c.Name} age={(long)(now - c.CreatedAt).TotalSeconds} idle={(long)(now - c.LastActiveAt).TotalSeconds} flags={(c.Subscribed ? "P" : c.StaleReads ? "r" : "N")} db=0 sub={c.Channels.Count} psub={c.Patterns.Count} ssub=0 multi={(c.Queued is null ? -1 : c.Queued.Count)} qbuf=0 qbuf-free=0 argv-mem=0 multi-mem=0 rbs=0 rbp=0 obl=0 oll=0 omem=0 tot-mem=0 events=r cmd={c.LastCommand} user=default redir=-1 resp={c.Protocol} lib-name={c.LibName} lib-ver={c.LibVersion}\n");
    }
}
