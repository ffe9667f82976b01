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

    [Fact]
    public async Task A_burst_of_writes_is_snapshotted_once_the_log_holds_the_bytes_not_before()
    {
        var store = new SignallingSnapshotStore();
        var options = SingleNodeHost.Options with { SnapshotInterval = TimeSpan.FromHours(1), SnapshotLogBytes = LogBytes };
        var (host, clock) = SingleNodeHost.Start(options, snapshots: store);
        await using var running = host;
        await SingleNodeHost.WriteWhenLeaderAsync(host, clock, "first", "v");

        // Writes of 4 KiB until the applied entries hold three quarters of the bytes: ten ticks later (each checks
        // the policy), no snapshot.
        var value = new byte[ValueBytes];
        int writes = 0;
        async Task<ulong> WriteAsync()
        {
            var result = await clock.RunUntilAsync(host, host.ProposeAsync(CacheCommand.Set("key" + writes++.ToString(CultureInfo.InvariantCulture), value)));
            Assert.True(result.Succeeded);
            return result.Version;
        }

        while (host.Cache.AppliedEntryBytes < LogBytes * 3 / 4)
        {
            await WriteAsync();
        }

        await clock.AdvanceUntilAsync(host, TicksTakenAsync(host, 10));
        Assert.False(store.Saved.IsCompleted, $"a snapshot after {writes} writes of {ValueBytes} B, below {LogBytes} B");

        // Up to the bytes: then a tick takes a snapshot, though the hour-long interval is far.
        ulong crossedAt = 0;
        while (host.Cache.AppliedEntryBytes < LogBytes)
        {
            crossedAt = await WriteAsync();
        }

        await clock.AdvanceUntilAsync(host, store.Saved, TimeSpan.FromSeconds(10));
        var saved = await store.Saved;
        Assert.True(saved.Index.Value >= crossedAt, $"snapshot at {saved.Index}, before the entries held {LogBytes} B at {crossedAt}");
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
