using Microsoft.Extensions.Logging.Abstractions;
using Stcache.Cache;
using Stcache.Raft;
using Stcache.Server;

namespace Stcache.Integration.Tests;

/// <summary>
/// Every hand-off between threads wakes whoever waits for it, with no tick to rescue a lost one: after the election
/// the clock stands still, so a write, a read barrier, a wait for an applied index or a snapshot that depended on a
/// later tick would never be answered (the class of stcachectl recover's hang, SnapshotWakeTests). Covers the
/// pipelined log writer (its persisted jobs reach the loop only through their wake-up: with ticks, the next tick's
/// pass collects them and hides a lost one, which is why WalPipelineTests, ticking, cannot tell), and three hosts
/// whose messages cross over in process, handled on the sending thread (inline passes) or through the loops' queues.
/// </summary>
public sealed class NoTickWakeTests : IDisposable
{
    private const int Rounds = 300;
    private static readonly TimeSpan s_answered = TimeSpan.FromSeconds(10);

    private readonly string _directory = Path.Combine(Path.GetTempPath(), "stcache-notick-" + Guid.NewGuid().ToString("N"));

    public void Dispose()
    {
        if (Directory.Exists(_directory))
        {
            Directory.Delete(_directory, recursive: true);
        }
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_lone_voter_answers_writes_reads_waits_and_snapshots_without_ticks(bool pipelined)
    {
        var options = SingleNodeHost.Options with
        {
            Raft = SingleNodeHost.Options.Raft with { AsyncStorageWrites = pipelined },
            SnapshotInterval = TimeSpan.FromDays(1),
            SnapshotThreshold = ulong.MaxValue,
        };
        var (host, clock) = SingleNodeHost.Start(options, snapshots: Stcache.Storage.FileSnapshotStore.Open(_directory));
        await using (host)
        {
            await SingleNodeHost.WriteWhenLeaderAsync(host, clock, "first", "v");
            for (int round = 0; round < Rounds; round++)
            {
                // Several writers at once: their batches meet the writer thread's jobs in flight.
                await AnsweredAsync(WriteAsync(host, round), $"writes of round {round}");
                await AnsweredAsync(host.ReadBarrierAsync(lease: false), $"read of round {round}");
                await AnsweredAsync(host.WaitForLogAppliedAsync(TimeSpan.FromSeconds(30)), $"applied wait of round {round}");
                if (round % 10 == 0)
                {
                    await AnsweredAsync(host.SnapshotAsync(), $"snapshot of round {round}");
                }
            }
        }
    }

    [Theory]
    [InlineData(false, true)]
    [InlineData(false, false)]
    [InlineData(true, true)]
    [InlineData(true, false)]
    public async Task Three_hosts_answer_writes_reads_and_waits_on_every_node_without_ticks(bool pipelined, bool inlinePasses)
    {
        var clock = new FakeRaftClock(TimeSpan.FromMilliseconds(10));
        var members = Enumerable.Range(1, 3).Select(i => new MemberInfo((ulong)i, "n" + i, "127.0.0.1:" + i, string.Empty)).ToArray();
        var initial = PersistentState.Bootstrap([.. members.Select(m => new ConfChange(ConfChangeType.AddVoter, new NodeId(m.Id), m.ToContext()))]);
        var network = new InProcessPeerNetwork();
        var hosts = new List<RaftHost>();
        foreach (var member in members)
        {
            var options = new RaftHostOptions
            {
                Raft = new RaftConfig { Id = new NodeId(member.Id), ElectionTimeoutTicks = 10, HeartbeatIntervalTicks = 2, RandomSeed = member.Id, AsyncStorageWrites = pipelined },
                Self = member,
                TickInterval = TimeSpan.FromMilliseconds(10),
                RequestTimeout = TimeSpan.FromSeconds(30),
                PipelineFollowerWrites = pipelined,
                InlinePeerPasses = inlinePasses,
            };
            var host = new RaftHost(options, new MemoryLogStore(initial), new MemorySnapshotStore(), network, new CacheStateMachine(),
                new MemberBook(), NullLogger<RaftHost>.Instance, clock.Time);
            network.Hosts[host.Id] = host;
            hosts.Add(host);
        }

        hosts.ForEach(h => h.Start());
        try
        {
            var leader = await ElectAsync(hosts, clock);
            var followers = hosts.Where(h => h != leader).ToArray();
            for (int round = 0; round < Rounds; round++)
            {
                await AnsweredAsync(WriteAsync(leader, round), $"writes of round {round}");
                var index = leader.Status.Applied;
                foreach (var follower in followers)
                {
                    await AnsweredAsync(follower.WaitForAppliedAsync(index, TimeSpan.FromSeconds(30)), $"node {follower.Id} applying {index} in round {round}");
                    await AnsweredAsync(follower.ReadBarrierAsync(lease: false), $"read on node {follower.Id} in round {round}");
                }

                await AnsweredAsync(leader.ReadBarrierAsync(lease: false), $"read on the leader in round {round}");
            }
        }
        finally
        {
            foreach (var host in hosts)
            {
                await host.DisposeAsync();
            }
        }
    }

    private static Task WriteAsync(RaftHost host, int round) =>
        Task.WhenAll(Enumerable.Range(0, 3).Select(i => Task.Run(() => host.ProposeAsync(SingleNodeHost.Set($"k{round}-{i}")))));

    private static async Task AnsweredAsync(Task task, string what)
    {
        Assert.True(await Task.WhenAny(task, Task.Delay(s_answered)) == task, $"{what} was never answered (no ticks are given)");
        await task;
    }

    /// <summary>Ticks until one host leads and the others follow it (each host publishes its status before it
    /// raises LeadershipChanged); from then on the clock stands still.</summary>
    private static async Task<RaftHost> ElectAsync(List<RaftHost> hosts, FakeRaftClock clock)
    {
        var settled = new TaskCompletionSource<RaftHost>(TaskCreationOptions.RunContinuationsAsynchronously);
        void Look(LeadershipChange change)
        {
            if (hosts.FirstOrDefault(h => h.Status.IsLeader && hosts.All(o => o.Status.Leader == h.Id)) is { } leader)
            {
                settled.TrySetResult(leader);
            }
        }

        hosts.ForEach(h => h.LeadershipChanged += Look);
        try
        {
            var leader = await clock.RunUntilAsync(hosts[0], settled.Task);
            await AnsweredAsync(leader.ProposeAsync(SingleNodeHost.Set("first")), "the leader's first write");
            return leader;
        }
        finally
        {
            hosts.ForEach(h => h.LeadershipChanged -= Look);
        }
    }
}
