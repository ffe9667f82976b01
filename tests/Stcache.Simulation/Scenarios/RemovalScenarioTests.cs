using Stcache.Raft;

namespace Stcache.Simulation.Scenarios;

/// <summary>
/// A node removed while it could not hear the removal must still learn of it and shut down. No member contacts a
/// node it has removed, so the node has to speak first: its message reaches a member's transport, whose handshake
/// tells it it is not a member (here <see cref="ScenarioCluster"/> plays that part, as the simulator does). A voter
/// that knows its log is stale may not campaign, and a learner never does; both now probe the members once per
/// election timeout without a leader (<see cref="MessageType.Probe"/>; docs/RAFT.md, "Removed nodes"). Simulator
/// seeds 63414, 64982, 66449 and 72131 are the failure this closes: the stale voter stayed silent and up for good.
/// </summary>
public sealed class RemovalScenarioTests
{
    private static readonly NodeId s_n3 = new(3);
    private static readonly NodeId s_n4 = new(4);

    /// <summary>Election timeouts the removed node gets to learn of its removal: the probe waits for one, the driver
    /// then waits two without progress before it believes the notice.</summary>
    private const int TicksToLearn = 6 * 10;

    [Fact]
    public void VoterRemovedWhileItsLogWasKnownStaleLearnsOfItAndShutsDown()
    {
        var c = new ScenarioCluster(3);
        c.Elect(1);

        // Node 3 loses every append that carries entries, but the empty ones that follow tell it the new commit
        // index: it knows its log ends below a committed entry, so it may not campaign.
        for (int i = 0; i < 3; i++)
        {
            c.Set(1, "k" + i, "v" + i);
            c.Stabilize(m => !(m.Type == MessageType.Append && m.To == s_n3 && m.Entries.Length > 0));
        }

        Assert.True(c.Node(3).LastIndex < c.Node(1).CommitIndex, c.Describe());

        // Cut off, it is removed; the members apply the removal and stop sending it anything.
        c.Isolate(3);
        Assert.Equal(ProposeStatus.Accepted, c[1].ChangeMembership(new ConfChange(ConfChangeType.RemoveNode, s_n3, ReadOnlyMemory<byte>.Empty)));
        c.Stabilize();
        c.TickAll(2);
        Assert.False(c[1].ConfState.IsMember(s_n3));
        Assert.False(c[2].ConfState.IsMember(s_n3));
        Assert.True(c[3].ConfState.IsMember(s_n3));

        c.Heal();
        ExpectRemovalLearnedWithoutDisturbingTheMembers(c, 3);
    }

    [Fact]
    public void LearnerRemovedWhileCutOffLearnsOfItAndShutsDown()
    {
        var c = new ScenarioCluster(3);
        c.Elect(1);

        // Node 4 joins as a learner and is cut off the moment it has applied its own addition, before the leader
        // hears that it caught up, so it is not promoted.
        c.AddHost(4).Start();
        Assert.Equal(ProposeStatus.Accepted, c[1].ChangeMembership(new ConfChange(ConfChangeType.AddLearner, s_n4, ScenarioCluster.Member(4))));
        for (int round = 0; round < 20 && !c[4].ConfState.IsMember(s_n4); round++)
        {
            c.Deliver();
        }

        Assert.Contains(s_n4, c[4].ConfState.Learners);
        c.Isolate(4);
        c.Stabilize();
        Assert.Equal(ProposeStatus.Accepted, c[1].ChangeMembership(new ConfChange(ConfChangeType.RemoveNode, s_n4, ReadOnlyMemory<byte>.Empty)));
        c.Stabilize();
        c.TickAll(2);
        Assert.False(c[1].ConfState.IsMember(s_n4));
        Assert.True(c[4].ConfState.IsMember(s_n4));

        c.Heal();
        ExpectRemovalLearnedWithoutDisturbingTheMembers(c, 4);
    }

    [Fact]
    public void CampaignerWhoseVotersAreGoneLearnsOfItsRemovalFromALearner()
    {
        var c = new ScenarioCluster(3);
        c.Elect(1);

        // Node 3 is cut off once it applied the addition of learner 4 (sim seed 99197: 4 later led).
        c.AddHost(4).Start();
        Assert.Equal(ProposeStatus.Accepted, c[1].ChangeMembership(new ConfChange(ConfChangeType.AddLearner, s_n4, ScenarioCluster.Member(4))));
        for (int round = 0; round < 20 && !c[3].ConfState.Learners.Contains(s_n4); round++)
        {
            c.Deliver();
        }

        Assert.Contains(s_n4, c[3].ConfState.Learners);
        c.Isolate(3);
        c.Stabilize();
        c.TickAll(3);
        Assert.Equal(ProposeStatus.Accepted, c[1].ChangeMembership(new ConfChange(ConfChangeType.RemoveNode, s_n3, ReadOnlyMemory<byte>.Empty)));
        c.Stabilize();
        c.TickAll(3);
        Assert.False(c[4].ConfState.IsMember(s_n3));

        // The voters node 3 knows are gone; its campaigns reach nobody, and only node 4 could tell it.
        c.Crash(1);
        c.Crash(2);
        c.Heal();
        bool campaigned = false;
        for (int tick = 0; tick < TicksToLearn && !c[3].LearnedRemoval; tick++)
        {
            c.TickAll(1);
            campaigned |= c.Node(3).Role != RaftRole.Follower;
        }

        Assert.True(campaigned, "node 3 never campaigned: " + c.Describe());
        Assert.True(c[3].LearnedRemoval, $"node 3 did not learn of its removal within {TicksToLearn} ticks: {c.Describe()}");
    }

    /// <summary>Ticks until node <paramref name="removed"/> learned of its removal; meanwhile the members keep their
    /// term and leader: the probes raise no term and start no election.</summary>
    private static void ExpectRemovalLearnedWithoutDisturbingTheMembers(ScenarioCluster c, int removed)
    {
        var term = c.Node(1).Term;
        for (int tick = 0; tick < TicksToLearn && !c[removed].LearnedRemoval; tick++)
        {
            c.TickAll(1);
            Assert.Equal(1, c.Leader());
            foreach (var member in c.Hosts.Keys.Where(id => id != removed))
            {
                Assert.Equal(term, c.Node(member).Term);
            }
        }

        Assert.True(c[removed].LearnedRemoval, $"node {removed} did not learn of its removal within {TicksToLearn} ticks: {c.Describe()}");
        Assert.Equal(term, c.Node(1).Term);
        Assert.Equal(RaftRole.Leader, c.Node(1).Role);
    }
}
