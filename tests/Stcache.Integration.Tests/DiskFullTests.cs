using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Stcache.Cache;
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
    private sealed class FailingLogStore(IRaftLogStore inner) : IRaftLogStore
    {
        public volatile bool Full;

        public int Refused;

        public PersistentState Load() => inner.Load();

        public void Save(HardState? hardState, IReadOnlyList<Entry> entries)
        {
            if (Full)
            {
                Interlocked.Increment(ref Refused);
                throw new IOException("No space left on device (simulated)");
            }

            inner.Save(hardState, entries);
        }

        public void ApplySnapshot(SnapshotMetadata snapshot) => inner.ApplySnapshot(snapshot);

        public void Compact(LogIndex upTo) => inner.Compact(upTo);
    }

    [Fact]
    public async Task FullDiskRefusesWritesThenRecoversWithoutLosingAcknowledgedOnes()
    {
        var id = new NodeId(1);
        var self = new MemberInfo(1, "n1", "127.0.0.1:1", "127.0.0.1:2");
        var initial = PersistentState.Bootstrap([new ConfChange(ConfChangeType.AddVoter, id, self.ToContext())]);
        var store = new FailingLogStore(new MemoryLogStore(initial));
        var options = new RaftHostOptions
        {
            Raft = new RaftConfig { Id = id },
            Self = self,
            TickInterval = TimeSpan.FromMilliseconds(10),

            // Long beside the storage back-off (at most 5 s): while the disk fails, the fake clock runs ahead of the
            // host (it takes no ticks then), so a short deadline could pass in fake time before a loaded machine
            // let the host run its successful retry (CI saw the write after recovery time out that way).
            RequestTimeout = TimeSpan.FromSeconds(20),
        };
        var clock = new FakeRaftClock(options.TickInterval);
        await using var host = new RaftHost(options, store, new MemorySnapshotStore(), new NullPeerNetwork(), new CacheStateMachine(), new MemberBook(), NullLogger<RaftHost>.Instance, clock.Time);
        host.Start();

        var acknowledged = await WriteWhenLeaderAsync(host, clock, "before", "1");
        Assert.True(acknowledged.Succeeded);

        store.Full = true;
        var refused = await Assert.ThrowsAsync<RaftHostException>(() => clock.RunUntilAsync(host, host.ProposeAsync(CacheCommand.Set("during", Encoding.UTF8.GetBytes("2")))));
        Assert.True(refused.OutcomeUnknown, refused.Message);
        Assert.True(host.StorageFailing);
        Assert.True(store.Refused > 0);
        Assert.False(host.Completion.IsCompleted, "the node must stay up while its disk is full");

        // The loop retries the refused batch after a back-off on the host's clock: the fake clock runs it.
        store.Full = false;
        var after = await clock.RunUntilAsync(host, host.ProposeAsync(CacheCommand.Set("after", Encoding.UTF8.GetBytes("3"))));
        Assert.True(after.Succeeded);
        Assert.False(host.StorageFailing);
        Assert.True(host.Cache.TryGet("before", out var before));
        Assert.Equal("1", Encoding.UTF8.GetString(before!.Value));
        Assert.True(host.Cache.TryGet("after", out _));
    }

    /// <summary>Ticks the single node until it elects itself, then writes through it.</summary>
    internal static async Task<ApplyResult> WriteWhenLeaderAsync(RaftHost host, FakeRaftClock clock, string key, string value)
    {
        await clock.ElectAsync(host);
        return await clock.RunUntilAsync(host, host.ProposeAsync(CacheCommand.Set(key, Encoding.UTF8.GetBytes(value))));
    }
}
