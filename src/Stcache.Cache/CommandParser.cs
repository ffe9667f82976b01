using System.Runtime.InteropServices;
using System.Text;

namespace Stcache.Cache;

/// <summary>The parser's verdict on one command: exactly one of <see cref="Write"/>, <see cref="Read"/> or
/// <see cref="Error"/> is set.</summary>
public readonly record struct ParsedCommand(WriteCommand? Write, ReadQuery? Read, Reply? Error)
{
    public static ParsedCommand Fail(string error) => new(null, null, Reply.Error(error));

    public bool IsWrite => Write is not null;

    public bool IsRead => Read is not null;

    public bool IsError => Error is not null;

    /// <summary>The normalized operation, to queue in a MULTI batch.</summary>
    public Invocation? Invocation => Write?.Invocation ?? Read?.Invocation;
}

/// <summary>
/// Parses Redis argv (command name case-insensitive) into a typed write, a typed read or an immediate error reply
/// with Redis's exact text. Pure: the only time it uses is the <c>nowUnixMs</c> it is given, to turn relative
/// expiries into absolute ones (as Redis 7 replicates <c>SET … PXAT</c> and <c>PEXPIREAT</c>).
/// </summary>
public static class CommandParser
{
    private delegate ParsedCommand Parser(string name, ReadOnlyMemory<byte>[] argv, long nowUnixMs);

    private static readonly Dictionary<string, (int Arity, Parser Parse)> s_commands = new(StringComparer.OrdinalIgnoreCase)
    {
        ["get"] = (2, (_, a, _) => Read(Op.Get, a)),
        ["set"] = (-3, ParseSet),
        ["setnx"] = (3, (_, a, _) => Write(Op.SetNx, a)),
        ["setex"] = (4, ParseSetEx),
        ["psetex"] = (4, ParseSetEx),
        ["getex"] = (-2, ParseGetEx),
        ["getdel"] = (2, (_, a, _) => Write(Op.GetDel, a)),
        ["getset"] = (3, (_, a, _) => Write(Op.Set, OpFlags.Get, 0, Rest(a, 1))),
        ["mset"] = (-3, ParseMSet),
        ["msetnx"] = (-3, ParseMSet),
        ["mget"] = (-2, (_, a, _) => Read(Op.MGet, a)),
        ["strlen"] = (2, (_, a, _) => Read(Op.StrLen, a)),
        ["append"] = (3, (_, a, _) => Write(Op.Append, a)),
        ["getrange"] = (4, ParseGetRange),
        ["substr"] = (4, ParseGetRange),
        ["setrange"] = (4, ParseSetRange),
        ["incr"] = (2, (_, a, _) => Write(Op.IncrBy, OpFlags.None, 1, Rest(a, 1))),
        ["decr"] = (2, (_, a, _) => Write(Op.IncrBy, OpFlags.None, -1, Rest(a, 1))),
        ["incrby"] = (3, ParseIncrBy),
        ["decrby"] = (3, ParseIncrBy),
        ["incrbyfloat"] = (3, ParseIncrByFloat),
        ["del"] = (-2, (_, a, _) => Write(Op.Del, a)),
        ["unlink"] = (-2, (_, a, _) => Write(Op.Del, a)),
        ["exists"] = (-2, (_, a, _) => Read(Op.Exists, a)),
        ["type"] = (2, (_, a, _) => Read(Op.Type, a)),
        ["rename"] = (3, (_, a, _) => Write(Op.Rename, a)),
        ["renamenx"] = (3, (_, a, _) => Write(Op.RenameNx, a)),
        ["copy"] = (-3, ParseCopy),
        ["touch"] = (-2, (_, a, _) => Read(Op.Touch, a)),
        ["keys"] = (2, (_, a, _) => Read(Op.Keys, a)),
        ["scan"] = (-2, ParseScan),
        ["randomkey"] = (1, (_, a, _) => Read(Op.RandomKey, a)),
        ["dbsize"] = (1, (_, a, _) => Read(Op.DbSize, a)),
        ["flushall"] = (-1, ParseFlush),
        ["flushdb"] = (-1, ParseFlush),
        ["expire"] = (-3, ParseExpire),
        ["pexpire"] = (-3, ParseExpire),
        ["expireat"] = (-3, ParseExpire),
        ["pexpireat"] = (-3, ParseExpire),
        ["ttl"] = (2, (_, a, _) => Read(Op.Ttl, a)),
        ["pttl"] = (2, (_, a, _) => Read(Op.PTtl, a)),
        ["expiretime"] = (2, (_, a, _) => Read(Op.ExpireTime, a)),
        ["pexpiretime"] = (2, (_, a, _) => Read(Op.PExpireTime, a)),
        ["persist"] = (2, (_, a, _) => Write(Op.Persist, a)),
        ["hset"] = (-4, ParseHSet),
        ["hmset"] = (-4, ParseHSet),
        ["hsetnx"] = (4, (_, a, _) => Write(Op.HSetNx, a)),
        ["hget"] = (3, (_, a, _) => Read(Op.HGet, a)),
        ["hmget"] = (-3, (_, a, _) => Read(Op.HMGet, a)),
        ["hgetall"] = (2, (_, a, _) => Read(Op.HGetAll, a)),
        ["hdel"] = (-3, (_, a, _) => Write(Op.HDel, a)),
        ["hexists"] = (3, (_, a, _) => Read(Op.HExists, a)),
        ["hlen"] = (2, (_, a, _) => Read(Op.HLen, a)),
        ["hkeys"] = (2, (_, a, _) => Read(Op.HKeys, a)),
        ["hvals"] = (2, (_, a, _) => Read(Op.HVals, a)),
        ["hincrby"] = (4, ParseHIncrBy),
        ["hincrbyfloat"] = (4, ParseHIncrByFloat),
        ["hstrlen"] = (3, (_, a, _) => Read(Op.HStrLen, a)),
    };

    /// <summary>The command names this layer serves (lowercase).</summary>
    public static IEnumerable<string> CommandNames => s_commands.Keys;

    /// <summary>Whether this layer knows the command (so a protocol layer can dispatch its own, like PING, first).</summary>
    public static bool IsKnown(ReadOnlySpan<byte> name) => TryFind(name, out _, out _);

    /// <summary>Parses one command. <paramref name="argv"/>[0] is the command name.</summary>
    public static ParsedCommand Parse(IReadOnlyList<ReadOnlyMemory<byte>> argv, long nowUnixMs)
    {
        var args = argv as ReadOnlyMemory<byte>[] ?? argv.ToArray();
        if (args.Length == 0)
        {
            return ParsedCommand.Fail(RedisErrors.UnknownCommand("", []));
        }

        if (!TryFind(args[0].Span, out string name, out var command))
        {
            name = Encoding.UTF8.GetString(args[0].Span);
            return ParsedCommand.Fail(RedisErrors.UnknownCommand(name, args.Skip(1).Select(arg => Encoding.UTF8.GetString(arg.Span))));
        }

        if ((command.Arity > 0 && args.Length != command.Arity) || (command.Arity < 0 && args.Length < -command.Arity))
        {
            return ParsedCommand.Fail(RedisErrors.Arity(name));
        }

        return command.Parse(name, args, nowUnixMs);
    }

    private static readonly Dictionary<string, (int Arity, Parser Parse)>.AlternateLookup<ReadOnlySpan<char>> s_commandsBySpan =
        s_commands.GetAlternateLookup<ReadOnlySpan<char>>();

    /// <summary>Finds a command by its name's bytes, any case, with no string made: <paramref name="name"/> is the
    /// table's (lowercase) name.</summary>
    private static bool TryFind(ReadOnlySpan<byte> bytes, out string name, out (int Arity, Parser Parse) command)
    {
        const int Longest = 32;
        name = string.Empty;
        command = default;
        if (bytes.Length > Longest || !System.Text.Ascii.IsValid(bytes))
        {
            return false; // every name in the table is short ASCII
        }

        Span<char> chars = stackalloc char[Longest];
        int length = Encoding.ASCII.GetChars(bytes, chars);
        return s_commandsBySpan.TryGetValue(chars[..length], out name!, out command);
    }

    /// <summary>Convenience for tests and tools: parses text arguments.</summary>
    public static ParsedCommand Parse(long nowUnixMs, params string[] argv) =>
        Parse(argv.Select(arg => (ReadOnlyMemory<byte>)Encoding.UTF8.GetBytes(arg)).ToArray(), nowUnixMs);

    /// <summary>
    /// Parses argv whose arrays the caller gives away (a RESP front end's freshly received arguments): the parsed
    /// command keeps them instead of copies, so the caller must never change them afterwards. Otherwise the same as
    /// <see cref="Parse(IReadOnlyList{ReadOnlyMemory{byte}}, long)"/>.
    /// </summary>
    public static ParsedCommand ParseOwned(byte[][] argv, long nowUnixMs)
    {
        // The memory view of argv is scratch of this thread's (no parser keeps the array itself), cleared afterwards.
        var args = argv.Length < Scratch.Length ? Scratch[argv.Length] ??= new ReadOnlyMemory<byte>[argv.Length] : new ReadOnlyMemory<byte>[argv.Length];
        for (int i = 0; i < argv.Length; i++)
        {
            args[i] = argv[i];
        }

        s_owned = true;
        try
        {
            return Parse(args, nowUnixMs);
        }
        finally
        {
            s_owned = false;
            Array.Clear(args);
        }
    }

    [ThreadStatic]
    private static bool s_owned;

    [ThreadStatic]
    private static ReadOnlyMemory<byte>[]?[]? s_scratch;

    private static ReadOnlyMemory<byte>[]?[] Scratch => s_scratch ??= new ReadOnlyMemory<byte>[]?[8];

    /// <summary>An argument's bytes to keep: its own array under <see cref="ParseOwned"/> when it is a whole one,
    /// else a copy.</summary>
    private static byte[] Own(ReadOnlyMemory<byte> argument) =>
        s_owned && MemoryMarshal.TryGetArray(argument, out var segment) && segment.Offset == 0 && segment.Count == segment.Array!.Length
            ? segment.Array
            : argument.ToArray();

    private static byte[][] Rest(ReadOnlyMemory<byte>[] argv, int from)
    {
        var rest = new byte[argv.Length - from][];
        for (int i = from; i < argv.Length; i++)
        {
            rest[i - from] = Own(argv[i]);
        }

        return rest;
    }

    private static ParsedCommand Read(Op op, ReadOnlyMemory<byte>[] argv, OpFlags flags = OpFlags.None, long number = 0) =>
        new(null, new ReadQuery(new Invocation(op, flags, number, Rest(argv, 1))), null);

    private static ParsedCommand Write(Op op, ReadOnlyMemory<byte>[] argv) => Write(op, OpFlags.None, 0, Rest(argv, 1));

    private static ParsedCommand Write(Op op, OpFlags flags, long number, byte[][] args) =>
        new(new WriteCommand(new Invocation(op, flags, number, args)), null, null);

    private static bool Is(ReadOnlyMemory<byte> arg, string word) =>
        arg.Length == word.Length && Ascii.EqualsIgnoreCase(arg.Span, Encoding.ASCII.GetBytes(word));

    // Redis's parseExtendedStringArgumentsOrReply, for SET (isSet) and GETEX.
    private static ParsedCommand ParseSet(string name, ReadOnlyMemory<byte>[] argv, long nowUnixMs)
    {
        var flags = OpFlags.None;
        var unit = ExpireUnit.None;
        ReadOnlyMemory<byte> expire = default;
        for (int j = 3; j < argv.Length; j++)
        {
            var opt = argv[j];
            bool hasNext = j < argv.Length - 1;
            if (Is(opt, "nx") && (flags & OpFlags.Xx) == 0)
            {
                flags |= OpFlags.Nx;
            }
            else if (Is(opt, "xx") && (flags & OpFlags.Nx) == 0)
            {
                flags |= OpFlags.Xx;
            }
            else if (Is(opt, "get"))
            {
                flags |= OpFlags.Get;
            }
            else if (Is(opt, "keepttl") && unit == ExpireUnit.None)
            {
                flags |= OpFlags.KeepTtl;
            }
            else if (TryExpireOption(opt, hasNext, flags, ref unit))
            {
                expire = argv[++j];
            }
            else
            {
                return ParsedCommand.Fail(RedisErrors.Syntax);
            }
        }

        long at = 0;
        if (unit != ExpireUnit.None)
        {
            string? error = ExpireMilliseconds(name, expire.Span, unit, nowUnixMs, out at);
            if (error is not null)
            {
                return ParsedCommand.Fail(error);
            }

            flags |= OpFlags.HasExpiry;
        }

        return Write(Op.Set, flags, at, [Own(argv[1]), Own(argv[2])]);
    }

    private static ParsedCommand ParseGetEx(string name, ReadOnlyMemory<byte>[] argv, long nowUnixMs)
    {
        var flags = OpFlags.None;
        var unit = ExpireUnit.None;
        ReadOnlyMemory<byte> expire = default;
        for (int j = 2; j < argv.Length; j++)
        {
            var opt = argv[j];
            bool hasNext = j < argv.Length - 1;
            if (Is(opt, "persist") && unit == ExpireUnit.None)
            {
                flags |= OpFlags.Persist;
            }
            else if (TryExpireOption(opt, hasNext, flags, ref unit))
            {
                expire = argv[++j];
            }
            else
            {
                return ParsedCommand.Fail(RedisErrors.Syntax);
            }
        }

        if (unit == ExpireUnit.None && (flags & OpFlags.Persist) == 0)
        {
            return Read(Op.Get, argv[..2]);
        }

        long at = 0;
        if (unit != ExpireUnit.None)
        {
            string? error = ExpireMilliseconds(name, expire.Span, unit, nowUnixMs, out at);
            if (error is not null)
            {
                return ParsedCommand.Fail(error);
            }

            flags |= OpFlags.HasExpiry;
        }

        return Write(Op.GetEx, flags, at, [Own(argv[1])]);
    }

    private enum ExpireUnit
    {
        None,
        Ex,
        Px,
        ExAt,
        PxAt,
    }

    private static bool TryExpireOption(ReadOnlyMemory<byte> opt, bool hasNext, OpFlags flags, ref ExpireUnit unit)
    {
        if (!hasNext || (flags & (OpFlags.KeepTtl | OpFlags.Persist)) != 0)
        {
            return false;
        }

        // The same unit may repeat (the last wins); two different units are a syntax error.
        ExpireUnit wanted = Is(opt, "ex") ? ExpireUnit.Ex : Is(opt, "px") ? ExpireUnit.Px : Is(opt, "exat") ? ExpireUnit.ExAt : Is(opt, "pxat") ? ExpireUnit.PxAt : ExpireUnit.None;
        if (wanted == ExpireUnit.None || (unit != ExpireUnit.None && unit != wanted))
        {
            return false;
        }

        unit = wanted;
        return true;
    }

    // Redis's getExpireMillisecondsOrReply: positive only, seconds checked for overflow, relative made absolute.
    private static string? ExpireMilliseconds(string name, ReadOnlySpan<byte> text, ExpireUnit unit, long nowUnixMs, out long at)
    {
        at = 0;
        if (!NumberText.TryParseInt64(text, out long value))
        {
            return RedisErrors.NotInteger;
        }

        bool seconds = unit is ExpireUnit.Ex or ExpireUnit.ExAt;
        if (value <= 0 || (seconds && value > long.MaxValue / 1000))
        {
            return RedisErrors.InvalidExpire(name);
        }

        if (seconds)
        {
            value *= 1000;
        }

        if (unit is ExpireUnit.Ex or ExpireUnit.Px)
        {
            value = unchecked(value + nowUnixMs);
        }

        if (value <= 0)
        {
            return RedisErrors.InvalidExpire(name);
        }

        at = value;
        return null;
    }

    private static ParsedCommand ParseSetEx(string name, ReadOnlyMemory<byte>[] argv, long nowUnixMs)
    {
        string? error = ExpireMilliseconds(name, argv[2].Span, name == "setex" ? ExpireUnit.Ex : ExpireUnit.Px, nowUnixMs, out long at);
        return error is not null ? ParsedCommand.Fail(error) : Write(Op.Set, OpFlags.HasExpiry, at, [Own(argv[1]), Own(argv[3])]);
    }

    private static ParsedCommand ParseMSet(string name, ReadOnlyMemory<byte>[] argv, long nowUnixMs) =>
        argv.Length % 2 == 0 ? ParsedCommand.Fail(RedisErrors.Arity(name)) : Write(name == "mset" ? Op.MSet : Op.MSetNx, argv);

    private static ParsedCommand ParseGetRange(string name, ReadOnlyMemory<byte>[] argv, long nowUnixMs) =>
        NumberText.TryParseInt64(argv[2].Span, out _) && NumberText.TryParseInt64(argv[3].Span, out _)
            ? Read(Op.GetRange, argv)
            : ParsedCommand.Fail(RedisErrors.NotInteger);

    private static ParsedCommand ParseSetRange(string name, ReadOnlyMemory<byte>[] argv, long nowUnixMs)
    {
        if (!NumberText.TryParseInt64(argv[2].Span, out long offset))
        {
            return ParsedCommand.Fail(RedisErrors.NotInteger);
        }

        if (offset < 0)
        {
            return ParsedCommand.Fail(RedisErrors.OffsetOutOfRange);
        }

        if (offset + argv[3].Length > CacheCommand.ValueBytesMax)
        {
            return ParsedCommand.Fail(RedisErrors.StringTooLong);
        }

        return Write(Op.SetRange, OpFlags.None, offset, [Own(argv[1]), Own(argv[3])]);
    }

    private static ParsedCommand ParseIncrBy(string name, ReadOnlyMemory<byte>[] argv, long nowUnixMs)
    {
        if (!NumberText.TryParseInt64(argv[2].Span, out long delta))
        {
            return ParsedCommand.Fail(RedisErrors.NotInteger);
        }

        if (name == "decrby")
        {
            if (delta == long.MinValue)
            {
                return ParsedCommand.Fail(RedisErrors.DecrementOverflow);
            }

            delta = -delta;
        }

        return Write(Op.IncrBy, OpFlags.None, delta, [Own(argv[1])]);
    }

    private static ParsedCommand ParseIncrByFloat(string name, ReadOnlyMemory<byte>[] argv, long nowUnixMs) =>
        NumberText.TryParseDouble(argv[2].Span, out _) ? Write(Op.IncrByFloat, argv) : ParsedCommand.Fail(RedisErrors.NotFloat);

    private static ParsedCommand ParseCopy(string name, ReadOnlyMemory<byte>[] argv, long nowUnixMs)
    {
        var flags = OpFlags.None;
        for (int j = 3; j < argv.Length; j++)
        {
            if (Is(argv[j], "replace"))
            {
                flags |= OpFlags.Replace;
            }
            else if (Is(argv[j], "db") && j < argv.Length - 1)
            {
                if (!NumberText.TryParseInt64(argv[++j].Span, out long db) || db is < int.MinValue or > int.MaxValue)
                {
                    return ParsedCommand.Fail(RedisErrors.NotInteger);
                }

                if (db != 0)
                {
                    return ParsedCommand.Fail(RedisErrors.DbIndexOutOfRange);
                }
            }
            else
            {
                return ParsedCommand.Fail(RedisErrors.Syntax);
            }
        }

        return Write(Op.Copy, flags, 0, [Own(argv[1]), Own(argv[2])]);
    }

    private static ParsedCommand ParseScan(string name, ReadOnlyMemory<byte>[] argv, long nowUnixMs)
    {
        if (!NumberText.TryParseUInt64(argv[1].Span, out ulong cursor))
        {
            return ParsedCommand.Fail(RedisErrors.InvalidCursor);
        }

        // Args: [cursor, match pattern, type]; Number: count.
        long count = 10;
        byte[] match = [];
        byte[] type = [];
        var flags = OpFlags.None;
        for (int j = 2; j < argv.Length; j++)
        {
            bool hasNext = j < argv.Length - 1;
            if (Is(argv[j], "count") && hasNext)
            {
                if (!NumberText.TryParseInt64(argv[++j].Span, out count))
                {
                    return ParsedCommand.Fail(RedisErrors.NotInteger);
                }

                if (count < 1)
                {
                    return ParsedCommand.Fail(RedisErrors.Syntax);
                }

                flags |= OpFlags.WithCount;
            }
            else if (Is(argv[j], "match") && hasNext)
            {
                match = Own(argv[++j]);
                flags |= OpFlags.WithMatch;
            }
            else if (Is(argv[j], "type") && hasNext)
            {
                type = Own(argv[++j]);
                flags |= OpFlags.WithType;
            }
            else
            {
                return ParsedCommand.Fail(RedisErrors.Syntax);
            }
        }

        return new ParsedCommand(null, new ReadQuery(new Invocation(Op.Scan, flags, count, [NumberText.Int64Bytes(unchecked((long)cursor)), match, type])), null);
    }

    private static ParsedCommand ParseFlush(string name, ReadOnlyMemory<byte>[] argv, long nowUnixMs)
    {
        if (argv.Length > 2 || (argv.Length == 2 && !Is(argv[1], "async") && !Is(argv[1], "sync")))
        {
            return ParsedCommand.Fail(RedisErrors.Syntax);
        }

        return Write(Op.FlushAll, OpFlags.None, 0, []);
    }

    // Redis's expireGenericCommand: options first, then the integer, then overflow of unit and base time.
    private static ParsedCommand ParseExpire(string name, ReadOnlyMemory<byte>[] argv, long nowUnixMs)
    {
        var flags = OpFlags.None;
        for (int j = 3; j < argv.Length; j++)
        {
            if (Is(argv[j], "nx"))
            {
                flags |= OpFlags.Nx;
            }
            else if (Is(argv[j], "xx"))
            {
                flags |= OpFlags.Xx;
            }
            else if (Is(argv[j], "gt"))
            {
                flags |= OpFlags.Gt;
            }
            else if (Is(argv[j], "lt"))
            {
                flags |= OpFlags.Lt;
            }
            else
            {
                return ParsedCommand.Fail(RedisErrors.UnsupportedOption(Encoding.UTF8.GetString(argv[j].Span)));
            }
        }

        if ((flags & OpFlags.Nx) != 0 && (flags & (OpFlags.Xx | OpFlags.Gt | OpFlags.Lt)) != 0)
        {
            return ParsedCommand.Fail(RedisErrors.NxXxGtLt);
        }

        if ((flags & OpFlags.Gt) != 0 && (flags & OpFlags.Lt) != 0)
        {
            return ParsedCommand.Fail(RedisErrors.GtLt);
        }

        if (!NumberText.TryParseInt64(argv[2].Span, out long when))
        {
            return ParsedCommand.Fail(RedisErrors.NotInteger);
        }

        if (name is "expire" or "expireat")
        {
            if (when > long.MaxValue / 1000 || when < long.MinValue / 1000)
            {
                return ParsedCommand.Fail(RedisErrors.InvalidExpire(name));
            }

            when *= 1000;
        }

        long baseTime = name is "expire" or "pexpire" ? nowUnixMs : 0;
        if (when > long.MaxValue - baseTime)
        {
            return ParsedCommand.Fail(RedisErrors.InvalidExpire(name));
        }

        return Write(Op.Expire, flags, when + baseTime, [Own(argv[1])]);
    }

    private static ParsedCommand ParseHSet(string name, ReadOnlyMemory<byte>[] argv, long nowUnixMs) =>
        argv.Length % 2 == 1
            ? ParsedCommand.Fail(RedisErrors.Arity(name))
            : Write(Op.HSet, name == "hmset" ? OpFlags.ReplyOk : OpFlags.None, 0, Rest(argv, 1));

    private static ParsedCommand ParseHIncrBy(string name, ReadOnlyMemory<byte>[] argv, long nowUnixMs) =>
        NumberText.TryParseInt64(argv[3].Span, out long delta)
            ? Write(Op.HIncrBy, OpFlags.None, delta, [Own(argv[1]), Own(argv[2])])
            : ParsedCommand.Fail(RedisErrors.NotInteger);

    private static ParsedCommand ParseHIncrByFloat(string name, ReadOnlyMemory<byte>[] argv, long nowUnixMs) =>
        NumberText.TryParseDouble(argv[3].Span, out _) ? Write(Op.HIncrByFloat, argv) : ParsedCommand.Fail(RedisErrors.NotFloat);
}
