using System.Text;
using Stcache.Cache;
using Stcache.Server;

namespace Stcache.Integration.Tests;

/// <summary>
/// An HTTP PUT reaches <see cref="CommandService"/> as a frame (its entry laid out, its body read into it) instead of
/// a <see cref="CacheCommand"/>: the leader must make the same entry from it, forward the same bytes, and never change
/// an entry it already handed out when it makes another (a retry after leadership moved).
/// </summary>
public sealed class WriteRequestFrameTests
{
    private const long Now = 1_800_000_000_000;

    public static TheoryData<CacheCommand, long> Puts => new()
    {
        { CacheCommand.Set("k", "value"u8.ToArray()), 0 },
        { CacheCommand.Set("k", "value"u8.ToArray()), 5_000 },
        { CacheCommand.Set("ключ", new byte[1000]), 0 },
        { CacheCommand.Set("k", ReadOnlyMemory<byte>.Empty), 1_000 },
        { CacheCommand.SetIfVersion("k", "v"u8.ToArray(), 42), 0 },
        { CacheCommand.SetIfValue("k", "new"u8.ToArray(), "old"u8.ToArray()), 60_000 },
    };

    [Theory]
    [MemberData(nameof(Puts))]
    public void The_entry_is_the_one_the_command_makes(CacheCommand command, long ttlMs)
    {
        var (entry, error) = FrameOf(command, ttlMs).ToEntry(Now);
        Assert.Null(error);
        Assert.Equal(RequestOf(command, ttlMs).ToEntry(Now).Entry, entry);
    }

    [Theory]
    [MemberData(nameof(Puts))]
    public void A_second_entry_leaves_the_first_as_it_was(CacheCommand command, long ttlMs)
    {
        var request = FrameOf(command, ttlMs);
        byte[] first = request.ToEntry(Now).Entry!;
        byte[] kept = (byte[])first.Clone();
        byte[] second = request.ToEntry(Now + 7).Entry!;

        Assert.NotSame(first, second);
        Assert.Equal(kept, first);
        Assert.Equal(RequestOf(command, ttlMs).ToEntry(Now + 7).Entry, second);
    }

    [Theory]
    [MemberData(nameof(Puts))]
    public void Forwarded_it_is_the_command(CacheCommand command, long ttlMs)
    {
        var request = FrameOf(command, ttlMs);
        byte[] expected = WriteRequest.EncodeAll([RequestOf(command, ttlMs)]);
        Assert.Equal(expected, WriteRequest.EncodeAll([request]));

        _ = request.ToEntry(Now); // stamped on this node first, then forwarded: the leader stamps with its own clock
        Assert.Equal(expected, WriteRequest.EncodeAll([request]));
        var decoded = WriteRequest.DecodeAll(WriteRequest.EncodeAll([request]), out string? problem);
        Assert.Null(problem);
        Assert.Equal(RequestOf(command, ttlMs).ToEntry(Now + 1).Entry, Assert.Single(decoded!).ToEntry(Now + 1).Entry);
    }

    [Fact]
    public void The_value_limit_is_checked_and_the_ttl_must_fit_the_frame()
    {
        var request = FrameOf(CacheCommand.Set("k", "0123456789"u8.ToArray()), 0);
        Assert.Equal("value larger than 4 bytes", request.Validate(valueBytesMax: 4));
        Assert.Null(request.Validate(valueBytesMax: 10));

        var lasting = CacheCommand.SetFrame("k", 1, expires: false, CompareKind.None, 0, []);
        var expiring = CacheCommand.SetFrame("k", 1, expires: true, CompareKind.None, 0, []);
        Assert.Throws<ArgumentException>(() => WriteRequest.Of(lasting, 1_000));
        Assert.Throws<ArgumentException>(() => WriteRequest.Of(expiring, 0));
        Assert.Throws<ArgumentException>(() => WriteRequest.Of(default(CacheCommand.Frame), 0));
    }

    [Fact]
    public void A_key_is_laid_out_as_utf8()
    {
        byte[] entry = FrameOf(CacheCommand.Set("ключ", "v"u8.ToArray()), 0).ToEntry(Now).Entry!;
        Assert.True(CacheCommand.TryRead(entry, out var view, out string? error), error);
        Assert.Equal(Encoding.UTF8.GetBytes("ключ"), view.Key.ToArray());
    }

    private static WriteRequest FrameOf(CacheCommand command, long ttlMs)
    {
        var frame = CacheCommand.SetFrame(command.Key, command.Value.Length, ttlMs > 0, command.Compare, command.ExpectedVersion,
            command.ExpectedValue.Span);
        command.Value.Span.CopyTo(frame.Value.Span);
        return WriteRequest.Of(frame, ttlMs);
    }

    private static WriteRequest RequestOf(CacheCommand command, long ttlMs) =>
        ttlMs > 0 ? WriteRequest.Of(command, ttlMs) : WriteRequest.Of(command);
}
