namespace Stcache.Storage;

/// <summary>Write-ahead log settings.</summary>
public sealed class WalOptions
{
    public const long SegmentSizeBytesDefault = 64L * 1024 * 1024;

    /// <summary>The smallest segment accepted: one page.</summary>
    public const long SegmentSizeBytesMin = 4096;

    /// <summary>The largest segment accepted (2 GiB - 1 byte).</summary>
    public const long SegmentSizeBytesMax = int.MaxValue;

    /// <summary>A segment is cut when the next batch would grow it past this size. A single larger batch still
    /// goes into one segment.</summary>
    public long SegmentSizeBytes { get; init; } = SegmentSizeBytesDefault;

    /// <summary>Fill new segments with zeros up front, so that appends never change the file size and an
    /// fdatasync need not commit file-system metadata on every batch.</summary>
    public bool Preallocate { get; init; } = true;

    /// <summary>Zero-fill the next segment on a background thread while the current one fills up, so cutting a
    /// segment costs a small write and a rename instead of stalling the Raft loop on 64 MiB of zeros.</summary>
    public bool PrepareSegmentsAhead { get; init; } = true;

    /// <summary>
    /// Off by default: a corrupt record refuses the open. When on, the WAL is cut at the first corrupt record
    /// (the damaged segment is copied to <c>.bak</c> first, later segments are renamed to <c>.bak</c>), losing
    /// everything after it. Only for an operator who knows the node can catch up from its peers.
    /// </summary>
    public bool RepairCorruption { get; init; }

    /// <summary>Benchmarks only: skip the sync (durability is lost).</summary>
    internal bool SkipSync { get; init; }

    internal void Validate()
    {
        if (SegmentSizeBytes < SegmentSizeBytesMin || SegmentSizeBytes > SegmentSizeBytesMax)
        {
            throw new ArgumentOutOfRangeException(nameof(SegmentSizeBytes), SegmentSizeBytes, "must be between 4 KiB and 2 GiB - 1 byte");
        }
    }
}
