using System.Runtime.InteropServices;

namespace Stcache.Cache.Tests;

/// <summary>
/// An HTTP PUT is laid out as its entry before its body is read (<see cref="CacheCommand.SetFrame"/>) and stamped by
/// the leader: stamped, a frame must be byte for byte the entry <see cref="CacheCommand.Encode(long, long)"/> makes
/// for the same command, and unstamped the command a follower forwards (<see cref="CacheCommand.Encode()"/>).
/// </summary>
public sealed class CommandFrameTests
{
    private const long Now = 1_700_000_000_000;

    public static TheoryData<CacheCommand> Sets => new()
    {
        CacheCommand.Set("k", "v"u8.ToArray()),
        CacheCommand.Set("k", ReadOnlyMemory<byte>.Empty),
        CacheCommand.Set("ключ/with spaces", new byte[300]) with { ExpiresAtUnixMs = Now + 5_000 },
        CacheCommand.Set(new string('x', CacheCommand.KeyBytesMax), "v"u8.ToArray()) with { ExpiresAtUnixMs = 1 },
        CacheCommand.SetIfVersion("k", "v"u8.ToArray(), 0),
        CacheCommand.SetIfVersion("k", "v"u8.ToArray(), ulong.MaxValue) with { ExpiresAtUnixMs = Now + 1 },
        CacheCommand.SetIfValue("k", "new"u8.ToArray(), "old"u8.ToArray()) with { ExpiresAtUnixMs = Now + 60_000 },
        CacheCommand.SetIfValue("k", "new"u8.ToArray(), ReadOnlyMemory<byte>.Empty),
    };

    [Theory]
    [MemberData(nameof(Sets))]
    public void A_stamped_frame_is_the_commands_entry(CacheCommand command)
    {
        var frame = FrameOf(command);
        byte[] entry = frame.Stamp(command.ExpiresAtUnixMs, Now);

        Assert.Equal(command.Encode(command.ExpiresAtUnixMs, Now), entry);
        Assert.True(CacheCommand.TryRead(entry, out var view, out string? error), error);
        Assert.Equal(Now, view.LogTimeUnixMs);
        Assert.Equal(command.ExpiresAtUnixMs, view.ExpiresAtUnixMs);
        Assert.Equal(command.Value.ToArray(), view.Value.ToArray());
    }

    [Theory]
    [MemberData(nameof(Sets))]
    public void Unstamped_a_frame_is_the_command_a_follower_forwards(CacheCommand command)
    {
        var frame = FrameOf(command);
        byte[] unstamped = (command with { ExpiresAtUnixMs = 0 }).Encode();

        Assert.Equal(unstamped, frame.Unstamped());
        frame.Stamp(command.ExpiresAtUnixMs, Now);
        Assert.Equal(unstamped, frame.Unstamped()); // the stamp is left out, whatever it is
    }

    /// <summary>Before its stamp a frame holds zeros where the log time (and expiry) go, under their flags: should it
    /// ever reach a log, every node refuses it and changes nothing.</summary>
    [Theory]
    [MemberData(nameof(Sets))]
    public void A_frame_never_stamped_is_no_entry(CacheCommand command)
    {
        var frame = FrameOf(command);
        Assert.True(MemoryMarshal.TryGetArray<byte>(frame.Value, out var segment));
        byte[] unstamped = segment.Array!;

        Assert.False(CacheCommand.TryRead(unstamped, out _, out string? error));
        Assert.Equal(command.ExpiresAtUnixMs != 0 ? "bad expiry" : "bad log time", error);
        Assert.Same(unstamped, frame.Stamp(command.ExpiresAtUnixMs, Now)); // stamped in place: the frame is the entry
        Assert.True(CacheCommand.TryRead(unstamped, out _, out error), error);
    }

    [Fact]
    public void A_copy_is_stamped_apart_from_its_original()
    {
        var frame = FrameOf(CacheCommand.Set("k", "v"u8.ToArray()) with { ExpiresAtUnixMs = 1 });
        byte[] first = frame.Stamp(Now + 10, Now);
        byte[] kept = (byte[])first.Clone();
        byte[] second = frame.Copy().Stamp(Now + 20, Now + 1);

        Assert.NotSame(first, second);
        Assert.Equal(kept, first);
        Assert.Equal(CacheCommand.Set("k", "v"u8.ToArray()).Encode(Now + 20, Now + 1), second);
    }

    [Fact]
    public void The_stamp_must_match_the_frame()
    {
        var lasting = FrameOf(CacheCommand.Set("k", "v"u8.ToArray()));
        var expiring = FrameOf(CacheCommand.Set("k", "v"u8.ToArray()) with { ExpiresAtUnixMs = 1 });

        Assert.Throws<ArgumentOutOfRangeException>(() => lasting.Stamp(Now + 1, Now));
        Assert.Throws<ArgumentOutOfRangeException>(() => expiring.Stamp(0, Now));
        Assert.Throws<ArgumentOutOfRangeException>(() => lasting.Stamp(0, 0));
    }

    [Fact]
    public void A_frame_is_refused_for_what_validation_refuses()
    {
        Assert.Equal("key must not be empty", CacheCommand.Validate(CommandKind.Set, "", 1, 0));
        Assert.Equal("key too large", CacheCommand.Validate(CommandKind.Set, new string('é', CacheCommand.KeyBytesMax / 2 + 1), 1, 0));
        Assert.Equal("value too large", CacheCommand.Validate(CommandKind.Set, "k", CacheCommand.ValueBytesMax + 1, 0));
        Assert.Null(CacheCommand.Validate(CommandKind.Set, new string('x', CacheCommand.KeyBytesMax), CacheCommand.ValueBytesMax, 0));
        Assert.Throws<ArgumentException>(() => CacheCommand.SetFrame("", 1, false, CompareKind.None, 0, []));
        Assert.Throws<ArgumentException>(() => CacheCommand.SetFrame(new string('x', CacheCommand.KeyBytesMax + 1), 1, false, CompareKind.None, 0, []));
    }

    /// <summary>The command's parts validate as the command does (the HTTP PUT checks its parts).</summary>
    [Theory]
    [MemberData(nameof(Sets))]
    public void Parts_validate_as_the_command_does(CacheCommand command)
    {
        Assert.Equal(command.Validate(), CacheCommand.Validate(command.Kind, command.Key, command.Value.Length,
            command.ExpectedValue.Length, command.ExpiresAtUnixMs, command.LogTimeUnixMs));
        var bad = command with { Key = "" };
        Assert.Equal(bad.Validate(), CacheCommand.Validate(bad.Kind, bad.Key, bad.Value.Length, bad.ExpectedValue.Length));
    }

    private static CacheCommand.Frame FrameOf(CacheCommand command)
    {
        var frame = CacheCommand.SetFrame(command.Key, command.Value.Length, command.ExpiresAtUnixMs != 0, command.Compare,
            command.ExpectedVersion, command.ExpectedValue.Span);
        command.Value.Span.CopyTo(frame.Value.Span);
        return frame;
    }
}
