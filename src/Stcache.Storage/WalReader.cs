using System.Buffers;
using System.Buffers.Binary;
using System.Globalization;
using Stcache.Raft;

namespace Stcache.Storage;

/// <summary>A segment file named <c>{seq:x16}-{firstIndex:x16}.wal</c>.</summary>
internal sealed record WalSegment(ulong Sequence, ulong FirstIndex, string Path)
{
    public const string Extension = ".wal";

    public static string FileName(ulong sequence, ulong firstIndex) =>
        string.Create(CultureInfo.InvariantCulture, $"{sequence:x16}-{firstIndex:x16}{Extension}");

    public static bool TryParse(string path, out WalSegment? segment)
    {
        segment = null;
        string name = System.IO.Path.GetFileName(path);
        if (name.Length != 16 + 1 + 16 + Extension.Length || name[16] != '-' || !name.EndsWith(Extension, StringComparison.Ordinal))
        {
            return false;
        }

        if (!ulong.TryParse(name.AsSpan(0, 16), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong sequence) ||
            !ulong.TryParse(name.AsSpan(17, 16), NumberStyles.AllowHexSpecifier, CultureInfo.InvariantCulture, out ulong firstIndex))
        {
            return false;
        }

        segment = new WalSegment(sequence, firstIndex, path);
        return true;
    }

    /// <summary>Lists the segments in sequence order and checks that no sequence number is missing.</summary>
    public static List<WalSegment> List(IFileSystem fileSystem, string directory)
    {
        var segments = new List<WalSegment>();
        foreach (string path in fileSystem.GetFiles(directory, "*" + Extension))
        {
            // Windows wildcard matching also returns names like "x.wal.bak"; only exact ".wal" names count.
            if (!path.EndsWith(Extension, StringComparison.Ordinal))
            {
                continue;
            }

            if (!TryParse(path, out WalSegment? segment))
            {
                throw new StorageCorruptionException(path, 0, "unexpected file name in the WAL directory");
            }

            segments.Add(segment!);
        }

        segments.Sort((a, b) => a.Sequence.CompareTo(b.Sequence));
        for (int i = 1; i < segments.Count; i++)
        {
            if (segments[i].Sequence != segments[i - 1].Sequence + 1)
            {
                throw new StorageCorruptionException(segments[i].Path, 0,
                    $"segment sequence gap: previous segment is {segments[i - 1].Sequence}, this one {segments[i].Sequence}");
            }

            if (segments[i].FirstIndex < 1)
            {
                throw new StorageCorruptionException(segments[i].Path, 0, "segment first index is 0");
            }
        }

        return segments;
    }
}

/// <summary>How one segment ended when scanned.</summary>
internal sealed record SegmentScan(WalSegment Segment, long FileLength, long ValidEnd, long GarbageEnd, int Records);

/// <summary>
/// Reads and verifies every record of a WAL directory and replays them into the state the Raft core needs. Used
/// both by recovery (which may then cut a torn tail) and by the read-only inspector.
/// </summary>
internal sealed class WalReader
{
    private readonly IFileSystem _fileSystem;
    private readonly List<(WalRecord Record, string Path, long Offset)>? _recordLog;

    private HardState _hardState = HardState.Empty;
    private SnapshotMetadata _snapshot = SnapshotMetadata.Empty;

    // Invariant: _entries is contiguous, _entries[i].Index == _entriesStart + i.
    private readonly List<Entry> _entries = [];
    private ulong _entriesStart;

    public WalReader(IFileSystem fileSystem, bool keepRecords = false)
    {
        _fileSystem = fileSystem;
        _recordLog = keepRecords ? [] : null;
    }

    public List<SegmentScan> Scans { get; } = [];

    /// <summary>Every record in file order (only when constructed with keepRecords).</summary>
    public IReadOnlyList<(WalRecord Record, string Path, long Offset)> Records => _recordLog ?? [];

    /// <summary>
    /// Scans the segments in order. A bad record followed by nothing but zeros or unverifiable bytes in the last
    /// segment is a torn tail (reported in <see cref="Scans"/>, not fixed here). Anything else that fails
    /// verification throws <see cref="StorageCorruptionException"/>.
    /// </summary>
    public void ReadAll(IReadOnlyList<WalSegment> segments)
    {
        for (int i = 0; i < segments.Count; i++)
        {
            Scans.Add(ScanSegment(segments[i], isLast: i == segments.Count - 1));
        }
    }

    public PersistentState Finish(IReadOnlyList<WalSegment> segments)
    {
        var entries = new List<Entry>();
        if (_entries.Count > 0)
        {
            if (_entriesStart > _snapshot.Index.Value + 1)
            {
                string path = segments.Count > 0 ? segments[0].Path : "WAL";
                throw new StorageCorruptionException(path, 0,
                    $"the log starts at index {_entriesStart} but the newest snapshot recorded in the WAL covers only up to {_snapshot.Index}: entries are missing");
            }

            foreach (Entry entry in _entries)
            {
                if (entry.Index > _snapshot.Index)
                {
                    entries.Add(entry);
                }
            }
        }
        else if (segments.Count > 0 && _snapshot.Index.Value + 1 < segments[0].FirstIndex && segments[0].Sequence != 0)
        {
            throw new StorageCorruptionException(segments[0].Path, 0,
                $"the oldest segment starts at index {segments[0].FirstIndex} but the newest snapshot covers only up to {_snapshot.Index}");
        }

        return new PersistentState(_hardState, _snapshot, entries);
    }

    private SegmentScan ScanSegment(WalSegment segment, bool isLast)
    {
        using IStorageFile file = _fileSystem.Open(segment.Path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite);
        long length = file.Length;
        if (length > int.MaxValue)
        {
            throw new StorageCorruptionException(segment.Path, 0, $"segment is {length} bytes, more than this build can read");
        }

        // Through a window of about a mebibyte, not the whole (preallocated, mostly zero) segment in one array: a
        // 64 MiB buffer per segment stayed resident until the next full GC, the largest part of an idle node's RSS.
        using var window = new SegmentWindow(file, length);
        string? headerError = WalFormat.ValidateSegmentHeader(window.Read(0, (int)Math.Min(length, WalFormat.SegmentHeaderBytes)), segment.FirstIndex);
        if (headerError is not null)
        {
            // Segments are published by rename only after their header is synced, so a bad header is never torn.
            throw new StorageCorruptionException(segment.Path, 0, headerError);
        }

        long offset = WalFormat.SegmentHeaderBytes;
        int records = 0;
        while (true)
        {
            FrameStatus status = TryReadFrame(window, offset, out int recordBytes, out string? frameError);
            if (status != FrameStatus.Valid)
            {
                long garbageEnd = LastNonZeroEnd(window, offset);
                if (garbageEnd == offset)
                {
                    // Clean end: zeros (or nothing) after the last record.
                    return new SegmentScan(segment, length, offset, offset, records);
                }

                long laterRecord = FindValidFrame(window, offset + WalFormat.RecordAlignmentBytes);
                if (laterRecord >= 0)
                {
                    throw new StorageCorruptionException(segment.Path, offset,
                        $"{frameError ?? "record ends early"}, yet a valid record follows at offset {laterRecord}");
                }

                if (!isLast)
                {
                    throw new StorageCorruptionException(segment.Path, offset,
                        $"{frameError ?? "record ends early"} in a segment that is not the last one");
                }

                return new SegmentScan(segment, length, offset, garbageEnd, records);
            }

            // TryReadFrame left the whole record in the window; the decoder copies what it keeps.
            int payloadLength = (int)BinaryPrimitives.ReadUInt32LittleEndian(window.Read(offset, WalFormat.RecordHeaderBytes));
            ReadOnlySpan<byte> typeAndPayload = window.Read(offset + WalFormat.RecordHeaderBytes, payloadLength);
            if (!WalRecordDecoder.TryDecode(typeAndPayload, out WalRecord record, out string? decodeError))
            {
                // The checksum matched, so these bytes are what we wrote: a format bug or a foreign file, never torn.
                throw new StorageCorruptionException(segment.Path, offset, decodeError!);
            }

            Apply(record, segment.Path, offset);
            _recordLog?.Add((record, segment.Path, offset));
            records++;
            offset += recordBytes;
        }
    }

    private void Apply(in WalRecord record, string path, long offset)
    {
        switch (record.Type)
        {
            case WalRecordType.HardState:
                _hardState = record.HardState;
                break;

            case WalRecordType.Snapshot:
                {
                    // Restatements repeat an older snapshot; only a newer one moves the start of the log.
                    SnapshotMetadata snapshot = record.Snapshot!;
                    if (snapshot.Index <= _snapshot.Index)
                    {
                        break;
                    }

                    if (_entries.Count > 0 && snapshot.Index.Value >= _entriesStart)
                    {
                        ulong drop = Math.Min((ulong)_entries.Count, snapshot.Index.Value - _entriesStart + 1);
                        _entries.RemoveRange(0, (int)drop);
                        _entriesStart += drop;
                    }

                    _snapshot = snapshot;
                    break;
                }

            case WalRecordType.SnapshotReset:
                _entries.Clear();
                _snapshot = record.Snapshot!;
                break;

            case WalRecordType.Entry:
                {
                    ulong index = record.Entry.Index.Value;
                    if (index <= _snapshot.Index.Value)
                    {
                        throw new StorageCorruptionException(path, offset,
                            $"entry {index} is covered by the snapshot at {_snapshot.Index} recorded before it");
                    }

                    if (_entries.Count == 0)
                    {
                        _entriesStart = index;
                        _entries.Add(record.Entry);
                        break;
                    }

                    ulong next = _entriesStart + (ulong)_entries.Count;
                    if (index > next)
                    {
                        throw new StorageCorruptionException(path, offset, $"entry {index} leaves a gap after entry {next - 1}");
                    }

                    if (index < _entriesStart)
                    {
                        throw new StorageCorruptionException(path, offset,
                            $"entry {index} overwrites entries before {_entriesStart}, which are no longer in the WAL");
                    }

                    if (index < next)
                    {
                        // Overwrite: the new entry replaces this index and everything after it.
                        _entries.RemoveRange((int)(index - _entriesStart), (int)(next - index));
                    }

                    if (_entries.Count > 0 && record.Entry.Term < _entries[^1].Term)
                    {
                        throw new StorageCorruptionException(path, offset,
                            $"entry {index} has term {record.Entry.Term}, lower than the previous entry's {_entries[^1].Term}");
                    }

                    if (_entries.Count == 0)
                    {
                        _entriesStart = index;
                    }

                    _entries.Add(record.Entry);
                    break;
                }

            default:
                throw new StorageCorruptionException(path, offset, $"unexpected record type {record.Type}");
        }
    }

    private enum FrameStatus
    {
        Valid,
        End,
        Bad,
    }

    private static FrameStatus TryReadFrame(SegmentWindow window, long offset, out int recordBytes, out string? error)
    {
        recordBytes = 0;
        error = null;
        if (offset + WalFormat.RecordHeaderBytes > window.Length)
        {
            error = "record header cut short";
            return offset == window.Length ? FrameStatus.End : FrameStatus.Bad;
        }

        ReadOnlySpan<byte> header = window.Read(offset, WalFormat.RecordHeaderBytes);
        uint length = BinaryPrimitives.ReadUInt32LittleEndian(header);
        uint crc = BinaryPrimitives.ReadUInt32LittleEndian(header[4..]);
        if (length == 0)
        {
            error = "zero length word";
            return FrameStatus.End;
        }

        if (length > WalFormat.RecordLengthMax)
        {
            error = $"implausible record length {length}";
            return FrameStatus.Bad;
        }

        long aligned = WalFormat.Align(WalFormat.RecordHeaderBytes + (long)length);
        if (offset + aligned > window.Length)
        {
            error = $"record of {length} bytes runs past the end of the file";
            return FrameStatus.Bad;
        }

        ReadOnlySpan<byte> span = window.Read(offset, (int)aligned);
        if (WalFormat.Crc(span.Slice(WalFormat.RecordHeaderBytes, (int)length)) != crc)
        {
            error = "record checksum mismatch";
            return FrameStatus.Bad;
        }

        if (span[(WalFormat.RecordHeaderBytes + (int)length)..].ContainsAnyExcept((byte)0))
        {
            error = "non-zero record padding";
            return FrameStatus.Bad;
        }

        recordBytes = (int)aligned;
        return FrameStatus.Valid;
    }

    /// <summary>The first aligned offset at or after <paramref name="from"/> holding a verifiable record, or -1.</summary>
    private static long FindValidFrame(SegmentWindow window, long from)
    {
        for (long offset = WalFormat.Align(from); offset + WalFormat.RecordHeaderBytes <= window.Length; offset += WalFormat.RecordAlignmentBytes)
        {
            if (BinaryPrimitives.ReadUInt32LittleEndian(window.Read(offset, WalFormat.RecordHeaderBytes)) == 0)
            {
                continue;
            }

            if (TryReadFrame(window, offset, out _, out _) == FrameStatus.Valid)
            {
                return offset;
            }
        }

        return -1;
    }

    private static long LastNonZeroEnd(SegmentWindow window, long from)
    {
        long end = from;
        for (long position = from; position < window.Length; position += SegmentWindow.ChunkBytes)
        {
            int count = (int)Math.Min(SegmentWindow.ChunkBytes, window.Length - position);
            int last = window.Read(position, count).LastIndexOfAnyExcept((byte)0);
            if (last >= 0)
            {
                end = position + last + 1;
            }
        }

        return end;
    }

    /// <summary>
    /// A segment read through one buffer of <see cref="ChunkBytes"/> (larger only while a larger record is read),
    /// refilled from the file whenever a read falls outside it. A span it returns is valid until the next read.
    /// </summary>
    private sealed class SegmentWindow : IDisposable
    {
        public const int ChunkBytes = 1024 * 1024;

        private readonly IStorageFile _file;
        private byte[] _buffer = ArrayPool<byte>.Shared.Rent(ChunkBytes);
        private long _start;
        private int _count;

        public SegmentWindow(IStorageFile file, long length)
        {
            _file = file;
            Length = length;
        }

        /// <summary>The file's length when the scan began.</summary>
        public long Length { get; }

        /// <summary>The bytes [offset, offset + count), which must lie within <see cref="Length"/>.</summary>
        public ReadOnlySpan<byte> Read(long offset, int count)
        {
            if (offset < _start || offset + count > _start + _count)
            {
                Fill(offset, count);
            }

            return _buffer.AsSpan((int)(offset - _start), count);
        }

        private void Fill(long offset, int count)
        {
            int wanted = (int)Math.Min(Math.Max(count, ChunkBytes), Length - offset);
            if (wanted > _buffer.Length)
            {
                // A record larger than the chunk: its own array, garbage after the scan (not kept in the pool).
                ReturnBuffer();
                _buffer = new byte[wanted];
            }

            _count = 0;
            int read = _file.Read(offset, _buffer.AsSpan(0, wanted));
            if (read != wanted)
            {
                throw new IOException($"short read of {_file.Path} at offset {offset}: {read} of {wanted} bytes");
            }

            _start = offset;
            _count = wanted;
        }

        public void Dispose()
        {
            ReturnBuffer();
            _buffer = [];
            _count = 0;
        }

        private void ReturnBuffer()
        {
            if (_buffer.Length == ChunkBytes)
            {
                ArrayPool<byte>.Shared.Return(_buffer);
            }
        }
    }
}
