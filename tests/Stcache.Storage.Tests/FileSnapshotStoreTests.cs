using Microsoft.Extensions.Logging.Abstractions;
using Stcache.Raft;

namespace Stcache.Storage.Tests;

public sealed class FileSnapshotStoreTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    private const int Mebibyte = 1024 * 1024;

    private string SnapPath => _temp.Combine("snap");

    private static SnapshotMetadata Meta(ulong index, ulong term) =>
        new(new LogIndex(index), new Term(term), new ConfState([new NodeId(1), new NodeId(2), new NodeId(3)], [new NodeId(9)]));

    private FileSnapshotStore Open(ListLogger? logger = null, int retain = 2) =>
        FileSnapshotStore.Open(PhysicalFileSystem.Instance, SnapPath, new SnapshotStoreOptions { Retain = retain }, (Microsoft.Extensions.Logging.ILogger?)logger ?? NullLogger.Instance);

    [Fact]
    public void EmptyStoreHasNoSnapshot()
    {
        Assert.Null(Open().LoadNewest());
    }

    [Fact]
    public void SavedSnapshotRoundTripsWithMetadata()
    {
        FileSnapshotStore store = Open();
        byte[] data = [.. Enumerable.Range(0, 10_000).Select(i => (byte)i)];
        store.Save(Meta(42, 7), s => s.Write(data));

        Snapshot? loaded = Open().LoadNewest();
        Assert.NotNull(loaded);
        Assert.Equal(new LogIndex(42), loaded.Metadata.Index);
        Assert.Equal(new Term(7), loaded.Metadata.Term);
        Assert.Equal(Meta(42, 7).ConfState, loaded.Metadata.ConfState);
        Assert.Equal(data, loaded.Data.ToArray());
        Assert.True(File.Exists(Path.Combine(SnapPath, "0000000000000007-000000000000002a.snap")));
        Assert.Empty(Directory.GetFiles(SnapPath, "*.tmp"));
    }

    [Fact]
    public void LargeSnapshotIsStreamedInSmallWrites()
    {
        FileSnapshotStore store = Open();
        const int chunks = 3000;
        store.Save(Meta(5, 1), stream =>
        {
            var chunk = new byte[1000];
            for (int i = 0; i < chunks; i++)
            {
                chunk.AsSpan().Fill((byte)i);
                stream.Write(chunk);
                stream.WriteByte((byte)(i * 3));
            }
        });

        Snapshot loaded = store.LoadNewest()!;
        Assert.Equal(chunks * 1001, loaded.Data.Length);
        Assert.Equal(unchecked((byte)(2999 * 3)), loaded.Data.Span[^1]);
        Assert.Equal((byte)17, loaded.Data.Span[17 * 1001]);
    }

    [Fact]
    public void ALargeSnapshotIsSyncedAMebibyteAtATimeAsItIsWritten()
    {
        // One sync of the whole file at the end put all of it on the disk at once, and the node's write-ahead log
        // fdatasyncs waited behind it (docs/PERFORMANCE.md, "Write tail latency, session 15").
        var fileSystem = new FaultyFileSystem();
        string? temp = null;
        fileSystem.BeforeSync = path => temp ??= path.EndsWith(".tmp", StringComparison.Ordinal) ? path : null;
        FileSnapshotStore store = FileSnapshotStore.Open(fileSystem, SnapPath, new SnapshotStoreOptions(), NullLogger.Instance);
        var piece = new byte[100_000];
        const int pieces = 60; // 6 MB
        store.Save(Meta(5, 1), stream =>
        {
            for (int i = 0; i < pieces; i++)
            {
                piece.AsSpan().Fill((byte)i);
                stream.Write(piece);
            }
        });

        Assert.NotNull(temp);
        Assert.InRange(fileSystem.MostUnsyncedBytes(temp), 1, Mebibyte);
        Assert.InRange(fileSystem.SyncsOf(temp), pieces * piece.Length / Mebibyte, int.MaxValue);
        Snapshot loaded = Open().LoadNewest()!;
        Assert.Equal(pieces * piece.Length, loaded.Data.Length);
        Assert.Equal((byte)59, loaded.Data.Span[^1]);
    }

    [Fact]
    public void AReceivedSnapshotIsSyncedAMebibyteAtATimeAsItArrives()
    {
        var fileSystem = new FaultyFileSystem();
        FileSnapshotStore leader = Open();
        byte[] data = new byte[5_000_000];
        Random.Shared.NextBytes(data);
        leader.Save(Meta(100, 4), s => s.Write(data));
        byte[] stored = File.ReadAllBytes(Directory.GetFiles(SnapPath, "*.snap").Single());
        string? temp = null;
        fileSystem.BeforeSync = path => temp ??= path.EndsWith(".recv.tmp", StringComparison.Ordinal) ? path : null;
        FileSnapshotStore follower = FileSnapshotStore.Open(fileSystem, _temp.Combine("follower"), new SnapshotStoreOptions(), NullLogger.Instance);
        using (ISnapshotReceiver receiver = follower.BeginReceive(Meta(100, 4), stored.Length))
        {
            for (int offset = 0; offset < stored.Length; offset += 64 * 1024)
            {
                receiver.Write(stored.AsSpan(offset, Math.Min(64 * 1024, stored.Length - offset)));
            }

            receiver.Complete();
        }

        Assert.NotNull(temp);
        Assert.InRange(fileSystem.MostUnsyncedBytes(temp), 1, Mebibyte);
        using SnapshotReader reader = follower.InstallReceived(Meta(100, 4));
        Assert.Equal(new LogIndex(100), reader.Metadata.Index);
    }

    [Fact]
    public void KeepsOnlyTheNewestN()
    {
        FileSnapshotStore store = Open(retain: 2);
        for (ulong i = 1; i <= 5; i++)
        {
            store.Save(Meta(i * 10, 1), s => s.WriteByte((byte)i));
        }

        string[] names = [.. Directory.GetFiles(SnapPath, "*.snap").Select(Path.GetFileName).Order(StringComparer.Ordinal)!];
        Assert.Equal(["0000000000000001-0000000000000028.snap", "0000000000000001-0000000000000032.snap"], names);
        Assert.Equal(new LogIndex(50), store.LoadNewest()!.Metadata.Index);
    }

    [Fact]
    public void CorruptNewestFallsBackToThePreviousWithAWarning()
    {
        FileSnapshotStore store = Open();
        store.Save(Meta(10, 1), s => s.Write("older"u8));
        store.Save(Meta(20, 2), s => s.Write("newer"u8));
        string newest = Path.Combine(SnapPath, FileSnapshotStore.FileName(Meta(20, 2)));
        WriteAheadLogTests.FlipBit(newest, new FileInfo(newest).Length - 20, 2);

        var logger = new ListLogger();
        Snapshot? loaded = Open(logger).LoadNewest();
        Assert.NotNull(loaded);
        Assert.Equal(new LogIndex(10), loaded.Metadata.Index);
        Assert.Equal("older"u8.ToArray(), loaded.Data.ToArray());
        Assert.Contains(logger.Lines, l => l.StartsWith("Warning", StringComparison.Ordinal) && l.Contains("checksum", StringComparison.Ordinal));
    }

    [Fact]
    public void EveryByteOfTheFileIsCovered()
    {
        FileSnapshotStore store = Open(retain: 1);
        store.Save(Meta(3, 1), s => s.Write("some data"u8));
        string path = Path.Combine(SnapPath, FileSnapshotStore.FileName(Meta(3, 1)));
        byte[] pristine = File.ReadAllBytes(path);
        for (int offset = 0; offset < pristine.Length; offset++)
        {
            byte[] image = (byte[])pristine.Clone();
            image[offset] ^= 0x01;
            File.WriteAllBytes(path, image);
            Assert.Null(store.LoadNewest());
            Assert.Throws<StorageCorruptionException>(() => FileSnapshotStore.Verify(path));
        }

        for (int length = 0; length < pristine.Length; length++)
        {
            File.WriteAllBytes(path, pristine[..length]);
            Assert.Null(store.LoadNewest());
        }
    }

    [Fact]
    public void FailedWriteLeavesNoFileAndTheOlderSnapshotStays()
    {
        FileSnapshotStore store = Open();
        store.Save(Meta(10, 1), s => s.Write("good"u8));
        Assert.Throws<InvalidOperationException>(() => store.Save(Meta(20, 1), s =>
        {
            s.Write("partial"u8);
            throw new InvalidOperationException("state machine failed mid-snapshot");
        }));

        var fileSystem = new FaultyFileSystem { FailWrites = 1 };
        FileSnapshotStore faulty = FileSnapshotStore.Open(fileSystem, SnapPath, new SnapshotStoreOptions(), NullLogger.Instance);
        Assert.Throws<IOException>(() => faulty.Save(Meta(30, 1), s => s.Write("x"u8)));

        Assert.Empty(Directory.GetFiles(SnapPath, "*.tmp"));
        Assert.Single(Directory.GetFiles(SnapPath, "*.snap"));
        Assert.Equal(new LogIndex(10), store.LoadNewest()!.Metadata.Index);
    }

    [Fact]
    public void LeftoverTemporaryFilesAreRemovedAtOpen()
    {
        Directory.CreateDirectory(SnapPath);
        File.WriteAllText(Path.Combine(SnapPath, "0000000000000001-0000000000000001.snap.1-1.tmp"), "half");
        Open();
        Assert.Empty(Directory.GetFiles(SnapPath));
    }

    [Fact]
    public void FileWhoseHeaderDisagreesWithItsNameIsRejected()
    {
        FileSnapshotStore store = Open();
        store.Save(Meta(10, 1), s => s.Write("data"u8));
        File.Move(Path.Combine(SnapPath, FileSnapshotStore.FileName(Meta(10, 1))), Path.Combine(SnapPath, FileSnapshotStore.FileName(Meta(11, 1))));
        Assert.Null(store.LoadNewest());
    }
}
