using System.Text;
using Stcache.Cache;

namespace Stcache.Cache.Tests;

public sealed class GlobAndParserTests
{
    [Theory]
    [InlineData("*", "anything", true)]
    [InlineData("h?llo", "hello", true)]
    [InlineData("h?llo", "hllo", false)]
    [InlineData("h*llo", "heeeello", true)]
    [InlineData("h[ae]llo", "hallo", true)]
    [InlineData("h[ae]llo", "hillo", false)]
    [InlineData("h[^e]llo", "hallo", true)]
    [InlineData("h[^e]llo", "hello", false)]
    [InlineData("h[a-b]llo", "hbllo", true)]
    [InlineData("h[b-a]llo", "hallo", true)]
    [InlineData("h\\*llo", "h*llo", true)]
    [InlineData("h\\*llo", "hello", false)]
    [InlineData("user:*:name", "user:42:name", true)]
    [InlineData("a*b*c", "aXbYc", true)]
    [InlineData("a*b*c", "aXbY", false)]
    [InlineData("abc[", "abcd", false)]
    [InlineData("ab[c", "abc", true)]
    [InlineData("a**", "a", true)]
    [InlineData("", "", true)]
    [InlineData("*", "", false)]
    public void GlobMatchesLikeRedisStringmatchlen(string pattern, string text, bool expected) =>
        Assert.Equal(expected, Glob.IsMatch(Encoding.UTF8.GetBytes(pattern), Encoding.UTF8.GetBytes(text)));

    [Fact]
    public void CommandNamesAndOptionsAreCaseInsensitive()
    {
        var r = new CommandRunner();
        Assert.Equal("+OK", r.Text("sEt", "k", "v", "ex", "10", "nx"));
        Assert.Equal(":10", r.Text("Ttl", "k"));
        Assert.True(CommandParser.IsKnown("hGetAll"u8));
        Assert.False(CommandParser.IsKnown("PING"u8));
    }

    [Fact]
    public void KeyCommandsReplyAsRedis()
    {
        var r = new CommandRunner();
        Assert.Equal("+OK", r.Text("SET", "a", "1"));
        Assert.Equal("+string", r.Text("TYPE", "a"));
        Assert.Equal(":1", r.Text("HSET", "h", "f", "v"));
        Assert.Equal("+hash", r.Text("TYPE", "h"));
        Assert.Equal(":3", r.Text("EXISTS", "a", "a", "h"));
        Assert.Equal(":1", r.Text("TOUCH", "a", "zz"));
        Assert.Equal(":1", r.Text("COPY", "h", "h2"));
        Assert.Equal(":0", r.Text("COPY", "h", "h2"));
        Assert.Equal("-ERR source and destination objects are the same", r.Text("COPY", "h", "h"));
        Assert.Equal("-ERR DB index is out of range", r.Text("COPY", "h", "x", "DB", "1"));
        Assert.Equal("-ERR syntax error", r.Text("COPY", "h", "x", "NOPE"));
        Assert.Equal(":1", r.Text("RENAMENX", "h2", "h3"));
        Assert.Equal(":0", r.Text("RENAMENX", "h3", "a"));
        Assert.Equal("+OK", r.Text("RENAME", "h3", "a"));
        Assert.Equal("+hash", r.Text("TYPE", "a"));
        Assert.Equal(":2", r.Text("DBSIZE"));
        Assert.Equal("[\"0\", [\"a\", \"h\"]]", SortScan(r.Run("SCAN", "0")));
        Assert.Equal("-ERR syntax error", r.Text("SCAN", "0", "COUNT", "0"));
        Assert.Equal("-ERR syntax error", r.Text("FLUSHDB", "NOW"));
        Assert.Equal("+OK", r.Text("FLUSHDB", "ASYNC"));
        Assert.Equal(":0", r.Text("DBSIZE"));
        Assert.Equal("(nil)", r.Text("RANDOMKEY"));
        Assert.Equal("[]", r.Text("KEYS", "*"));
        Assert.Equal("-ERR wrong number of arguments for 'hset' command", r.Text("HSET", "h", "f", "v", "g"));
        Assert.Equal("-ERR wrong number of arguments for 'dbsize' command", r.Text("DBSIZE", "x"));
    }

    [Fact]
    public void GetExAndSetOptionsFollowRedis()
    {
        var r = new CommandRunner();
        Assert.Equal("(nil)", r.Text("GETEX", "k", "EX", "10"));
        Assert.Equal("+OK", r.Text("SET", "k", "v"));
        Assert.Equal("\"v\"", r.Text("GETEX", "k", "PX", "2500"));
        Assert.Equal(":2500", r.Text("PTTL", "k"));
        Assert.Equal("+OK", r.Text("SET", "k", "w", "KEEPTTL"));
        Assert.Equal(":2500", r.Text("PTTL", "k"));
        Assert.Equal("+OK", r.Text("SET", "k", "w"));
        Assert.Equal(":-1", r.Text("PTTL", "k"));
        Assert.Equal("\"w\"", r.Text("GETEX", "k", "EXAT", "1"));
        Assert.Equal(":0", r.Text("EXISTS", "k"));
        Assert.Equal("-ERR syntax error", r.Text("GETEX", "k", "EX", "1", "PERSIST"));
        Assert.Equal("-ERR syntax error", r.Text("GETEX", "k", "NX"));
        Assert.Equal("-ERR syntax error", r.Text("SET", "k", "v", "KEEPTTL", "EX", "1"));
        Assert.Equal("-ERR invalid expire time in 'getex' command", r.Text("GETEX", "k", "EX", "0"));
        Assert.Equal("-ERR invalid expire time in 'expire' command", r.Text("EXPIRE", "k", "9223372036854775807"));
        Assert.Equal("+OK", r.Text("SETEX", "s", "5", "v"));
        Assert.Equal(":5000", r.Text("PTTL", "s"));
        Assert.Equal("+OK", r.Text("PSETEX", "s", "1200", "v"));
        Assert.Equal(":1", r.Text("TTL", "s"));
        Assert.Equal("-ERR offset is out of range", r.Text("SETRANGE", "s", "-1", "x"));
        Assert.Equal(":0", r.Text("SETRANGE", "empty", "3", ""));
        Assert.Equal(":0", r.Text("EXISTS", "empty"));
        Assert.Equal("\"\"", r.Text("GETRANGE", "missing", "0", "-1"));
        Assert.Equal("\"5\"", r.Text("INCRBYFLOAT", "fl", "5.0e0"));
        Assert.Equal("-ERR increment would produce NaN or Infinity", r.Text("INCRBYFLOAT", "fl", "inf"));
    }

    private static string SortScan(Reply reply) =>
        $"[{reply.Items[0]}, [{string.Join(", ", reply.Items[1].Items.Select(item => item.ToString()).Order(StringComparer.Ordinal))}]]";
}
