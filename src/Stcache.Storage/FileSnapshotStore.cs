using System.Buffers.Binary;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Stcache.Raft;

namespace Stcache.Storage;

/// <summary>Snapshot store settings.</summary>
public sealed class SnapshotStoreOptions
{
    /// <summary>How many snapshot files to keep; older ones are deleted after each save. At least 1; 2 or more
    /// lets a corrupt newest file fall back to the previous one.</summary>
    public int Retain { get; init; } = 2;
}

/// <summary>What the header of a snapshot file says, plus whether its checksum verified (when checked).</summary>
public sealed record SnapshotFileInfo(string Path, SnapshotMetadata Metadata, long DataBytes, long FileBytes);

/// <summary>
/// Snapshot files <c>{term:x16}-{index:x16}.snap</c>. Layout: header (magic, version, metadata length, metadata:
/// index, term, voters, learners), the data, then a trailer (data length u64, CRC-32C u32 over everything before
/// it, end magic u32). Written under a temporary name, synced a mebibyte at a time, renamed, directory synced.
/// </summary>
public sealed class FileSnapshotStore : ISnapshotStore
{
    public const string Extension = ".snap";

    /// <summary>A snapshot received from a peer and verified, not yet installed (invisible to <see cref="LoadNewest"/>).</summary>
    public const string ReceivedExtension = ".recv";

    private const uint FormatVersion = 1;
    private const int FixedHeaderBytes = 16;
    private const int TrailerBytes = 16;
    private const int MetadataBytesMax = 1024 * 1024;
    private const uint TrailerMagic = 0x444E4553; // "SEND"
    private const int CopyBufferBytes = 256 * 1024;

    // A snapshot file, saved or received, is synced every this many bytes as it is written: the kernel starts no
    // write-back of its own below gigabytes of dirty pages, so one sync at the end put the whole file (10 MB at 10,000
    // keys of 1 KiB, hundreds of megabytes for a large cache) on the disk at once, and every write-ahead log
    // fdatasync of the node waited behind it (docs/PERFORMANCE.md, "Write tail latency, session 15"); Redis's
    // incremental fsync avoids the same. The write-ahead log prepares its segments in chunks of the same size.
    internal const long SyncIntervalBytes = 1024 * 1024;

    private static long s_tempCounter;

    private readonly IFileSystem _fileSystem;
    private readonly string _directory;
    private readonly SnapshotStoreOptions _options;
    private readonly ILogger _logger;
    private readonly Lock _gate = new();

    private FileSnapshotStore(IFileSystem fileSystem, string directory, SnapshotStoreOptions options, ILogger logger)
    {
        _fileSystem = fileSystem;
        _directory = directory;
        _options = options;
        _logger = logger;
    }

    private static ReadOnlySpan<byte> Magic => "STCSNAP\u001a"u8;

    /// <summary>Opens the store, creating the directory and removing temporary files left by a crash.</summary>
    public static FileSnapshotStore Open(string directory, SnapshotStoreOptions? options = null, ILogger? logger = null) =>
        Open(PhysicalFileSystem.Instance, directory, options ?? new SnapshotStoreOptions(), logger ?? NullLogger.Instance);

    internal static FileSnapshotStore Open(IFileSystem fileSystem, string directory, SnapshotStoreOptions options, ILogger logger)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(options.Retain, 1);
        fileSystem.CreateDirectory(directory);
        // Received snapshots that were never installed are as good as temporary: the leader sends another.
        foreach (string temp in fileSystem.GetFiles(directory, "*.tmp").Concat(fileSystem.GetFiles(directory, "*" + ReceivedExtension)))
        {
            fileSystem.Delete(temp);
            Log.TempRemoved(logger, temp);
        }

        return new FileSnapshotStore(fileSystem, directory, options, logger);
    }

    public static string FileName(SnapshotMetadata metadata) =>
        string.Create(CultureInfo.InvariantCulture, $"{metadata.Term.Value:x16}-{metadata.Index.Value:x16}{Extension}");

    /// <summary>
    /// Streams a snapshot to disk: <paramref name="writeData"/> writes the data into the given stream, which
    /// checksums it on the way. The file appears under its final name only once complete and synced. Thread-safe.
    /// </summary>
    public void Save(SnapshotMetadata metadata, Action<Stream> writeData)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        ArgumentNullException.ThrowIfNull(writeData);
        string path = Path.Combine(_directory, FileName(metadata));
        string temp = string.Create(CultureInfo.InvariantCulture,
            $"{path}.{Environment.ProcessId}-{Interlocked.Increment(ref s_tempCounter)}.tmp");
        long fileBytes;
        try
        {
            using (IStorageFile file = _fileSystem.Open(temp, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None))
            {
                using var stream = new ChecksumStream(file, SyncIntervalBytes);
                int metadataBytes = WalFormat.MetadataBytes(metadata);
                var header = new byte[FixedHeaderBytes + metadataBytes];
                Magic.CopyTo(header);
                BinaryPrimitives.WriteUInt32LittleEndian(header.AsSpan(8), FormatVersion);
                BinaryPrimitives.WriteInt32LittleEndian(header.AsSpan(12), metadataBytes);
                WalFormat.WriteMetadata(header.AsSpan(FixedHeaderBytes), metadata);
                stream.Write(header);
                long dataStart = stream.Position;

                writeData(stream);

                Span<byte> trailer = stackalloc byte[TrailerBytes];
                BinaryPrimitives.WriteInt64LittleEndian(trailer, stream.Position - dataStart);
                stream.Write(trailer[..8]);
                BinaryPrimitives.WriteUInt32LittleEndian(trailer[8..], stream.Crc);
                BinaryPrimitives.WriteUInt32LittleEndian(trailer[12..], TrailerMagic);
                stream.WriteUnchecked(trailer[8..]);
                stream.Flush();
                file.Sync();
                fileBytes = stream.Position;
            }

            lock (_gate)
            {
                _fileSystem.Move(temp, path, overwrite: true);
                _fileSystem.SyncDirectory(_directory);
                Prune();
            }
        }
        catch
        {
            try
            {
                _fileSystem.Delete(temp);
            }
            catch (IOException)
            {
                // Removed at the next open.
            }

            throw;
        }

        Log.SnapshotSaved(_logger, path, fileBytes);
    }

    /// <summary>Saves a snapshot received in full from a leader.</summary>
    public void Save(Snapshot snapshot)
    {
        ArgumentNullException.ThrowIfNull(snapshot);
        Save(snapshot.Metadata, s => s.Write(snapshot.Data.Span));
    }

    /// <summary>
    /// The newest snapshot whose checksum verifies, or null. A newer file that fails verification is skipped with
    /// a warning (and left in place for inspection).
    /// </summary>
    public Snapshot? LoadNewest()
    {
        // Under the gate so a concurrent Save's pruning cannot delete a file halfway through reading it.
        lock (_gate)
        {
            foreach (SnapshotFileInfo candidate in ListNewestFirst())
            {
                Snapshot? snapshot = TryRead(candidate.Path, out string? error);
                if (snapshot is not null)
                {
                    return snapshot;
                }

                Log.SnapshotCorrupt(_logger, candidate.Path, error!);
            }

            return null;
        }
    }

    /// <summary>
    /// The newest snapshot whose checksum verifies, with a stream that reads its data from the file as it is
    /// read (so restoring never holds the whole snapshot in memory); null if there is none. The checksum is
    /// verified by one streaming pass first. The stream keeps the file open, so pruning cannot take it away.
    /// </summary>
    public SnapshotReader? OpenNewest()
    {
        lock (_gate)
        {
            foreach (SnapshotFileInfo candidate in ListNewestFirst())
            {
#pragma warning disable CA2000 // returned to the caller, who owns it; null when nothing was opened
                SnapshotReader? reader = TryOpenVerified(candidate.Path, out string? error);
#pragma warning restore CA2000
                if (reader is not null)
                {
                    return reader;
                }

                Log.SnapshotCorrupt(_logger, candidate.Path, error!);
            }

            return null;
        }
    }

    /// <summary>
    /// Opens the snapshot file at the index and term of <paramref name="metadata"/>, whole and as stored, to be
    /// streamed to a peer; null when it is gone. Reads nothing: the peer verifies the checksum on receipt.
    /// </summary>
    public Stream? OpenStored(SnapshotMetadata metadata)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        string path = Path.Combine(_directory, FileName(metadata));
        lock (_gate)
        {
            try
            {
                IStorageFile file = _fileSystem.Open(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete);
                return new FileRangeStream(file, 0, file.Length);
            }
            catch (FileNotFoundException)
            {
                return null;
            }
        }
    }

    /// <summary>
    /// Starts receiving a snapshot file streamed by a peer (see <see cref="OpenStored"/>): the pieces go straight
    /// to a temporary file; <see cref="ISnapshotReceiver.Complete"/> verifies and keeps it as received.
    /// </summary>
    public ISnapshotReceiver BeginReceive(SnapshotMetadata announced, long storedBytes)
    {
        ArgumentNullException.ThrowIfNull(announced);
        if (storedBytes < FixedHeaderBytes + TrailerBytes)
        {
            throw new InvalidDataException($"announced snapshot of {storedBytes} bytes is too short to be a snapshot file");
        }

        string temp = string.Create(CultureInfo.InvariantCulture,
            $"{Path.Combine(_directory, FileName(announced))}.{Environment.ProcessId}-{Interlocked.Increment(ref s_tempCounter)}.recv.tmp");
        IStorageFile file = _fileSystem.Open(temp, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None);
        return new Receiver(this, file, temp, announced, storedBytes);
    }

    /// <summary>
    /// Publishes the snapshot received at <paramref name="metadata"/> as the newest snapshot file (an atomic
    /// rename), drops older received ones, prunes, and opens its data for restoring.
    /// </summary>
    public SnapshotReader InstallReceived(SnapshotMetadata metadata)
    {
        ArgumentNullException.ThrowIfNull(metadata);
        string path = Path.Combine(_directory, FileName(metadata));
        string received = Path.ChangeExtension(path, ReceivedExtension);
        lock (_gate)
        {
            if (!_fileSystem.FileExists(received))
            {
                throw new InvalidDataException($"no received snapshot at index {metadata.Index}, term {metadata.Term}");
            }

            _fileSystem.Move(received, path, overwrite: true);
            foreach (string older in _fileSystem.GetFiles(_directory, "*" + ReceivedExtension))
            {
                if (TryParseName(Path.ChangeExtension(older, Extension), out SnapshotMetadata? other) && other!.Index <= metadata.Index)
                {
                    _fileSystem.Delete(older);
                }
            }

            _fileSystem.SyncDirectory(_directory);
            Prune();
            SnapshotReader? reader = TryOpenVerified(path, out string? error);
            return reader ?? throw new InvalidDataException($"received snapshot {path} failed verification: {error}");
        }
    }

    /// <summary>Snapshot files by name, newest (highest index, then term) first. Does not read them.</summary>
    public IReadOnlyList<SnapshotFileInfo> List() => ListNewestFirst();

    /// <summary>Reads the metadata of one snapshot file and verifies its checksum by streaming through it.</summary>
    public static SnapshotFileInfo Verify(string path) => Verify(PhysicalFileSystem.Instance, path);

    internal static SnapshotFileInfo Verify(IFileSystem fileSystem, string path)
    {
        using IStorageFile file = fileSystem.Open(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        return ReadVerified(file, path, null);
    }

    private List<SnapshotFileInfo> ListNewestFirst()
    {
        var result = new List<SnapshotFileInfo>();
        foreach (string path in _fileSystem.GetFiles(_directory, "*" + Extension))
        {
            if (TryParseName(path, out SnapshotMetadata? metadata))
            {
                result.Add(new SnapshotFileInfo(path, metadata!, -1, -1));
            }
        }

        result.Sort((a, b) =>
        {
            int byIndex = b.Metadata.Index.CompareTo(a.Metadata.Index);
            return byIndex != 0 ? byIndex : b.Metadata.Term.CompareTo(a.Metadata.Term);
        });
        return result;
    }

    internal static bool TryParseName(string path, out SnapshotMetadata? metadata)
    {
        metadata = null;
        string name = Path.GetFileName(path);
        if (name.Length != 16 + 1 + 16 + Extension.Length || name[16] != '-' || !name.EndsWith(Extension, StringComparison.Ordinal))
        {
            return false;
        }

        if (!ulong.TryParse(name.AsSpan(0, 16), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong term) ||
            !ulong.TryParse(name.AsSpan(17, 16), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong index))
        {
            return false;
        }

        metadata = new SnapshotMetadata(new LogIndex(index), new Term(term), ConfState.Empty);
        return true;
    }

    private Snapshot? TryRead(string path, out string? error)
    {
        error = null;
        try
        {
            using IStorageFile file = _fileSystem.Open(path, FileMode.Open, FileAccess.Read, FileShare.Read);
            byte[]? data = null;
            SnapshotFileInfo info = ReadVerified(file, path, length => data = new byte[length]);
            return new Snapshot(info.Metadata, data!);
        }
        catch (StorageCorruptionException corruption)
        {
            error = corruption.Message;
        }
        catch (IOException exception)
        {
            error = exception.Message;
        }

        return null;
    }

    private SnapshotReader? TryOpenVerified(string path, out string? error)
    {
        error = null;
        IStorageFile? file = null;
        try
        {
            file = _fileSystem.Open(path, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete);
            SnapshotFileInfo info = ReadVerified(file, path, null);
            var data = new FileRangeStream(file, info.FileBytes - TrailerBytes - info.DataBytes, info.DataBytes);
            file = null;
            return new SnapshotReader(info.Metadata, new BufferedStream(data, CopyBufferBytes));
        }
        catch (StorageCorruptionException corruption)
        {
            error = corruption.Message;
        }
        catch (FileNotFoundException exception)
        {
            error = exception.Message; // pruned since it was listed
        }
        finally
        {
            file?.Dispose();
        }

        // Any other IOException (EIO, a disk that fails for a while) propagates: taking a readable-later snapshot for
        // a missing one made a node whose log starts after it refuse to start for good (sim seed 134, pipelined WAL).
        return null;
    }

    /// <summary>Reads and verifies a whole snapshot file; copies the data into the buffer that
    /// <paramref name="allocate"/> returns when given.</summary>
    private static SnapshotFileInfo ReadVerified(IStorageFile file, string path, Func<long, byte[]>? allocate)
    {
        long length = file.Length;
        if (length < FixedHeaderBytes + TrailerBytes)
        {
            throw new StorageCorruptionException(path, 0, $"file is {length} bytes, too short for a snapshot");
        }

        Span<byte> fixedHeader = stackalloc byte[FixedHeaderBytes];
        ReadExactly(file, path, 0, fixedHeader);
        if (!fixedHeader[..8].SequenceEqual(Magic))
        {
            throw new StorageCorruptionException(path, 0, "bad magic: not a stcache snapshot");
        }

        uint version = BinaryPrimitives.ReadUInt32LittleEndian(fixedHeader[8..]);
        if (version != FormatVersion)
        {
            throw new StorageCorruptionException(path, 8, $"unsupported snapshot format version {version}");
        }

        int metadataBytes = BinaryPrimitives.ReadInt32LittleEndian(fixedHeader[12..]);
        if (metadataBytes < 24 || metadataBytes > MetadataBytesMax || metadataBytes > length - FixedHeaderBytes - TrailerBytes)
        {
            throw new StorageCorruptionException(path, 12, $"implausible metadata length {metadataBytes}");
        }

        var metadataBuffer = new byte[metadataBytes];
        ReadExactly(file, path, FixedHeaderBytes, metadataBuffer);
        uint crc = WalFormat.Crc(fixedHeader);
        crc = WalFormat.Crc(crc, metadataBuffer);

        long dataStart = FixedHeaderBytes + metadataBytes;
        long dataBytes = length - dataStart - TrailerBytes;
        byte[]? data = allocate?.Invoke(dataBytes);
        byte[] chunk = data ?? new byte[(int)Math.Min(CopyBufferBytes, Math.Max(1, dataBytes))];
        for (long done = 0; done < dataBytes;)
        {
            Span<byte> target = data is not null
                ? data.AsSpan((int)done, (int)Math.Min(CopyBufferBytes, dataBytes - done))
                : chunk.AsSpan(0, (int)Math.Min(chunk.Length, dataBytes - done));
            ReadExactly(file, path, dataStart + done, target);
            crc = WalFormat.Crc(crc, target);
            done += target.Length;
        }

        Span<byte> trailer = stackalloc byte[TrailerBytes];
        ReadExactly(file, path, length - TrailerBytes, trailer);
        crc = WalFormat.Crc(crc, trailer[..8]);
        if (BinaryPrimitives.ReadUInt32LittleEndian(trailer[12..]) != TrailerMagic)
        {
            throw new StorageCorruptionException(path, length - 4, "missing end marker: the file is incomplete");
        }

        if (BinaryPrimitives.ReadInt64LittleEndian(trailer) != dataBytes)
        {
            throw new StorageCorruptionException(path, length - TrailerBytes, "data length in the trailer does not match the file size");
        }

        if (BinaryPrimitives.ReadUInt32LittleEndian(trailer[8..]) != crc)
        {
            throw new StorageCorruptionException(path, length - 8, "snapshot checksum mismatch");
        }

        // Only trust the metadata once the checksum covering it verified.
        SnapshotMetadata? metadata = WalFormat.TryReadMetadata(metadataBuffer, out int read, out string? error);
        if (metadata is null || read != metadataBytes)
        {
            throw new StorageCorruptionException(path, FixedHeaderBytes, error ?? "metadata has trailing bytes");
        }

        if (TryParseName(path, out SnapshotMetadata? named) && (named!.Index != metadata.Index || named.Term != metadata.Term))
        {
            throw new StorageCorruptionException(path, FixedHeaderBytes,
                $"header says index {metadata.Index} term {metadata.Term}, but the file name says index {named.Index} term {named.Term}");
        }

        return new SnapshotFileInfo(path, metadata, dataBytes, length);
    }

    private static void ReadExactly(IStorageFile file, string path, long offset, Span<byte> buffer)
    {
        if (file.Read(offset, buffer) != buffer.Length)
        {
            throw new StorageCorruptionException(path, offset, "file ended early");
        }
    }

    private void Prune()
    {
        List<SnapshotFileInfo> files = ListNewestFirst();
        for (int i = _options.Retain; i < files.Count; i++)
        {
            _fileSystem.Delete(files[i].Path);
        }

        if (files.Count > _options.Retain)
        {
            _fileSystem.SyncDirectory(_directory);
        }
    }

    /// <summary>A read-only stream over a range of a storage file; owns the file.</summary>
    private sealed class FileRangeStream : Stream
    {
        private readonly IStorageFile _file;
        private readonly long _start;
        private readonly long _length;
        private long _position;

        public FileRangeStream(IStorageFile file, long start, long length)
        {
            _file = file;
            _start = start;
            _length = length;
        }

        public override bool CanRead => true;

        public override bool CanSeek => false;

        public override bool CanWrite => false;

        public override long Length => _length;

        public override long Position
        {
            get => _position;
            set => throw new NotSupportedException();
        }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            int count = (int)Math.Min(buffer.Length, _length - _position);
            if (count <= 0)
            {
                return 0;
            }

            int read = _file.Read(_start + _position, buffer[..count]);
            if (read == 0)
            {
                throw new EndOfStreamException($"{_file.Path} ended early at offset {_start + _position}");
            }

            _position += read;
            return read;
        }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            cancellationToken.ThrowIfCancellationRequested();
            return ValueTask.FromResult(Read(buffer.Span));
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();

        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        protected override void Dispose(bool disposing)
        {
            if (disposing)
            {
                _file.Dispose();
            }

            base.Dispose(disposing);
        }
    }

    /// <summary>
    /// One snapshot file arriving from a peer: pieces are buffered a little and written to a temporary file;
    /// Complete syncs it, verifies it like a stored snapshot (checksum, trailer, that it is the announced index
    /// and term), and renames it to <c>{term}-{index}.recv</c>. Anything else deletes the temporary file.
    /// </summary>
    private sealed class Receiver : ISnapshotReceiver
    {
        private readonly FileSnapshotStore _store;
        private readonly IStorageFile _file;
        private readonly string _temp;
        private readonly SnapshotMetadata _announced;
        private readonly long _expected;
        private readonly SyncingWriter _writer;
        private readonly byte[] _buffer = new byte[CopyBufferBytes];
        private int _buffered;
        private bool _done;

        public Receiver(FileSnapshotStore store, IStorageFile file, string temp, SnapshotMetadata announced, long expected)
        {
            _store = store;
            _file = file;
            _temp = temp;
            _announced = announced;
            _expected = expected;
            _writer = new SyncingWriter(file, SyncIntervalBytes);
        }

        public long Received => _writer.Written + _buffered;

        public void Write(ReadOnlySpan<byte> piece)
        {
            ObjectDisposedException.ThrowIf(_done, this);
            if (piece.Length > _expected - Received)
            {
                throw new InvalidDataException($"snapshot data goes beyond the announced {_expected} bytes");
            }

            if (_buffered == 0 && piece.Length >= _buffer.Length)
            {
                _writer.Write(piece);
                return;
            }

            while (!piece.IsEmpty)
            {
                int count = Math.Min(piece.Length, _buffer.Length - _buffered);
                piece[..count].CopyTo(_buffer.AsSpan(_buffered));
                _buffered += count;
                piece = piece[count..];
                if (_buffered == _buffer.Length)
                {
                    FlushBuffer();
                }
            }
        }

        public SnapshotMetadata Complete()
        {
            ObjectDisposedException.ThrowIf(_done, this);
            if (Received != _expected)
            {
                throw new InvalidDataException($"snapshot incomplete: {Received} of {_expected} bytes");
            }

            FlushBuffer();
            _file.Sync();
            SnapshotFileInfo info;
            try
            {
                info = ReadVerified(_file, _temp, null);
            }
            catch (StorageCorruptionException corruption)
            {
                throw new InvalidDataException(corruption.Reason, corruption);
            }

            if (info.Metadata.Index != _announced.Index || info.Metadata.Term != _announced.Term)
            {
                throw new InvalidDataException(
                    $"announced as index {_announced.Index} term {_announced.Term}, but the file holds index {info.Metadata.Index} term {info.Metadata.Term}");
            }

            _file.Dispose();
            string received = Path.ChangeExtension(Path.Combine(_store._directory, FileName(info.Metadata)), ReceivedExtension);
            lock (_store._gate)
            {
                _store._fileSystem.Move(_temp, received, overwrite: true);
                _store._fileSystem.SyncDirectory(_store._directory);
            }

            _done = true;
            return info.Metadata;
        }

        public void Dispose()
        {
            if (_done)
            {
                return;
            }

            _done = true;
            _file.Dispose();
            try
            {
                _store._fileSystem.Delete(_temp);
            }
            catch (IOException)
            {
                // Removed at the next open.
            }
        }

        private void FlushBuffer()
        {
            if (_buffered > 0)
            {
                _writer.Write(_buffer.AsSpan(0, _buffered));
                _buffered = 0;
            }
        }
    }

    /// <summary>A write-only stream over a storage file that checksums and counts what passes through it, with a
    /// small buffer so callers may write in tiny pieces; it syncs the file whenever <c>syncIntervalBytes</c> more have
    /// reached it since the last sync (the caller syncs the rest at the end).</summary>
    private sealed class ChecksumStream : Stream
    {
        private readonly SyncingWriter _writer;
        private readonly byte[] _buffer = new byte[CopyBufferBytes];
        private int _buffered;

        public ChecksumStream(IStorageFile file, long syncIntervalBytes)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(syncIntervalBytes, CopyBufferBytes);
            _writer = new SyncingWriter(file, syncIntervalBytes);
        }

        public uint Crc { get; private set; }

        public override bool CanRead => false;

        public override bool CanSeek => false;

        public override bool CanWrite => true;

        public override long Length => _writer.Written + _buffered;

        public override long Position
        {
            get => _writer.Written + _buffered;
            set => throw new NotSupportedException();
        }

        public override void Write(byte[] buffer, int offset, int count) => Write(buffer.AsSpan(offset, count));

        public override void Write(ReadOnlySpan<byte> buffer)
        {
            Crc = WalFormat.Crc(Crc, buffer);
            WriteUnchecked(buffer);
        }

        /// <summary>Writes bytes that the checksum does not cover (the checksum itself).</summary>
        public void WriteUnchecked(ReadOnlySpan<byte> buffer)
        {
            while (!buffer.IsEmpty)
            {
                int count = Math.Min(buffer.Length, _buffer.Length - _buffered);
                buffer[..count].CopyTo(_buffer.AsSpan(_buffered));
                _buffered += count;
                buffer = buffer[count..];
                if (_buffered == _buffer.Length)
                {
                    Flush();
                }
            }
        }

        public override void WriteByte(byte value) => Write([value]);

        public override void Flush()
        {
            if (_buffered > 0)
            {
                _writer.Write(_buffer.AsSpan(0, _buffered));
                _buffered = 0;
            }
        }

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

        public override void SetLength(long value) => throw new NotSupportedException();
    }

    /// <summary>Writes a storage file front to back and syncs it whenever <c>intervalBytes</c> more have reached it
    /// since the last sync, so a large file never leaves the disk with all of it dirty at once (the owner syncs the
    /// rest at the end).</summary>
    private sealed class SyncingWriter
    {
        private readonly IStorageFile _file;
        private readonly long _intervalBytes;
        private long _synced; // Invariant: _synced <= Written

        public SyncingWriter(IStorageFile file, long intervalBytes)
        {
            ArgumentOutOfRangeException.ThrowIfLessThan(intervalBytes, 1);
            _file = file;
            _intervalBytes = intervalBytes;
        }

        /// <summary>The bytes written so far; the next write goes at this offset.</summary>
        public long Written { get; private set; }

        public void Write(ReadOnlySpan<byte> bytes)
        {
            _file.Write(Written, bytes);
            Written += bytes.Length;
            if (Written - _synced >= _intervalBytes)
            {
                _file.Sync();
                _synced = Written;
            }
        }
    }
}
