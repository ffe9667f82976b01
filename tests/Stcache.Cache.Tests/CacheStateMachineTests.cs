using System.Text;
using Stcache.Raft;

namespace Stcache.Cache.Tests;

public sealed class CacheStateMachineTests
{
    private static byte[] B(string s) => Encoding.UTF8.GetBytes(s);

    [Fact]
    public void CommandRoundTripsEveryField()
    {
        var command = CacheCommand.SetIfValue("k,é 🙂", new byte[] { 0, 255, 10, 44 }, B("old")) with { ExpiresAtUnixMs = 1234, LogTimeUnixMs = 1000 };
        Assert.True(CacheCommand.TryDecode(command.Encode(), out var decoded, out string? error), error);
        Assert.Equal(1000, decoded!.LogTimeUnixMs);
        Assert.Equal(command.Key, decoded!.Key);
        Assert.Equal(command.Value.ToArray(), decoded.Value.ToArray());
        Assert.Equal(command.ExpectedValue.ToArray(), decoded.ExpectedValue.ToArray());
        Assert.Equal(1234, decoded.ExpiresAtUnixMs);
        Assert.Equal(CompareKind.Value, decoded.Compare);

        var byVersion = CacheCommand.SetIfVersion("a", B("v"), 42);
        Assert.True(CacheCommand.TryDecode(byVersion.Encode(), out decoded, out _));
        Assert.Equal(42UL, decoded!.ExpectedVersion);
    }

    [Fact]
    public void DecodeRejectsEveryTruncationAndGarbage()
    {
        byte[] encoded = CacheCommand.SetIfVersion("key", B("value"), 7).Encode();
        for (int length = 0; length < encoded.Length; length++)
        {
            Assert.False(CacheCommand.TryDecode(encoded.AsMemory(0, length), out _, out _));
        }

        var random = new Random(1);
        for (int i = 0; i < 10_000; i++)
        {
            var garbage = new byte[random.Next(0, 40)];
            random.NextBytes(garbage);
            CacheCommand.TryDecode(garbage, out _, out _); // must not throw
        }

        Assert.False(CacheCommand.TryDecode(encoded.Append((byte)0).ToArray(), out _, out _));
    }

    [Fact]
    public void ApplySetDeleteAndVersions()
    {
        var cache = new CacheStateMachine();
        var r1 = cache.Apply(new LogIndex(1), CacheCommand.Set("a", B("1")).Encode());
        Assert.Equal(new ApplyResult(ApplyStatus.Ok, 1, false), r1);
        var r2 = cache.Apply(new LogIndex(2), CacheCommand.Set("a", B("2")).Encode());
        Assert.Equal(new ApplyResult(ApplyStatus.Ok, 2, true), r2);
        Assert.True(cache.TryGet("a", out var entry));
        Assert.Equal(2UL, entry.Version);
        Assert.Equal(B("2"), entry.Value);

        cache.MarkApplied(new LogIndex(3));
        var r4 = cache.Apply(new LogIndex(4), CacheCommand.Delete("a").Encode());
        Assert.Equal(new ApplyResult(ApplyStatus.Ok, 2, true), r4);
        Assert.False(cache.TryGet("a", out _));
        var r5 = cache.Apply(new LogIndex(5), CacheCommand.Delete("a").Encode());
        Assert.Equal(new ApplyResult(ApplyStatus.Ok, 0, false), r5);
        Assert.Equal(new LogIndex(5), cache.AppliedIndex);
    }

    [Fact]
    public void CompareAndSetByVersionAndByValue()
    {
        var cache = new CacheStateMachine();
        Assert.True(cache.Apply(new LogIndex(1), CacheCommand.SetIfVersion("k", B("x"), 0).Encode()).Succeeded);
        Assert.Equal(ApplyStatus.CompareFailed, cache.Apply(new LogIndex(2), CacheCommand.SetIfVersion("k", B("y"), 0).Encode()).Status);
        Assert.True(cache.Apply(new LogIndex(3), CacheCommand.SetIfVersion("k", B("y"), 1).Encode()).Succeeded);
        Assert.Equal(ApplyStatus.CompareFailed, cache.Apply(new LogIndex(4), CacheCommand.SetIfValue("k", B("z"), B("x")).Encode()).Status);
        Assert.True(cache.Apply(new LogIndex(5), CacheCommand.SetIfValue("k", B("z"), B("y")).Encode()).Succeeded);
        Assert.Equal(ApplyStatus.CompareFailed, cache.Apply(new LogIndex(6), CacheCommand.SetIfValue("missing", B("z"), B("")).Encode()).Status);
        cache.TryGet("k", out var entry);
        Assert.Equal(B("z"), entry.Value);
        Assert.Equal(5UL, entry.Version);
    }

    [Fact]
    public void InvalidEntryChangesNothingButIndex()
    {
        var cache = new CacheStateMachine();
        var result = cache.Apply(new LogIndex(1), new byte[] { 9, 9, 9 });
        Assert.Equal(ApplyStatus.Invalid, result.Status);
        Assert.Equal(0, cache.Count);
        Assert.Equal(new LogIndex(1), cache.AppliedIndex);
        Assert.Throws<InvariantViolationException>(() => cache.MarkApplied(new LogIndex(1)));
    }

    [Fact]
    public void SnapshotIsPointInTimeWhileWritesContinue()
    {
        var cache = new CacheStateMachine();
        ulong index = 0;
        for (int i = 0; i < 1000; i++)
        {
            cache.Apply(new LogIndex(++index), CacheCommand.Set($"k{i}", B($"v{i}")).Encode());
        }

        var expected = Enumerable.Range(0, 1000).ToDictionary(i => $"k{i}", i => $"v{i}");
        using var snapshot = cache.BeginSnapshot();
        Assert.Equal(new LogIndex(1000), snapshot.Index);

        // Writes after the snapshot point: overwrite, delete, create.
        for (int i = 0; i < 1000; i += 3)
        {
            cache.Apply(new LogIndex(++index), CacheCommand.Set($"k{i}", B("new")).Encode());
        }

        for (int i = 1; i < 1000; i += 7)
        {
            cache.Apply(new LogIndex(++index), CacheCommand.Delete($"k{i}").Encode());
        }

        cache.Apply(new LogIndex(++index), CacheCommand.Set("fresh", B("x")).Encode());

        var stream = new MemoryStream();
        snapshot.WriteTo(stream);
        snapshot.Dispose();

        var restored = new CacheStateMachine();
        stream.Position = 0;
        restored.Restore(stream);
        Assert.Equal(new LogIndex(1000), restored.AppliedIndex);
        Assert.Equal(expected.Count, restored.Count);
        foreach (var (key, value) in expected)
        {
            Assert.True(restored.TryGet(key, out var entry), key);
            Assert.Equal(value, Encoding.UTF8.GetString(entry.Value));
        }

        Assert.False(restored.TryGet("fresh", out _));
    }

    [Fact]
    public async Task SnapshotWrittenConcurrentlyWithApplierIsConsistent()
    {
        var cache = new CacheStateMachine();
        ulong index = 0;
        for (int i = 0; i < 20_000; i++)
        {
            cache.Apply(new LogIndex(++index), CacheCommand.Set($"k{i}", B($"{i}")).Encode());
        }

        using var snapshot = cache.BeginSnapshot();
        var stream = new MemoryStream();
        var writer = Task.Run(() => snapshot.WriteTo(stream));
        var random = new Random(3);
        while (!writer.IsCompleted)
        {
            int k = random.Next(0, 25_000);
            var command = random.Next(3) == 0 ? CacheCommand.Delete($"k{k}") : CacheCommand.Set($"k{k}", B("later"));
            cache.Apply(new LogIndex(++index), command.Encode());
        }

        await writer;
        stream.Position = 0;
        var restored = new CacheStateMachine();
        restored.Restore(stream);
        Assert.Equal(20_000, restored.Count);
        for (int i = 0; i < 20_000; i++)
        {
            Assert.True(restored.TryGet($"k{i}", out var entry));
            Assert.Equal($"{i}", Encoding.UTF8.GetString(entry.Value));
        }
    }

    [Fact]
    public void RestoreRejectsCorruptDataAndKeepsState()
    {
        var cache = new CacheStateMachine();
        cache.Apply(new LogIndex(1), CacheCommand.Set("a", B("1")).Encode());
        var stream = new MemoryStream();
        using (var snapshot = cache.BeginSnapshot())
        {
            snapshot.WriteTo(stream);
        }

        byte[] bytes = stream.ToArray();
        var target = new CacheStateMachine();
        target.Apply(new LogIndex(1), CacheCommand.Set("keep", B("me")).Encode());
        for (int length = 0; length < bytes.Length; length++)
        {
            Assert.Throws<InvalidDataException>(() => target.Restore(new MemoryStream(bytes, 0, length)));
        }

        Assert.True(target.TryGet("keep", out _));
        target.Restore(new MemoryStream(bytes));
        Assert.True(target.TryGet("a", out _));
        Assert.False(target.TryGet("keep", out _));
    }
}
