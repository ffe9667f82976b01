namespace Stcache.Testing;

/// <summary>What the process-level harnesses give every stcached they start, unless a test asks otherwise.</summary>
public static class TestNodeSettings
{
    /// <summary>
    /// The write-ahead log segment size of a test node, given as <see cref="WalSegmentSizeVariable"/> in the child's
    /// environment so that a test's own <c>--wal-segment-size</c> flag wins. At the default 64 MiB every node start
    /// writes 128 MiB of zeros (its first segment inline, the next one prepared in the background), and the suites start
    /// hundreds of nodes on one disk at once (docs/PERFORMANCE.md, "The test suite's disk load, session 15").
    /// </summary>
    public const string WalSegmentSize = "1mb";

    /// <summary>The environment variable stcached reads <c>--wal-segment-size</c> from.</summary>
    public const string WalSegmentSizeVariable = "STCACHE_WAL_SEGMENT_SIZE";
}
