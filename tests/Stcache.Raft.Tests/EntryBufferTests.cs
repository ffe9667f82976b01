using Stcache.Raft;

namespace Stcache.Raft.Tests;

/// <summary>
/// The log's entry buffer (chunks of <see cref="EntryBuffer.ChunkSize"/>, freed chunks kept for reuse) against a
/// plain list: random appends, compactions, truncations and clears, with every entry, copy and view compared after
/// each step. A reused chunk must never show an entry that left the log.
/// </summary>
public sealed class EntryBufferTests
{
    private static Entry Make(ulong n) => new(new Term(1), new LogIndex(n), EntryType.Normal, BitConverter.GetBytes(n));

    [Theory]
    [InlineData(1)]
    [InlineData(2)]
    [InlineData(3)]
    [InlineData(4)]
    public void MatchesAListThroughAppendsCompactionsAndTruncations(int seed)
    {
        Console.WriteLine($"seed {seed}");
        var random = new Random(seed);
        var buffer = new EntryBuffer();
        var model = new List<Entry>();
        ulong next = 1;
        for (int step = 0; step < 400; step++)
        {
            int action = random.Next(100);
            if (action < 70)
            {
                int adds = random.Next(1, EntryBuffer.ChunkSize / 2);
                for (int i = 0; i < adds; i++)
                {
                    var entry = Make(next++);
                    buffer.Add(entry);
                    model.Add(entry);
                }
            }
            else if (action < 88 && model.Count > 0)
            {
                int drop = random.Next(0, model.Count + 1);
                buffer.DropFront(drop);
                model.RemoveRange(0, drop);
            }
            else if (action < 98 && model.Count > 0)
            {
                int keep = random.Next(0, model.Count + 1);
                buffer.TruncateTo(keep);
                model.RemoveRange(keep, model.Count - keep);
            }
            else
            {
                buffer.Clear();
                model.Clear();
            }

            Assert.Equal(model.Count, buffer.Count);
            for (int i = 0; i < model.Count; i++)
            {
                Assert.Equal(model[i].Index, buffer[i].Index);
                Assert.Equal(model[i].Index.Value, BitConverter.ToUInt64(buffer[i].Data.Span));
            }

            if (model.Count > 0)
            {
                int start = random.Next(model.Count);
                int count = random.Next(0, model.Count - start + 1);
                Assert.Equal(model.GetRange(start, count).Select(e => e.Index), buffer.Copy(start, count).Select(e => e.Index));
                Assert.Equal(model.GetRange(start, count).Select(e => e.Index), buffer.View(start, count).Select(e => e.Index));
            }

            var (inUse, spare) = buffer.Chunks;
            Assert.True(inUse <= (model.Count / EntryBuffer.ChunkSize) + 2, $"step {step}: {inUse} chunks for {model.Count} entries");
            Assert.True(spare <= 4);
        }
    }

    [Fact]
    public void ACompactedLogReusesItsChunksAndClearsThem()
    {
        var buffer = new EntryBuffer();
        for (ulong n = 1; n <= 3 * EntryBuffer.ChunkSize; n++)
        {
            buffer.Add(Make(n));
        }

        var view = buffer.View(0, 10);
        buffer.DropFront(2 * EntryBuffer.ChunkSize + 5);
        Assert.Equal((1, 2), buffer.Chunks);
        Assert.Throws<InvalidOperationException>(() => view[0]);

        // Appends fill the freed chunks first; every slot read back is the entry written there, never an old one.
        ulong first = (3 * EntryBuffer.ChunkSize) + 1;
        for (ulong n = first; n < first + (2 * EntryBuffer.ChunkSize); n++)
        {
            buffer.Add(Make(n));
        }

        Assert.Equal((3, 0), buffer.Chunks);
        Assert.Equal((2 * EntryBuffer.ChunkSize) + 6, (int)buffer[0].Index.Value);
        Assert.Equal(first + (2 * (ulong)EntryBuffer.ChunkSize) - 1, buffer[buffer.Count - 1].Index.Value);
    }

    [Fact]
    public void AViewStaysValidWhileEntriesAreOnlyAppended()
    {
        var buffer = new EntryBuffer();
        buffer.Add(Make(1));
        var view = buffer.View(0, 1);
        for (ulong n = 2; n <= 2 * EntryBuffer.ChunkSize; n++)
        {
            buffer.Add(Make(n));
        }

        Assert.Equal(1UL, view[0].Index.Value);
    }
}
