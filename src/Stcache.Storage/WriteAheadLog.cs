using System.Buffers;
using System.Diagnostics;
using System.Globalization;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Stcache.Raft;

namespace Stcache.Storage;

/// <summary>
/// The Raft log and hard state on disk: CRC-framed records in preallocated segment files
/// (<c>{seq:x16}-{firstIndex:x16}.wal</c>). Every <see cref="Save"/> that writes is one write and one fdatasync;
/// a save that only moves the commit index writes nothing (see <see cref="Save"/>). Not thread-safe: the Raft host
/// calls it from its loop only (the counters may be read from any thread).
/// </summary>
public sealed class WriteAheadLog : IRaftLogStore, IDisposable
{
    private const int ZeroChunkBytes = 1024 * 1024;

    private readonly IFileSystem _fileSystem;
    private readonly string _directory;
    private readonly WalOptions _options;
    private readonly ILogger _logger;
    private readonly ArrayBufferWriter<byte> _buffer = new(64 * 1024);
    private readonly List<WalSegment> _segments;

    // Terms of the entries after the snapshot, as runs: (first index of the run, term). Enough to answer
    // "does the log hold this snapshot's index at its term?" without keeping the entries in memory.
    private readonly List<(ulong StartIndex, Term Term)> _termRuns = [];

    private IStorageFile _active;

    // Invariant: _activeDataStart <= _activeOffset; records end at _activeOffset, zeros follow.
    private long _activeOffset;
    private long _activeDataStart;

    // A failed write may have left bytes at [_dirtyStart, _dirtyEnd); they are zeroed before anything else is written.
    private long _dirtyStart = -1;
    private long _dirtyEnd = -1;

    // The newest hard state given to Save. Its term and vote are always on disk; its commit index may not be yet.
    private HardState _hardState;

    // True while _hardState's commit index is newer than the hard state on disk (a commit-only save, kept in memory
    // until the next write: see Save). Invariant: when true, only the commit index differs from the stored one.
    private bool _commitUnwritten;
    private SnapshotMetadata _snapshot;

    // Invariant: _lastIndex >= _snapshot.Index.
    private ulong _lastIndex;
    private PersistentState? _recovered;

    // A zero-filled, synced temporary file being prepared to become the next segment; null when none.
    private Task<string>? _nextSegment;

    // Stops the preparation between chunks when the log is disposed: closing a node (or a one-shot tool such as
    // stcachectl recover) never waits for 64 MiB of zeros it will not use.
    private readonly CancellationTokenSource _preparing = new();
    private long _syncCount;
    private long _syncedBytes;
    private long _lastSyncBytes;
    private long _syncTicks;
    private bool _disposed;

    private WriteAheadLog(IFileSystem fileSystem, string directory, WalOptions options, ILogger logger, List<WalSegment> segments, IStorageFile active)
    {
        _fileSystem = fileSystem;
        _directory = directory;
        _options = options;
        _logger = logger;
        _segments = segments;
        _active = active;
        _hardState = HardState.Empty;
        _snapshot = SnapshotMetadata.Empty;
    }

    /// <summary>Completed syncs (each covers one batch).</summary>
    public long SyncCount => Interlocked.Read(ref _syncCount);

    /// <summary>Bytes made durable by all syncs; divide by <see cref="SyncCount"/> for bytes per sync.</summary>
    public long SyncedBytes => Interlocked.Read(ref _syncedBytes);

    /// <summary>Bytes covered by the most recent sync.</summary>
    public long LastSyncBytes => Interlocked.Read(ref _lastSyncBytes);

    /// <summary>Time spent in write plus sync calls.</summary>
    public TimeSpan SyncTime => Stopwatch.GetElapsedTime(0, Interlocked.Read(ref _syncTicks));

    /// <summary>Number of segment files currently on disk.</summary>
    public int SegmentCount => _segments.Count;

    /// <summary>Index of the last entry in the log (or of the snapshot when the log after it is empty).</summary>
    public LogIndex LastIndex => new(_lastIndex);

    /// <summary>The newest hard state saved, including a commit index not yet written (see <see cref="Save"/>).</summary>
    public HardState HardState => _hardState;

    /// <summary>True while the commit index of <see cref="HardState"/> is not yet written; for tests.</summary>
    internal bool CommitUnwritten => _commitUnwritten;

    /// <summary>Where the next record goes; for tests.</summary>
    internal string ActiveSegmentPath => _active.Path;

    internal long ActiveOffset => _activeOffset;

    /// <summary>The newest snapshot recorded in the WAL.</summary>
    public SnapshotMetadata Snapshot => _snapshot;

    /// <summary>
    /// Opens (or creates) the WAL in <paramref name="directory"/>, verifying every record. A torn tail in the last
    /// segment is cut and logged; any other bad record throws <see cref="StorageCorruptionException"/> naming the
    /// file and offset (unless <see cref="WalOptions.RepairCorruption"/>). The caller must hold the data
    /// directory's lock (<see cref="DataDirectory"/>).
    /// </summary>
    public static WriteAheadLog Open(string directory, WalOptions? options = null, ILogger? logger = null) =>
        Open(PhysicalFileSystem.Instance, directory, options ?? new WalOptions(), logger ?? NullLogger.Instance);

    internal static WriteAheadLog Open(IFileSystem fileSystem, string directory, WalOptions options, ILogger logger)
    {
        options.Validate();
        fileSystem.CreateDirectory(directory);
        foreach (string temp in fileSystem.GetFiles(directory, "*.tmp"))
        {
            // A segment that never got renamed was never part of the log.
            fileSystem.Delete(temp);
            Log.TempRemoved(logger, temp);
        }

        while (true)
        {
            List<WalSegment> segments = WalSegment.List(fileSystem, directory);
            if (segments.Count == 0)
            {
                WalSegment first = CreateSegment(fileSystem, directory, options, 0, 1, HardState.Empty, SnapshotMetadata.Empty);
                segments.Add(first);
            }

            var reader = new WalReader(fileSystem);
            try
            {
                reader.ReadAll(segments);
            }
            catch (StorageCorruptionException corruption) when (options.RepairCorruption)
            {
                Repair(fileSystem, directory, segments, corruption, logger);
                continue;
            }

            PersistentState state = reader.Finish(segments);
            SegmentScan last = reader.Scans[^1];
            IStorageFile active = fileSystem.Open(last.Segment.Path, FileMode.Open, FileAccess.ReadWrite, FileShare.Read);
            try
            {
                if (last.GarbageEnd > last.ValidEnd)
                {
                    // A torn tail: zero it so a later scan never mistakes leftovers for records.
                    ZeroRange(active, last.ValidEnd, last.GarbageEnd);
                    active.Sync();
                    Log.TornTailCut(logger, last.Segment.Path, last.GarbageEnd - last.ValidEnd, last.ValidEnd);
                }
            }
            catch
            {
                active.Dispose();
                throw;
            }

            var wal = new WriteAheadLog(fileSystem, directory, options, logger, segments, active)
            {
                _activeOffset = last.ValidEnd,
                _activeDataStart = last.Records == 0 ? last.ValidEnd : WalFormat.SegmentHeaderBytes,
                _hardState = state.HardState,
                _snapshot = state.Snapshot,
                _recovered = state,
            };
            wal.ResetTermRuns(state);
            wal.PrepareNextSegment();
            Log.WalOpened(logger, directory, segments.Count, state.HardState, state.Snapshot.Index.Value,
                state.Entries.Count > 0 ? state.Entries[0].Index.Value : 0, wal._lastIndex);
            return wal;
        }
    }

    /// <summary>
    /// The state recovered at open: hard state, the newest snapshot recorded in the WAL, and every entry after it.
    /// Later calls re-read the files (with the commit index held in memory, if one is not yet written).
    /// </summary>
    public PersistentState Load()
    {
        ThrowIfDisposed();
        PersistentState? recovered = _recovered;
        _recovered = null;
        if (recovered is not null)
        {
            return recovered;
        }

        var reader = new WalReader(_fileSystem);
        reader.ReadAll(_segments);
        PersistentState state = reader.Finish(_segments);
        return _commitUnwritten ? state with { HardState = _hardState } : state;
    }

    /// <summary>
    /// Appends <paramref name="entries"/> and records <paramref name="hardState"/> with one write and one fdatasync,
    /// except when the only change is the commit index: then nothing is written, and the commit index waits in
    /// memory until the next save that writes (entries, a term or a vote) carries it, or <see cref="Dispose"/>
    /// writes it. Returns whether it wrote.
    /// </summary>
    /// <remarks>
    /// Why a commit index may wait: Raft keeps the term, the vote and the log on stable storage, not the commit
    /// index (thesis §3.8; etcd's <c>MustSync</c>). This log used to write a commit-only hard state without a sync,
    /// so a power failure could already lose it, and everything that reads the stored commit index copes with one
    /// that is behind: the core restarts from it (a follower relearns the rest from its leader's next append, a
    /// single voter from the entry it commits on election), recovery raises it to the snapshot's index, and
    /// <c>stcachectl recover</c> replays the whole log. Keeping it in memory leaves, after any crash, a log that a
    /// power failure under the old rule could have left: the commit-only records since the last sync, lost. etcd's
    /// WAL does the same: its encoder buffers records in memory and writes them at the next sync. What it gives
    /// up: after a process crash (not only a power failure) the stored commit index can be behind by the rounds
    /// since the last write. What it gives: one write per consensus round instead of two on every node, and on
    /// the leader none between the acknowledgements and the answer.
    /// The commit index written with entries never covers entries the batch does not hold or that are not already
    /// stored: it goes after them, and a commit index given alone is at most the last index then stored.
    /// </remarks>
    public bool Save(HardState? hardState, IReadOnlyList<Entry> entries)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(entries);
        HardState target = hardState ?? _hardState;
        bool termOrVoteChanged = target.Term != _hardState.Term || target.Vote != _hardState.Vote;
        if (entries.Count == 0 && !termOrVoteChanged)
        {
            if (target != _hardState)
            {
                _hardState = target;
                _commitUnwritten = true;
            }

            return false;
        }

        ValidateEntries(entries);
        _recovered = null;
        _buffer.ResetWrittenCount();

        // A power failure during the sync may keep any prefix of the batch. A new term or vote goes before the
        // entries, so a prefix that holds an entry of a term also holds that term: after the entries, a torn tail
        // recovered entries of term T under an older term (a node restarted at term 2 holding term 3 entries).
        // Its commit index stops below the batch, so that prefix never claims entries it lost; the full hard state
        // follows the entries when its commit index covers them.
        bool writeHardState = target != _hardState || _commitUnwritten;
        HardState? leading = null;
        if (termOrVoteChanged && entries.Count > 0)
        {
            leading = target with { Commit = LogIndex.Min(target.Commit, entries[0].Index.Previous) };
            WalFormat.AppendHardState(_buffer, leading.Value);
        }

        for (int i = 0; i < entries.Count; i++)
        {
            WalFormat.AppendEntry(_buffer, entries[i]);
        }

        if (writeHardState && leading != target)
        {
            WalFormat.AppendHardState(_buffer, target);
        }

        // Entries, a term and a vote must be on disk before anyone hears of them: every write here is synced.
        ulong nextIndex = entries.Count > 0 ? Math.Min(entries[0].Index.Value, _lastIndex + 1) : _lastIndex + 1;
        Append(_buffer.WrittenSpan, nextIndex);

        // Durable: now the in-memory view may move.
        for (int i = 0; i < entries.Count; i++)
        {
            AppendTerm(entries[i].Index.Value, entries[i].Term);
        }

        if (entries.Count > 0)
        {
            _lastIndex = entries[^1].Index.Value;
        }

        _hardState = target;
        _commitUnwritten = false;
        return true;
    }

    /// <inheritdoc />
    public void ApplySnapshot(SnapshotMetadata snapshot)
    {
        ThrowIfDisposed();
        ArgumentNullException.ThrowIfNull(snapshot);
        if (snapshot.Index <= _snapshot.Index)
        {
            return;
        }

        bool keepLog = snapshot.Index.Value <= _lastIndex && TermAt(snapshot.Index.Value) == snapshot.Term;
        _recovered = null;
        _buffer.ResetWrittenCount();
        WalFormat.AppendSnapshot(_buffer, snapshot, resetLog: !keepLog);
        Append(_buffer.WrittenSpan, keepLog ? _lastIndex + 1 : snapshot.Index.Value + 1);

        _snapshot = snapshot;
        if (keepLog)
        {
            DropTermsThrough(snapshot.Index.Value, snapshot.Term);
        }
        else
        {
            _termRuns.Clear();
            _termRuns.Add((snapshot.Index.Value, snapshot.Term));
            _lastIndex = snapshot.Index.Value;
        }
    }

    /// <summary>
    /// Deletes whole segments whose entries all lie at or before <paramref name="upTo"/>. Never goes past the
    /// newest snapshot recorded with <see cref="ApplySnapshot"/>, so recovery always finds a snapshot covering the
    /// deleted entries; the host records its own snapshots with ApplySnapshot before compacting. The entries kept
    /// behind a snapshot are the caller's one setting (the host's <c>--snapshot-trailing</c>): it passes the
    /// snapshot's index minus them, and the log keeps no margin of its own on top.
    /// </summary>
    public void Compact(LogIndex upTo)
    {
        ThrowIfDisposed();
        ulong limit = Math.Min(upTo.Value, _snapshot.Index.Value);
        int deleted = 0;

        // Segment i holds only entries below the next segment's first index; the active segment always stays.
        while (deleted + 1 < _segments.Count && _segments[deleted + 1].FirstIndex - 1 <= limit)
        {
            // Oldest first, so a crash in between leaves a contiguous run of segments.
            _fileSystem.Delete(_segments[deleted].Path);
            Log.SegmentDeleted(_logger, _segments[deleted].Path);
            deleted++;
        }

        if (deleted > 0)
        {
            _segments.RemoveRange(0, deleted);
            _fileSystem.SyncDirectory(_directory);
        }
    }

    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }

        WriteUnwrittenCommit();
        _disposed = true;
        _preparing.Cancel();
        _active.Dispose();
        if (TakePreparedSegment() is { } prepared)
        {
            TryDelete(prepared);
        }

        _preparing.Dispose();
    }

    /// <summary>
    /// A clean close writes the commit index still held in memory, without a sync (a power failure may lose it, as
    /// it may lose any commit index: see <see cref="Save"/>). A failure is logged, not thrown: the index is relearned.
    /// </summary>
    private void WriteUnwrittenCommit()
    {
        if (!_commitUnwritten)
        {
            return;
        }

        try
        {
            _buffer.ResetWrittenCount();
            WalFormat.AppendHardState(_buffer, _hardState);
            Append(_buffer.WrittenSpan, _lastIndex + 1, sync: false);
            _commitUnwritten = false;
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
        {
            Log.CommitNotWritten(_logger, exception, _hardState.Commit.Value);
        }
    }

    private void Append(ReadOnlySpan<byte> records, ulong nextIndex, bool sync = true)
    {
        CleanDirtyRange();
        if (_activeOffset > _activeDataStart && _activeOffset + records.Length > _options.SegmentSizeBytes)
        {
            CutSegment(nextIndex);
        }

        long start = Stopwatch.GetTimestamp();
        long offset = _activeOffset;
        try
        {
            _active.Write(offset, records);
            if (sync && !_options.SkipSync)
            {
                _active.Sync();
            }
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
        {
            Log.WriteFailed(_logger, exception, _active.Path, offset);
            _dirtyStart = offset;
            _dirtyEnd = offset + records.Length;
            try
            {
                CleanDirtyRange();
            }
            catch (IOException cleanup)
            {
                Log.CleanupPending(_logger, cleanup);
            }

            throw exception as IOException ?? new IOException($"WAL write to {_active.Path} failed", exception);
        }

        _activeOffset = offset + records.Length;
        if (!sync)
        {
            return;
        }

        Interlocked.Add(ref _syncTicks, Stopwatch.GetTimestamp() - start);
        Interlocked.Increment(ref _syncCount);
        Interlocked.Add(ref _syncedBytes, records.Length);
        Interlocked.Exchange(ref _lastSyncBytes, records.Length);
    }

    /// <summary>
    /// Removes what a failed write may have left behind, so no stale record can ever be read after a shorter
    /// successful batch. Zeros inside the preallocated size; shrinks what a failed append added beyond it.
    /// </summary>
    private void CleanDirtyRange()
    {
        if (_dirtyStart < 0)
        {
            return;
        }

        long length = _active.Length;
        long preallocated = _options.Preallocate ? _options.SegmentSizeBytes : _activeOffset;
        if (length > Math.Max(preallocated, _dirtyStart))
        {
            _active.SetLength(Math.Max(preallocated, _dirtyStart));
            length = _active.Length;
        }

        ZeroRange(_active, _dirtyStart, Math.Min(_dirtyEnd, length));
        _active.Sync();
        _dirtyStart = -1;
        _dirtyEnd = -1;
    }

    private void CutSegment(ulong nextIndex)
    {
        // Every record before a cut is synced (the one unsynced write, at Dispose, is the log's last): a torn record
        // in a segment that is not the last is corruption, and the node would refuse to start. The new segment
        // restates _hardState, a commit index not yet written included: that is at most the last stored index.
        ulong sequence = _segments[^1].Sequence + 1;
        string? prepared = TakePreparedSegment();
        WalSegment segment = CreateSegment(_fileSystem, _directory, _options, sequence, nextIndex, _hardState, _snapshot, prepared);
        IStorageFile file;
        try
        {
            file = _fileSystem.Open(segment.Path, FileMode.Open, FileAccess.ReadWrite, FileShare.Read);
        }
        catch
        {
            // The new segment is empty apart from restated state; leaving it would be harmless but confusing.
            TryDelete(segment.Path);
            throw;
        }

        _active.Dispose();
        _active = file;
        _segments.Add(segment);
        _activeDataStart = PreambleBytes(_hardState, _snapshot);
        _activeOffset = _activeDataStart;
        Log.SegmentCut(_logger, segment.Path);
        PrepareNextSegment();
    }

    private void PrepareNextSegment()
    {
        if (!_options.Preallocate || !_options.PrepareSegmentsAhead || _nextSegment is not null)
        {
            return;
        }

        string temp = Path.Combine(_directory, string.Create(CultureInfo.InvariantCulture, $"next-{_segments[^1].Sequence + 1:x16}.tmp"));
        IFileSystem fileSystem = _fileSystem;
        long size = _options.SegmentSizeBytes;
        CancellationToken stop = _preparing.Token;
        _nextSegment = Task.Run(() =>
        {
            try
            {
                using IStorageFile file = fileSystem.Open(temp, FileMode.Create, FileAccess.ReadWrite, FileShare.None);

                // Synced a mebibyte at a time: one sync of the whole 64 MiB queued all of it on the disk at once, and
                // every node's Raft loop then waited a quarter of a second in its next fdatasync (the write tails of
                // docs/PERFORMANCE.md, "Write tail latency, session 14"). Now a WAL sync waits behind one chunk.
                for (long offset = 0; offset < size; offset += ZeroChunkBytes)
                {
                    stop.ThrowIfCancellationRequested();
                    ZeroRange(file, offset, Math.Min(size, offset + ZeroChunkBytes));
                    file.Sync();
                }

                return temp;
            }
            catch
            {
                TryDelete(fileSystem, temp);
                throw;
            }
        }, stop);
    }

    /// <summary>The prepared file's path, or null when preparation failed (the caller then zero-fills inline).</summary>
    private string? TakePreparedSegment()
    {
        Task<string>? task = _nextSegment;
        _nextSegment = null;
        if (task is null)
        {
            return null;
        }

        try
        {
            // Normally long finished: a segment takes far longer to fill than to zero. Blocking here is the rare
            // case of a burst that fills a whole segment while the previous zero-fill still runs.
            return task.GetAwaiter().GetResult();
        }
        catch (OperationCanceledException)
        {
            // Disposed while preparing: the temporary file is already deleted.
            return null;
        }
        catch (Exception exception) when (exception is IOException or UnauthorizedAccessException)
        {
            Log.PrepareFailed(_logger, exception);
            return null;
        }
    }

    private static int PreambleBytes(HardState hardState, SnapshotMetadata snapshot)
    {
        int bytes = WalFormat.SegmentHeaderBytes;
        if (!snapshot.Index.Equals(LogIndex.Zero))
        {
            bytes += WalFormat.AlignedRecordBytes(WalFormat.MetadataBytes(snapshot));
        }

        if (!hardState.IsEmpty)
        {
            bytes += WalFormat.AlignedRecordBytes(WalFormat.HardStatePayloadBytes);
        }

        return bytes;
    }

    /// <summary>
    /// Writes a new segment under a temporary name (header, the snapshot and hard state in force, zeros), syncs
    /// it, renames it into place and syncs the directory: a crash leaves either no segment or a complete one.
    /// </summary>
    private static WalSegment CreateSegment(IFileSystem fileSystem, string directory, WalOptions options, ulong sequence, ulong firstIndex, HardState hardState, SnapshotMetadata snapshot, string? prepared = null)
    {
        string path = Path.Combine(directory, WalSegment.FileName(sequence, firstIndex));
        string temp = prepared ?? path + ".tmp";
        var preamble = new ArrayBufferWriter<byte>(256);
        WalFormat.WriteSegmentHeader(preamble.GetSpan(WalFormat.SegmentHeaderBytes), firstIndex);
        preamble.Advance(WalFormat.SegmentHeaderBytes);
        if (snapshot.Index != LogIndex.Zero)
        {
            WalFormat.AppendSnapshot(preamble, snapshot, resetLog: false);
        }

        if (!hardState.IsEmpty)
        {
            WalFormat.AppendHardState(preamble, hardState);
        }

        try
        {
            using (IStorageFile file = fileSystem.Open(temp, prepared is null ? FileMode.CreateNew : FileMode.Open, FileAccess.ReadWrite, FileShare.None))
            {
                file.Write(0, preamble.WrittenSpan);
                if (options.Preallocate && prepared is null)
                {
                    ZeroRange(file, preamble.WrittenCount, options.SegmentSizeBytes);
                }

                file.Sync();
            }

            fileSystem.Move(temp, path, overwrite: false);
        }
        catch
        {
            TryDelete(fileSystem, temp);
            throw;
        }

        try
        {
            fileSystem.SyncDirectory(directory);
        }
        catch
        {
            // Not part of the log yet: remove it, or every retry of the cut fails on "already exists" (found by the
            // simulator: a node stuck refusing writes after one failed directory sync).
            TryDelete(fileSystem, path);
            throw;
        }

        return new WalSegment(sequence, firstIndex, path);
    }

    private static void ZeroRange(IStorageFile file, long start, long end)
    {
        if (end <= start)
        {
            return;
        }

        byte[] zeros = ArrayPool<byte>.Shared.Rent((int)Math.Min(ZeroChunkBytes, end - start));
        try
        {
            Array.Clear(zeros);
            for (long offset = start; offset < end;)
            {
                int count = (int)Math.Min(zeros.Length, end - offset);
                file.Write(offset, zeros.AsSpan(0, count));
                offset += count;
            }
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(zeros);
        }
    }

    /// <summary>
    /// Rejects batches the core could never produce: they would corrupt the log on disk. A bug, not bad input.
    /// </summary>
    private void ValidateEntries(IReadOnlyList<Entry> entries)
    {
        if (entries.Count == 0)
        {
            return;
        }

        ulong first = entries[0].Index.Value;
        if (first <= _snapshot.Index.Value)
        {
            throw new ArgumentException($"entry {first} is covered by the snapshot at {_snapshot.Index}", nameof(entries));
        }

        if (first > _lastIndex + 1)
        {
            throw new ArgumentException($"entry {first} would leave a gap after the last index {_lastIndex}", nameof(entries));
        }

        Term previousTerm = first - 1 == _snapshot.Index.Value ? _snapshot.Term : TermAt(first - 1);
        for (int i = 0; i < entries.Count; i++)
        {
            Entry entry = entries[i];
            if (entry.Index.Value != first + (ulong)i)
            {
                throw new ArgumentException($"entries are not contiguous at position {i} (index {entry.Index})", nameof(entries));
            }

            if (entry.Term < previousTerm)
            {
                throw new ArgumentException($"entry {entry.Index} has term {entry.Term}, lower than the previous {previousTerm}", nameof(entries));
            }

            if (entry.Type is not (EntryType.Normal or EntryType.ConfChange))
            {
                throw new ArgumentException($"entry {entry.Index} has unknown type {entry.Type}", nameof(entries));
            }

            if (entry.Data.Length > WalFormat.RecordLengthMax - WalFormat.EntryPayloadHeaderBytes - 1)
            {
                throw new ArgumentException($"entry {entry.Index} is {entry.Data.Length} bytes, above the record limit", nameof(entries));
            }

            previousTerm = entry.Term;
        }
    }

    private void ResetTermRuns(PersistentState state)
    {
        _termRuns.Clear();
        _termRuns.Add((state.Snapshot.Index.Value, state.Snapshot.Term));
        _lastIndex = state.Snapshot.Index.Value;
        foreach (Entry entry in state.Entries)
        {
            AppendTerm(entry.Index.Value, entry.Term);
        }
    }

    private void AppendTerm(ulong index, Term term)
    {
        // An overwrite drops the runs from the overwritten index on.
        while (_termRuns.Count > 0 && _termRuns[^1].StartIndex >= index)
        {
            _termRuns.RemoveAt(_termRuns.Count - 1);
        }

        if (_termRuns.Count == 0 || _termRuns[^1].Term != term)
        {
            _termRuns.Add((index, term));
        }

        _lastIndex = index;
    }

    private void DropTermsThrough(ulong index, Term term)
    {
        int keepFrom = 0;
        while (keepFrom + 1 < _termRuns.Count && _termRuns[keepFrom + 1].StartIndex <= index)
        {
            keepFrom++;
        }

        _termRuns.RemoveRange(0, keepFrom);
        _termRuns[0] = (index, term);
    }

    /// <summary>The term of the entry at <paramref name="index"/>, which must lie in [snapshot index, last index].</summary>
    private Term TermAt(ulong index)
    {
        Debug.Assert(index >= _snapshot.Index.Value && index <= _lastIndex, "index outside the known log");
        int low = 0;
        int high = _termRuns.Count - 1;
        while (low < high)
        {
            int middle = (low + high + 1) / 2;
            if (_termRuns[middle].StartIndex <= index)
            {
                low = middle;
            }
            else
            {
                high = middle - 1;
            }
        }

        return _termRuns[low].Term;
    }

    private static void Repair(IFileSystem fileSystem, string directory, List<WalSegment> segments, StorageCorruptionException corruption, ILogger logger)
    {
        int damaged = segments.FindIndex(s => s.Path == corruption.FilePath);
        if (damaged < 0)
        {
            // Not a record inside a segment (e.g. a missing segment): nothing safe to cut.
            throw corruption;
        }

        string backup = corruption.FilePath + ".bak";
        File.Copy(corruption.FilePath, backup, overwrite: true);
        using (IStorageFile file = fileSystem.Open(corruption.FilePath, FileMode.Open, FileAccess.ReadWrite, FileShare.None))
        {
            // A corrupt header means the whole segment goes.
            long cut = Math.Max(corruption.Offset, WalFormat.SegmentHeaderBytes);
            if (corruption.Offset < WalFormat.SegmentHeaderBytes)
            {
                file.Dispose();
                fileSystem.Move(corruption.FilePath, backup, overwrite: true);
            }
            else
            {
                file.SetLength(cut);
                file.Sync();
            }
        }

        for (int i = damaged + 1; i < segments.Count; i++)
        {
            fileSystem.Move(segments[i].Path, segments[i].Path + ".bak", overwrite: true);
        }

        fileSystem.SyncDirectory(directory);
        Log.Repaired(logger, corruption.FilePath, corruption.Offset, corruption.Reason, backup);
    }

    private void TryDelete(string path) => TryDelete(_fileSystem, path);

    private static void TryDelete(IFileSystem fileSystem, string path)
    {
        try
        {
            fileSystem.Delete(path);
        }
        catch (IOException)
        {
            // Best effort: a leftover .tmp is removed at the next open.
        }
    }

    private void ThrowIfDisposed() => ObjectDisposedException.ThrowIf(_disposed, this);
}
