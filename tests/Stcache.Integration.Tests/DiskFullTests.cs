using System.Text;
using Stcache.Raft;
using Stcache.Server;

namespace Stcache.Integration.Tests;

/// <summary>
/// A node whose disk refuses writes stays up, acknowledges nothing it could not make durable, and carries on when
/// space returns, losing nothing it had acknowledged. Runs the real RaftHost in process on a log store whose
/// saves fail on demand.
/// </summary>
public sealed class DiskFullTests
{
    internal sealed class FailingLogStore(IRaftLogStore inner) : IRaftLogStore
    {
        public volatile bool Full;

        public int Refused;

        public PersistentState Load() => inner.Load();

        public bool Save(HardState? hardState, IReadOnlyList<Entry> entries)
        {
            if (Full)
            {
                Interlocked.Increment(ref Refused);
                throw new IOException("No space left on device (simulated)");
            }

            return inner.Save(hardState, entries);
        }

        public void ApplySnapshot(SnapshotMetadata snapshot) => inner.ApplySnapshot(snapshot);

        public void Compact(LogIndex upTo) => inner.Compact(upTo);
    }

    [Fact]
    public async Task FullDiskRefusesWritesThenRecoversWithoutLosingAcknowledgedOnes()
    {
        // The default request timeout (20 s) is long beside the storage back-off (at most 5 s): see SingleNodeHost.Options.
        var store = new FailingLogStore(SingleNodeHost.Log());
        var (host, clock) = SingleNodeHost.Start(log: store);
        await using var running = host;

        var acknowledged = await SingleNodeHost.WriteWhenLeaderAsync(host, clock, "before", "1");
        Assert.True(acknowledged.Succeeded);

        store.Full = true;
        var refused = await Assert.ThrowsAsync<RaftHostException>(() => clock.RunUntilAsync(host, host.ProposeAsync(SingleNodeHost.Set("during", "2"))));
        Assert.True(refused.OutcomeUnknown, refused.Message);
        Assert.True(host.StorageFailing);
        Assert.True(store.Refused > 0);
        Assert.False(host.Completion.IsCompleted, "the node must stay up while its disk is full");

        // The loop retries the refused batch after a back-off on the host's clock: the fake clock runs it.
        store.Full = false;
        var after = await clock.RunUntilAsync(host, host.ProposeAsync(SingleNodeHost.Set("after", "3")));
        Assert.True(after.Succeeded);
        Assert.False(host.StorageFailing);
        Assert.True(host.Cache.TryGet("before", out var before));
        Assert.Equal("1", Encoding.UTF8.GetString(before!.Value));
        Assert.True(host.Cache.TryGet("after", out _));
    }
}
