using Stcache.Raft;

namespace Stcache.Simulation.Scenarios;

/// <summary>
/// Ticks after a stall (docs/RAFT.md): a host that was paused (a long GC, SIGSTOP, a frozen VM, a loop stuck behind
/// a slow fsync) finds many ticks due at once. The driver collapses such a burst to one tick and tells the core how
/// many it skipped, so the messages that waited through the stall are heard before any timer runs out, and a
/// leader's lease is never judged by a clock that skipped time.
/// </summary>
public sealed class StallScenarioTests
{
    // Five election timeouts of the scenario cluster's default configuration.
    private const int StallTicks = 5 * 10;

    [Fact]
    public void LeaderWhoseClockJumpsServesNoLeaseReadBeforeAFreshRound()
    {
        var c = new ScenarioCluster(3);
        c.Elect(1);
        c.Set(1, "k", "v");
        c.TickAll(2);
        Assert.True(c.Read(1, "k", lease: true).Done, "the lease must hold before the stall");
        var term = c.Node(1).Term;

        // A heartbeat round goes out and the followers answer it, but the leader stalls before it hears them: the
        // acknowledgements of a round sent before the stall are read after it.
        c[1].Tick();
        c.Deliver();
        c[1].Tick(StallTicks);
        Assert.Equal(RaftRole.Leader, c.Node(1).Role);
        Assert.Equal(1, c[1].Driver!.ClockJumps);
        c.Deliver(keep: m => m.To == new NodeId(1));

        // The old round's acknowledgements must not give a lease: the followers' timers may have run meanwhile.
        int delivered = c.Delivered;
        var read = c.Read(1, "k", lease: true);
        Assert.False(read.Done, "a lease read was served on a lease from before the stall");
        Assert.Equal(delivered, c.Delivered);

        // A round sent after the stall renews it.
        c.TickAll(2);
        Assert.True(read.Done);
        Assert.Equal("v", read.Value);
        Assert.True(c.Read(1, "k", lease: true).Done, "a fresh round must renew the lease");
        Assert.Equal(term, c.Node(1).Term);
        Assert.Equal(RaftRole.Leader, c.Node(1).Role);
    }

    [Fact]
    public void FollowerWithHeartbeatsQueuedBehindABurstDoesNotCampaign()
    {
        var c = new ScenarioCluster(3);
        c.Elect(1);
        c.TickAll(2);
        var term = c.Node(1).Term;

        // The leader's heartbeat waits in node 2's input while node 2 stalls for five election timeouts.
        c[1].Tick();
        c[2].Tick(StallTicks);
        Assert.Equal(RaftRole.Follower, c.Node(2).Role);
        Assert.DoesNotContain(c.InFlight, m => m.Type is MessageType.PreVote or MessageType.Vote);
        Assert.Equal(StallTicks - 1, c[2].Driver!.TicksSkipped);

        c.Stabilize();
        c.TickAll(30);
        Assert.Equal(1, c.Leader());
        Assert.Equal(term, c.Node(1).Term);
        Assert.Equal(term, c.Node(2).Term);
    }

    [Fact]
    public void ClusterWhoseEveryNodeStallsKeepsItsLeaderAndTerm()
    {
        var c = new ScenarioCluster(3);
        c.Elect(1);
        c.Set(1, "a", "1");
        c.TickAll(2);
        var term = c.Node(1).Term;

        // The whole machine stalls: every node finds five election timeouts due, in some order, with the leader's
        // last heartbeat in flight.
        c[1].Tick();
        foreach (int id in new[] { 3, 1, 2 })
        {
            c[id].Tick(StallTicks);
            Assert.DoesNotContain(c.InFlight, m => m.Type is MessageType.PreVote or MessageType.Vote);
        }

        Assert.Equal(RaftRole.Leader, c.Node(1).Role);
        c.Stabilize();
        c.TickAll(30);
        Assert.Equal(1, c.Leader());
        foreach (int id in new[] { 1, 2, 3 })
        {
            Assert.Equal(term, c.Node(id).Term);
        }

        var write = c.Set(1, "b", "2");
        c.Stabilize();
        Assert.Equal(WriteOutcome.Committed, write.Outcome);
    }

    [Fact]
    public void DeadLeaderIsStillReplacedAfterAStall()
    {
        var c = new ScenarioCluster(3);
        c.Elect(1);
        c.TickAll(2);
        var term = c.Node(1).Term;

        // The leader dies silently (no connection reset is reported) and the survivors stall: after the stall their
        // ticks run normally, so one of them campaigns within its randomized timeout [10, 20) ticks, and wins.
        c.Crash(1);
        c[2].Tick(StallTicks);
        c[3].Tick(StallTicks);
        int rounds = 0;
        while (c.Leader() is null or 1)
        {
            Assert.True(++rounds <= 25, $"no new leader {rounds} ticks after the stall: {c.Describe()}");
            c.TickAll();
        }

        Assert.True(c.Node(c.Leader()!.Value).Term > term);
    }
}
