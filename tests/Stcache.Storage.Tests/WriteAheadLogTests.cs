using Microsoft.Extensions.Logging.Abstractions;
using Stcache.Raft;
using static Stcache.Storage.Tests.Entries;

namespace Stcache.Storage.Tests;

public sealed class WriteAheadLogTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    private string WalPath => _temp.Combine("wal");

    private WriteAheadLog Open(WalOptions? options = null, ListLogger? logger = null) =>
        WriteAheadLog.Open(PhysicalFileSystem.Instance, WalPath, options ?? new WalOptions { SegmentSizeBytes = 64 * 1024 }, (Microsoft.Extensions.Logging.ILogger?)logger ?? NullLogger.Instance);

    [Fact]
    public void EmptyDirectoryLoadsEmptyState()
    {
        using WriteAheadLog wal = Open();
        PersistentState state = wal.Load();
        Assert.Equal(HardState.Empty, state.HardState);
        Assert.Equal(SnapshotMetadata.Empty.Index, state.Snapshot.Index);
        Assert.Empty(state.Entries);
        Assert.Single(Directory.GetFiles(WalPath, "*.wal"));
    }

    [Fact]
    public void SavedEntriesAndHardStateSurviveReopen()
    {
        Entry[] entries = Range(1, 1, 20);
        using (WriteAheadLog wal = Open())
        {
            wal.Save(Hard(1, 2, 0), entries[..10]);
            wal.Save(Hard(1, 2, 10), entries[10..]);
            Assert.Equal(2, wal.SyncCount);
            Assert.True(wal.SyncedBytes > 0);
        }

        using (WriteAheadLog wal = Open())
        {
            PersistentState state = wal.Load();
            Assert.Equal(Hard(1, 2, 10), state.HardState);
            AssertSame(entries, state.Entries);

            // Load after Open's cached state re-reads the files and agrees.
            PersistentState again = wal.Load();
            AssertSame(entries, again.Entries);
            Assert.Equal(new LogIndex(20), wal.LastIndex);
        }
    }

    [Fact]
    public void EachSaveIsOneSyncAndUnchangedHardStateWritesNothing()
    {
        using (WriteAheadLog wal = Open())
        {
            wal.Save(Hard(1, 0, 0), Range(1, 1, 3));
            Assert.Equal(1, wal.SyncCount);
            wal.Save(Hard(1, 0, 0), []);
            wal.Save(null, []);
            Assert.Equal(1, wal.SyncCount);

            // A new commit index alone is not even written (it waits in memory for the next write)...
            wal.Save(Hard(1, 0, 3), []);
            Assert.Equal(1, wal.SyncCount);
            Assert.True(wal.CommitUnwritten);

            // ...a new vote or term is synced, and so are entries.
            wal.Save(Hard(1, 2, 3), []);
            Assert.Equal(2, wal.SyncCount);
            wal.Save(Hard(2, 0, 3), []);
            Assert.Equal(3, wal.SyncCount);
            wal.Save(Hard(2, 0, 4), Range(2, 4, 4));
            Assert.Equal(4, wal.SyncCount);
            wal.Save(Hard(2, 0, 5), []);
            Assert.Equal(4, wal.SyncCount);
        }

        // Dispose wrote the commit index held in memory: a clean reopen reads it.
        using (WriteAheadLog wal = Open())
        {
            Assert.Equal(Hard(2, 0, 5), wal.Load().HardState);
        }
    }

    [Fact]
    public void ACommitOnlySaveWritesNothingAndTheNextWriteCarriesIt()
    {
        var fileSystem = new FaultyFileSystem();
        using WriteAheadLog wal = WriteAheadLog.Open(fileSystem, WalPath, new WalOptions { SegmentSizeBytes = 64 * 1024, PrepareSegmentsAhead = false }, NullLogger.Instance);
        wal.Save(Hard(1, 2, 0), Range(1, 1, 3));
        int writes = fileSystem.Writes;
        long syncs = wal.SyncCount;
        long offset = wal.ActiveOffset;

        // The commit index moves: no write, no sync, and the file does not change.
        Assert.False(wal.Save(Hard(1, 2, 3), []));
        Assert.Equal(writes, fileSystem.Writes);
        Assert.Equal(syncs, wal.SyncCount);
        Assert.Equal(offset, wal.ActiveOffset);
        Assert.True(wal.CommitUnwritten);
        Assert.Equal(Hard(1, 2, 3), wal.HardState);
        Assert.Equal(Hard(1, 2, 3), wal.Load().HardState); // a re-read gives the commit index held in memory

        // A crash now (the files as the kernel holds them; this process's memory gone) finds the older commit index
        // and the whole log: consistent, and the commit index never above the last entry.
        PersistentState crashed = StateAfterACrash();
        Assert.Equal(Hard(1, 2, 0), crashed.HardState);
        AssertSame(Range(1, 1, 3), crashed.Entries);

        // The next save with entries writes the commit index after them: one write, one sync.
        Assert.True(wal.Save(null, Range(1, 4, 4)));
        Assert.Equal(writes + 1, fileSystem.Writes);
        Assert.Equal(syncs + 1, wal.SyncCount);
        Assert.False(wal.CommitUnwritten);
        long recordBytes = WalFormat.AlignedRecordBytes(WalFormat.EntryPayloadHeaderBytes + Range(1, 4, 4)[0].Data.Length) +
            WalFormat.AlignedRecordBytes(WalFormat.HardStatePayloadBytes);
        Assert.Equal(offset + recordBytes, wal.ActiveOffset);
        crashed = StateAfterACrash();
        Assert.Equal(Hard(1, 2, 3), crashed.HardState);
        AssertSame(Range(1, 1, 4), crashed.Entries);

        // A save of a new term or vote alone carries it too.
        wal.Save(Hard(1, 2, 4), []);
        Assert.Equal(writes + 1, fileSystem.Writes);
        Assert.Equal(Hard(1, 2, 3), StateAfterACrash().HardState);
        wal.Save(Hard(2, 0, 4), []);
        Assert.Equal(writes + 2, fileSystem.Writes);
        Assert.Equal(syncs + 2, wal.SyncCount);
        Assert.Equal(Hard(2, 0, 4), StateAfterACrash().HardState);
    }

    [Fact]
    public void DisposeWritesTheCommitIndexHeldInMemoryWithoutASync()
    {
        var fileSystem = new FaultyFileSystem();
        string segment;
        using (WriteAheadLog wal = WriteAheadLog.Open(fileSystem, WalPath, new WalOptions { SegmentSizeBytes = 64 * 1024, PrepareSegmentsAhead = false }, NullLogger.Instance))
        {
            wal.Save(Hard(1, 2, 0), Range(1, 1, 5));
            wal.Save(Hard(1, 2, 4), []);
            wal.Save(Hard(1, 2, 5), []);
            segment = wal.ActiveSegmentPath;
            int writes = fileSystem.Writes;
            int syncs = fileSystem.SyncsOf(segment);
            wal.Dispose();
            Assert.Equal(writes + 1, fileSystem.Writes);
            Assert.Equal(syncs, fileSystem.SyncsOf(segment));
        }

        using (WriteAheadLog wal = Open())
        {
            PersistentState state = wal.Load();
            Assert.Equal(Hard(1, 2, 5), state.HardState);
            AssertSame(Range(1, 1, 5), state.Entries);
        }
    }

    [Fact]
    public void DisposeThatCannotWriteTheCommitIndexLogsItAndTheLogStaysReadable()
    {
        var fileSystem = new FaultyFileSystem();
        var logger = new ListLogger();
        using (WriteAheadLog wal = WriteAheadLog.Open(fileSystem, WalPath, new WalOptions { SegmentSizeBytes = 64 * 1024, PrepareSegmentsAhead = false }, logger))
        {
            wal.Save(Hard(1, 2, 0), Range(1, 1, 5));
            wal.Save(Hard(1, 2, 5), []);
            fileSystem.FailNextWriteAfterBytes = 7;
            wal.Dispose(); // does not throw
        }

        Assert.Contains(logger.Lines, line => line.Contains("without writing commit index 5", StringComparison.Ordinal));
        using (WriteAheadLog wal = Open())
        {
            PersistentState state = wal.Load();
            Assert.Equal(Hard(1, 2, 0), state.HardState);
            AssertSame(Range(1, 1, 5), state.Entries);
        }
    }

    [Fact]
    public void ACrashAtAnyRoundFindsTheLogAndACommitIndexNoOlderThanTheLastWrite()
    {
        // Rounds as a follower sees them: entries, then the commit index that covers them alone; small segments, so
        // cuts restate a commit index held in memory.
        var options = new WalOptions { SegmentSizeBytes = 4096, PrepareSegmentsAhead = false };
        var random = new Random(19);
        var all = new List<Entry>();
        using WriteAheadLog wal = Open(options);
        ulong commitWritten = 0;
        for (ulong index = 1; index <= 120; index++)
        {
            Entry entry = Make(1, index, new string('x', random.Next(0, 200)));
            all.Add(entry);
            wal.Save(Hard(1, 1, wal.HardState.Commit.Value), [entry]);
            commitWritten = wal.HardState.Commit.Value;
            if (random.Next(4) != 0)
            {
                wal.Save(Hard(1, 1, index), []);
            }

            PersistentState crashed = StateAfterACrash();
            AssertSame(all, crashed.Entries);
            Assert.InRange(crashed.HardState.Commit.Value, commitWritten, index);
        }

        Assert.True(wal.SegmentCount > 3, $"expected several segments, got {wal.SegmentCount}");
    }

    /// <summary>
    /// What a restart after a process crash finds: the WAL files as they are now (the kernel keeps what was written),
    /// opened elsewhere while this process's log, and what it holds in memory, is left as it is.
    /// </summary>
    private PersistentState StateAfterACrash()
    {
        string copy = _temp.Combine("crashed-" + Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(copy);
        foreach (string file in Directory.GetFiles(WalPath, "*.wal"))
        {
            using var source = new FileStream(file, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
            using var target = new FileStream(Path.Combine(copy, Path.GetFileName(file)), FileMode.CreateNew);
            source.CopyTo(target);
        }

        using WriteAheadLog reopened = WriteAheadLog.Open(PhysicalFileSystem.Instance, copy, new WalOptions { PrepareSegmentsAhead = false }, NullLogger.Instance);
        PersistentState state = reopened.Load();
        Assert.True(state.Entries.Count == 0 || state.HardState.Commit <= state.Entries[^1].Index,
            $"stored commit {state.HardState.Commit} beyond the stored log");
        return state;
    }

    [Fact]
    public void OverwriteReplacesTheSuffix()
    {
        using (WriteAheadLog wal = Open())
        {
            wal.Save(Hard(1, 1, 0), Range(1, 1, 10));
            wal.Save(Hard(2, 0, 3), Range(2, 6, 8, "new"));
            PersistentState live = wal.Load();
            Assert.Equal(8, live.Entries.Count);
        }

        using (WriteAheadLog wal = Open())
        {
            PersistentState state = wal.Load();
            AssertSame([.. Range(1, 1, 5), .. Range(2, 6, 8, "new")], state.Entries);
            Assert.Equal(Hard(2, 0, 3), state.HardState);

            // Appending after the overwrite continues from the new last index.
            wal.Save(null, Range(2, 9, 9, "more"));
        }

        using (WriteAheadLog wal = Open())
        {
            AssertSame([.. Range(1, 1, 5), .. Range(2, 6, 8, "new"), .. Range(2, 9, 9, "more")], wal.Load().Entries);
        }
    }

    [Fact]
    public void InvalidBatchesAreRejectedBeforeWriting()
    {
        using WriteAheadLog wal = Open();
        wal.Save(null, Range(2, 1, 5));
        Assert.Throws<ArgumentException>(() => wal.Save(null, Range(2, 7, 8)));
        Assert.Throws<ArgumentException>(() => wal.Save(null, [Make(2, 6, "a"), Make(2, 8, "b")]));
        Assert.Throws<ArgumentException>(() => wal.Save(null, [Make(1, 6, "lower term")]));
        Assert.Equal(1, wal.SyncCount);
    }

    [Fact]
    public void SegmentsAreCutAndAllRecoveredInOrder()
    {
        var all = new List<Entry>();
        using (WriteAheadLog wal = Open(new WalOptions { SegmentSizeBytes = 4096 }))
        {
            for (ulong i = 1; i <= 300; i++)
            {
                Entry entry = Make(1 + (i / 100), i, new string('x', (int)(i % 50)));
                all.Add(entry);
                wal.Save(Hard(1 + (i / 100), 1, i - 1), [entry]);
            }

            Assert.True(wal.SegmentCount > 3, $"expected several segments, got {wal.SegmentCount}");
        }

        string[] files = Directory.GetFiles(WalPath, "*.wal").Order(StringComparer.Ordinal).ToArray();
        Assert.All(files, f => Assert.Equal(4096, new FileInfo(f).Length));
        Assert.Empty(Directory.GetFiles(WalPath, "*.tmp"));
        for (int i = 0; i < files.Length; i++)
        {
            Assert.StartsWith(i.ToString("x16", System.Globalization.CultureInfo.InvariantCulture) + "-", Path.GetFileName(files[i]), StringComparison.Ordinal);
        }

        using (WriteAheadLog wal = Open(new WalOptions { SegmentSizeBytes = 4096 }))
        {
            PersistentState state = wal.Load();
            AssertSame(all, state.Entries);
            Assert.Equal(Hard(4, 1, 299), state.HardState);
        }
    }

    [Fact]
    public void TheNextSegmentIsZeroedAMebibyteAtATimeEachSynced()
    {
        // One sync of a whole 64 MiB segment of zeros queued all of it on the disk at once, and every Raft loop's
        // next fdatasync waited behind it (docs/PERFORMANCE.md, "Write tail latency, session 14").
        const long segmentBytes = 4L * 1024 * 1024;
        var fileSystem = new FaultyFileSystem();
        Entry[] entries = Range(1, 1, 5, new string('x', 1024 * 1024));
        using (WriteAheadLog wal = WriteAheadLog.Open(fileSystem, WalPath, new WalOptions { SegmentSizeBytes = segmentBytes }, NullLogger.Instance))
        {
            foreach (Entry entry in entries)
            {
                wal.Save(Hard(1, 1, entry.Index.Value - 1), [entry]);
            }

            Assert.True(wal.SegmentCount >= 2, $"expected a cut, got {wal.SegmentCount} segment(s)");
        }

        // The first cut took the segment prepared at open: fully zeroed, never more than a mebibyte unsynced.
        string prepared = Path.Combine(WalPath, "next-0000000000000001.tmp");
        long most = fileSystem.MostUnsyncedBytes(prepared);
        Assert.InRange(most, 1, 1024 * 1024);
        string second = Directory.GetFiles(WalPath, "0000000000000001-*.wal").Single();
        Assert.Equal(segmentBytes, new FileInfo(second).Length);

        using (WriteAheadLog wal = Open(new WalOptions { SegmentSizeBytes = segmentBytes }))
        {
            AssertSame(entries, wal.Load().Entries);
        }
    }

    [Fact]
    public async Task ClosingTheLogStopsPreparingTheNextSegmentAfterTheChunkInHand()
    {
        // Closing a node, or a one-shot tool such as stcachectl recover, waited for all 64 MiB of the next segment's
        // zeros, a chunk and a sync at a time; on a busy disk that took minutes.
        var fileSystem = new FaultyFileSystem();
        string prepared = Path.Combine(WalPath, "next-0000000000000001.tmp");
        using var firstChunk = new ManualResetEventSlim();
        using var release = new ManualResetEventSlim();
        fileSystem.BeforeSync = path =>
        {
            if (path == prepared && !firstChunk.IsSet)
            {
                firstChunk.Set();
                release.Wait();
            }
        };

        // The active segment is closed after the preparation was told to stop: only then is the first chunk's sync let
        // go. Only the close by Dispose counts: a segment file that Open closed could otherwise release the chunk early
        // on a loaded machine (seen at load 40: 4 chunks synced before Dispose ran).
        int disposing = 0;
        fileSystem.Closed = path =>
        {
            if (Volatile.Read(ref disposing) == 1 && path.EndsWith(".wal", StringComparison.Ordinal))
            {
                release.Set();
            }
        };

        var wal = WriteAheadLog.Open(fileSystem, WalPath, new WalOptions(), NullLogger.Instance);
        Assert.True(firstChunk.Wait(TimeSpan.FromSeconds(30)), "the preparation never synced its first chunk");
        Volatile.Write(ref disposing, 1);
        await Task.Run(wal.Dispose).WaitAsync(TimeSpan.FromSeconds(30));

        Assert.Equal(1, fileSystem.SyncsOf(prepared));
        Assert.False(File.Exists(prepared));
    }

    [Fact]
    public void CompactionDeletesWholeSegmentsUpToTheGivenIndexNeverPastTheSnapshot()
    {
        var options = new WalOptions { SegmentSizeBytes = 4096 };
        Entry[] entries = Range(1, 1, 400, "entry-with-some-padding-");
        using (WriteAheadLog wal = Open(options))
        {
            foreach (Entry[] chunk in entries.Chunk(10))
            {
                wal.Save(Hard(1, 1, chunk[^1].Index.Value), chunk);
            }

            int before = wal.SegmentCount;

            // Without a recorded snapshot nothing may go: recovery would find a gap.
            wal.Compact(new LogIndex(300));
            Assert.Equal(before, wal.SegmentCount);

            var snapshot = new SnapshotMetadata(new LogIndex(300), new Term(1), new ConfState([new NodeId(1)], []));
            wal.ApplySnapshot(snapshot);

            // The caller keeps 20 entries behind the snapshot: it compacts up to 280.
            wal.Compact(new LogIndex(280));
            Assert.True(wal.SegmentCount < before, "compaction deleted no segment");

            string first = Directory.GetFiles(WalPath, "*.wal").Order(StringComparer.Ordinal).First();
            Assert.True(WalSegment.TryParse(first, out WalSegment? oldest));

            // Entries 281..300 (the trailing ones) must still be on disk: the oldest segment starts at or before 281,
            // and no whole segment at or before 280 is left (segments hold well under 100 of these entries).
            Assert.True(oldest!.FirstIndex <= 281, $"oldest segment starts at {oldest.FirstIndex}");
            Assert.True(oldest.FirstIndex > 180, $"oldest segment starts at {oldest.FirstIndex}: compaction kept a margin of its own");

            // Never past the recorded snapshot, whatever the caller asks.
            wal.Compact(new LogIndex(1_000));
            Assert.True(WalSegment.TryParse(Directory.GetFiles(WalPath, "*.wal").Order(StringComparer.Ordinal).First(), out WalSegment? newest));
            Assert.True(newest!.FirstIndex <= 301, $"compaction past the snapshot: oldest segment starts at {newest.FirstIndex}");

            wal.Save(Hard(1, 1, 401), [Make(1, 401, "after")]);
        }

        using (WriteAheadLog wal = Open(options))
        {
            PersistentState state = wal.Load();
            Assert.Equal(new LogIndex(300), state.Snapshot.Index);
            Assert.Equal([new NodeId(1)], state.Snapshot.ConfState.Voters);
            AssertSame([.. entries[300..], Make(1, 401, "after")], state.Entries);
        }
    }

    [Fact]
    public void SnapshotMatchingTheLogKeepsLaterEntries()
    {
        using (WriteAheadLog wal = Open())
        {
            wal.Save(Hard(2, 1, 5), [.. Range(1, 1, 5), .. Range(2, 6, 10)]);
            wal.ApplySnapshot(new SnapshotMetadata(new LogIndex(7), new Term(2), ConfState.Empty));
        }

        using (WriteAheadLog wal = Open())
        {
            PersistentState state = wal.Load();
            Assert.Equal(new LogIndex(7), state.Snapshot.Index);
            AssertSame(Range(2, 8, 10), state.Entries);
        }
    }

    [Fact]
    public void SnapshotNotInTheLogDiscardsEveryEntry()
    {
        using (WriteAheadLog wal = Open())
        {
            wal.Save(Hard(2, 1, 5), Range(1, 1, 10));
            wal.ApplySnapshot(new SnapshotMetadata(new LogIndex(8), new Term(3), ConfState.Empty));
            Assert.Equal(new LogIndex(8), wal.LastIndex);
            Assert.Throws<ArgumentException>(() => wal.Save(null, Range(3, 8, 9)));
            wal.Save(Hard(3, 0, 8), Range(3, 9, 12));
        }

        using (WriteAheadLog wal = Open())
        {
            PersistentState state = wal.Load();
            Assert.Equal(new LogIndex(8), state.Snapshot.Index);
            Assert.Equal(new Term(3), state.Snapshot.Term);
            AssertSame(Range(3, 9, 12), state.Entries);
        }
    }

    [Fact]
    public void TornTailIsCutAndLogged()
    {
        string segment;
        long goodEnd;
        using (WriteAheadLog wal = Open())
        {
            wal.Save(Hard(1, 1, 0), Range(1, 1, 5));
            segment = wal.ActiveSegmentPath;
            goodEnd = wal.ActiveOffset;
        }

        // Half a record, as a crash mid-write leaves it.
        using (var stream = new FileStream(segment, FileMode.Open, FileAccess.Write))
        {
            stream.Position = goodEnd;
            stream.Write([40, 0, 0, 0, 1, 2, 3, 4, 1, 9, 9]);
        }

        var logger = new ListLogger();
        using (WriteAheadLog wal = Open(logger: logger))
        {
            AssertSame(Range(1, 1, 5), wal.Load().Entries);
            Assert.Contains(logger.Lines, l => l.Contains("torn tail", StringComparison.Ordinal) && l.Contains("cut 11 bytes", StringComparison.Ordinal));
            Assert.Equal(goodEnd, wal.ActiveOffset);
            wal.Save(null, Range(1, 6, 6));
        }

        using (WriteAheadLog wal = Open(logger: logger))
        {
            AssertSame(Range(1, 1, 6), wal.Load().Entries);
        }
    }

    [Fact]
    public void RecordsAcrossTheReadWindowAndLargerThanItAreRecovered()
    {
        // Recovery reads a segment through a window of 1 MiB: records straddle its edges, one is three times its
        // size, the torn tail and a corrupt record's valid successor lie beyond the first window.
        var options = new WalOptions { SegmentSizeBytes = 16L * 1024 * 1024 };
        var expected = new List<Entry>();
        string segment;
        long bigOffset;
        long afterBig;
        long goodEnd;
        using (WriteAheadLog wal = Open(options))
        {
            ulong index = 1;
            for (int i = 0; i < 40; i++)
            {
                expected.Add(Make(1, index++, new string((char)('a' + (i % 26)), 70_001 + i)));
                wal.Save(null, [expected[^1]]);
            }

            bigOffset = wal.ActiveOffset;
            expected.Add(Make(1, index++, new string('z', (3 * 1024 * 1024) + 5)));
            wal.Save(null, [expected[^1]]);
            afterBig = wal.ActiveOffset;
            for (int i = 0; i < 30; i++)
            {
                expected.Add(Make(2, index++, new string('q', 50_000 + i)));
                wal.Save(Hard(2, 0, index - 1), [expected[^1]]);
            }

            segment = wal.ActiveSegmentPath;
            goodEnd = wal.ActiveOffset;
        }

        Assert.True(bigOffset > 2 * 1024 * 1024 && goodEnd > afterBig + (1024 * 1024), $"offsets {bigOffset}, {afterBig}, {goodEnd}");
        using (var stream = new FileStream(segment, FileMode.Open, FileAccess.Write))
        {
            stream.Position = goodEnd;
            stream.Write([40, 0, 0, 0, 1, 2, 3, 4, 1, 9, 9]);
        }

        var logger = new ListLogger();
        using (WriteAheadLog wal = Open(options, logger))
        {
            AssertSame(expected, wal.Load().Entries);
            Assert.Equal(goodEnd, wal.ActiveOffset);
            Assert.Contains(logger.Lines, l => l.Contains("torn tail", StringComparison.Ordinal) && l.Contains("cut 11 bytes", StringComparison.Ordinal));
        }

        FlipBit(segment, bigOffset + (2 * 1024 * 1024), 4);
        var error = Assert.Throws<StorageCorruptionException>(() => Open(options));
        Assert.Equal(bigOffset, error.Offset);
        Assert.Contains($"a valid record follows at offset {afterBig}", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TornBatchNeverRecoversEntriesOfATermItsHardStateHasNotReached()
    {
        // A follower at term 1 learns term 2 with the leader's entries 4..6 and a commit index covering them, in one
        // batch. The power fails during its sync: any prefix of the batch may be on disk, cut at any byte.
        string segment;
        long batchStart;
        long batchEnd;
        using (WriteAheadLog wal = Open())
        {
            wal.Save(Hard(1, 1, 3), Range(1, 1, 3));
            segment = wal.ActiveSegmentPath;
            batchStart = wal.ActiveOffset;
            wal.Save(Hard(2, 0, 6), Range(2, 4, 6));
            batchEnd = wal.ActiveOffset;
        }

        byte[] complete = File.ReadAllBytes(segment);
        for (long cut = batchStart; cut <= batchEnd; cut++)
        {
            byte[] torn = (byte[])complete.Clone();
            Array.Clear(torn, (int)cut, (int)(batchEnd - cut));
            File.WriteAllBytes(segment, torn);

            using WriteAheadLog wal = Open();
            PersistentState state = wal.Load();
            foreach (Entry entry in state.Entries)
            {
                Assert.True(entry.Term <= state.HardState.Term,
                    $"cut at byte {cut}: entry {entry.Index}/{entry.Term} recovered under term {state.HardState.Term}");
            }

            // The recovered commit index never names an entry the cut lost (RaftLog refuses such a state).
            Assert.True(state.HardState.Commit.Value <= state.Entries[^1].Index.Value,
                $"cut at byte {cut}: commit {state.HardState.Commit} beyond the last entry {state.Entries[^1].Index}");
        }
    }

    [Fact]
    public void BadRecordBeforeTheTailRefusesToOpenNamingFileAndOffset()
    {
        string segment;
        using (WriteAheadLog wal = Open())
        {
            for (ulong i = 1; i <= 10; i++)
            {
                wal.Save(null, [Make(1, i, "payload-" + i)]);
            }

            segment = wal.ActiveSegmentPath;
        }

        long offset = WalFormat.SegmentHeaderBytes + 8 + 1 + 17 + 2; // inside the first entry's data
        FlipBit(segment, offset, 3);
        var error = Assert.Throws<StorageCorruptionException>(() => Open());
        Assert.Equal(segment, error.FilePath);
        Assert.Equal(WalFormat.SegmentHeaderBytes, error.Offset);
        Assert.Contains(Path.GetFileName(segment), error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void CorruptionInAnOlderSegmentRefusesToOpen()
    {
        var options = new WalOptions { SegmentSizeBytes = 4096 };
        using (WriteAheadLog wal = Open(options))
        {
            for (ulong i = 1; i <= 200; i++)
            {
                wal.Save(null, [Make(1, i, new string('y', 40))]);
            }
        }

        string first = Directory.GetFiles(WalPath, "*.wal").Order(StringComparer.Ordinal).First();
        FlipBit(first, 200, 0);
        var error = Assert.Throws<StorageCorruptionException>(() => Open(options));
        Assert.Equal(first, error.FilePath);
    }

    [Fact]
    public void RepairOptionTruncatesAtTheFirstBadRecordAndKeepsABackup()
    {
        string segment;
        using (WriteAheadLog wal = Open())
        {
            for (ulong i = 1; i <= 10; i++)
            {
                wal.Save(null, [Make(1, i, "payload-" + i)]);
            }

            segment = wal.ActiveSegmentPath;
        }

        // Corrupt the 4th record (each is 8 + 1 + 17 + 9 or 10 bytes, aligned to 48).
        var records = new WalReader(PhysicalFileSystem.Instance, keepRecords: true);
        records.ReadAll(WalSegment.List(PhysicalFileSystem.Instance, WalPath));
        long fourth = records.Records[3].Offset;
        FlipBit(segment, fourth + 20, 1);

        Assert.Throws<StorageCorruptionException>(() => Open());
        var logger = new ListLogger();
        using (WriteAheadLog wal = Open(new WalOptions { SegmentSizeBytes = 64 * 1024, RepairCorruption = true }, logger))
        {
            AssertSame(Range(1, 1, 3, "payload-"), wal.Load().Entries);
            wal.Save(null, [Make(1, 4, "again")]);
        }

        Assert.True(File.Exists(segment + ".bak"));
        Assert.Contains(logger.Lines, l => l.StartsWith("Critical", StringComparison.Ordinal));
        using (WriteAheadLog wal = Open())
        {
            AssertSame([.. Range(1, 1, 3, "payload-"), Make(1, 4, "again")], wal.Load().Entries);
        }
    }

    [Fact]
    public void DiskFullFailsTheBatchKeepsTheStoreConsistentAndLaterSavesWork()
    {
        var fileSystem = new FaultyFileSystem();

        // No background zero-fill: its writes would take the injected faults meant for the log.
        var options = new WalOptions { SegmentSizeBytes = 64 * 1024, PrepareSegmentsAhead = false };
        using (WriteAheadLog wal = WriteAheadLog.Open(fileSystem, WalPath, options, NullLogger.Instance))
        {
            wal.Save(Hard(1, 1, 2), Range(1, 1, 5));

            // Half the batch reaches the file, then the disk is full.
            fileSystem.FailNextWriteAfterBytes = 100;
            Assert.Throws<IOException>(() => wal.Save(Hard(1, 1, 5), Range(1, 6, 10, "lost")));
            Assert.Equal(new LogIndex(5), wal.LastIndex);
            Assert.Equal(Hard(1, 1, 2), wal.HardState);

            // Still full: the cleanup itself fails too; the next batch must fail, not write after garbage.
            fileSystem.FailNextWriteAfterBytes = 50;
            fileSystem.FailWrites = 1;
            Assert.Throws<IOException>(() => wal.Save(null, Range(1, 6, 10, "lost")));

            // Space is back: a shorter batch than the failed one.
            wal.Save(Hard(1, 1, 6), Range(1, 6, 6, "kept"));
            Assert.Equal(new LogIndex(6), wal.LastIndex);
        }

        using (WriteAheadLog wal = Open(options))
        {
            PersistentState state = wal.Load();
            AssertSame([.. Range(1, 1, 5), .. Range(1, 6, 6, "kept")], state.Entries);
            Assert.Equal(Hard(1, 1, 6), state.HardState);
        }
    }

    [Fact]
    public void FailedSyncFailsTheBatchAndTheNextSaveWorks()
    {
        var fileSystem = new FaultyFileSystem();

        // No background zero-fill: its writes would take the injected faults meant for the log.
        var options = new WalOptions { SegmentSizeBytes = 64 * 1024, PrepareSegmentsAhead = false };
        using (WriteAheadLog wal = WriteAheadLog.Open(fileSystem, WalPath, options, NullLogger.Instance))
        {
            wal.Save(null, Range(1, 1, 3));
            fileSystem.FailSyncs = 1;
            Assert.Throws<IOException>(() => wal.Save(null, Range(1, 4, 9, "unsynced")));
            wal.Save(null, Range(2, 4, 4));
        }

        using (WriteAheadLog wal = Open(options))
        {
            AssertSame([.. Range(1, 1, 3), .. Range(2, 4, 4)], wal.Load().Entries);
        }
    }

    [Fact]
    public void DiskFullWhileCuttingASegmentLeavesTheLogUsable()
    {
        var fileSystem = new FaultyFileSystem();
        var options = new WalOptions { SegmentSizeBytes = 4096, PrepareSegmentsAhead = false };
        var written = new List<Entry>();
        using (WriteAheadLog wal = WriteAheadLog.Open(fileSystem, WalPath, options, NullLogger.Instance))
        {
            ulong index = 1;
            while (wal.SegmentCount == 1)
            {
                Entry entry = Make(1, index++, new string('z', 100));
                try
                {
                    if (wal.ActiveOffset + 200 > options.SegmentSizeBytes)
                    {
                        // The next save must cut; make the new segment's creation fail.
                        fileSystem.FailWrites = 1;
                        Assert.Throws<IOException>(() => wal.Save(null, [entry]));
                        Assert.Empty(Directory.GetFiles(WalPath, "*.tmp"));
                    }

                    wal.Save(null, [entry]);
                    written.Add(entry);
                }
                finally
                {
                    fileSystem.FailWrites = 0;
                }
            }
        }

        using (WriteAheadLog wal = Open(options))
        {
            AssertSame(written, wal.Load().Entries);
        }
    }

    [Fact]
    public void ForeignFileInTheWalDirectoryIsReported()
    {
        Directory.CreateDirectory(WalPath);
        File.WriteAllText(Path.Combine(WalPath, "notes.wal"), "hello");
        var error = Assert.Throws<StorageCorruptionException>(() => Open());
        Assert.Contains("unexpected file name", error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TornTailInAFreshlyCutSegmentKeepsEveryOlderSegment()
    {
        var options = new WalOptions { SegmentSizeBytes = 4096 };
        var written = new List<Entry>();
        string segment;
        long goodEnd;
        using (WriteAheadLog wal = Open(options))
        {
            ulong index = 1;
            while (wal.SegmentCount < 3)
            {
                Entry entry = Make(1, index++, new string('q', 300));
                wal.Save(Hard(1, 1, index - 1), [entry]);
                written.Add(entry);
            }

            segment = wal.ActiveSegmentPath;
            goodEnd = wal.ActiveOffset;
        }

        // The first record of the new segment is torn: its second half never reached the disk.
        byte[] bytes = File.ReadAllBytes(segment);
        long recordStart = goodEnd - WalFormat.AlignedRecordBytes(WalFormat.HardStatePayloadBytes) - WalFormat.AlignedRecordBytes(WalFormat.EntryPayloadHeaderBytes + 300);
        bytes.AsSpan((int)(recordStart + 100), (int)(goodEnd - recordStart - 100)).Clear();
        File.WriteAllBytes(segment, bytes);

        var logger = new ListLogger();
        using (WriteAheadLog wal = Open(options, logger))
        {
            PersistentState state = wal.Load();
            AssertSame(written[..^1], state.Entries);
            Assert.Equal(Hard(1, 1, (ulong)written.Count - 1), state.HardState);
            Assert.Contains(logger.Lines, l => l.Contains("cut 100 bytes", StringComparison.Ordinal));
            Assert.Equal(3, wal.SegmentCount);
        }
    }

    internal static void FlipBit(string path, long offset, int bit)
    {
        using var stream = new FileStream(path, FileMode.Open, FileAccess.ReadWrite);
        stream.Position = offset;
        int value = stream.ReadByte();
        stream.Position = offset;
        stream.WriteByte((byte)(value ^ (1 << bit)));
    }
}
