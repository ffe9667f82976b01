namespace Stcache.Cache.Tests;

/// <summary>
/// An HTTP API command is applied from its entry's bytes (<see cref="CacheCommand.TryRead"/>), not decoded into a
/// <see cref="CacheCommand"/>: the reader must accept exactly the entries <see cref="CacheCommand.TryDecode"/>
/// accepts, read the same fields from them, and refuse the rest with the same reason.
/// </summary>
public sealed class CacheCommandReadTests
{
    private const long Now = 1_700_000_000_000;

    public static TheoryData<CacheCommand> Commands => new()
    {
        CacheCommand.Set("k", "v"u8.ToArray()),
        CacheCommand.Set("k", ReadOnlyMemory<byte>.Empty),
        CacheCommand.Set("ключ/with spaces", new byte[300]) with { ExpiresAtUnixMs = Now + 5_000, LogTimeUnixMs = Now },
        CacheCommand.SetIfVersion("k", "v"u8.ToArray(), 0) with { LogTimeUnixMs = Now },
        CacheCommand.SetIfVersion("k", "v"u8.ToArray(), ulong.MaxValue),
        CacheCommand.SetIfValue("k", "new"u8.ToArray(), "old"u8.ToArray()) with { ExpiresAtUnixMs = 1 },
        CacheCommand.SetIfValue("k", "new"u8.ToArray(), ReadOnlyMemory<byte>.Empty),
        CacheCommand.Delete("k"),
        CacheCommand.Delete("k") with { Compare = CompareKind.Version, ExpectedVersion = 7, LogTimeUnixMs = Now },
        CacheCommand.Delete("k") with { Compare = CompareKind.Value, ExpectedValue = "x"u8.ToArray() },
    };

    [Theory]
    [MemberData(nameof(Commands))]
    public void ReadsWhatDecodeReads(CacheCommand command)
    {
        byte[] entry = command.Encode();
        Assert.True(CacheCommand.TryRead(entry, out var view, out string? error), error);
        Assert.True(CacheCommand.TryDecode(entry, out var decoded, out error), error);
        AssertSame(decoded!, view);
        Assert.Equal(command.Key, decoded!.Key);
        Assert.Equal(command.Value.ToArray(), view.Value.ToArray());
        Assert.Equal(command.ExpectedValue.ToArray(), view.ExpectedValue.ToArray());
    }

    /// <summary>Every truncation, an extra byte and every changed byte of several entries: the reader and the decoder
    /// agree on each (both refuse with the same reason, or both accept the same command).</summary>
    [Theory]
    [MemberData(nameof(Commands))]
    public void AgreesWithTheDecoderOnDamagedEntries(CacheCommand command)
    {
        byte[] entry = command.Encode();
        var variants = new List<byte[]>();
        for (int length = 0; length < entry.Length; length++)
        {
            variants.Add(entry[..length]);
        }

        variants.Add([.. entry, 0]);
        for (int i = 0; i < entry.Length; i++)
        {
            foreach (byte change in new byte[] { 0x01, 0x02, 0x80, 0xFF })
            {
                byte[] changed = (byte[])entry.Clone();
                changed[i] ^= change;
                variants.Add(changed);
            }
        }

        int accepted = 0, refused = 0;
        foreach (byte[] variant in variants)
        {
            bool read = CacheCommand.TryRead(variant, out var view, out string? readError);
            bool decodedOk = CacheCommand.TryDecode(variant, out var decoded, out string? decodeError);
            Assert.True(read == decodedOk, Convert.ToHexString(variant));
            Assert.Equal(decodeError, readError);
            if (read)
            {
                accepted++;
                AssertSame(decoded!, view);
            }
            else
            {
                refused++;
            }
        }

        Assert.True(accepted > 0 && refused > 0, $"{accepted} accepted, {refused} refused");
    }

    [Fact]
    public void RefusesAKeyThatIsNotUtf8()
    {
        byte[] entry = CacheCommand.Set("kk", "v"u8.ToArray()).Encode();
        entry[6] = 0xC3; // a lead byte followed by 'k': not a continuation
        Assert.False(CacheCommand.TryRead(entry, out _, out string? readError));
        Assert.False(CacheCommand.TryDecode(entry, out _, out string? decodeError));
        Assert.Equal("key is not valid utf-8", readError);
        Assert.Equal(decodeError, readError);
    }

    private static void AssertSame(CacheCommand decoded, CacheCommand.View view)
    {
        Assert.Equal(decoded.Kind, view.Kind);
        Assert.Equal(decoded.Compare, view.Compare);
        Assert.Equal(System.Text.Encoding.UTF8.GetBytes(decoded.Key), view.Key.ToArray());
        Assert.Equal(decoded.Value.ToArray(), view.Value.ToArray());
        Assert.Equal(decoded.ExpiresAtUnixMs, view.ExpiresAtUnixMs);
        Assert.Equal(decoded.LogTimeUnixMs, view.LogTimeUnixMs);
        Assert.Equal(decoded.ExpectedVersion, view.ExpectedVersion);
        Assert.Equal(decoded.ExpectedValue.ToArray(), view.ExpectedValue.ToArray());
    }
}
