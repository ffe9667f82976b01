using System.Buffers.Binary;
using System.Text.Json.Serialization;
using Stcache.Cache;

namespace Stcache.Server;

/// <summary>
/// A write as a front end asks for it, before it has a log time. The leader turns it into a log entry with its own
/// clock (<see cref="ToEntry"/>), so relative expiries are resolved by the leader's clock even when a follower
/// received the command: a follower forwards the request, never an entry.
/// </summary>
public sealed class WriteRequest
{
    private const byte KindCommand = 1;
    private const byte KindRedis = 2;
    private const byte KindPrepared = 3;
    private const byte KindCommandWithTtl = 4;

    private WriteRequest(byte[] setEntry)
        : this(null, null, false)
    {
        _setEntry = setEntry;
    }

    private WriteRequest(CacheCommand? command, byte[][][]? argv, bool transaction, WriteCommand? prepared = null, (byte[] Key, ulong Version)[]? watched = null, byte[][]? single = null)
    {
        Command = command;
        _argv = argv;
        _single = single;
        Transaction = transaction;
        Prepared = prepared;
        Watched = watched ?? [];
    }

    /// <summary>For a transaction under WATCH: each watched key and the version it had when watched (0: absent). The
    /// state machine checks them when it applies the entry and applies nothing if one changed.</summary>
    public (byte[] Key, ulong Version)[] Watched { get; }

    /// <summary>A cache write that does not depend on time (CONFIG SET's memory policy); the leader stamps it.</summary>
    public WriteCommand? Prepared { get; }

    public static WriteRequest Of(WriteCommand prepared) => new(null, null, false, prepared);

    /// <summary>An HTTP API command (set, delete, compare-and-set); its entry does not depend on time.</summary>
    public CacheCommand? Command { get; }

    // One Redis write (nearly always) is kept as its argv alone: no array around it per write.
    private readonly byte[][][]? _argv;
    private readonly byte[][]? _single;

    // A plain SET (PlainSet): its entry, made from the request's bytes before its log time was known.
    private readonly byte[]? _setEntry;

    // Whether ToEntry handed out the entry laid out in advance (a PlainSet's _setEntry or a PUT's Frame): a later
    // entry (a retry on a new leader) is made from a copy, so that an array that may sit in the log never changes.
    private bool _laidOutEntryTaken;

    /// <summary>Redis commands: one write, or the queued commands of a MULTI (<see cref="Transaction"/>). For a
    /// <see cref="PlainSet"/>, made again from its entry (when it is forwarded, or queued in a transaction).</summary>
    public byte[][][]? Argv => _argv ?? (_single is { } one ? [one] : _setEntry is { } set ? [SetArguments(set)] : null);

    public bool Transaction { get; }

    public static WriteRequest Of(CacheCommand command) => new(command, null, false);

    /// <summary>An HTTP API write that expires <paramref name="ttlMs"/> after the leader's log time (the HTTP API's
    /// <c>?ttl=</c>): the leader turns it into an absolute expiry when it makes the entry.</summary>
    public static WriteRequest Of(CacheCommand command, long ttlMs) => new(command, null, false) { TtlMs = ttlMs };

    /// <summary>An HTTP PUT laid out as its entry, its value in (<see cref="CacheCommand.SetFrame"/>), that expires
    /// <paramref name="ttlMs"/> after the leader's log time (0: never; the frame must have room for an expiry exactly
    /// when it does): the leader stamps the frame itself into the entry, with no command object and no copy.</summary>
    internal static WriteRequest Of(CacheCommand.Frame frame, long ttlMs)
    {
        if (!frame.HasValue || frame.Expires != ttlMs > 0)
        {
            throw new ArgumentException("a frame has room for an expiry exactly when the write has a TTL", nameof(frame));
        }

        return new(null, null, false) { Frame = frame, TtlMs = ttlMs };
    }

    /// <summary>For <see cref="Command"/> and <see cref="Frame"/>: a relative expiry in ms, resolved by the leader's
    /// clock; 0: none.</summary>
    public long TtlMs { get; private init; }

    private CacheCommand.Frame Frame { get; init; }

    public static WriteRequest Redis(byte[][] argv) => new(null, null, false, single: argv);

    /// <summary>A Redis write the front end already parsed at <paramref name="parsedAtUnixMs"/> (its node's log time,
    /// <see cref="CommandService.LogTime"/>): the leader that makes the entry at that same log time uses
    /// <paramref name="parsed"/> instead of parsing again (the parser is a pure function of the arguments and the
    /// time). Never sent along when forwarded: the leader parses with its own clock.</summary>
    internal static WriteRequest Redis(byte[][] argv, WriteCommand? parsed, long parsedAtUnixMs) =>
        new(null, null, false, single: argv) { Parsed = parsed, ParsedAtUnixMs = parsedAtUnixMs };

    /// <summary><c>SET key value</c> with no option, its entry made at once from the request's bytes (one copy of the
    /// key and of the value, no argument arrays or parsed command): the entry <see cref="ToEntry"/> gives is exactly
    /// the one it gives for <see cref="Redis(byte[][])"/> of the same command.</summary>
    internal static WriteRequest PlainSet(ReadOnlySpan<byte> key, ReadOnlySpan<byte> value) =>
        new(WriteCommand.EncodeSet(key, value, logTimeUnixMs: 0));

    private static byte[][] SetArguments(byte[] entry)
    {
        bool read = WriteCommand.TryReadSet(entry, out _, out _, out _, out var key, out var value);
        System.Diagnostics.Debug.Assert(read, "a plain SET's entry reads as a SET");
        return ["SET"u8.ToArray(), key.ToArray(), value.ToArray()];
    }

    private WriteCommand? Parsed { get; init; }

    private long ParsedAtUnixMs { get; init; }

    /// <summary>MULTI/EXEC: every queued command in one entry, applied atomically; the reply is their array.</summary>
    public static WriteRequest RedisTransaction(IReadOnlyList<byte[][]> commands, IEnumerable<(byte[] Key, ulong Version)>? watched = null) =>
        new(null, [.. commands], true, watched: watched?.ToArray());

    /// <summary>Checks limits before anything is proposed; null when fine.</summary>
    public string? Validate(int valueBytesMax)
    {
        if (Command is { } command)
        {
            return command.Validate() ?? TooLarge(command.Value.Length, valueBytesMax);
        }

        if (Frame.HasValue)
        {
            return TooLarge(Frame.Value.Length, valueBytesMax); // the rest was checked when it was laid out
        }

        if (Prepared is not null)
        {
            return null;
        }

        if (_setEntry is { } set)
        {
            WriteCommand.TryReadSet(set, out _, out _, out _, out var key, out var value);
            return key.Length > valueBytesMax || value.Length > valueBytesMax ? RedisErrors.StringTooLong : null;
        }

        if (_single is { } single)
        {
            return TooLong(single, valueBytesMax) ? RedisErrors.StringTooLong : null;
        }

        foreach (byte[][] argv in _argv!)
        {
            if (TooLong(argv, valueBytesMax))
            {
                return RedisErrors.StringTooLong;
            }
        }

        return null;

        static string? TooLarge(int valueLength, int valueBytesMax) =>
            valueLength > valueBytesMax ? $"value larger than {valueBytesMax} bytes" : null;

        static bool TooLong(byte[][] argv, int valueBytesMax)
        {
            for (int i = 1; i < argv.Length; i++)
            {
                if (argv[i].Length > valueBytesMax)
                {
                    return true;
                }
            }

            return false;
        }
    }

    /// <summary>The log entry at <paramref name="logTimeUnixMs"/>, or the error the command gets instead (its text
    /// starts with the Redis error code).</summary>
    public (byte[]? Entry, string? Error) ToEntry(long logTimeUnixMs)
    {
        if (Command is { } command)
        {
            // The leader's log time, unless the caller already stamped it; a relative TTL counts from it.
            long stamped = command.LogTimeUnixMs == 0 ? logTimeUnixMs : command.LogTimeUnixMs;
            return (command.Encode(TtlMs > 0 ? stamped + TtlMs : command.ExpiresAtUnixMs, stamped), null);
        }

        if (Frame.HasValue)
        {
            var frame = _laidOutEntryTaken ? Frame.Copy() : Frame;
            _laidOutEntryTaken = true;
            return (frame.Stamp(TtlMs > 0 ? logTimeUnixMs + TtlMs : 0, logTimeUnixMs), null);
        }

        if (Prepared is { } prepared)
        {
            return (prepared.Encode(logTimeUnixMs), null);
        }

        if (_setEntry is { } set)
        {
            byte[] entry = _laidOutEntryTaken ? (byte[])set.Clone() : set;
            _laidOutEntryTaken = true;
            WriteCommand.StampLogTime(entry, logTimeUnixMs);
            return (entry, null);
        }

        if (!Transaction && Parsed is { } already && ParsedAtUnixMs == logTimeUnixMs)
        {
            return (already.Encode(logTimeUnixMs), null);
        }

        var invocations = Transaction ? new List<Invocation>(Argv!.Length) : null;
        WriteCommand? single = null;
        foreach (byte[][] argv in Argv!)
        {
            var arguments = new ReadOnlyMemory<byte>[argv.Length];
            for (int i = 0; i < argv.Length; i++)
            {
                arguments[i] = argv[i];
            }

            var parsed = CommandParser.Parse(arguments, logTimeUnixMs);
            if (parsed.Error is { } error)
            {
                return (null, error.Text ?? "ERR invalid command");
            }

            if (parsed.Invocation is not { } invocation || (!Transaction && parsed.Write is null))
            {
                return (null, "ERR not a write command");
            }

            invocations?.Add(invocation);
            single = parsed.Write;
        }

        var write = Transaction ? WriteCommand.Batch(invocations!, Watched) : single!;
        return (write.Encode(logTimeUnixMs), null);
    }

    /// <summary>[count u32] then per request: [1][length u32][command] ([4][ttl ms i64][length u32][command] with a
    /// TTL), [3][length u32][prepared command], or
    /// [2][transaction u8][commands u32] and per command [argc u32] and per argument [length u32][bytes]. A transaction
    /// under WATCH has transaction byte 2 and, before its commands, [watched u32] and per key [length u32][key][version u64].</summary>
    public static byte[] EncodeAll(IReadOnlyList<WriteRequest> requests)
    {
        using var buffer = new MemoryStream();
        byte[] number = new byte[4];
        void Int(int value)
        {
            BinaryPrimitives.WriteInt32LittleEndian(number, value);
            buffer.Write(number);
        }

        Int(requests.Count);
        foreach (var request in requests)
        {
            if (request.Command is not null || request.Frame.HasValue)
            {
                if (request.TtlMs > 0)
                {
                    buffer.WriteByte(KindCommandWithTtl);
                    byte[] ttl = new byte[8];
                    BinaryPrimitives.WriteInt64LittleEndian(ttl, request.TtlMs);
                    buffer.Write(ttl);
                }
                else
                {
                    buffer.WriteByte(KindCommand);
                }

                byte[] encoded = request.Command?.Encode() ?? request.Frame.Unstamped();
                Int(encoded.Length);
                buffer.Write(encoded);
                continue;
            }

            if (request.Prepared is { } prepared)
            {
                buffer.WriteByte(KindPrepared);
                byte[] encoded = prepared.Encode(0);
                Int(encoded.Length);
                buffer.Write(encoded);
                continue;
            }

            buffer.WriteByte(KindRedis);
            buffer.WriteByte(request.Watched.Length > 0 ? (byte)2 : request.Transaction ? (byte)1 : (byte)0);
            if (request.Watched.Length > 0)
            {
                Int(request.Watched.Length);
                foreach (var (key, version) in request.Watched)
                {
                    Int(key.Length);
                    buffer.Write(key);
                    byte[] versionBytes = new byte[8];
                    BinaryPrimitives.WriteUInt64LittleEndian(versionBytes, version);
                    buffer.Write(versionBytes);
                }
            }

            Int(request.Argv!.Length);
            foreach (byte[][] argv in request.Argv)
            {
                Int(argv.Length);
                foreach (byte[] argument in argv)
                {
                    Int(argument.Length);
                    buffer.Write(argument);
                }
            }
        }

        return buffer.ToArray();
    }

    /// <summary>Decodes <see cref="EncodeAll"/>; null with a reason for bad bytes (never throws).</summary>
    public static List<WriteRequest>? DecodeAll(ReadOnlyMemory<byte> data, out string? problem)
    {
        problem = null;
        var span = data.Span;
        int offset = 0;
        bool TryInt(ReadOnlySpan<byte> s, out int value)
        {
            value = 0;
            if (s.Length - offset < 4)
            {
                return false;
            }

            value = BinaryPrimitives.ReadInt32LittleEndian(s[offset..]);
            offset += 4;
            return value >= 0;
        }

        if (!TryInt(span, out int count) || count == 0 || count > 1 << 20)
        {
            problem = "bad request count";
            return null;
        }

        var requests = new List<WriteRequest>(Math.Min(count, 1024));
        for (int i = 0; i < count; i++)
        {
            if (offset >= span.Length)
            {
                problem = "truncated requests";
                return null;
            }

            byte kind = span[offset++];
            long ttlMs = 0;
            if (kind == KindCommandWithTtl)
            {
                if (span.Length - offset < 8 || (ttlMs = BinaryPrimitives.ReadInt64LittleEndian(span[offset..])) <= 0)
                {
                    problem = "bad ttl";
                    return null;
                }

                offset += 8;
                kind = KindCommand;
            }

            if (kind == KindCommand)
            {
                if (!TryInt(span, out int length) || span.Length - offset < length
                    || !CacheCommand.TryDecode(data.Slice(offset, length), out var command, out problem))
                {
                    problem ??= "bad command";
                    return null;
                }

                offset += length;
                requests.Add(ttlMs > 0 ? Of(command!, ttlMs) : Of(command!));
                continue;
            }

            if (kind == KindPrepared)
            {
                if (!TryInt(span, out int length) || span.Length - offset < length
                    || !WriteCommand.TryDecode(span.Slice(offset, length), out var prepared, out _, out problem))
                {
                    problem ??= "bad prepared command";
                    return null;
                }

                offset += length;
                requests.Add(Of(prepared!));
                continue;
            }

            if (kind != KindRedis || offset >= span.Length)
            {
                problem = "unknown request kind";
                return null;
            }

            byte transactionKind = span[offset++];
            bool transaction = transactionKind is 1 or 2;
            var watched = new List<(byte[] Key, ulong Version)>();
            if (transactionKind == 2)
            {
                if (!TryInt(span, out int pairs) || pairs == 0 || pairs > Invocation.ArgsMax)
                {
                    problem = "bad watched key count";
                    return null;
                }

                for (int w = 0; w < pairs; w++)
                {
                    if (!TryInt(span, out int length) || span.Length - offset < length + 8)
                    {
                        problem = "bad watched key";
                        return null;
                    }

                    byte[] key = span.Slice(offset, length).ToArray();
                    offset += length;
                    watched.Add((key, BinaryPrimitives.ReadUInt64LittleEndian(span[offset..])));
                    offset += 8;
                }
            }

            if (!TryInt(span, out int commands) || (commands == 0 && transactionKind != 2) || commands > Invocation.ArgsMax)
            {
                problem = "bad command count";
                return null;
            }

            var list = new List<byte[][]>(Math.Min(commands, 1024));
            for (int c = 0; c < commands; c++)
            {
                if (!TryInt(span, out int argc) || argc == 0 || argc > Invocation.ArgsMax)
                {
                    problem = "bad argument count";
                    return null;
                }

                var argv = new List<byte[]>(Math.Min(argc, 1024));
                for (int a = 0; a < argc; a++)
                {
                    if (!TryInt(span, out int length) || span.Length - offset < length)
                    {
                        problem = "bad argument length";
                        return null;
                    }

                    argv.Add(span.Slice(offset, length).ToArray());
                    offset += length;
                }

                list.Add([.. argv]);
            }

            requests.Add(transaction ? RedisTransaction(list, watched) : new WriteRequest(null, [.. list], false));
        }

        if (offset != span.Length)
        {
            problem = "trailing bytes after requests";
            return null;
        }

        return requests;
    }
}

/// <summary>A <see cref="Reply"/> as it crosses from the leader to a follower in a forwarded answer.</summary>
public sealed record ReplyView(
    [property: JsonPropertyName("k")] ReplyKind Kind,
    [property: JsonPropertyName("t")] string? Text,
    [property: JsonPropertyName("i")] long Integer,
    [property: JsonPropertyName("b")] byte[]? Bulk,
    [property: JsonPropertyName("a")] ReplyView[]? Items)
{
    public static ReplyView? From(Reply? reply) => reply is null ? null
        : new ReplyView(reply.Kind, reply.Text, reply.Integer, reply.Bulk, reply.Items.Count == 0 && reply.Kind is not (ReplyKind.Array or ReplyKind.Map) ? null : [.. reply.Items.Select(i => From(i)!)]);

    public Reply ToReply() => Kind switch
    {
        ReplyKind.SimpleString => Reply.Simple(Text ?? string.Empty),
        ReplyKind.Error => Reply.Error(Text ?? "ERR"),
        ReplyKind.Integer => Reply.Int(Integer),
        ReplyKind.Bulk => Reply.BulkOf(Bulk ?? []),
        ReplyKind.Array => Reply.Array([.. (Items ?? []).Select(i => i.ToReply())]),
        ReplyKind.Map => Reply.Map([.. (Items ?? []).Select(i => i.ToReply())]),
        ReplyKind.Double => Reply.Double(Text switch
        {
            "inf" => double.PositiveInfinity,
            "-inf" => double.NegativeInfinity,
            _ => double.TryParse(Text, System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double value) ? value : double.NaN,
        }),
        _ => Reply.Nil,
    };
}
