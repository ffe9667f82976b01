using System.Globalization;
using Stcache.Cache;
using Stcache.Raft;
using Stcache.Server;

namespace Stcache.Integration.Tests;

/// <summary>
/// The in-memory Raft log holds every entry until a snapshot covers it, so the snapshot policy also counts the bytes
/// of the entries applied since the last snapshot (<see cref="RaftHostOptions.SnapshotLogBytes"/>): a burst of writes
/// is snapshotted once it holds that much, long before the timed interval. The real RaftHost in process, on a fake
/// clock.
/// </summary>
public sealed class SnapshotLogBytesTests
{
    private const int ValueBytes = 4096;
    private const long LogBytes = 256 * 1024;

    /// <summary>Node 1 snapshots at the bytes, node 2 an eighth later, node 3 two eighths later
    /// (<see cref="RaftHostOptions.SnapshotLogStaggerEighths"/>): replicas that apply the same entries do not all
    /// write a snapshot at the same moment.</summary>
    [Theory]
    [InlineData(1UL, LogBytes)]
    [InlineData(2UL, LogBytes + LogBytes / 8)]
    [InlineData(3UL, LogBytes + LogBytes / 4)]
    public async Task A_burst_of_writes_is_snapshotted_once_the_log_holds_the_nodes_bytes_not_before(ulong id, long threshold)
    {
        var store = new SignallingSnapshotStore();
        var self = new MemberInfo(id, "n" + id.ToString(CultureInfo.InvariantCulture), "127.0.0.1:1", "127.0.0.1:2");
        var options = SingleNodeHost.Options with
        {
            Raft = new RaftConfig { Id = new NodeId(id) },
            Self = self,
            SnapshotInterval = TimeSpan.FromHours(1),
            SnapshotLogBytes = LogBytes,
        };
        var log = new MemoryLogStore(PersistentState.Bootstrap([new ConfChange(ConfChangeType.AddVoter, new NodeId(id), self.ToContext())]));
        var (host, clock) = SingleNodeHost.Start(options, log, store);
        await using var running = host;
        await SingleNodeHost.WriteWhenLeaderAsync(host, clock, "first", "v");

        // Writes of 4 KiB until the applied entries hold the node's bytes less a sixteenth of the base (past the
        // bytes of a node staggered less): ten ticks later (each checks the policy), no snapshot.
        var value = new byte[ValueBytes];
        int writes = 0;
        async Task<ulong> WriteAsync()
        {
            var result = await clock.RunUntilAsync(host, host.ProposeAsync(CacheCommand.Set("key" + writes++.ToString(CultureInfo.InvariantCulture), value)));
            Assert.True(result.Succeeded);
            return result.Version;
        }

        while (host.Cache.AppliedEntryBytes < threshold - LogBytes / 16)
        {
            await WriteAsync();
        }

        await clock.AdvanceUntilAsync(host, TicksTakenAsync(host, 10));
        Assert.False(store.Saved.IsCompleted, $"a snapshot after {writes} writes of {ValueBytes} B, below {threshold} B");

        // Up to the bytes: then a tick takes a snapshot, though the hour-long interval is far.
        ulong crossedAt = 0;
        while (host.Cache.AppliedEntryBytes < threshold)
        {
            crossedAt = await WriteAsync();
        }

        await clock.AdvanceUntilAsync(host, store.Saved, TimeSpan.FromSeconds(10));
        var saved = await store.Saved;
        Assert.True(saved.Index.Value >= crossedAt, $"snapshot at {saved.Index}, before the entries held {threshold} B at {crossedAt}");
    }

    /// <summary>Completes once the host took <paramref name="ticks"/> more ticks (polled like <see cref="FakeRaftClock"/>).</summary>
    private static async Task TicksTakenAsync(RaftHost host, long ticks)
    {
        long target = host.Status.Ticks + ticks;
        while (host.Status.Ticks < target)
        {
            await Task.Delay(1);
        }
    }

    private sealed class SignallingSnapshotStore : ISnapshotStore
    {
        private readonly MemorySnapshotStore _inner = new();
        private readonly TaskCompletionSource<SnapshotMetadata> _saved = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public Task<SnapshotMetadata> Saved => _saved.Task;

        public void Save(SnapshotMetadata metadata, Action<Stream> writeData)
        {
            _inner.Save(metadata, writeData);
            _saved.TrySetResult(metadata);
        }

        public Snapshot? LoadNewest() => _inner.LoadNewest();
    }
}
