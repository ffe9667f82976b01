using System.Text;
using Stcache.Cache;
using Stcache.Server;

namespace Stcache.Integration.Tests;

/// <summary>
/// A RESP write is parsed once on the leader: the front end's parse at its log time is reused for the entry when the
/// entry is made at that same log time, and parsed again at any other (a relative expiry counts from the entry's time).
/// </summary>
public sealed class WriteRequestParseTests
{
    private static byte[][] Argv(params string[] arguments) => [.. arguments.Select(a => Encoding.UTF8.GetBytes(a))];

    private static WriteCommand Parse(byte[][] argv, long now) =>
        CommandParser.Parse([.. argv.Select(a => (ReadOnlyMemory<byte>)a)], now).Write!;

    [Fact]
    public void The_entry_is_the_same_whether_the_front_ends_parse_is_reused_or_not()
    {
        var argv = Argv("SET", "k", "v", "EX", "10");
        const long now = 1_800_000_000_000;
        var reused = WriteRequest.Redis(argv, Parse(argv, now), now).ToEntry(now);
        var fresh = WriteRequest.Redis(argv).ToEntry(now);
        Assert.Null(reused.Error);
        Assert.Equal(fresh.Entry, reused.Entry);
    }

    [Fact]
    public void A_parse_made_at_another_time_is_not_reused()
    {
        var argv = Argv("SET", "k", "v", "PX", "100");
        const long parsedAt = 1_800_000_000_000;
        var stale = Parse(argv, parsedAt);
        var entry = WriteRequest.Redis(argv, stale, parsedAt).ToEntry(parsedAt + 5).Entry!;
        Assert.Equal(WriteRequest.Redis(argv).ToEntry(parsedAt + 5).Entry, entry);
        Assert.NotEqual(stale.Encode(parsedAt + 5), entry); // the expiry counts from the entry's log time
        Assert.True(WriteCommand.TryDecode(entry, out var decoded, out long logTime, out _));
        Assert.Equal(parsedAt + 5, logTime);
        Assert.Equal(parsedAt + 105, decoded!.Invocation.Number);
    }

    [Fact]
    public void Invalid_and_oversized_writes_are_still_refused()
    {
        Assert.NotNull(WriteRequest.Redis(Argv("SET", "k")).ToEntry(1).Error);
        Assert.Equal(RedisErrors.StringTooLong, WriteRequest.Redis(Argv("SET", "k", "0123456789")).Validate(valueBytesMax: 4));
        Assert.Null(WriteRequest.Redis(Argv("SET", "k", "0123")).Validate(valueBytesMax: 4));
    }
}
