using Stcache.Cache;

namespace Stcache.Cache.Tests;

public sealed class KeyEntryTests
{
    private static byte[] Bytes(int length, byte seed) => Enumerable.Range(0, length).Select(i => (byte)(seed + (i * 7))).ToArray();

    // A string's key and value share one array behind a 7-bit-group key length: the lengths around each group's
    // edge, and an empty key and value.
    [Theory]
    [InlineData(0, 0)]
    [InlineData(1, 100)]
    [InlineData(11, 100)]
    [InlineData(127, 3)]
    [InlineData(128, 0)]
    [InlineData(16_383, 5)]
    [InlineData(16_384, 5)]
    [InlineData(2_097_152, 1)]
    public void A_string_entry_returns_its_key_and_value_and_is_found_by_its_key(int keyLength, int valueLength)
    {
        byte[] key = Bytes(keyLength, 3);
        byte[] value = Bytes(valueLength, 101);
        var entry = new KeyEntry(key, value);
        Assert.True(entry.IsString);
        Assert.Equal(key, entry.KeyArray());
        Assert.Equal(value, entry.TextArray());
        Assert.Equal(valueLength, entry.ValueBytes);

        var table = new KeyTable();
        table.Add(new KeyEntry(Bytes(keyLength + 1, 3), value));
        table.Add(entry);
        Assert.True(table.TryGetValue(key, out var found));
        Assert.Same(entry, found);
        Assert.False(table.TryAdd(new KeyEntry(key, Bytes(2, 9))));
    }

    [Fact]
    public void A_new_value_keeps_the_key_and_leaves_a_clone_taken_before_it_as_it_was()
    {
        byte[] key = Bytes(200, 1);
        var entry = new KeyEntry(key, "old"u8.ToArray()) { Version = 4, ExpiresAtUnixMs = 99 };
        var captured = entry.Clone(generation: 1);

        entry.SetValue("a longer new value"u8.ToArray());
        Assert.Equal(key, entry.KeyArray());
        Assert.Equal("a longer new value"u8.ToArray(), entry.TextArray());
        Assert.Equal("old"u8.ToArray(), captured.TextArray());
        Assert.Equal(key, captured.KeyArray());
        Assert.Equal((4UL, 99L, (byte)1), (captured.Version, captured.ExpiresAtUnixMs, captured.Generation));
    }

    [Fact]
    public void A_hash_entry_holds_its_key_and_a_copy_for_another_key_leaves_it()
    {
        var fields = new Dictionary<byte[], byte[]>(ByteStringComparer.Instance) { ["f"u8.ToArray()] = "v"u8.ToArray() };
        var entry = new KeyEntry("h1"u8, new HashValue(fields, 50));
        Assert.False(entry.IsString);
        Assert.Equal("h1"u8.ToArray(), entry.KeyArray());
        Assert.Equal(50, entry.ValueBytes);

        var moved = new KeyEntry("h2"u8, entry.CopyValue());
        Assert.Equal("h2"u8.ToArray(), moved.KeyArray());
        Assert.Equal("h1"u8.ToArray(), entry.KeyArray());
        moved.Hash.Fields.Clear();
        Assert.Single(entry.Hash.Fields);

        var clone = entry.Clone(generation: 2);
        Assert.Equal("h1"u8.ToArray(), clone.KeyArray());
        Assert.NotSame(entry.Hash, clone.Hash);

        // A string replaced by a hash and back keeps its key.
        var text = new KeyEntry("s"u8, "x"u8.ToArray());
        text.SetValue(new HashValue(new Dictionary<byte[], byte[]>(ByteStringComparer.Instance), 0));
        Assert.Equal("s"u8.ToArray(), text.KeyArray());
        text.SetValue("y"u8.ToArray());
        Assert.Equal("s"u8.ToArray(), text.KeyArray());
        Assert.Equal("y"u8.ToArray(), text.TextArray());
    }
}
