namespace Stcache.Cache;

/// <summary>What the garbage collector reports at one check (<see cref="System.GCMemoryInfo"/> and
/// <see cref="System.GC.GetTotalAllocatedBytes"/>).</summary>
/// <param name="AllocatedBytes">Bytes the process allocated since it started.</param>
/// <param name="CommittedBytes">Memory the GC holds from the system.</param>
/// <param name="LiveBytes">The heap after the last collection less its free space: live data if that collection was
/// a full one, more (uncollected garbage) otherwise.</param>
/// <param name="FullCollections">Gen2 collections so far: tells a fresh full collection's figures apart.</param>
public readonly record struct HeapSample(TimeSpan Time, long AllocatedBytes, long CommittedBytes, long LiveBytes, int FullCollections);

public enum HeapAction : byte
{
    None = 0,

    /// <summary>Run a background (concurrent, non-compacting) full collection, to learn the live size.</summary>
    Measure = 1,

    /// <summary>Run a blocking, compacting full collection that gives free memory back to the system.</summary>
    Compact = 2,
}

/// <summary>
/// When a node turns idle after a large growth, gives the GC's headroom back: a node that grew to hold its keys keeps
/// the free space its collector committed on the way (60-70 MB over 1,000,000 keys, docs/PERFORMANCE.md, "Memory"),
/// because an idle process runs no collection. The policy, fed a <see cref="HeapSample"/> every check:
/// <list type="number">
/// <item>idle: the process allocated at most <see cref="Options.IdleAllocationBytes"/> in each of the last
/// <see cref="Options.IdleChecks"/> checks;</item>
/// <item>grown: committed memory exceeds what it was after the last compaction (or at start) by
/// <see cref="Options.GrowthBytes"/>;</item>
/// <item>then <see cref="HeapAction.Measure"/>: a concurrent full collection, after which the live size is known;</item>
/// <item>then, if still idle and committed exceeds live by <see cref="Options.SlackBytes"/> and by
/// <see cref="Options.SlackRatio"/> of live, <see cref="HeapAction.Compact"/>; otherwise the growth is taken as
/// the new baseline (nothing to give back);</item>
/// <item>never more often than <see cref="Options.MinimumSpacing"/>.</item>
/// </list>
/// Pure: the caller runs the collections and reports them (<see cref="Compacted"/>), so it is tested without a GC.
/// </summary>
public sealed class IdleHeapCompaction
{
    public sealed record Options
    {
        public TimeSpan CheckInterval { get; init; } = TimeSpan.FromSeconds(5);

        public int IdleChecks { get; init; } = 2;

        /// <summary>At most this many bytes allocated in a check interval counts as idle (heartbeats, metrics).</summary>
        public long IdleAllocationBytes { get; init; } = 16L << 20;

        public long GrowthBytes { get; init; } = 64L << 20;

        public long SlackBytes { get; init; } = 32L << 20;

        public double SlackRatio { get; init; } = 0.15;

        public TimeSpan MinimumSpacing { get; init; } = TimeSpan.FromMinutes(5);
    }

    private readonly Options _options;
    private HeapSample? _previous;
    private int _idleChecks;
    private long _baselineCommitted = -1;
    private TimeSpan? _lastCompaction;
    private int _measuredAfter = -1;

    public IdleHeapCompaction(Options options)
    {
        _options = options;
    }

    public Options Settings => _options;

    public HeapAction Next(HeapSample sample)
    {
        bool quiet = _previous is { } previous && sample.AllocatedBytes - previous.AllocatedBytes <= _options.IdleAllocationBytes;
        _previous = sample;
        _idleChecks = quiet ? _idleChecks + 1 : 0;
        if (_baselineCommitted < 0 || sample.CommittedBytes < _baselineCommitted)
        {
            _baselineCommitted = sample.CommittedBytes;
        }

        if (!quiet)
        {
            _measuredAfter = -1;
            return HeapAction.None;
        }

        if (_measuredAfter >= 0 && sample.FullCollections > _measuredAfter)
        {
            // The measuring collection ran: its live size decides.
            _measuredAfter = -1;
            long slack = sample.CommittedBytes - sample.LiveBytes;
            if (slack >= _options.SlackBytes && slack >= sample.LiveBytes * _options.SlackRatio)
            {
                return HeapAction.Compact;
            }

            _baselineCommitted = sample.CommittedBytes;
            return HeapAction.None;
        }

        if (_idleChecks < _options.IdleChecks
            || _measuredAfter >= 0
            || sample.CommittedBytes - _baselineCommitted < _options.GrowthBytes
            || (_lastCompaction is { } last && sample.Time - last < _options.MinimumSpacing))
        {
            return HeapAction.None;
        }

        _measuredAfter = sample.FullCollections;
        return HeapAction.Measure;
    }

    /// <summary>Reports a compaction: <paramref name="after"/> is the sample taken right after it.</summary>
    public void Compacted(HeapSample after)
    {
        _lastCompaction = after.Time;
        _baselineCommitted = after.CommittedBytes;
        _previous = after;
    }
}
