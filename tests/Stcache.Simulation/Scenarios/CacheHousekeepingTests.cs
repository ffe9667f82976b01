using System.Globalization;
using Stcache.Cache;
using Stcache.Node;
using Stcache.Raft;

namespace Stcache.Simulation.Scenarios;

/// <summary>
/// The leader's cache decisions through the real driver (docs/CACHE.md): active and lazy expiry, eviction ahead of
/// need, access reports from followers; and that followers delete nothing on their own. Each runs on a scenario
/// cluster (the simulator's node, WAL and cache), checked by the safety oracle at every step.
/// </summary>
public sealed class CacheHousekeepingTests
{
    [Fact]
    public void ActiveExpiry_TheLeaderDeletesExpiredKeysThroughTheLog_FollowersProposeNothing()
    {
        var c = new ScenarioCluster(3);
        c.Elect(1);
        long now = Now(c, 1);
        for (int i = 0; i < 300; i++)
        {
            Command(c, 1, "SET", "e" + i, "v", "PXAT", Text(now + 5));
        }

        for (int i = 0; i < 10; i++)
        {
            Command(c, 1, "SET", "p" + i, "v");
        }

        c.Stabilize();
        Assert.All(c.Hosts.Values, h => Assert.Equal(310, h.Cache!.Count));

        c.TickAll(30);
        foreach (var host in c.Hosts.Values)
        {
            Assert.Equal(10, host.Cache!.Count);
            Assert.Equal(300, host.Cache.ExpiredKeys);
        }

        Assert.True(c[1].Driver!.Housekeeper.ExpireBatchesProposed >= 1);
        foreach (int follower in new[] { 2, 3 })
        {
            var housekeeper = c[follower].Driver!.Housekeeper;
            Assert.Equal(0, housekeeper.ExpireBatchesProposed + housekeeper.EvictBatchesProposed + housekeeper.AccessReportsProposed + housekeeper.PolicyProposals);
        }
    }

    [Fact]
    public void Followers_WithoutALeader_KeepExpiredKeys()
    {
        var c = new ScenarioCluster(3);
        c.Elect(1);
        long now = Now(c, 1);
        for (int i = 0; i < 50; i++)
        {
            Command(c, 1, "SET", "e" + i, "v", "PXAT", Text(now + 5));
        }

        c.Stabilize();
        c.Crash(1);
        c.Crash(2);
        c.TickAll(200);

        var follower = c[3];
        Assert.NotEqual(RaftRole.Leader, follower.Node!.Role);
        Assert.Equal(50, follower.Cache!.Count);
        Assert.Equal(0, follower.Cache.ExpiredKeys);
        Assert.Equal(0, follower.Driver!.Housekeeper.ExpireBatchesProposed);

        // Invisible to reads all the same: visibility is by time, deletion by the log.
        Assert.Equal("(nil)", Read(follower, Now(c, 3), "GET", "e1"));
    }

    [Fact]
    public void LazyExpiry_AReadOnTheLeaderThatMeetsAnExpiredKeyQueuesItsDelete()
    {
        var c = new ScenarioCluster(3);
        c.Elect(1);
        long now = Now(c, 1);
        for (int i = 0; i < 2000; i++)
        {
            Command(c, 1, "SET", "long" + i, "v", "PXAT", Text(now + 10_000_000));
        }

        Command(c, 1, "SET", "lazy", "v", "PXAT", Text(now + 5));
        Command(c, 1, "SET", "unread", "v", "PXAT", Text(now + 5));
        c.Stabilize();
        foreach (var host in c.Hosts.Values)
        {
            host.Clock.OffsetMs += 1000;
        }

        Assert.Equal("(nil)", Read(c[1], Now(c, 1), "GET", "lazy"));
        c.TickAll(1);
        foreach (var host in c.Hosts.Values)
        {
            Assert.False(Has(host, "lazy"), $"node {host.Id} still holds the key the leader's read found expired");
        }

        // The active cycle samples 20 of 2,002 keys with an expiry per tick: the unread key is most likely still there.
        Assert.True(Has(c[1], "unread"));
    }

    [Fact]
    public void Eviction_OverTheLimit_TheLeaderEvictsTheSameKeysOnEveryReplica()
    {
        var c = new ScenarioCluster(3);
        c.Elect(1);
        FillKeys(c, 200);
        long used = c[1].Cache!.UsedMemoryBytes;
        long limit = used / 2;
        Write(c, 1, WriteCommand.MemoryPolicy(limit, EvictionPolicy.AllKeysRandom));
        c.Stabilize();
        Assert.True(c[1].Cache!.UsedMemoryBytes > limit); // nothing evicts at apply until a write needs room

        c.TickAll(5);
        var keys = Keys(c[1]);
        foreach (var host in c.Hosts.Values)
        {
            Assert.True(host.Cache!.UsedMemoryBytes <= limit, $"node {host.Id}: used {host.Cache.UsedMemoryBytes} > limit {limit}");
            Assert.True(host.Cache.EvictedKeys > 0);
            Assert.Equal(keys, Keys(host));
        }

        Assert.True(c[1].Driver!.Housekeeper.EvictBatchesProposed >= 1);
        Assert.Equal(0, c[2].Driver!.Housekeeper.EvictBatchesProposed);
    }

    [Fact]
    public void NoEviction_AWriteOverTheLimitGetsRedisOomError_AndChangesNothing()
    {
        var c = new ScenarioCluster(3);
        c.Elect(1);
        const long Limit = 10_000;
        Write(c, 1, WriteCommand.MemoryPolicy(Limit, EvictionPolicy.NoEviction));
        c.Stabilize();
        Proposal? refused = null;
        for (int i = 0; i < 200 && refused is null; i++)
        {
            var p = Command(c, 1, "SET", "k" + i, new string('x', 100));
            c.Stabilize();
            Assert.True(c[1].Cache!.UsedMemoryBytes <= Limit + 96 + 4 + 100, "memory exceeds the limit by more than one write");
            if (p.Result?.Reply?.Kind == ReplyKind.Error)
            {
                refused = p;
            }
        }

        Assert.NotNull(refused);
        Assert.Equal("OOM command not allowed when used memory > 'maxmemory'.", refused.Result!.Value.Reply!.Text);
        long before = c[1].Cache!.UsedMemoryBytes;
        var again = Command(c, 1, "SET", "another", "v");
        c.TickAll(3);
        Assert.Equal(ReplyKind.Error, again.Result?.Reply?.Kind);
        Assert.All(c.Hosts.Values, h => Assert.Equal(before, h.Cache!.UsedMemoryBytes));
        Assert.Equal(0, c[1].Cache!.EvictedKeys);
    }

    [Fact]
    public void AccessReports_ReadsServedByAFollowerReachTheLeader_AndLruKeepsTheKeysReadThere()
    {
        var c = new ScenarioCluster(3);
        c.Elect(1);
        var reports = new List<(NodeId Leader, IReadOnlyList<byte[]> Keys)>();
        foreach (var host in c.Hosts.Values)
        {
            host.AccessReported = (leader, keys) => reports.Add((leader, keys));
        }

        Write(c, 1, WriteCommand.MemoryPolicy(10_000_000, EvictionPolicy.AllKeysLru));
        FillKeys(c, 200);

        // Ten seconds later (LRU time is in seconds of log time), a follower serves reads of the first 20 keys.
        foreach (var host in c.Hosts.Values)
        {
            host.Clock.OffsetMs += 10_000;
        }

        for (int i = 0; i < 20; i++)
        {
            Assert.Equal("\"" + new string('x', 100) + "\"", Read(c[2], Now(c, 2), "GET", "k" + i));
        }

        long interval = c[2].Driver!.Options.AccessReportIntervalTicks;
        c.TickAll((int)interval + 1);
        var report = Assert.Single(reports);
        Assert.Equal(new NodeId(1), report.Leader);
        Assert.Equal(20, report.Keys.Count);

        // The host sends the report to the leader as an Access write.
        Write(c, 1, WriteCommand.Access(report.Keys));
        c.Stabilize();

        long limit = c[1].Cache!.UsedMemoryBytes / 2;
        Write(c, 1, WriteCommand.MemoryPolicy(limit, EvictionPolicy.AllKeysLru));
        c.TickAll(5);
        foreach (var host in c.Hosts.Values)
        {
            Assert.True(host.Cache!.EvictedKeys >= 80);
            for (int i = 0; i < 20; i++)
            {
                Assert.True(Has(host, "k" + i), $"node {host.Id} evicted k{i}, read on a follower since the others were written");
            }
        }
    }

    [Fact]
    public void AccessReports_WithoutAnLruOrLfuPolicy_AreNotProposed()
    {
        var c = new ScenarioCluster(3);
        c.Elect(1);
        var reports = 0;
        c[2].AccessReported = (_, _) => reports++;
        FillKeys(c, 10);
        for (int i = 0; i < 10; i++)
        {
            Read(c[1], Now(c, 1), "GET", "k" + i);
            Read(c[2], Now(c, 2), "GET", "k" + i);
        }

        c.TickAll((int)c[1].Driver!.Options.AccessReportIntervalTicks * 2);
        Assert.Equal(0, reports);
        Assert.Equal(0, c[1].Driver!.Housekeeper.AccessReportsProposed);
    }

    private static long Now(ScenarioCluster c, int id) => c[id].Clock.GetUtcNow().ToUnixTimeMilliseconds();

    private static bool Has(Sim.SimNode host, string key) => host.Cache!.TryGet(key, out _);

    private static string Text(long value) => value.ToString(CultureInfo.InvariantCulture);

    private static void FillKeys(ScenarioCluster c, int count)
    {
        for (int i = 0; i < count; i++)
        {
            Command(c, 1, "SET", "k" + i, new string('x', 100));
        }

        c.Stabilize();
    }

    private static Proposal Command(ScenarioCluster c, int leader, params string[] argv)
    {
        var parsed = CommandParser.Parse(Now(c, leader), argv);
        Assert.Null(parsed.Error);
        return Write(c, leader, parsed.Write!);
    }

    private static Proposal Write(ScenarioCluster c, int leader, WriteCommand command)
    {
        var proposal = new Proposal();
        var host = c[leader];
        host.Driver!.Propose(command.Encode(Math.Max(Now(c, leader), host.Cache!.LastLogTimeUnixMs)), proposal);
        host.Process();
        return proposal;
    }

    private static string Read(Sim.SimNode host, long time, params string[] argv)
    {
        var parsed = CommandParser.Parse(time, argv);
        return host.Cache!.Read(parsed.Read!, time).ToString();
    }

    private static string Keys(Sim.SimNode host)
    {
        var parsed = CommandParser.Parse(0, "KEYS", "*");
        return string.Join(",", host.Cache!.Read(parsed.Read!, host.Cache.LastLogTimeUnixMs).Items.Select(i => i.ToString()).Order(StringComparer.Ordinal));
    }

    private sealed class Proposal : ProposalRequest
    {
        public ApplyResult? Result { get; private set; }

        public RaftHostException? Error { get; private set; }

        public override void Complete(ApplyResult result) => Result = result;

        public override void Fail(RaftHostException error) => Error = error;
    }
}
