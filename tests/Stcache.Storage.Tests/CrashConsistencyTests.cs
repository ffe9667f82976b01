using System.Diagnostics;
using Microsoft.Extensions.Logging.Abstractions;
using Stcache.Raft;
using Xunit.Abstractions;
using static Stcache.Storage.Tests.Entries;

namespace Stcache.Storage.Tests;

/// <summary>
/// Crash consistency of the WAL: cut the last segment at every byte offset across the final records (a crash
/// mid-write) and flip random bits (media corruption). Recovery must give exactly the records that are complete
/// before the cut, and refuse to start, naming file and offset, when a damaged record has intact ones after it.
/// </summary>
public sealed class CrashConsistencyTests : IDisposable
{
    private const int SegmentBytes = 64 * 1024;
    private const int FinalRecordsCut = 6;

    private readonly TempDirectory _temp = new();
    private readonly ITestOutputHelper _output;

    public CrashConsistencyTests(ITestOutputHelper output)
    {
        _output = output;
    }

    public void Dispose() => _temp.Dispose();

    private string WalPath => _temp.Combine("wal");

    // One sync per open instead of two: the background zero-fill of the next segment plays no part in recovery.
    private static WalOptions Options => new() { SegmentSizeBytes = SegmentBytes, PrepareSegmentsAhead = false };

    /// <summary>One record as written, with where it ends in the segment.</summary>
    private sealed record Written(Entry? Entry, HardState? HardState, long Start, long End);

    [Fact]
    public void CutAtEveryOffsetAcrossTheFinalRecordsRecoversExactlyThePrefix()
    {
        (List<Written> records, string segment, byte[] pristine) = WriteWorkload(seed: 1);
        long from = records[^FinalRecordsCut].Start - 3;
        long to = records[^1].End;
        var stopwatch = Stopwatch.StartNew();
        int checkedCuts = 0;
        for (long cut = from; cut <= to; cut++)
        {
            // Two shapes of a crash: the file ends at the cut (no preallocation), or zeros follow (preallocated).
            foreach (bool zeroTail in new[] { false, true })
            {
                byte[] image = zeroTail ? [.. pristine.AsSpan(0, (int)cut), .. new byte[SegmentBytes - cut]] : pristine[..(int)cut];
                File.WriteAllBytes(segment, image);
                // With zeros after the cut, a record cut where it held only zeros (padding, high bytes of a number)
                // is byte for byte intact.
                int complete = records.Count(r => r.End <= cut || (zeroTail && r.Start < cut && !pristine.AsSpan((int)cut, (int)(r.End - cut)).ContainsAnyExcept((byte)0)));
                using WriteAheadLog wal = WriteAheadLog.Open(PhysicalFileSystem.Instance, WalPath, Options, NullLogger.Instance);
                AssertState(Model(records, complete), wal.Load(), $"cut at {cut} (zero tail: {zeroTail})");

                // Every few cuts, the recovered log must also take new writes and keep them.
                if (cut % 29 == 0)
                {
                    ulong next = wal.LastIndex.Value + 1;
                    IReadOnlyList<Entry> modelEntries = Model(records, complete).Entries;
                    Term term = modelEntries.Count > 0 ? modelEntries[^1].Term : new Term(1);
                    wal.Save(null, [new Entry(term, new LogIndex(next), EntryType.Normal, new byte[] { 1, 2, 3 })]);
                    wal.Dispose();
                    using WriteAheadLog reopened = WriteAheadLog.Open(PhysicalFileSystem.Instance, WalPath, Options, NullLogger.Instance);
                    Assert.Equal(new LogIndex(next), reopened.LastIndex);
                }

                checkedCuts++;
            }
        }

        _output.WriteLine($"checked {checkedCuts} cuts in {stopwatch.ElapsedMilliseconds} ms");
    }

    [Fact]
    public void RandomBitFlipsNeverYieldADamagedRecord()
    {
        int seed = Environment.GetEnvironmentVariable("STCACHE_TEST_SEED") is { } text ? int.Parse(text, System.Globalization.CultureInfo.InvariantCulture) : Random.Shared.Next();
        _output.WriteLine($"seed {seed} (rerun with STCACHE_TEST_SEED={seed})");
        (List<Written> records, string segment, byte[] pristine) = WriteWorkload(seed: 2);
        var random = new Random(seed);
        long used = records[^1].End;
        int refused = 0;
        int recovered = 0;
        for (int iteration = 0; iteration < 400; iteration++)
        {
            // Mostly the records; sometimes the zeros after them (the preallocated tail).
            long offset = random.Next(WalFormat.SegmentHeaderBytes, (int)used + 128);
            int bit = random.Next(8);
            byte[] image = (byte[])pristine.Clone();
            image[offset] ^= (byte)(1 << bit);
            File.WriteAllBytes(segment, image);
            string context = $"seed {seed} iteration {iteration}: bit {bit} at offset {offset}";

            int hit = records.FindIndex(r => offset >= r.Start && offset < r.End);
            try
            {
                using WriteAheadLog wal = WriteAheadLog.Open(PhysicalFileSystem.Instance, WalPath, Options, NullLogger.Instance);
                PersistentState state = wal.Load();

                // Only damage to the last record, or to the zeros after it, looks like a torn tail.
                Assert.True(hit == -1 || hit == records.Count - 1, $"{context}: corruption of record {hit} of {records.Count} was not detected");
                AssertState(Model(records, hit == -1 ? records.Count : hit), state, context);
                recovered++;
            }
            catch (StorageCorruptionException corruption)
            {
                Assert.True(hit >= 0 && hit < records.Count - 1, $"{context}: refused although only the tail was damaged: {corruption.Message}");
                Assert.Equal(segment, corruption.FilePath);
                Assert.Equal(records[hit].Start, corruption.Offset);
                refused++;
            }
        }

        _output.WriteLine($"refused {refused}, recovered {recovered}");
    }

    [Fact]
    public void DamagedSegmentHeaderIsCorruptionNotATornTail()
    {
        (_, string segment, byte[] pristine) = WriteWorkload(seed: 3);
        for (int offset = 0; offset < WalFormat.SegmentHeaderBytes; offset++)
        {
            byte[] image = (byte[])pristine.Clone();
            image[offset] ^= 0x10;
            File.WriteAllBytes(segment, image);
            var error = Assert.Throws<StorageCorruptionException>(() => WriteAheadLog.Open(PhysicalFileSystem.Instance, WalPath, Options, NullLogger.Instance));
            Assert.Equal(0, error.Offset);
        }
    }

    private (List<Written> Records, string Segment, byte[] Pristine) WriteWorkload(int seed)
    {
        var random = new Random(seed);
        var records = new List<Written>();
        string segment;
        using (WriteAheadLog wal = WriteAheadLog.Open(PhysicalFileSystem.Instance, WalPath, Options, NullLogger.Instance))
        {
            ulong term = 1;
            ulong last = 0;
            for (int batch = 0; batch < 40; batch++)
            {
                ulong first = last + 1;
                if (batch == 25)
                {
                    // An overwrite of the last three entries by a new leader.
                    term++;
                    first = last - 2;
                }

                int count = random.Next(1, 4);
                var entries = new Entry[count];
                for (int i = 0; i < count; i++)
                {
                    var data = new byte[random.Next(0, 120)];
                    random.NextBytes(data);
                    entries[i] = new Entry(new Term(term), new LogIndex(first + (ulong)i), EntryType.Normal, data);
                }

                HardState? hardState = random.Next(3) == 0 ? null : new HardState(new Term(term), new NodeId(1), new LogIndex(first - 1));
                if (hardState == wal.HardState)
                {
                    hardState = null;
                }

                long start = wal.ActiveOffset;
                int hardStateBytes = WalFormat.AlignedRecordBytes(WalFormat.HardStatePayloadBytes);
                HardState? leading = null;
                if (hardState is { } changed && (changed.Term != wal.HardState.Term || changed.Vote != wal.HardState.Vote))
                {
                    // A new term or vote precedes the batch's entries, its commit index below them.
                    leading = changed with { Commit = LogIndex.Min(changed.Commit, entries[0].Index.Previous) };
                    records.Add(new Written(null, leading, start, start + hardStateBytes));
                    start += hardStateBytes;
                }

                foreach (Entry entry in entries)
                {
                    long end = start + WalFormat.AlignedRecordBytes(WalFormat.EntryPayloadHeaderBytes + entry.Data.Length);
                    records.Add(new Written(entry, null, start, end));
                    start = end;
                }

                if (hardState is not null && hardState != leading)
                {
                    records.Add(new Written(null, hardState, start, start + WalFormat.AlignedRecordBytes(WalFormat.HardStatePayloadBytes)));
                }

                wal.Save(hardState, entries);
                Assert.Equal(records[^1].End, wal.ActiveOffset);
                last = entries[^1].Index.Value;
            }

            segment = wal.ActiveSegmentPath;
        }

        Assert.Single(Directory.GetFiles(WalPath, "*.wal"));
        return (records, segment, File.ReadAllBytes(segment));
    }

    /// <summary>The state a correct recovery gives from the first <paramref name="count"/> records: the slow,
    /// obvious reference for the reader's replay.</summary>
    private static PersistentState Model(List<Written> records, int count)
    {
        var entries = new List<Entry>();
        HardState hardState = HardState.Empty;
        foreach (Written record in records.Take(count))
        {
            if (record.Entry is { } entry)
            {
                entries.RemoveAll(e => e.Index >= entry.Index);
                entries.Add(entry);
            }
            else
            {
                hardState = record.HardState!.Value;
            }
        }

        return new PersistentState(hardState, SnapshotMetadata.Empty, entries);
    }

    private static void AssertState(PersistentState expected, PersistentState actual, string context)
    {
        Assert.True(expected.HardState == actual.HardState, $"{context}: hard state {actual.HardState}, expected {expected.HardState}");
        Assert.True(expected.Entries.Count == actual.Entries.Count, $"{context}: {actual.Entries.Count} entries, expected {expected.Entries.Count}");
        for (int i = 0; i < expected.Entries.Count; i++)
        {
            Assert.True(Same(expected.Entries[i], actual.Entries[i]), $"{context}: entry {i} differs");
        }
    }
}
