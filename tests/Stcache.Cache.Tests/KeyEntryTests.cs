using Stcache.Cache;

namespace Stcache.Cache.Tests;

public sealed class KeyEntryTests
{
    private static byte[] Bytes(int length, byte seed) => Enumerable.Range(0, length).Select(i => (byte)(seed + (i * 7))).ToArray();

    private static KeyEntry AddString(KeyTable table, byte[] key, byte[] value, ulong version = 1)
    {
        int position = table.TryAdd(key, new KeySlot { Data = KeyData.Compose(key, value), Version = version, VolatileSlot = -1 });
        Assert.True(position >= 0);
        return new KeyEntry(table, position);
    }

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
        var table = new KeyTable();
        AddString(table, Bytes(keyLength + 1, 3), value);
        var entry = AddString(table, key, value);
        Assert.True(entry.IsString);
        Assert.Equal(key, entry.KeyArray());
        Assert.Equal(value, entry.TextArray());
        Assert.Equal(valueLength, entry.ValueBytes);

        Assert.True(table.TryGetValue(key, out var found));
        Assert.Equal(entry.Slot, found.Slot);
        Assert.Equal(-1, table.TryAdd(key, new KeySlot { Data = KeyData.Compose(key, Bytes(2, 9)), VolatileSlot = -1 }));
        Assert.Equal(2, table.Count);
    }

    [Fact]
    public void A_new_value_keeps_the_key_and_leaves_a_capture_taken_before_it_as_it_was()
    {
        byte[] key = Bytes(200, 1);
        var table = new KeyTable();
        var entry = AddString(table, key, "old"u8.ToArray(), version: 4);
        entry.ExpiresAtUnixMs = 99;
        var captured = table.BeginCapture();

        entry.SetValue("a longer new value"u8.ToArray());
        entry.Version = 5;
        Assert.Equal(key, entry.KeyArray());
        Assert.Equal("a longer new value"u8.ToArray(), entry.TextArray());
        var old = KeyTable.At(captured, entry.Slot);
        Assert.Equal("old"u8.ToArray(), KeyData.TextOf(old.Data).ToArray());
        Assert.Equal(key, KeyData.KeyOf(old.Data).ToArray());
        Assert.Equal((4UL, 99L), (old.Version, old.ExpiresAtUnixMs));
        table.EndCapture();

        // Without a capture open the chunk is written in place.
        var again = table.BeginCapture();
        table.EndCapture();
        entry.Version = 6;
        Assert.Equal(6UL, KeyTable.At(again, entry.Slot).Version);
    }

    [Fact]
    public void A_hash_entry_holds_its_key_and_a_copy_for_another_key_leaves_it()
    {
        var table = new KeyTable();
        var fields = new Dictionary<byte[], byte[]>(ByteStringComparer.Instance) { ["f"u8.ToArray()] = "v"u8.ToArray() };
        int first = table.TryAdd("h1"u8, new KeySlot { Data = KeyData.Compose("h1"u8, new HashValue(fields, 50)), VolatileSlot = -1 });
        var entry = new KeyEntry(table, first);
        Assert.False(entry.IsString);
        Assert.Equal("h1"u8.ToArray(), entry.KeyArray());
        Assert.Equal(50, entry.ValueBytes);

        int second = table.TryAdd("h2"u8, new KeySlot { Data = KeyData.Compose("h2"u8, entry.CopyValue()), VolatileSlot = -1 });
        var moved = new KeyEntry(table, second);
        Assert.Equal("h2"u8.ToArray(), moved.KeyArray());
        Assert.Equal("h1"u8.ToArray(), entry.KeyArray());
        moved.Hash.Fields.Clear();
        Assert.Single(entry.Hash.Fields);

        // A string replaced by a hash and back keeps its key.
        var text = AddString(table, "s"u8.ToArray(), "x"u8.ToArray());
        text.SetValue(new HashValue(new Dictionary<byte[], byte[]>(ByteStringComparer.Instance), 0));
        Assert.Equal("s"u8.ToArray(), text.KeyArray());
        text.SetValue("y"u8.ToArray());
        Assert.Equal("s"u8.ToArray(), text.KeyArray());
        Assert.Equal("y"u8.ToArray(), text.TextArray());
    }

    [Fact]
    public void The_version_and_the_lfu_counter_share_a_field_without_touching_each_other()
    {
        var slot = new KeySlot { Version = KeySlot.VersionMax, Frequency = 255 };
        Assert.Equal((KeySlot.VersionMax, (byte)255), (slot.Version, slot.Frequency));
        slot.Frequency = 7;
        Assert.Equal((KeySlot.VersionMax, (byte)7), (slot.Version, slot.Frequency));
        slot.Version = 42;
        Assert.Equal((42UL, (byte)7), (slot.Version, slot.Frequency));
        Assert.Throws<InvalidOperationException>(() => slot.Version = KeySlot.VersionMax + 1);
        Assert.Equal((42UL, (byte)7), (slot.Version, slot.Frequency));
    }

    [Fact]
    public void A_handle_taken_before_a_removal_refuses_to_be_used()
    {
        var table = new KeyTable();
        var a = AddString(table, "a"u8.ToArray(), "1"u8.ToArray());
        var b = AddString(table, "b"u8.ToArray(), "2"u8.ToArray());
        Assert.True(table.RemoveAt(a.Slot));
        Assert.Throws<InvalidOperationException>(() => b.Version);
        Assert.True(table.TryGetValue("b"u8, out var found));
        Assert.Equal(0, found.Slot);
        Assert.Equal("2"u8.ToArray(), found.TextArray());
    }

    // The index against a model: random adds and removes (swap-remove order), through growth and shrinking, with
    // a capture open part of the time that must keep its view.
    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    public void Adds_and_removes_keep_the_order_and_the_index_like_a_list_model(int seed)
    {
        var random = new Random(seed);
        var table = new KeyTable();
        var model = new List<byte[]>();
        KeySlot[]?[]? captured = null;
        List<byte[]>? capturedModel = null;
        for (int step = 0; step < 20_000; step++)
        {
            // Grow to a few thousand keys, then shrink to nothing, twice.
            bool growing = (step / 5_000) % 2 == 0;
            if (model.Count > 0 && random.Next(100) < (growing ? 30 : 70))
            {
                int position = random.Next(model.Count);
                table.RemoveAt(position);
                model[position] = model[^1];
                model.RemoveAt(model.Count - 1);
            }
            else
            {
                byte[] key = BitConverter.GetBytes(random.Next(6_000));
                int position = table.TryAdd(key, new KeySlot { Data = KeyData.Compose(key, key), Version = (ulong)step + 1, VolatileSlot = -1 });
                bool present = model.Any(k => k.AsSpan().SequenceEqual(key));
                Assert.Equal(present, position < 0);
                if (!present)
                {
                    Assert.Equal(model.Count, position);
                    model.Add(key);
                }
            }

            if (step % 997 == 0)
            {
                if (captured is not null)
                {
                    for (int i = 0; i < capturedModel!.Count; i++)
                    {
                        Assert.Equal(capturedModel[i], KeyData.KeyOf(KeyTable.At(captured, i).Data).ToArray());
                    }

                    table.EndCapture();
                    captured = null;
                }
                else
                {
                    captured = table.BeginCapture();
                    capturedModel = [.. model];
                }
            }

            if (step % 101 == 0)
            {
                Assert.Equal(model.Count, table.Count);
                for (int i = 0; i < model.Count; i++)
                {
                    Assert.Equal(i, table.Find(model[i]));
                    Assert.Equal(model[i], KeyData.TextOf(table.At(i).Data).ToArray());
                }

                Assert.Equal(-1, table.Find(BitConverter.GetBytes(6_000 + step)));
            }
        }

        Assert.True(table.BucketCount <= 64 || table.Count * 8 >= table.BucketCount);
    }
}
