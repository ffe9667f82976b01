using System.Globalization;
using System.Text;
using CsCheck;
using Stcache.Cache;
using Stcache.Raft;

namespace Stcache.Cache.Tests;

/// <summary>
/// Random command sequences give the same replies and the same state from the state machine and the reference
/// model, with time moving on between commands, leader expiry entries, MULTI batches and a snapshot and restore in
/// the middle. CsCheck prints the seed of a failure; rerun it with <c>seed: "..."</c> in <c>Sample</c>.
/// </summary>
public sealed class ModelPropertyTests
{
    private static readonly string[] s_keys = ["a", "b", "c", "d", "e"];
    private static readonly string[] s_fields = ["f", "g", "h"];
    private static readonly string[] s_values = ["1", "-3", "10.5", "x", "", "9223372036854775806", "hello", "0"];

    private static string Pick(Random random, string[] from) => from[random.Next(from.Length)];

    private static string Ttl(Random random) => random.Next(1, 6).ToString(CultureInfo.InvariantCulture);

    internal static string[] RandomCommand(Random random, long now)
    {
        string k = Pick(random, s_keys);
        string k2 = Pick(random, s_keys);
        string v = Pick(random, s_values);
        string f = Pick(random, s_fields);
        string at = (now + random.Next(-2000, 6000)).ToString(CultureInfo.InvariantCulture);
        string[] expireFlags = ["", "NX", "XX", "GT", "LT"];
        string flag = expireFlags[random.Next(expireFlags.Length)];
        string[] command = random.Next(46) switch
        {
            0 => ["SET", k, v],
            1 => ["SET", k, v, "EX", Ttl(random)],
            2 => ["SET", k, v, "PX", (random.Next(1, 5000)).ToString(CultureInfo.InvariantCulture), random.Next(2) == 0 ? "NX" : "XX"],
            3 => ["SET", k, v, "PXAT", at, "GET"],
            4 => ["SET", k, v, "KEEPTTL", "GET"],
            5 => ["GET", k],
            6 => ["GETEX", k, "PX", (random.Next(1, 5000)).ToString(CultureInfo.InvariantCulture)],
            7 => ["GETEX", k, "PERSIST"],
            8 => ["GETDEL", k],
            9 => ["GETSET", k, v],
            10 => ["MSET", k, v, k2, Pick(random, s_values)],
            11 => ["MSETNX", k, v, k2, v],
            12 => ["MGET", k, k2, "zz"],
            13 => ["STRLEN", k],
            14 => ["APPEND", k, v],
            15 => ["GETRANGE", k, random.Next(-4, 4).ToString(CultureInfo.InvariantCulture), random.Next(-4, 4).ToString(CultureInfo.InvariantCulture)],
            16 => ["SETRANGE", k, random.Next(0, 4).ToString(CultureInfo.InvariantCulture), v],
            17 => ["INCR", k],
            18 => ["DECRBY", k, random.Next(-5, 5).ToString(CultureInfo.InvariantCulture)],
            19 => ["INCRBYFLOAT", k, "1.5"],
            20 => ["DEL", k, k2],
            21 => ["EXISTS", k, k2, k],
            22 => ["TYPE", k],
            23 => ["RENAME", k, k2],
            24 => ["RENAMENX", k, k2],
            25 => ["COPY", k, k2, "REPLACE"],
            26 => ["DBSIZE"],
            27 => random.Next(10) == 0 ? ["FLUSHALL"] : ["SETNX", k, v],
            28 => flag.Length == 0 ? ["EXPIRE", k, Ttl(random)] : ["EXPIRE", k, Ttl(random), flag],
            29 => flag.Length == 0 ? ["PEXPIREAT", k, at] : ["PEXPIREAT", k, at, flag],
            30 => ["TTL", k],
            31 => ["PTTL", k],
            32 => ["PEXPIRETIME", k],
            33 => ["PERSIST", k],
            34 => ["HSET", k, f, v, Pick(random, s_fields), v],
            35 => ["HSETNX", k, f, v],
            36 => ["HGET", k, f],
            37 => ["HMGET", k, f, "zz"],
            38 => ["HGETALL", k],
            39 => ["HDEL", k, f, Pick(random, s_fields)],
            40 => ["HEXISTS", k, f],
            41 => ["HLEN", k],
            42 => ["HKEYS", k],
            43 => ["HINCRBY", k, f, random.Next(-5, 5).ToString(CultureInfo.InvariantCulture)],
            44 => ["HINCRBYFLOAT", k, f, "0.25"],
            _ => ["HSTRLEN", k, f],
        };
        return command;
    }

    [Fact]
    public void StateMachineMatchesTheModel()
    {
        Gen.Int[0, int.MaxValue].Array[1, 120].Sample(RunAgainstModel, iter: 300);
    }

    private static void RunAgainstModel(int[] steps)
    {
        var model = new ReferenceModel();
        var cache = new CacheStateMachine();
        long now = 1_700_000_000_000;
        ulong index = 0;
        int snapshotAt = steps.Length / 2;
        var batch = new List<(Invocation Call, string Text)>();
        for (int step = 0; step < steps.Length; step++)
        {
            var random = new Random(steps[step]);
            now += random.Next(4) == 0 ? random.Next(0, 3000) : 0;
            if (step == snapshotAt)
            {
                cache = SnapshotAndRestore(cache);
            }

            if (random.Next(25) == 0)
            {
                // The leader's active expiry, proposed as one entry: replicas delete only what it names.
                var expired = cache.SampleExpiredKeys(now, (ulong)steps[step]);
                var write = WriteCommand.ExpireKeys(now, expired);
                cache.Apply(new LogIndex(++index), write.Encode(now));
                model.Execute(write.Invocation, index, now);
                continue;
            }

            string[] argv = RandomCommand(random, now);
            var parsed = CommandParser.Parse(now, argv);
            string text = string.Join(' ', argv);
            Assert.False(parsed.IsError, text + " -> " + parsed.Error);
            if (random.Next(12) == 0 || batch.Count > 0)
            {
                // A MULTI/EXEC batch of a few commands, applied as one entry.
                batch.Add((parsed.Invocation!, text));
                if (batch.Count < 3)
                {
                    continue;
                }

                var write = WriteCommand.Batch(batch.Select(item => item.Call));
                var real = cache.Apply(new LogIndex(++index), write.Encode(now)).Reply!;
                var expected = model.Execute(write.Invocation, index, now);
                Assert.True(expected.Equals(real), $"batch {string.Join("; ", batch.Select(item => item.Text))}: model {expected}, real {real}");
                batch.Clear();
                continue;
            }

            Reply actual;
            Reply wanted;
            if (parsed.IsWrite)
            {
                actual = cache.Apply(new LogIndex(++index), parsed.Write!.Encode(now)).Reply!;
                wanted = model.Execute(parsed.Write.Invocation, index, now);
            }
            else
            {
                actual = cache.Read(parsed.Read!, now);
                wanted = model.Execute(parsed.Read!.Invocation, 0, now);
            }

            Assert.True(wanted.Equals(actual), $"step {step} at {now}: {text}: model {wanted}, real {actual}");
            if (random.Next(10) == 0)
            {
                CompareWholeKeyspace(cache, model, now);
            }
        }

        cache.AssertInvariants();
        CompareWholeKeyspace(cache, model, now);
        Assert.Equal(model.Visible(now), Visible(cache, now));
    }

    private static IEnumerable<string> Visible(CacheStateMachine cache, long now) => cache.Dump()
        .Where(key => key.ExpiresAtUnixMs == 0 || key.ExpiresAtUnixMs > now)
        .Select(key => key.Describe(false))
        .Order(StringComparer.Ordinal);

    // KEYS, SCAN (walked to the end with a small COUNT) and RANDOMKEY answer in their own order: compare as sets.
    private static void CompareWholeKeyspace(CacheStateMachine cache, ReferenceModel model, long now)
    {
        var expected = model.VisibleKeys(now).Order(StringComparer.Ordinal).ToArray();
        var keys = cache.Read(CommandParser.Parse(now, "KEYS", "*").Read!, now).Items.Select(item => Encoding.Latin1.GetString(item.Bulk!));
        Assert.Equal(expected, keys.Order(StringComparer.Ordinal));

        var scanned = new List<string>();
        string cursor = "0";
        do
        {
            var reply = cache.Read(CommandParser.Parse(now, "SCAN", cursor, "COUNT", "2").Read!, now);
            cursor = Encoding.ASCII.GetString(reply.Items[0].Bulk!);
            scanned.AddRange(reply.Items[1].Items.Select(item => Encoding.Latin1.GetString(item.Bulk!)));
        }
        while (cursor != "0");
        Assert.Equal(expected, scanned.Order(StringComparer.Ordinal));

        var hashes = cache.Read(CommandParser.Parse(now, "SCAN", "0", "COUNT", "100", "TYPE", "hash", "MATCH", "[a-c]").Read!, now);
        Assert.Equal(expected.Where(key => key is "a" or "b" or "c" && model.IsHash(key)), hashes.Items[1].Items.Select(item => Encoding.Latin1.GetString(item.Bulk!)).Order(StringComparer.Ordinal));

        var random = cache.Read(CommandParser.Parse(now, "RANDOMKEY").Read!, now);
        Assert.Equal(expected.Length == 0, random.Kind == ReplyKind.Null);
        Assert.True(random.Kind == ReplyKind.Null || expected.Contains(Encoding.Latin1.GetString(random.Bulk!)));
    }

    internal static CacheStateMachine SnapshotAndRestore(CacheStateMachine cache)
    {
        var stream = new MemoryStream();
        using (var snapshot = cache.BeginSnapshot())
        {
            snapshot.WriteTo(stream);
        }

        var restored = new CacheStateMachine();
        restored.Restore(new MemoryStream(stream.ToArray()));
        Assert.Equal(cache.Dump().Select(key => key.Describe(true)), restored.Dump().Select(key => key.Describe(true)));
        Assert.Equal(cache.UsedMemoryBytes, restored.UsedMemoryBytes);
        Assert.Equal(cache.LastLogTimeUnixMs, restored.LastLogTimeUnixMs);
        Assert.Equal(cache.AppliedIndex, restored.AppliedIndex);
        restored.AssertInvariants();
        return restored;
    }
}
