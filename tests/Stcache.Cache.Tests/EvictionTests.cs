using System.Text;
using Stcache.Cache;
using Stcache.Raft;

namespace Stcache.Cache.Tests;

public sealed class EvictionTests
{
    private const long Limit = 64 * 1024;

    private static byte[] B(string text) => Encoding.UTF8.GetBytes(text);

    [Fact]
    public void NoEvictionRefusesWritesOverTheLimitAndChangesNothing()
    {
        var r = new CommandRunner();
        r.ApplyWrite(WriteCommand.MemoryPolicy(Limit, EvictionPolicy.NoEviction));
        string value = new('v', 200);
        int written = 0;
        while (r.Text("SET", "k" + written, value) == "+OK")
        {
            written++;
            Assert.True(r.Cache.UsedMemoryBytes <= Limit + CacheStateMachine.KeyOverheadBytes + 10 + value.Length);
        }

        Assert.True(written > 100);
        var before = r.Cache.Dump().Select(key => key.Describe(true)).ToArray();
        long used = r.Cache.UsedMemoryBytes;
        Assert.Equal("-OOM command not allowed when used memory > 'maxmemory'.", r.Text("SET", "another", "x"));
        Assert.Equal("-OOM command not allowed when used memory > 'maxmemory'.", r.Text("HSET", "h", "f", "v"));
        Assert.Equal("-OOM command not allowed when used memory > 'maxmemory'.", r.Run("SET", "k1", "smaller").ToString());
        Assert.Equal(before, r.Cache.Dump().Select(key => key.Describe(true)));
        Assert.Equal(used, r.Cache.UsedMemoryBytes);

        // Deletes and expiries still run, and make room.
        Assert.Equal(":2", r.Text("DEL", "k0", "k1"));
        Assert.Equal("+OK", r.Text("SET", "another", "x"));
        r.Cache.AssertInvariants();
    }

    [Theory]
    [InlineData(EvictionPolicy.AllKeysLru)]
    [InlineData(EvictionPolicy.AllKeysLfu)]
    [InlineData(EvictionPolicy.AllKeysRandom)]
    [InlineData(EvictionPolicy.VolatileLru)]
    [InlineData(EvictionPolicy.VolatileLfu)]
    [InlineData(EvictionPolicy.VolatileRandom)]
    [InlineData(EvictionPolicy.VolatileTtl)]
    public void EvictionKeepsTheLimitAndEveryReplicaEvictsTheSameKeys(EvictionPolicy policy)
    {
        var leader = new CacheStateMachine();
        var follower = new CacheStateMachine();
        long now = 1_700_000_000_000;
        ulong index = 0;
        var random = new Random(42);
        long largestWrite = 0;

        void Apply(WriteCommand write)
        {
            byte[] entry = write.Encode(now);
            var a = leader.Apply(new LogIndex(++index), entry);
            var b = follower.Apply(new LogIndex(index), entry);
            Assert.Equal(a.Reply, b.Reply);
        }

        Apply(WriteCommand.MemoryPolicy(Limit, policy));
        for (int i = 0; i < 3000; i++)
        {
            now += random.Next(0, 50);
            string key = "key" + random.Next(0, 2000);
            string value = new('x', random.Next(10, 300));
            string[] argv = random.Next(2) == 0
                ? ["SET", key, value, "EX", random.Next(100, 10_000).ToString(System.Globalization.CultureInfo.InvariantCulture)]
                : ["SET", key, value];
            largestWrite = Math.Max(largestWrite, CacheStateMachine.KeyOverheadBytes + key.Length + value.Length);
            var reply = leader.Apply(new LogIndex(++index), CommandParser.Parse(now, argv).Write!.Encode(now)).Reply!;
            follower.Apply(new LogIndex(index), CommandParser.Parse(now, argv).Write!.Encode(now));
            Assert.True(reply.Equals(Reply.Ok) || (policy.IsVolatileOnly() && reply.Text == RedisErrors.OutOfMemory), reply.ToString());
            Assert.True(leader.UsedMemoryBytes <= Limit + largestWrite, $"used {leader.UsedMemoryBytes} over {Limit} + {largestWrite}");

            if (i % 50 == 0)
            {
                // Reads on any node reach the state through an access report.
                Apply(WriteCommand.Access(Enumerable.Range(0, 20).Select(hot => B("key" + hot))));
            }

            if (i == 1500)
            {
                follower = ModelPropertyTests.SnapshotAndRestore(follower);
            }
        }

        Assert.True(leader.EvictedKeys > 100, $"evicted {leader.EvictedKeys}");
        Assert.Equal(leader.Dump().Select(key => key.Describe(true)), follower.Dump().Select(key => key.Describe(true)));
        Assert.Equal(leader.UsedMemoryBytes, follower.UsedMemoryBytes);
        leader.AssertInvariants();
        follower.AssertInvariants();
    }

    [Fact]
    public void VolatilePoliciesEvictOnlyKeysWithAnExpiryAndOtherwiseRefuse()
    {
        var r = new CommandRunner();
        r.ApplyWrite(WriteCommand.MemoryPolicy(Limit, EvictionPolicy.VolatileTtl));
        string value = new('v', 200);
        for (int i = 0; i < 100; i++)
        {
            Assert.Equal("+OK", r.Text("SET", "ttl" + i, value, "EX", (1000 - i).ToString(System.Globalization.CultureInfo.InvariantCulture)));
        }

        int persistent = 0;
        while (r.Text("SET", "p" + persistent, value) == "+OK")
        {
            persistent++;
        }

        // Every key with an expiry went first (shortest TTL first), then writes were refused.
        Assert.Equal(":0", r.Text("EXISTS", "ttl99"));
        Assert.Equal(persistent, r.Cache.Dump().Count(key => key.ExpiresAtUnixMs == 0));
        Assert.Equal(0, r.Cache.Dump().Count(key => key.ExpiresAtUnixMs != 0));
    }

    [Fact]
    public void LruKeepsKeysThatReadsReported()
    {
        var r = new CommandRunner();
        r.ApplyWrite(WriteCommand.MemoryPolicy(Limit, EvictionPolicy.AllKeysLru));
        string value = new('v', 200);
        for (int i = 0; i < 2000; i++)
        {
            r.NowUnixMs += 1000;
            Assert.Equal("+OK", r.Text("SET", "k" + i, value));
            if (i % 10 == 0)
            {
                // Keys k0..k19 are read on some node; the leader proposes the report.
                var recorder = r.Cache.AccessRecorder;
                for (int hot = 0; hot < 20; hot++)
                {
                    r.Cache.Read(CommandParser.Parse(r.NowUnixMs, "GET", "k" + hot).Read!, r.NowUnixMs);
                }

                r.ApplyWrite(WriteCommand.Access(recorder.Drain()));
            }
        }

        int hotLeft = Enumerable.Range(0, 20).Count(hot => r.Text("EXISTS", "k" + hot) == ":1");
        int coldLeft = Enumerable.Range(20, 200).Count(cold => r.Text("EXISTS", "k" + cold) == ":1");
        Assert.True(hotLeft >= 18, $"hot keys left: {hotLeft}");
        Assert.True(coldLeft <= 5, $"old cold keys left: {coldLeft}");
    }

    [Fact]
    public void LeaderChosenVictimsAreDeletedOnlyIfUnchanged()
    {
        var r = new CommandRunner();
        for (int i = 0; i < 50; i++)
        {
            r.Text("SET", "k" + i, "value");
        }

        var victims = r.Cache.ChooseEvictionVictims(r.Cache.UsedMemoryBytes - 500, seed: 7, maxVictims: 10);
        Assert.NotEmpty(victims);
        string rewritten = Encoding.UTF8.GetString(victims[0].Key);
        r.Text("SET", rewritten, "new");
        Assert.Equal(":" + (victims.Count - 1), r.ApplyWrite(WriteCommand.Evict(victims)).ToString());
        Assert.Equal("\"new\"", r.Text("GET", rewritten));
    }

    [Fact]
    public void ActiveExpirySamplingIsBoundedAndFindsExpiredKeys()
    {
        var r = new CommandRunner();
        for (int i = 0; i < 1000; i++)
        {
            r.Text("SET", "k" + i, "v", "PX", "100");
        }

        r.NowUnixMs += 200;
        var expired = r.Cache.SampleExpiredKeys(r.NowUnixMs, seed: 1, maxExamined: 200);
        Assert.InRange(expired.Count, 100, 200);
        Assert.Equal(":" + expired.Count, r.ApplyWrite(WriteCommand.ExpireKeys(r.NowUnixMs, expired)).ToString());
        Assert.Equal(1000 - expired.Count, r.Cache.Count);
        Assert.Empty(r.Cache.SampleExpiredKeys(r.NowUnixMs - 1000, seed: 2));
    }
}

public sealed class SnapshotFuzzTests
{
    [Fact]
    public void CorruptSnapshotsFailCleanlyAndKeepTheState()
    {
        var r = new CommandRunner();
        r.Text("SET", "s", "value", "EX", "100");
        r.Text("HSET", "h", "f1", "v1", "f2", "v2");
        r.Text("SET", "n", "1");
        var stream = new MemoryStream();
        using (var snapshot = r.Cache.BeginSnapshot())
        {
            snapshot.WriteTo(stream);
        }

        byte[] good = stream.ToArray();
        var random = new Random(1234);
        var target = new CacheStateMachine();
        target.Apply(new LogIndex(1), CacheCommand.Set("keep", "x"u8.ToArray()).Encode());
        int rejected = 0;
        for (int trial = 0; trial < 3000; trial++)
        {
            byte[] bad = (byte[])good.Clone();
            int flips = random.Next(1, 4);
            for (int i = 0; i < flips; i++)
            {
                bad[random.Next(bad.Length)] = (byte)random.Next(256);
            }

            int length = random.Next(4) == 0 ? random.Next(bad.Length) : bad.Length;
            try
            {
                var probe = new CacheStateMachine();
                probe.Restore(new MemoryStream(bad, 0, length));
                probe.AssertInvariants();
            }
            catch (InvalidDataException)
            {
                rejected++;
            }

            Assert.Throws<InvalidDataException>(() => target.Restore(new MemoryStream(bad, 0, Math.Min(length, 10))));
        }

        Assert.True(rejected > 1000, $"rejected {rejected}");
        Assert.True(target.TryGet("keep", out _));
    }
}
