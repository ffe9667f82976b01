using Stcache.Raft;

namespace Stcache.Cache.Tests;

/// <summary>
/// A lone SET is applied from its entry's bytes (<see cref="WriteCommand.TryReadSet"/>), not decoded into a command:
/// the reader must agree with <see cref="WriteCommand.TryDecode"/> on every entry it accepts, and applying that way
/// must leave the same state and give the same reply as the decoding path.
/// </summary>
public sealed class SetEntryTests
{
    private const long Now = 1_700_000_000_000;

    public static TheoryData<string[]> Sets => new()
    {
        { ["SET", "k", "v"] },
        { ["SET", "k", ""] },
        { ["SET", "key with spaces", "value", "NX"] },
        { ["SET", "k", "v", "XX", "GET"] },
        { ["SET", "k", "v", "PX", "1500"] },
        { ["SET", "k", "v", "PXAT", "1"] },
        { ["SET", "k", "v", "KEEPTTL"] },
    };

    [Theory]
    [MemberData(nameof(Sets))]
    public void ReadsWhatDecodeReads(string[] argv)
    {
        byte[] entry = Parse(argv).Encode(Now);
        Assert.True(WriteCommand.TryReadSet(entry, out long time, out var flags, out long number, out var key, out var value));
        Assert.True(WriteCommand.TryDecode(entry, out var decoded, out long decodedTime, out _));
        var call = decoded!.Invocation;
        Assert.Equal(Op.Set, call.Op);
        Assert.Equal(decodedTime, time);
        Assert.Equal(call.Flags, flags);
        Assert.Equal(call.Number, number);
        Assert.Equal(call.Args[0], key.ToArray());
        Assert.Equal(call.Args[1], value.ToArray());
    }

    /// <summary><see cref="WriteCommand.EncodeSet"/> (a RESP plain SET's entry, made from the request's bytes) writes
    /// exactly the entry of the parsed command, and <see cref="WriteCommand.StampLogTime"/> only its log time.</summary>
    [Theory]
    [InlineData("k", "v")]
    [InlineData("k", "")]
    [InlineData("", "v")]
    [InlineData("", "")]
    [InlineData("key:000000001234", "a value of some length, with spaces\r\nand line ends")]
    public void EncodeSetWritesTheParsedSetsEntry(string key, string value)
    {
        byte[] entry = WriteCommand.EncodeSet(System.Text.Encoding.UTF8.GetBytes(key), System.Text.Encoding.UTF8.GetBytes(value), Now);
        Assert.Equal(Parse(["SET", key, value]).Encode(Now), entry);

        WriteCommand.StampLogTime(entry, Now + 7);
        Assert.Equal(Parse(["SET", key, value]).Encode(Now + 7), entry);
    }

    [Fact]
    public void EncodeSetKeepsEveryByteOfABinaryValue()
    {
        byte[] value = new byte[256];
        for (int i = 0; i < value.Length; i++)
        {
            value[i] = (byte)i;
        }

        byte[] entry = WriteCommand.EncodeSet([0x00, 0xFF], value, Now);
        Assert.Equal(new WriteCommand(new Invocation(Op.Set, OpFlags.None, 0, [[0x00, 0xFF], value])).Encode(Now), entry);
        Assert.True(WriteCommand.TryReadSet(entry, out _, out _, out _, out var key, out var read));
        Assert.Equal(new byte[] { 0x00, 0xFF }, key.ToArray());
        Assert.Equal(value, read.ToArray());
    }

    [Fact]
    public void RefusesEverythingButALoneSet()
    {
        foreach (var argv in new[] { new[] { "SETNX", "k", "v" }, ["MSET", "k", "v"], ["APPEND", "k", "v"], ["DEL", "k"] })
        {
            Assert.False(WriteCommand.TryReadSet(Parse(argv).Encode(Now), out _, out _, out _, out _, out _), argv[0]);
        }

        var batch = WriteCommand.Batch([Parse(["SET", "k", "v"]).Invocation]);
        Assert.False(WriteCommand.TryReadSet(batch.Encode(Now), out _, out _, out _, out _, out _));
        Assert.False(WriteCommand.TryReadSet(new CacheCommand { Kind = CommandKind.Set, Key = "k", Value = "v"u8.ToArray() }.Encode(0, Now), out _, out _, out _, out _, out _));
    }

    /// <summary>Every truncation, every extra byte and every changed byte of a SET entry: what the reader accepts,
    /// the decoder accepts as the same SET.</summary>
    [Fact]
    public void AcceptsNothingTheDecoderRefusesOrReadsOtherwise()
    {
        byte[] entry = Parse(["SET", "some-key", "some-value", "PX", "100"]).Encode(Now);
        var variants = new List<byte[]>();
        for (int length = 0; length < entry.Length; length++)
        {
            variants.Add(entry[..length]);
        }

        variants.Add([.. entry, 0]);
        for (int i = 0; i < entry.Length; i++)
        {
            foreach (byte change in new byte[] { 0x01, 0x80, 0xFF })
            {
                byte[] changed = (byte[])entry.Clone();
                changed[i] ^= change;
                variants.Add(changed);
            }
        }

        int accepted = 0;
        foreach (byte[] variant in variants)
        {
            if (!WriteCommand.TryReadSet(variant, out long time, out var flags, out long number, out var key, out var value))
            {
                continue;
            }

            accepted++;
            Assert.True(WriteCommand.TryDecode(variant, out var decoded, out long decodedTime, out _), Convert.ToHexString(variant));
            var call = decoded!.Invocation;
            Assert.Equal(Op.Set, call.Op);
            Assert.Equal(2, call.Args.Length);
            Assert.Equal((decodedTime, call.Flags, call.Number), (time, flags, number));
            Assert.Equal(call.Args[0], key.ToArray());
            Assert.Equal(call.Args[1], value.ToArray());
        }

        // The log time's, the flags', the number's and the key's and value's own bytes may change freely.
        Assert.True(accepted > 100, $"only {accepted} variants read");
    }

    /// <summary>Random SETs (NX, XX, GET, KEEPTTL, expiries past and future, a small memory limit) applied as lone
    /// entries to one state and each wrapped in a one-command batch (decoded) to another: the same replies, and the
    /// same state, snapshot for snapshot.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void AppliesAsTheDecodingPathDoes(int seed)
    {
        var random = new Random(seed);
        var direct = new CacheStateMachine();
        var decoded = new CacheStateMachine();
        foreach (var machine in new[] { direct, decoded })
        {
            var policy = WriteCommand.MemoryPolicy(4_000, EvictionPolicy.AllKeysLru);
            machine.Apply(new LogIndex(1), policy.Encode(Now));
        }

        long now = Now;
        for (ulong index = 2; index < 2_000; index++)
        {
            now += random.Next(0, 50);
            var argv = new List<string> { "SET", "k" + random.Next(40), new string('v', random.Next(0, 120)) };
            switch (random.Next(6))
            {
                case 0: argv.Add("NX"); break;
                case 1: argv.Add("XX"); break;
                case 2: argv.AddRange(["PX", random.Next(1, 400).ToString(System.Globalization.CultureInfo.InvariantCulture)]); break;
                case 3: argv.AddRange(["PXAT", (now - random.Next(0, 100)).ToString(System.Globalization.CultureInfo.InvariantCulture)]); break;
                case 4: argv.Add("KEEPTTL"); break;
            }

            if (random.Next(4) == 0)
            {
                argv.Add("GET");
            }

            var write = CommandParser.Parse(now, [.. argv]).Write!;
            byte[] entry = write.Encode(now);
            Assert.True(WriteCommand.TryReadSet(entry, out _, out _, out _, out _, out _));
            var one = direct.Apply(new LogIndex(index), entry);
            var batched = decoded.Apply(new LogIndex(index), WriteCommand.Batch([write.Invocation]).Encode(now));
            Assert.Equal(ApplyStatus.Ok, one.Status);
            Assert.Equal(ApplyStatus.Ok, batched.Status);
            Assert.Equal(batched.Reply!.Items[0].ToString(), one.Reply!.ToString());
        }

        Assert.Equal(decoded.Count, direct.Count);
        Assert.Equal(decoded.UsedMemoryBytes, direct.UsedMemoryBytes);
        Assert.Equal(decoded.EvictedKeys, direct.EvictedKeys);
        Assert.True(direct.EvictedKeys > 0, "the memory limit never evicted");
        Assert.Equal(Snapshot(decoded), Snapshot(direct));
    }

    /// <summary>A SET without options is applied on the key's slot (no handle): over absent keys, strings, hashes and
    /// keys with a live or past expiry, under an LFU limit that evicts, with a snapshot open while half of the
    /// entries apply, it leaves what the decoding path leaves: replies, memory, evictions, the snapshot taken at
    /// its index, and the final state.</summary>
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void PlainSetAppliesAsTheDecodingPathDoes(int seed)
    {
        var random = new Random(seed);
        var direct = new CacheStateMachine();
        var decoded = new CacheStateMachine();
        foreach (var machine in new[] { direct, decoded })
        {
            var policy = WriteCommand.MemoryPolicy(3_500, EvictionPolicy.AllKeysLfu);
            machine.Apply(new LogIndex(1), policy.Encode(Now));
        }

        long now = Now;
        CacheSnapshot? directSnapshot = null, decodedSnapshot = null;
        byte[]? expected = null;
        for (ulong index = 2; index < 3_000; index++)
        {
            now += random.Next(0, 30_000);
            if (index == 1_000)
            {
                expected = Snapshot(decoded);
                directSnapshot = direct.BeginSnapshot();
                decodedSnapshot = decoded.BeginSnapshot();
            }

            string key = "k" + random.Next(30);
            string[] other = random.Next(5) switch
            {
                0 => ["HSET", key, "f" + random.Next(4), new string('h', random.Next(0, 60))],
                1 => ["SET", key, "v", "PX", random.Next(1, 60_000).ToString(System.Globalization.CultureInfo.InvariantCulture)],
                2 => ["DEL", key],
                _ => [],
            };
            if (other.Length > 0)
            {
                // Not a plain SET: the same entry to both (a wrong type or a past expiry is what the plain SET meets next).
                byte[] same = CommandParser.Parse(now, other).Write!.Encode(now);
                Assert.Equal(decoded.Apply(new LogIndex(index), same).Reply!.ToString(), direct.Apply(new LogIndex(index), same).Reply!.ToString());
                continue;
            }

            var write = CommandParser.Parse(now, "SET", key, new string('v', random.Next(0, 200))).Write!;
            byte[] entry = write.Encode(now);
            Assert.True(WriteCommand.TryReadSet(entry, out _, out var flags, out _, out _, out _));
            Assert.Equal(OpFlags.None, flags);
            var one = direct.Apply(new LogIndex(index), entry);
            var batched = decoded.Apply(new LogIndex(index), WriteCommand.Batch([write.Invocation]).Encode(now));
            Assert.Equal(batched.Reply!.Items[0].ToString(), one.Reply!.ToString());
            Assert.Equal(decoded.UsedMemoryBytes, direct.UsedMemoryBytes);
        }

        Assert.Equal(expected, Write(decodedSnapshot!));
        Assert.Equal(expected, Write(directSnapshot!));
        Assert.Equal(decoded.Count, direct.Count);
        Assert.Equal(decoded.EvictedKeys, direct.EvictedKeys);
        Assert.True(direct.EvictedKeys > 0, "the memory limit never evicted");
        Assert.True(direct.ExpiredKeys > 0, "no plain SET met a key past its expiry");
        Assert.Equal(Snapshot(decoded), Snapshot(direct));
        direct.AssertInvariants();
    }

    private static byte[] Write(CacheSnapshot snapshot)
    {
        var stream = new MemoryStream();
        using (snapshot)
        {
            snapshot.WriteTo(stream);
        }

        return stream.ToArray();
    }

    private static WriteCommand Parse(string[] argv) => CommandParser.Parse(Now, argv).Write!;

    private static byte[] Snapshot(CacheStateMachine machine)
    {
        var stream = new MemoryStream();
        using (var snapshot = machine.BeginSnapshot())
        {
            snapshot.WriteTo(stream);
        }

        return stream.ToArray();
    }
}
