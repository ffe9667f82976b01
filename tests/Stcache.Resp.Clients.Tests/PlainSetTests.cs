using System.Buffers;
using System.Globalization;
using System.Text;
using Stcache.Cache;
using Stcache.Server;
using Stcache.Server.Resp;

namespace Stcache.Resp.Clients.Tests;

/// <summary>
/// A plain SET (key and value only) is made into its log entry straight from the request's bytes
/// (<see cref="RespConnection.TryMatchSet"/>, <see cref="WriteRequest.PlainSet"/>): that entry, its limits and the
/// arguments it is forwarded or queued as must be exactly the general path's (<see cref="RespParser"/>, then
/// <see cref="CommandParser"/>, then <see cref="WriteRequest.ToEntry"/>).
/// </summary>
public sealed class PlainSetTests
{
    private const long BulkBytesMax = 1024;
    private const long LogTime = 1_700_000_000_123;

    public static TheoryData<byte[], byte[]> KeysAndValues()
    {
        var random = new Random(12);
        var data = new TheoryData<byte[], byte[]>
        {
            { "k"u8.ToArray(), "v"u8.ToArray() },
            { "k"u8.ToArray(), [] },
            { [], "value of an empty key"u8.ToArray() },
            { [], [] },
            { "binary"u8.ToArray(), [0x00, 0xFF, (byte)'\r', (byte)'\n', (byte)'$', (byte)'*', 0x80] },
            { "key\r\nwith\r\nlines"u8.ToArray(), "*3\r\n$3\r\nSET\r\n"u8.ToArray() },
            { new byte[BulkBytesMax], Filled((int)BulkBytesMax, 0x5A) },
            { "key:000000001234"u8.ToArray(), Filled(100, (byte)'x') },
        };
        for (int i = 0; i < 20; i++)
        {
            byte[] key = new byte[random.Next(0, 40)];
            byte[] value = new byte[random.Next(0, (int)BulkBytesMax + 1)];
            random.NextBytes(key);
            random.NextBytes(value);
            data.Add(key, value);
        }

        return data;
    }

    [Theory]
    [MemberData(nameof(KeysAndValues))]
    public void ThePlainSetEntryIsTheGeneralPathsEntry(byte[] key, byte[] value)
    {
        byte[] request = Set("SET", key, value);
        Assert.True(RespConnection.TryMatchSet(request, BulkBytesMax, out var keyRange, out var valueRange, out int length));
        Assert.Equal(request.Length, length);
        var plain = WriteRequest.PlainSet(request.AsSpan()[keyRange], request.AsSpan()[valueRange]);

        byte[][] argv = ParseGenerally(request);
        var parsed = CommandParser.ParseOwned(argv, LogTime);
        Assert.True(parsed.IsWrite);
        var general = WriteRequest.Redis(argv, parsed.Write, LogTime);
        var reparsed = WriteRequest.Redis(ParseGenerally(request)); // as the leader gets it when forwarded

        var (entry, error) = plain.ToEntry(LogTime);
        Assert.Null(error);
        Assert.Equal(general.ToEntry(LogTime).Entry, entry);
        Assert.Equal(reparsed.ToEntry(LogTime).Entry, entry);

        // The apply side reads it as the lone SET it is.
        Assert.True(WriteCommand.TryReadSet(entry, out long time, out var flags, out long number, out var readKey, out var readValue));
        Assert.Equal(LogTime, time);
        Assert.Equal(OpFlags.None, flags);
        Assert.Equal(0, number);
        Assert.Equal(key, readKey.ToArray());
        Assert.Equal(value, readValue.ToArray());

        // The same limits, and the same arguments when forwarded or queued.
        foreach (int valueBytesMax in new[] { (int)BulkBytesMax, Math.Max(key.Length, value.Length), Math.Max(key.Length, value.Length) - 1 })
        {
            Assert.Equal(general.Validate(valueBytesMax), plain.Validate(valueBytesMax));
        }

        Assert.Equal(general.Argv, plain.Argv);
        Assert.Equal(WriteRequest.EncodeAll([general]), WriteRequest.EncodeAll([plain]));
    }

    [Fact]
    public void AnEntryMadeAgainIsACopyAndTheFirstStaysAsProposed()
    {
        var plain = WriteRequest.PlainSet("k"u8, "v"u8);
        byte[] first = plain.ToEntry(LogTime).Entry!;
        byte[] proposed = (byte[])first.Clone();

        byte[] second = plain.ToEntry(LogTime + 5).Entry!;

        Assert.NotSame(first, second);
        Assert.Equal(proposed, first);
        Assert.Equal(WriteRequest.Redis(["SET"u8.ToArray(), "k"u8.ToArray(), "v"u8.ToArray()]).ToEntry(LogTime + 5).Entry, second);
    }

    [Fact]
    public void TheNameMayBeInAnyCase()
    {
        foreach (string name in new[] { "set", "Set", "sEt", "SET" })
        {
            byte[] request = Set(name, "k"u8.ToArray(), "v"u8.ToArray());
            Assert.True(RespConnection.TryMatchSet(request, BulkBytesMax, out _, out _, out int length), name);
            Assert.Equal(request.Length, length);
        }
    }

    [Theory]
    [InlineData("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n*2\r\n$3\r\nGET\r\n", true)]
    [InlineData("*3\r\n$3\r\nset\r\n$0\r\n\r\n$0\r\n\r\n", true)]
    [InlineData("*3\r\n$3\r\nSeT\r\n$4\r\nk\r\nk\r\n$10\r\n0123456789\r\n", true)]
    [InlineData("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv", false)]
    [InlineData("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r", false)]
    [InlineData("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\n", false)]
    [InlineData("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n", false)]
    [InlineData("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$01\r\nv\r\n", false)]
    [InlineData("*3\r\n$3\r\nSET\r\n$01\r\nk\r\n$1\r\nv\r\n", false)]
    [InlineData("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$-1\r\n", false)]
    [InlineData("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nvX\r\n", false)]
    [InlineData("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n:1\r\n", false)]
    [InlineData("*3\r\n$3\r\nSEX\r\n$1\r\nk\r\n$1\r\nv\r\n", false)]
    [InlineData("*3\r\n$4\r\nSETX\r\n$1\r\nk\r\n$1\r\nv\r\n", false)]
    [InlineData("*3\r\n$5\r\nSETNX\r\n$1\r\nk\r\n$1\r\nv\r\n", false)]
    [InlineData("*4\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nNX\r\n", false)]
    [InlineData("*5\r\n$3\r\nSET\r\n$1\r\nk\r\n$1\r\nv\r\n$2\r\nPX\r\n$3\r\n100\r\n", false)]
    [InlineData("*2\r\n$3\r\nSET\r\n$1\r\nk\r\n", false)]
    [InlineData("SET k v\r\n", false)]
    public void TheSetShortcutMatchesOnlyAWholePlainSet(string text, bool matches)
    {
        byte[] request = Encoding.ASCII.GetBytes(text);
        bool matched = RespConnection.TryMatchSet(request, BulkBytesMax, out var key, out var value, out int length);
        Assert.Equal(matches, matched);
        if (matched)
        {
            // The general parser reads the same command over the same bytes.
            var input = new ReadOnlySequence<byte>(request);
            Assert.Equal(ParseStatus.Complete, RespParser.TryParse(input, RespLimits.For((int)BulkBytesMax), out var consumed, out var argv, out _));
            Assert.Equal(input.Slice(0, consumed).Length, length);
            Assert.Equal(3, argv.Length);
            Assert.Equal(argv[1], request[key]);
            Assert.Equal(argv[2], request[value]);
        }
    }

    [Fact]
    public void ABulkOverTheLimitIsLeftToTheGeneralParser()
    {
        Assert.True(RespConnection.TryMatchSet(Set("SET", "k"u8.ToArray(), new byte[BulkBytesMax]), BulkBytesMax, out _, out _, out _));
        Assert.False(RespConnection.TryMatchSet(Set("SET", "k"u8.ToArray(), new byte[BulkBytesMax + 1]), BulkBytesMax, out _, out _, out _));
        Assert.False(RespConnection.TryMatchSet(Set("SET", new byte[BulkBytesMax + 1], "v"u8.ToArray()), BulkBytesMax, out _, out _, out _));
    }

    private static byte[][] ParseGenerally(byte[] request)
    {
        var status = RespParser.TryParse(new ReadOnlySequence<byte>(request), RespLimits.For((int)BulkBytesMax), out _, out var argv, out var error);
        Assert.Equal(ParseStatus.Complete, status);
        Assert.Null(error);
        return argv;
    }

    private static byte[] Set(string name, byte[] key, byte[] value)
    {
        var bytes = new List<byte>();
        void Bulk(byte[] data)
        {
            bytes.AddRange(Encoding.ASCII.GetBytes("$" + data.Length.ToString(CultureInfo.InvariantCulture) + "\r\n"));
            bytes.AddRange(data);
            bytes.AddRange("\r\n"u8.ToArray());
        }

        bytes.AddRange("*3\r\n"u8.ToArray());
        Bulk(Encoding.ASCII.GetBytes(name));
        Bulk(key);
        Bulk(value);
        return [.. bytes];
    }

    private static byte[] Filled(int length, byte value)
    {
        byte[] bytes = new byte[length];
        Array.Fill(bytes, value);
        return bytes;
    }
}
