using Microsoft.Extensions.Logging.Abstractions;
using Stcache.Raft;

namespace Stcache.Storage.Tests;

/// <summary>
/// A snapshot leaves one store as it is stored (<see cref="FileSnapshotStore.OpenStored"/>), arrives in another in
/// pieces (<see cref="FileSnapshotStore.BeginReceive"/>), is verified whole, and is installed and read back by
/// streaming (<see cref="FileSnapshotStore.InstallReceived"/>, <see cref="FileSnapshotStore.OpenNewest"/>).
/// </summary>
public sealed class SnapshotTransferTests : IDisposable
{
    private const int Chunk = 1024 * 1024;
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    private static SnapshotMetadata Meta(ulong index, ulong term) =>
        new(new LogIndex(index), new Term(term), new ConfState([new NodeId(1), new NodeId(2), new NodeId(3)], [new NodeId(9)]));

    private FileSnapshotStore Open(string name, IFileSystem? fileSystem = null) =>
        FileSnapshotStore.Open(fileSystem ?? PhysicalFileSystem.Instance, _temp.Combine(name), new SnapshotStoreOptions(), NullLogger.Instance);

    private static byte[] Data(int length, int seed)
    {
        var data = new byte[length];
        new Random(seed).NextBytes(data);
        return data;
    }

    private static byte[] ReadStored(FileSnapshotStore store, SnapshotMetadata metadata)
    {
        using Stream stored = store.OpenStored(metadata)!;
        using var copy = new MemoryStream();
        stored.CopyTo(copy, Chunk);
        return copy.ToArray();
    }

    private static void Feed(ISnapshotReceiver receiver, byte[] bytes)
    {
        for (int offset = 0; offset < bytes.Length; offset += Chunk)
        {
            receiver.Write(bytes.AsSpan(offset, Math.Min(Chunk, bytes.Length - offset)));
        }
    }

    private static byte[] ReadAll(Stream stream)
    {
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }

    [Fact]
    public void AStoredSnapshotIsReadInChunksNeverWhole()
    {
        var recording = new ReadRecordingFileSystem();
        FileSnapshotStore leader = Open("leader", recording);
        byte[] data = Data(8 * Chunk + 17, 1);
        leader.Save(Meta(40, 3), s => s.Write(data));

        recording.LargestRead = 0;
        using Stream? stored = leader.OpenStored(Meta(40, 3));
        Assert.NotNull(stored);
        Assert.Equal(0, recording.LargestRead);
        Assert.True(stored.Length > data.Length, "the file as stored: header, data, trailer");
        var buffer = new byte[Chunk];
        long total = 0;
        int read;
        while ((read = stored.Read(buffer)) > 0)
        {
            total += read;
        }

        Assert.Equal(stored.Length, total);
        Assert.True(recording.LargestRead <= Chunk, $"largest single read {recording.LargestRead} bytes");
        Assert.Null(leader.OpenStored(Meta(41, 3)));
    }

    [Fact]
    public void AReceivedSnapshotInstallsAndRestoresTheSameData()
    {
        FileSnapshotStore leader = Open("leader");
        FileSnapshotStore follower = Open("follower");
        byte[] data = Data((5 * Chunk) + 333, 2);
        leader.Save(Meta(100, 4), s => s.Write(data));
        byte[] stored = ReadStored(leader, Meta(100, 4));

        using (ISnapshotReceiver receiver = follower.BeginReceive(Meta(100, 4), stored.Length))
        {
            Feed(receiver, stored);
            SnapshotMetadata metadata = receiver.Complete();
            Assert.Equal(Meta(100, 4).Index, metadata.Index);
            Assert.Equal(Meta(100, 4).ConfState, metadata.ConfState);
        }

        Assert.Null(follower.LoadNewest());
        using (SnapshotReader reader = follower.InstallReceived(Meta(100, 4)))
        {
            Assert.Equal(new LogIndex(100), reader.Metadata.Index);
            Assert.Equal(data, ReadAll(reader.Data));
        }

        Assert.Equal(data, follower.LoadNewest()!.Data.ToArray());
        using (SnapshotReader newest = follower.OpenNewest()!)
        {
            Assert.Equal(data, ReadAll(newest.Data));
        }

        Assert.Empty(Directory.GetFiles(_temp.Combine("follower"), "*.recv"));
        Assert.Empty(Directory.GetFiles(_temp.Combine("follower"), "*.tmp"));
    }

    [Fact]
    public void ACorruptedChunkIsRejectedAndNothingIsKept()
    {
        FileSnapshotStore leader = Open("leader");
        FileSnapshotStore follower = Open("follower");
        leader.Save(Meta(100, 4), s => s.Write(Data(3 * Chunk, 3)));
        byte[] stored = ReadStored(leader, Meta(100, 4));
        stored[(3 * Chunk) / 2] ^= 0x40;

        using (ISnapshotReceiver receiver = follower.BeginReceive(Meta(100, 4), stored.Length))
        {
            Feed(receiver, stored);
            var error = Assert.Throws<InvalidDataException>(() => receiver.Complete());
            Assert.Contains("checksum", error.Message, StringComparison.Ordinal);
        }

        Assert.Empty(Directory.GetFiles(_temp.Combine("follower")));
        Assert.Throws<InvalidDataException>(() => follower.InstallReceived(Meta(100, 4)));
        Assert.Null(follower.LoadNewest());
    }

    [Fact]
    public void ATruncatedStreamIsRejectedAndNothingIsKept()
    {
        FileSnapshotStore leader = Open("leader");
        FileSnapshotStore follower = Open("follower");
        leader.Save(Meta(100, 4), s => s.Write(Data(2 * Chunk, 4)));
        byte[] stored = ReadStored(leader, Meta(100, 4));

        using (ISnapshotReceiver receiver = follower.BeginReceive(Meta(100, 4), stored.Length))
        {
            Feed(receiver, stored[..^100]);
            var error = Assert.Throws<InvalidDataException>(() => receiver.Complete());
            Assert.Contains("incomplete", error.Message, StringComparison.Ordinal);
        }

        Assert.Empty(Directory.GetFiles(_temp.Combine("follower")));

        // Cut off by the connection instead: disposing without completing discards it just the same.
        using (ISnapshotReceiver receiver = follower.BeginReceive(Meta(100, 4), stored.Length))
        {
            Feed(receiver, stored[..Chunk]);
        }

        Assert.Empty(Directory.GetFiles(_temp.Combine("follower")));
    }

    [Fact]
    public void MoreThanTheAnnouncedLengthIsRejected()
    {
        FileSnapshotStore leader = Open("leader");
        FileSnapshotStore follower = Open("follower");
        leader.Save(Meta(100, 4), s => s.Write(Data(1000, 5)));
        byte[] stored = ReadStored(leader, Meta(100, 4));

        using ISnapshotReceiver receiver = follower.BeginReceive(Meta(100, 4), stored.Length - 1);
        Assert.Throws<InvalidDataException>(() => receiver.Write(stored));
        Assert.Throws<InvalidDataException>(() => follower.BeginReceive(Meta(100, 4), 10));
    }

    [Fact]
    public void ASnapshotAnnouncedAsAnotherIndexIsRejected()
    {
        FileSnapshotStore leader = Open("leader");
        FileSnapshotStore follower = Open("follower");
        leader.Save(Meta(100, 4), s => s.Write(Data(1000, 6)));
        byte[] stored = ReadStored(leader, Meta(100, 4));

        using (ISnapshotReceiver receiver = follower.BeginReceive(Meta(200, 4), stored.Length))
        {
            Feed(receiver, stored);
            var error = Assert.Throws<InvalidDataException>(() => receiver.Complete());
            Assert.Contains("index 100", error.Message, StringComparison.Ordinal);
        }

        Assert.Empty(Directory.GetFiles(_temp.Combine("follower")));
    }

    [Fact]
    public void ReceivedSnapshotsNeverInstalledAreRemovedOnOpen()
    {
        FileSnapshotStore leader = Open("leader");
        FileSnapshotStore follower = Open("follower");
        follower.Save(Meta(50, 4), s => s.Write(Data(1000, 7)));
        leader.Save(Meta(100, 4), s => s.Write(Data(1000, 8)));
        byte[] stored = ReadStored(leader, Meta(100, 4));
        using (ISnapshotReceiver receiver = follower.BeginReceive(Meta(100, 4), stored.Length))
        {
            Feed(receiver, stored);
            receiver.Complete();
        }

        Assert.Single(Directory.GetFiles(_temp.Combine("follower"), "*.recv"));
        Assert.Equal(new LogIndex(50), follower.LoadNewest()!.Metadata.Index);

        FileSnapshotStore reopened = Open("follower");
        Assert.Empty(Directory.GetFiles(_temp.Combine("follower"), "*.recv"));
        Assert.Equal(new LogIndex(50), reopened.LoadNewest()!.Metadata.Index);
    }

    [Fact]
    public void OpenNewestStreamsTheDataAndSkipsACorruptNewerFile()
    {
        var recording = new ReadRecordingFileSystem();
        FileSnapshotStore store = Open("store", recording);
        byte[] older = Data(4 * Chunk, 9);
        store.Save(Meta(10, 1), s => s.Write(older));
        store.Save(Meta(20, 1), s => s.Write(Data(1000, 10)));
        string newest = Path.Combine(_temp.Combine("store"), FileSnapshotStore.FileName(Meta(20, 1)));
        byte[] bytes = File.ReadAllBytes(newest);
        bytes[100] ^= 1;
        File.WriteAllBytes(newest, bytes);

        recording.LargestRead = 0;
        using SnapshotReader reader = store.OpenNewest()!;
        Assert.Equal(new LogIndex(10), reader.Metadata.Index);
        Assert.Equal(older, ReadAll(reader.Data));
        Assert.True(recording.LargestRead <= 256 * 1024, $"largest single read {recording.LargestRead} bytes");
    }

    /// <summary>The real file system, recording the largest single read.</summary>
    private sealed class ReadRecordingFileSystem : IFileSystem
    {
        private int _largestRead;

        public int LargestRead
        {
            get => Volatile.Read(ref _largestRead);
            set => Volatile.Write(ref _largestRead, value);
        }

        public IStorageFile Open(string path, FileMode mode, FileAccess access, FileShare share) =>
            new RecordingFile(this, PhysicalFileSystem.Instance.Open(path, mode, access, share));

        public string[] GetFiles(string directory, string searchPattern) => PhysicalFileSystem.Instance.GetFiles(directory, searchPattern);

        public bool FileExists(string path) => PhysicalFileSystem.Instance.FileExists(path);

        public void Move(string source, string destination, bool overwrite) => PhysicalFileSystem.Instance.Move(source, destination, overwrite);

        public void Delete(string path) => PhysicalFileSystem.Instance.Delete(path);

        public void SyncDirectory(string directory) => PhysicalFileSystem.Instance.SyncDirectory(directory);

        private sealed class RecordingFile(ReadRecordingFileSystem owner, IStorageFile inner) : IStorageFile
        {
            public string Path => inner.Path;

            public long Length => inner.Length;

            public void SetLength(long length) => inner.SetLength(length);

            public int Read(long offset, Span<byte> buffer)
            {
                int read = inner.Read(offset, buffer);
                owner.LargestRead = Math.Max(owner.LargestRead, read);
                return read;
            }

            public void Write(long offset, ReadOnlySpan<byte> data) => inner.Write(offset, data);

            public void Sync() => inner.Sync();

            public void Dispose() => inner.Dispose();
        }
    }
}
