using System.Text;
using Stcache.Cache;
using Stcache.Raft;

namespace Stcache.Cache.Tests;

/// <summary>Runs Redis commands through the parser and the state machine as the node would: writes are encoded
/// into an entry stamped with the log time and applied; reads are served at the same time.</summary>
internal sealed class CommandRunner
{
    private ulong _index;

    public CacheStateMachine Cache { get; } = new();

    public long NowUnixMs { get; set; } = 1_700_000_000_000;

    public Reply Run(params string[] argv)
    {
        var parsed = CommandParser.Parse(NowUnixMs, argv);
        if (parsed.Error is not null)
        {
            return parsed.Error;
        }

        if (parsed.Read is not null)
        {
            return Cache.Read(parsed.Read, NowUnixMs);
        }

        return ApplyWrite(parsed.Write!);
    }

    public Reply ApplyWrite(WriteCommand write)
    {
        var result = Cache.Apply(new LogIndex(++_index), write.Encode(NowUnixMs));
        Assert.Equal(ApplyStatus.Ok, result.Status);
        return result.Reply!;
    }

    public string Text(params string[] argv) => Run(argv).ToString();

    /// <summary>Replaces the state with a snapshot of <paramref name="source"/>'s; later writes follow its index.</summary>
    public void RestoreFrom(CacheStateMachine source)
    {
        var stream = new MemoryStream();
        using (var snapshot = source.BeginSnapshot())
        {
            snapshot.WriteTo(stream);
        }

        stream.Position = 0;
        Cache.Restore(stream);
        _index = Cache.AppliedIndex.Value;
    }
}

public sealed class CommandTests
{
    [Fact]
    public void StringsReplyAsRedis()
    {
        var r = new CommandRunner();
        Assert.Equal("+OK", r.Text("SET", "k", "v"));
        Assert.Equal("\"v\"", r.Text("get", "k"));
        Assert.Equal("(nil)", r.Text("SET", "k", "w", "NX"));
        Assert.Equal("\"v\"", r.Text("SET", "k", "w", "GET"));
        Assert.Equal("(nil)", r.Text("SET", "other", "x", "XX"));
        Assert.Equal(":0", r.Text("SETNX", "k", "z"));
        Assert.Equal(":1", r.Text("SETNX", "n", "z"));
        Assert.Equal(":2", r.Text("APPEND", "n", "z"));
        Assert.Equal(":2", r.Text("STRLEN", "n"));
        Assert.Equal(":11", r.Text("INCRBY", "c", "11"));
        Assert.Equal(":10", r.Text("DECR", "c"));
        Assert.Equal("\"10.5\"", r.Text("INCRBYFLOAT", "c", "0.5"));
        Assert.Equal("-ERR value is not an integer or out of range", r.Text("INCR", "c"));
        Assert.Equal("\"0.3\"", r.Text("INCRBYFLOAT", "f", "0.1") is var _ ? r.Text("INCRBYFLOAT", "f", "0.2") : "");
        Assert.Equal("+OK", r.Text("MSET", "a", "1", "b", "2"));
        Assert.Equal("[\"1\", \"2\", (nil)]", r.Text("MGET", "a", "b", "zz"));
        Assert.Equal(":0", r.Text("MSETNX", "a", "1", "q", "2"));
        Assert.Equal("\"ell\"", r.Text("GETRANGE", "hello", "0", "-1") == "\"\"" ? (r.Text("SET", "h", "hello") is var _ ? r.Text("GETRANGE", "h", "1", "3") : "") : "");
        Assert.Equal(":11", r.Text("SETRANGE", "h", "6", "world"));
        Assert.Equal("\"hello\0world\"", r.Text("GET", "h"));
        Assert.Equal("\"1\"", r.Text("GETDEL", "a"));
        Assert.Equal(":0", r.Text("EXISTS", "a"));
        Assert.Equal("\"2\"", r.Text("GETSET", "b", "3"));
    }

    [Fact]
    public void ErrorsHaveRedisText()
    {
        var r = new CommandRunner();
        Assert.Equal("-ERR wrong number of arguments for 'get' command", r.Text("GET"));
        Assert.Equal("-ERR wrong number of arguments for 'mset' command", r.Text("MSET", "a", "1", "b"));
        Assert.Equal("-ERR syntax error", r.Text("SET", "k", "v", "NX", "XX"));
        Assert.Equal("-ERR syntax error", r.Text("SET", "k", "v", "EX", "10", "PX", "10"));
        Assert.Equal("-ERR invalid expire time in 'set' command", r.Text("SET", "k", "v", "EX", "0"));
        Assert.Equal("-ERR invalid expire time in 'setex' command", r.Text("SETEX", "k", "-1", "v"));
        Assert.Equal("-ERR value is not an integer or out of range", r.Text("SET", "k", "v", "EX", "+1"));
        Assert.Equal("-ERR value is not an integer or out of range", r.Text("INCRBY", "k", "01"));
        Assert.Equal("-ERR decrement would overflow", r.Text("DECRBY", "k", "-9223372036854775808"));
        Assert.Equal("-ERR value is not a valid float", r.Text("INCRBYFLOAT", "k", "abc"));
        Assert.Equal("-ERR Unsupported option FOO", r.Text("EXPIRE", "k", "10", "FOO"));
        Assert.Equal("-ERR NX and XX, GT or LT options at the same time are not compatible", r.Text("EXPIRE", "k", "10", "NX", "GT"));
        Assert.Equal("-ERR GT and LT options at the same time are not compatible", r.Text("EXPIRE", "k", "10", "GT", "LT"));
        Assert.Equal("-ERR invalid cursor", r.Text("SCAN", "x"));
        Assert.Equal("-ERR unknown command 'FOO', with args beginning with: 'a' 'b' ", r.Text("FOO", "a", "b"));
        Assert.Equal("+OK", r.Text("HSET", "h", "f", "v") == ":1" ? "+OK" : "x");
        Assert.Equal("-WRONGTYPE Operation against a key holding the wrong kind of value", r.Text("GET", "h"));
        Assert.Equal("-WRONGTYPE Operation against a key holding the wrong kind of value", r.Text("SET", "h", "v", "GET"));
        Assert.Equal("-ERR no such key", r.Text("RENAME", "missing", "x"));
        Assert.Equal("+OK", r.Text("SET", "s", "v"));
        Assert.Equal("-WRONGTYPE Operation against a key holding the wrong kind of value", r.Text("HGET", "s", "f"));
        Assert.Equal("-ERR increment or decrement would overflow", r.Text("SET", "big", "9223372036854775807") == "+OK" ? r.Text("INCR", "big") : "");
    }

    [Fact]
    public void ExpiryFollowsTheLogTimeAndReadTime()
    {
        var r = new CommandRunner();
        Assert.Equal("+OK", r.Text("SET", "k", "v", "PX", "1500"));
        Assert.Equal(":1500", r.Text("PTTL", "k"));
        Assert.Equal(":2", r.Text("TTL", "k"));
        Assert.Equal(":-1", r.Text("TTL", "k") == ":2" && r.Text("SET", "p", "v") == "+OK" ? r.Text("TTL", "p") : "");
        Assert.Equal(":-2", r.Text("TTL", "missing"));
        r.NowUnixMs += 1499;
        Assert.Equal("\"v\"", r.Text("GET", "k"));
        r.NowUnixMs += 1;
        Assert.Equal("(nil)", r.Text("GET", "k"));
        var expired = new List<byte[]>();
        r.Cache.Read(CommandParser.Parse(r.NowUnixMs, "GET", "k").Read!, r.NowUnixMs, expired);
        Assert.Single(expired);
        Assert.Equal(2, r.Cache.Count);
        Assert.Equal(":1", r.ApplyWrite(WriteCommand.ExpireKeys(r.NowUnixMs, expired)).ToString());
        Assert.Equal(1, r.Cache.Count);

        Assert.Equal("+OK", r.Text("SET", "e", "v"));
        Assert.Equal(":0", r.Text("EXPIRE", "e", "100", "XX"));
        Assert.Equal(":1", r.Text("EXPIRE", "e", "100", "NX"));
        Assert.Equal(":0", r.Text("EXPIRE", "e", "50", "GT"));
        Assert.Equal(":1", r.Text("EXPIRE", "e", "50", "LT"));
        Assert.Equal(":50", r.Text("TTL", "e"));
        Assert.Equal(":" + ((r.NowUnixMs + 50_000 + 500) / 1000), r.Text("EXPIRETIME", "e"));
        Assert.Equal(":1", r.Text("PERSIST", "e"));
        Assert.Equal(":0", r.Text("PERSIST", "e"));
        Assert.Equal(":1", r.Text("EXPIRE", "e", "-1"));
        Assert.Equal(":0", r.Text("EXISTS", "e"));
        r.Cache.AssertInvariants();
    }

    [Fact]
    public void HashesAndBatches()
    {
        var r = new CommandRunner();
        Assert.Equal(":2", r.Text("HSET", "h", "a", "1", "b", "2"));
        Assert.Equal("+OK", r.Text("HMSET", "h", "a", "3"));
        Assert.Equal("{\"a\": \"3\", \"b\": \"2\"}", r.Text("HGETALL", "h"));
        Assert.Equal(":5", r.Text("HINCRBY", "h", "b", "3"));
        Assert.Equal("-ERR hash value is not an integer", r.Text("HSET", "h", "s", "x") == ":1" ? r.Text("HINCRBY", "h", "s", "1") : "");
        Assert.Equal("[\"3\", (nil)]", r.Text("HMGET", "h", "a", "zz"));
        Assert.Equal(":3", r.Text("HDEL", "h", "a", "b", "s", "zz"));
        Assert.Equal(":0", r.Text("EXISTS", "h"));
        Assert.Equal("+none", r.Text("TYPE", "h"));

        var batch = WriteCommand.Batch(new[] { CommandParser.Parse(0, "SET", "x", "1"), CommandParser.Parse(0, "INCR", "x"), CommandParser.Parse(0, "GET", "x") }
            .Select(parsed => parsed.Invocation!));
        Assert.Equal("[+OK, :2, \"2\"]", r.ApplyWrite(batch).ToString());
        r.Cache.AssertInvariants();
    }
}

public sealed class WatchGuardTests
{
    private static WriteCommand Guarded(IReadOnlyCollection<(byte[] Key, ulong Version)> watched, params string[][] commands) =>
        WriteCommand.Batch(commands.Select(argv => CommandParser.Parse(0, argv).Invocation!), watched);

    [Fact]
    public void AGuardedBatchAppliesOnlyWhileEveryWatchedVersionHolds()
    {
        var r = new CommandRunner();
        Assert.Equal("+OK", r.Text("SET", "w", "1"));
        ulong version = r.Cache.VersionOf("w"u8);
        Assert.NotEqual(0UL, version);
        Assert.Equal(0UL, r.Cache.VersionOf("absent"u8));
        Assert.Equal(":1", r.Text("HSET", "h", "f", "v"));
        ulong hashVersion = r.Cache.VersionOf("h"u8);
        Assert.NotEqual(0UL, hashVersion);

        // Unchanged (a string, a hash and an absent key): applied, and the reply holds only the queued commands.
        var watched = new[] { ("w"u8.ToArray(), version), ("h"u8.ToArray(), hashVersion), ("absent"u8.ToArray(), 0UL) };
        Assert.Equal("[+OK, \"2\"]", r.ApplyWrite(Guarded(watched, ["SET", "w", "2"], ["GET", "w"])).ToString());

        // The batch itself changed w: the same guard now fails, nothing is applied, the reply is a null.
        Assert.Equal(ReplyKind.Null, r.ApplyWrite(Guarded(watched, ["SET", "w", "3"], ["SET", "other", "x"])).Kind);
        Assert.Equal("\"2\"", r.Text("GET", "w"));
        Assert.Equal(":0", r.Text("EXISTS", "other"));

        // A key that appears, or one deleted, fails its guard too.
        ulong current = r.Cache.VersionOf("w"u8);
        Assert.Equal("+OK", r.Text("SET", "absent", "now"));
        Assert.Equal(ReplyKind.Null, r.ApplyWrite(Guarded([("absent"u8.ToArray(), 0UL)], ["DEL", "absent"])).Kind);
        Assert.Equal(":1", r.Text("DEL", "w"));
        Assert.Equal(ReplyKind.Null, r.ApplyWrite(Guarded([("w"u8.ToArray(), current)], ["SET", "w", "back"])).Kind);
        Assert.Equal(":0", r.Text("EXISTS", "w"));
        r.Cache.AssertInvariants();
    }

    /// <summary>Issue 12: a key absent when watched, then created and deleted again before EXEC, aborts it as in
    /// Redis. Its token records the key's deletion bucket, which every deletion moves, also through a snapshot.</summary>
    [Fact]
    public void AnAbsentKeyCreatedAndDeletedAgainFailsItsGuard()
    {
        var r = new CommandRunner();
        ulong token = r.Cache.WatchToken("k"u8);
        Assert.Equal(CacheStateMachine.AbsentWatchMark, token); // no deletion in its bucket yet
        Assert.Equal("+OK", r.Text("SET", "other", "1"));
        Assert.Equal("[+OK]", r.ApplyWrite(Guarded([("k"u8.ToArray(), token)], ["SET", "k", "mine"])).ToString());
        Assert.Equal(":1", r.Text("DEL", "k"));

        // Created, then deleted by DEL, by an expiry a write meets, by the leader's expiry batch, by an eviction, by
        // GETDEL, by RENAME away from it, by FLUSHALL, by deleting a hash's last field: each fails the guard taken
        // before, and nothing of the batch is applied.
        Action[] createThenDelete =
        [
            () => r.Run("SET", "k", "x"),
            () => r.Run("SET", "k", "x", "PX", "5"),
            () => r.Run("SET", "k", "x", "PX", "5"),
            () => r.Run("SET", "k", "x"),
            () => r.Run("SET", "k", "x"),
            () => r.Run("SET", "k", "x"),
            () => r.Run("SET", "k", "x"),
            () => r.Run("HSET", "k", "f", "v"),
        ];
        Action[] deletions =
        [
            () => Assert.Equal(":1", r.Text("DEL", "k")),
            () =>
            {
                r.NowUnixMs += 10;
                Assert.Equal("(nil)", r.Text("GETDEL", "k"));
            },
            () =>
            {
                r.NowUnixMs += 10;
                r.ApplyWrite(WriteCommand.ExpireKeys(r.NowUnixMs, ["k"u8.ToArray()]));
            },
            () => r.ApplyWrite(WriteCommand.Evict([("k"u8.ToArray(), r.Cache.VersionOf("k"u8))])),
            () => Assert.Equal("\"x\"", r.Text("GETDEL", "k")),
            () => Assert.Equal("+OK", r.Text("RENAME", "k", "elsewhere")),
            () => Assert.Equal("+OK", r.Text("FLUSHALL")),
            () => Assert.Equal(":1", r.Text("HDEL", "k", "f")),
        ];
        for (int i = 0; i < deletions.Length; i++)
        {
            token = r.Cache.WatchToken("k"u8);
            createThenDelete[i]();
            deletions[i]();
            Assert.Equal(0UL, r.Cache.VersionOf("k"u8));
            Assert.Equal(ReplyKind.Null, r.ApplyWrite(Guarded([("k"u8.ToArray(), token)], ["SET", "k", "mine"], ["SET", "side", "x"])).Kind);
            Assert.Equal(":0", r.Text("EXISTS", "k", "side"));
        }

        // A token taken after the deletion holds; the pre-mark form (0: absent now) still means what it meant.
        token = r.Cache.WatchToken("k"u8);
        Assert.Equal("[+OK]", r.ApplyWrite(Guarded([("k"u8.ToArray(), token)], ["SET", "k", "mine"])).ToString());
        Assert.Equal(":1", r.Text("DEL", "k"));
        Assert.Equal("[+OK]", r.ApplyWrite(Guarded([("k"u8.ToArray(), 0UL)], ["SET", "k", "mine"])).ToString());

        // Through a snapshot: a replica restored from it holds the same record and decides as the one that applied
        // the entries.
        for (int i = 0; i < 100; i++)
        {
            r.Run("SET", "key" + i.ToString(System.Globalization.CultureInfo.InvariantCulture), "v");
            r.Run("DEL", "key" + (i / 2).ToString(System.Globalization.CultureInfo.InvariantCulture));
        }

        Assert.Equal(":1", r.Text("DEL", "k"));
        token = r.Cache.WatchToken("k"u8);
        Assert.Equal("+OK", r.Text("SET", "k", "again"));
        Assert.Equal(":1", r.Text("DEL", "k"));
        var restored = new CommandRunner();
        restored.RestoreFrom(r.Cache);
        for (int i = 0; i < 300; i++)
        {
            byte[] key = System.Text.Encoding.ASCII.GetBytes("key" + i.ToString(System.Globalization.CultureInfo.InvariantCulture));
            Assert.Equal(r.Cache.WatchToken(key), restored.Cache.WatchToken(key));
        }

        ulong after = restored.Cache.WatchToken("k"u8);
        Assert.Equal(ReplyKind.Null, restored.ApplyWrite(Guarded([("k"u8.ToArray(), token)], ["SET", "k", "mine"])).Kind);
        Assert.Equal("[+OK]", restored.ApplyWrite(Guarded([("k"u8.ToArray(), after)], ["SET", "k", "mine"])).ToString());
        r.Cache.AssertInvariants();
        restored.Cache.AssertInvariants();
    }

    [Fact]
    public void AGuardSurvivesTheLogEncodingAndAloneIsNotACommand()
    {
        var write = WriteCommand.Batch([CommandParser.Parse(0, "SET", "k", "v").Invocation!], [("k"u8.ToArray(), 7UL)]);
        Assert.True(WriteCommand.TryDecode(write.Encode(1), out var decoded, out _, out string? error), error);
        Assert.Equal(Op.IfVersions, decoded!.Invocation.Batch[0].Op);
        Assert.Equal(7UL, System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(decoded.Invocation.Batch[0].Args[1]));

        var r = new CommandRunner();
        var alone = new WriteCommand(new Invocation(Op.IfVersions, OpFlags.None, 0, ["k"u8.ToArray(), new byte[8]]));
        Assert.Equal(ReplyKind.Error, r.ApplyWrite(alone).Kind);
    }
}

public sealed class HttpCommandTimeTests
{
    [Fact]
    public void StampedHttpWritesExpireAtTheirLogTime()
    {
        var cache = new CacheStateMachine();
        long now = 1_700_000_000_000;
        var set = CacheCommand.Set("k", "v"u8.ToArray()) with { LogTimeUnixMs = now, ExpiresAtUnixMs = now + 5000 };
        Assert.True(cache.Apply(new LogIndex(1), set.Encode()).Succeeded);
        Assert.Equal(now, cache.LastLogTimeUnixMs);
        Assert.True(cache.TryGet("k", out var entry, now + 4999));
        Assert.Equal(now + 5000, entry.ExpiresAtUnixMs);
        Assert.False(cache.TryGet("k", out _, now + 5000));

        // A compare-and-set after the expiry sees no key (version 0), judged at the entry's log time.
        var create = CacheCommand.SetIfVersion("k", "w"u8.ToArray(), 0) with { LogTimeUnixMs = now + 5000 };
        Assert.Equal(ApplyStatus.Ok, cache.Apply(new LogIndex(2), create.Encode()).Status);
        Assert.True(cache.TryGet("k", out entry, now + 100_000));
        Assert.Equal(0, entry.ExpiresAtUnixMs);
    }
}

public sealed class ParseAndEncodeCopyTests
{
    [Fact]
    public void ParseOwnedKeepsTheCallersArraysAndParsesAsParseDoes()
    {
        byte[][] argv = ["SET"u8.ToArray(), "key"u8.ToArray(), "value"u8.ToArray(), "PX"u8.ToArray(), "500"u8.ToArray()];
        long now = 1_700_000_000_000;
        var owned = CommandParser.ParseOwned(argv, now);
        var copied = CommandParser.Parse([.. argv.Select(a => (ReadOnlyMemory<byte>)a)], now);

        Assert.Same(argv[1], owned.Write!.Invocation.Args[0]);
        Assert.Same(argv[2], owned.Write.Invocation.Args[1]);
        Assert.NotSame(argv[1], copied.Write!.Invocation.Args[0]);
        Assert.Equal(copied.Write.Encode(now), owned.Write.Encode(now));

        // A slice is never kept as if it were a whole array, and the next plain parse on this thread copies again.
        byte[] wide = "xkeyx"u8.ToArray();
        var slice = CommandParser.Parse(["GET"u8.ToArray(), wide.AsMemory(1, 3)], now);
        Assert.Equal("key"u8.ToArray(), slice.Read!.Invocation.Args[0]);
        var again = CommandParser.Parse([.. argv.Select(a => (ReadOnlyMemory<byte>)a)], now);
        Assert.NotSame(argv[1], again.Write!.Invocation.Args[0]);

        // Errors come out the same.
        Assert.Equal(
            CommandParser.Parse(now, "SET", "k").Error!.ToString(),
            CommandParser.ParseOwned(["SET"u8.ToArray(), "k"u8.ToArray()], now).Error!.ToString());
    }

    [Fact]
    public void EncodingWithAStampIsEncodingTheStampedCopy()
    {
        var command = CacheCommand.SetIfVersion("k", "v"u8.ToArray(), 3);
        long now = 1_700_000_000_000;
        Assert.Equal((command with { LogTimeUnixMs = now, ExpiresAtUnixMs = now + 5000 }).Encode(), command.Encode(now + 5000, now));
        Assert.Equal((command with { LogTimeUnixMs = now }).Encode(), command.Encode(0, now));
        Assert.Equal(command.Encode(), command.Encode(0, 0));
        Assert.Throws<ArgumentException>(() => command.Encode(-1, now));
    }
}
