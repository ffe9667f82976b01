using Stcache.Raft;
using Stcache.Simulation.Sim;

namespace Stcache.Simulation.Scenarios;

/// <summary>Deterministic reproductions of core bugs the simulator found (see the commit that fixes each).</summary>
public sealed class CoreBugReproductionTests
{
    /// <summary>
    /// Found by sim seed 12320 (soak of seeds 1000..20999 at commit 1e05bdf). Without pre-vote, node 2 is cut
    /// off while the others replace the configuration {1,2,3} by {2,4}; node 2 never learns it and campaigns in
    /// its old configuration (to 1 and 3, both gone), raising its term every timeout. Node 4 needs node 2's vote,
    /// but its requests carry a lower term, and the core used to drop lower-term Vote requests silently, so node 4
    /// never learned the higher term: neither could ever win (livelock). Raft (Figure 2) answers a stale
    /// RequestVote with the current term so the candidate catches up.
    /// </summary>
    [Fact]
    public void CandidateBehindInTermLearnsTheTermFromAStaleVoteRejection()
    {
        var c = new ScenarioCluster(3, preVote: false, checkQuorum: true);
        c.Elect(1);
        c.Isolate(2);
        c.AddHost(4).Start();
        Assert.True(c.ProposeConfChange(1, ConfChangeType.AddLearner, 4).IsAccepted);
        c.TickAll(6); // the leader's driver promotes the learner once it caught up
        Assert.True(c.Node(1).ConfState.IsVoter(new NodeId(4)), c.Describe());
        Assert.True(c.ProposeConfChange(1, ConfChangeType.RemoveNode, 3).IsAccepted);
        c.TickAll(3);
        c[3].Stop();
        Assert.True(c.ProposeConfChange(1, ConfChangeType.RemoveNode, 1).IsAccepted);
        c.TickAll(3);
        c[1].Stop();
        Assert.Equal([new NodeId(2), new NodeId(4)], c[4].ConfState.Voters);
        Assert.Equal([new NodeId(1), new NodeId(2), new NodeId(3)], c[2].ConfState.Voters);

        // Node 2 campaigns alone for a while (only its clock runs): its term runs ahead of node 4's.
        for (int i = 0; i < 400; i++)
        {
            c[2].Tick();
            c.Stabilize();
        }

        Assert.True(c.Node(2).Term > c.Node(4).Term, "precondition: node 2's term ahead of node 4's");

        c.Heal();
        for (int i = 0; i < 100 * 20 && c.Leader() is null; i++)
        {
            c.TickAll();
        }

        Assert.True(c.Leader() is not null, "no leader within 100 election timeouts: " + c.Describe());
        Assert.Equal(4, c.Leader());
    }

    /// <summary>
    /// Found by the first 200 sim seeds (0, 10, 16, 28, 44, ... all with InflightMessagesMax = 1). In Replicate
    /// state with a full in-flight window, a lost Append was never sent again: heartbeat responses tried to send,
    /// but the progress counted as paused, so the follower stayed behind forever.
    /// </summary>
    [Fact]
    public void LostAppendWithFullInflightWindowIsResent()
    {
        var c = new ScenarioCluster(3, configure: config => config with { InflightMessagesMax = 1 });
        c.Elect(1);
        c.TickAll(2);
        var write = c.Set(1, "k", "v");

        // The append carrying the write to node 3 is lost; node 2 acknowledges, so the write commits.
        c.Stabilize(m => !(m.Type == MessageType.Append && m.To == new NodeId(3) && m.Entries.Length > 0));
        Assert.Equal(WriteOutcome.Committed, write.Outcome);
        Assert.Null(c[3].Machine.Get("k"));

        c.TickAll(20);
        Assert.Equal("v", c[3].Machine.Get("k"));
    }
}
