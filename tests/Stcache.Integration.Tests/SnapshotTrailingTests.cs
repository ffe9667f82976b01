using System.Globalization;
using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Stcache.Cache;
using Stcache.Raft;
using Stcache.Server;
using Stcache.Storage;

namespace Stcache.Integration.Tests;

/// <summary>
/// <c>--snapshot-trailing</c> is the one setting for the log entries kept behind a snapshot: the in-memory log and
/// the write-ahead log on disk both keep that many, and the log adds no margin of its own (it used to keep
/// 10,000 more). The real RaftHost in process on a real write-ahead log with small segments.
/// </summary>
public sealed class SnapshotTrailingTests : IDisposable
{
    private readonly string _directory = Path.Combine(Path.GetTempPath(), "stcache-trailing-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_directory))
        {
            Directory.Delete(_directory, recursive: true);
        }
    }

    [Fact]
    public async Task The_write_ahead_log_keeps_the_snapshot_trailing_entries_and_no_more()
    {
        const ulong trailing = 100;
        using var wal = WriteAheadLog.Open(_directory, new WalOptions { SegmentSizeBytes = 4096 }, NullLogger<WriteAheadLog>.Instance);
        var initial = SingleNodeHost.Initial;
        wal.Save(initial.HardState, initial.Entries);
        var (host, clock) = SingleNodeHost.Start(SingleNodeHost.Options with { SnapshotInterval = TimeSpan.FromHours(1), SnapshotTrailingEntries = trailing }, wal);
        await using (host)
        {
            await SingleNodeHost.WriteWhenLeaderAsync(host, clock, "first", "v");

            // 1,000 writes, 50 at a time so they share fsyncs, then a snapshot.
            for (int round = 0; round < 20; round++)
            {
                await clock.AdvanceUntilAsync(host, Task.WhenAll(Enumerable.Range(0, 50).Select(i =>
                    host.ProposeAsync(CacheCommand.Set(string.Create(CultureInfo.InvariantCulture, $"key-{round}-{i}"), Encoding.UTF8.GetBytes("value-with-some-padding"))))));
            }

            var snapshot = await clock.RunUntilAsync(host, host.SnapshotAsync());
            Assert.True(snapshot.Index.Value > 1_000, $"snapshot at {snapshot.Index}");

            ulong oldest = OldestSegmentFirstIndex();
            ulong keepFrom = snapshot.Index.Value - trailing + 1;

            // The trailing entries are on disk, and at most one segment older than they need.
            Assert.True(oldest <= keepFrom, $"entries {keepFrom}..{snapshot.Index} must stay, the oldest segment starts at {oldest}");
            ulong entriesPerSegment = EntriesPerSegment();
            Assert.True(keepFrom - oldest < entriesPerSegment + 1,
                $"kept from {oldest}, {keepFrom - oldest} entries more than --snapshot-trailing={trailing} (segments hold ~{entriesPerSegment})");
        }
    }

    private string[] Segments() => [.. Directory.GetFiles(_directory, "*.wal").Order(StringComparer.Ordinal)];

    /// <summary>Segment files are <c>{seq:x16}-{firstIndex:x16}.wal</c>.</summary>
    private static ulong FirstIndexOf(string segment) =>
        ulong.Parse(Path.GetFileNameWithoutExtension(segment).Split('-')[1], NumberStyles.HexNumber, CultureInfo.InvariantCulture);

    private ulong OldestSegmentFirstIndex() => FirstIndexOf(Segments()[0]);

    /// <summary>The most entries any closed segment holds (from consecutive segments' first indexes).</summary>
    private ulong EntriesPerSegment()
    {
        var firsts = Segments().Select(FirstIndexOf).ToArray();
        Assert.True(firsts.Length >= 2, "expected several segments");
        return firsts.Zip(firsts.Skip(1), (a, b) => b - a).Max();
    }
}
