using System.Buffers;
using System.Text;

namespace Stcache.Resp.Tests;

public sealed class ParserTests
{
    private static readonly RespLimits s_limits = new(1 << 20, 64L << 20);

    private static (ParseStatus Status, string[] Arguments, string? Error, long Consumed) Parse(string text, RespLimits? limits = null)
    {
        var input = new ReadOnlySequence<byte>(Encoding.Latin1.GetBytes(text));
        var status = RespParser.TryParse(input, limits ?? s_limits, out var consumed, out var arguments, out var error);
        return (status, arguments.Select(a => Encoding.Latin1.GetString(a)).ToArray(), error?.Message, input.Slice(input.Start, consumed).Length);
    }

    [Fact]
    public void MultibulkCommand()
    {
        var (status, arguments, _, consumed) = Parse("*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$0\r\n\r\nrest");
        Assert.Equal(ParseStatus.Complete, status);
        Assert.Equal(["SET", "k", ""], arguments);
        Assert.Equal(26, consumed);
    }

    [Fact]
    public void InlineCommandsWithQuotes()
    {
        Assert.Equal(["PING"], Parse("PING\r\n").Arguments);
        Assert.Equal(["set", "a b", "A\n", "it's"], Parse("set \"a b\" \"\\x41\\n\" 'it\\'s'\n").Arguments);
        Assert.Equal("Protocol error: unbalanced quotes in request", Parse("set \"a\n").Error);
        Assert.Equal("Protocol error: unbalanced quotes in request", Parse("set \"a\"b\n").Error);
    }

    [Fact]
    public void PartialInputNeedsMoreData()
    {
        foreach (string partial in new[] { "*", "*2", "*2\r", "*2\r\n$3\r\nGET\r\n", "*2\r\n$3\r\nGET\r\n$1\r\nk", "*1\r\n$3\r\nGET\r", "PING" })
        {
            Assert.Equal(ParseStatus.NeedMoreData, Parse(partial).Status);
        }
    }

    [Theory]
    [InlineData("*x\r\n", "Protocol error: invalid multibulk length")]
    [InlineData("*01\r\n", "Protocol error: invalid multibulk length")]
    [InlineData("*+1\r\n", "Protocol error: invalid multibulk length")]
    [InlineData("*2147483648\r\n", "Protocol error: invalid multibulk length")]
    [InlineData("*1\r\n:1\r\n", "Protocol error: expected '$', got ':'")]
    [InlineData("*1\r\n$-1\r\n", "Protocol error: invalid bulk length")]
    [InlineData("*1\r\n$1048577\r\n", "Protocol error: invalid bulk length")]
    public void MalformedInputGetsRedisErrorText(string input, string error)
    {
        var result = Parse(input);
        Assert.Equal(ParseStatus.Malformed, result.Status);
        Assert.Equal(error, result.Error);
    }

    [Fact]
    public void EmptyCommandsAreSkipped()
    {
        Assert.Equal((ParseStatus.Complete, 0, 4L), (Parse("*0\r\n").Status, Parse("*0\r\n").Arguments.Length, Parse("*0\r\n").Consumed));
        Assert.Equal(ParseStatus.Complete, Parse("*-1\r\n").Status);
        Assert.Empty(Parse("   \r\n").Arguments);
    }

    [Fact]
    public void LongLinesAreRefused()
    {
        string noNewline = new('a', RespLimits.InlineBytesMax + 1);
        Assert.Equal("Protocol error: too big inline request", Parse(noNewline).Error);
        Assert.Equal("Protocol error: too big mbulk count string", Parse("*" + new string('1', RespLimits.InlineBytesMax + 1)).Error);
        Assert.Equal("Protocol error: too big bulk count string", Parse("*1\r\n$" + new string('1', RespLimits.InlineBytesMax + 1)).Error);
    }

    [Fact]
    public void UnauthenticatedClientsGetSmallLimits()
    {
        var limits = new RespLimits(1 << 20, 64L << 20, authenticated: false);
        Assert.Equal("Protocol error: unauthenticated multibulk length", Parse("*11\r\n", limits).Error);
        Assert.Equal("Protocol error: unauthenticated bulk length", Parse("*1\r\n$16385\r\n", limits).Error);
        Assert.Equal(ParseStatus.NeedMoreData, Parse("*10\r\n$16384\r\n", limits).Status);
    }

    [Fact]
    public void QueryBufferLimitClosesWithoutReply()
    {
        var limits = new RespLimits(1 << 20, 100);
        var result = RespParser.TryParse(new ReadOnlySequence<byte>(Encoding.ASCII.GetBytes("*1\r\n$200\r\n" + new string('x', 150))), limits, out _, out _, out var error);
        Assert.Equal(ParseStatus.Malformed, result);
        Assert.False(error!.ReplyBeforeClose);
    }

    [Theory]
    [InlineData("0", true, 0L)]
    [InlineData("-1", true, -1L)]
    [InlineData("9223372036854775807", true, long.MaxValue)]
    [InlineData("-9223372036854775808", true, long.MinValue)]
    [InlineData("9223372036854775808", false, 0L)]
    [InlineData("-0", false, 0L)]
    [InlineData("007", false, 0L)]
    [InlineData(" 1", false, 0L)]
    [InlineData("", false, 0L)]
    public void IntegersAreStrict(string text, bool ok, long value)
    {
        Assert.Equal(ok, RespParser.TryParseInt64(text, out long parsed));
        Assert.Equal(value, parsed);
    }
}

public sealed class WriterTests
{
    private static string Write(int protocol, Action<RespWriter> write)
    {
        var buffer = new ArrayBufferWriter<byte>();
        var writer = new RespWriter(buffer) { Protocol = protocol };
        write(writer);
        return Encoding.UTF8.GetString(buffer.WrittenSpan);
    }

    [Fact]
    public void Resp2AndResp3Forms()
    {
        Assert.Equal("$-1\r\n", Write(2, w => w.Null()));
        Assert.Equal("_\r\n", Write(3, w => w.Null()));
        Assert.Equal("*-1\r\n", Write(2, w => w.NullArray()));
        Assert.Equal("*4\r\n", Write(2, w => w.Map(2)));
        Assert.Equal("%2\r\n", Write(3, w => w.Map(2)));
        Assert.Equal(":1\r\n", Write(2, w => w.Boolean(true)));
        Assert.Equal("#t\r\n", Write(3, w => w.Boolean(true)));
        Assert.Equal("$3\r\n1.5\r\n", Write(2, w => w.Double(1.5)));
        Assert.Equal(",1.5\r\n", Write(3, w => w.Double(1.5)));
        Assert.Equal(">3\r\n", Write(3, w => w.Push(3)));
        Assert.Equal("=6\r\ntxt:hi\r\n", Write(3, w => w.Verbatim("hi")));
    }

    [Fact]
    public void ScalarsAndErrors()
    {
        Assert.Equal("+OK\r\n:-42\r\n$5\r\nhello\r\n", Write(2, w =>
        {
            w.Ok();
            w.Integer(-42);
            w.Bulk("hello");
        }));
        Assert.Equal("-ERR syntax error\r\n", Write(2, w => w.Error("syntax error")));
        Assert.Equal("-NOAUTH Authentication required.\r\n", Write(2, w => w.CodedError("NOAUTH Authentication required.")));
        Assert.Equal("-ERR a b\r\n", Write(2, w => w.Error("a\r\nb"[..1] + " b")));
    }
}
