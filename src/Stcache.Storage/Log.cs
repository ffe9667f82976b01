using Microsoft.Extensions.Logging;

namespace Stcache.Storage;

/// <summary>Storage log messages. Event ids 2000-2999 (docs/OPERATIONS.md, "Logging").</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 2000, Level = LogLevel.Warning,
        Message = "WAL segment {Path} has a torn tail: cut {Bytes} bytes after offset {Offset} (a write interrupted by a crash)")]
    public static partial void TornTailCut(ILogger logger, string path, long bytes, long offset);

    [LoggerMessage(EventId = 2001, Level = LogLevel.Information,
        Message = "WAL opened in {Directory}: {Segments} segments, hard state {HardState}, snapshot at {SnapshotIndex}, entries {FirstIndex}..{LastIndex}")]
    public static partial void WalOpened(ILogger logger, string directory, int segments, Stcache.Raft.HardState hardState, ulong snapshotIndex, ulong firstIndex, ulong lastIndex);

    [LoggerMessage(EventId = 2002, Level = LogLevel.Information, Message = "WAL cut new segment {Path}")]
    public static partial void SegmentCut(ILogger logger, string path);

    [LoggerMessage(EventId = 2003, Level = LogLevel.Information, Message = "WAL compaction deleted segment {Path}")]
    public static partial void SegmentDeleted(ILogger logger, string path);

    [LoggerMessage(EventId = 2004, Level = LogLevel.Error,
        Message = "WAL write failed in {Path} at offset {Offset}; the batch is discarded")]
    public static partial void WriteFailed(ILogger logger, Exception exception, string path, long offset);

    [LoggerMessage(EventId = 2005, Level = LogLevel.Critical,
        Message = "WAL repair: corrupt record in {Path} at offset {Offset} ({Reason}); truncated there, backup kept at {Backup}")]
    public static partial void Repaired(ILogger logger, string path, long offset, string reason, string backup);

    [LoggerMessage(EventId = 2006, Level = LogLevel.Warning,
        Message = "Snapshot {Path} failed verification ({Reason}); falling back to an older snapshot")]
    public static partial void SnapshotCorrupt(ILogger logger, string path, string reason);

    [LoggerMessage(EventId = 2007, Level = LogLevel.Information, Message = "Snapshot saved {Path} ({Bytes} bytes)")]
    public static partial void SnapshotSaved(ILogger logger, string path, long bytes);

    [LoggerMessage(EventId = 2008, Level = LogLevel.Warning, Message = "Removed leftover temporary file {Path}")]
    public static partial void TempRemoved(ILogger logger, string path);

    [LoggerMessage(EventId = 2009, Level = LogLevel.Warning,
        Message = "WAL cleanup after a failed write did not succeed yet; will retry before the next write")]
    public static partial void CleanupPending(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 2010, Level = LogLevel.Warning,
        Message = "Preparing the next WAL segment in the background failed; it will be created when needed")]
    public static partial void PrepareFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 2011, Level = LogLevel.Warning,
        Message = "WAL closed without writing commit index {CommitIndex}; the node relearns it from its leader")]
    public static partial void CommitNotWritten(ILogger logger, Exception exception, ulong commitIndex);
}
