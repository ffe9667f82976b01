using Stcache.Raft;

namespace Stcache.Simulation.Scenarios;

/// <summary>
/// A node id names one incarnation of a data directory (docs/RAFT.md, "Node ids"): once a committed change removed
/// it, no leader adds it again, not after a leadership change, a snapshot and a restart either, and messages still
/// sent under it are not heard. Simulator seed 44893 is the failure this closes: a stale node won an election with
/// the votes of two wiped nodes re-added under ids that were still voters in its configuration.
/// </summary>
public sealed class NodeIdScenarioTests
{
    private static readonly NodeId s_n1 = new(1);
    private static readonly NodeId s_n2 = new(2);
    private static readonly NodeId s_n3 = new(3);
    private static readonly NodeId s_n4 = new(4);

    [Fact]
    public void RemovedIdIsNeverAddedAgain()
    {
        var c = new ScenarioCluster(3);
        c.Elect(1);
        Remove(c, 1, 3);

        Assert.Equal(ProposeStatus.Rejected, c[1].ChangeMembership(new ConfChange(ConfChangeType.AddLearner, s_n3, ScenarioCluster.Member(3))));
        Assert.Equal(ProposeStatus.Rejected, c[1].ChangeMembership(new ConfChange(ConfChangeType.AddVoter, s_n3, ScenarioCluster.Member(3))));
        c.Stabilize();
        Assert.Equal([s_n1, s_n2], c.Node(1).ConfState.Voters);
        Assert.Empty(c.Node(1).ConfState.Learners);

        // The other replica refuses alike once it leads: the removed set is replicated state, not the leader's memory.
        c.Elect(2);
        Assert.Equal(ProposeStatus.Rejected, c[2].ChangeMembership(new ConfChange(ConfChangeType.AddLearner, s_n3, ScenarioCluster.Member(3))));

        // A new incarnation under a new id is welcome.
        c.AddHost(4).Start();
        Assert.Equal(ProposeStatus.Accepted, c[2].ChangeMembership(new ConfChange(ConfChangeType.AddLearner, s_n4, ScenarioCluster.Member(4))));
        c.Stabilize();
        c.TickAll(6);
        Assert.Equal([s_n1, s_n2, s_n4], c.Node(2).ConfState.Voters);
    }

    [Fact]
    public void RemovedIdsSurviveASnapshotAndARestart()
    {
        var c = new ScenarioCluster(4, snapshotIntervalEntries: 3, snapshotTrailingEntries: 0);
        c.Elect(1);
        var removal = Remove(c, 1, 3);

        // Enough writes that every node snapshots past the removal and drops the log entry that holds it.
        for (int i = 0; i < 12; i++)
        {
            c.Set(1, "k" + (i % 3), "v" + i);
            c.Stabilize();
            c.TickAll(1);
        }

        Assert.True(c[2].Log.SnapshotMetadata.Index > removal, $"node 2 snapshot {c[2].Log.SnapshotMetadata.Index}, removal at {removal}");
        c.Crash(2);
        c.Restart(2);
        c.TickAll(2);
        c.Elect(2);
        Assert.Equal(ProposeStatus.Rejected, c[2].ChangeMembership(new ConfChange(ConfChangeType.AddLearner, s_n3, ScenarioCluster.Member(3))));
    }

    [Fact]
    public void MessagesFromARemovedIdAreNotHeard()
    {
        var c = new ScenarioCluster(3);
        c.Elect(1);
        Remove(c, 1, 3);
        var term = c.Node(2).Term;

        // Whatever still runs under the removed id (a process that missed its removal, or a wiped node restarted
        // with its old id) claims leadership at a higher term: the follower neither follows nor answers it.
        c[2].Step(new Message { Type = MessageType.Append, From = s_n3, To = s_n2, Term = new Term(term.Value + 3), Commit = c.Node(2).CommitIndex });
        c[2].Process();
        Assert.Equal(term, c.Node(2).Term);
        Assert.Equal(s_n1, c.Node(2).Leader);
        Assert.DoesNotContain(c.InFlight, m => m.To == s_n3);
    }

    /// <summary>Removes <paramref name="id"/> through the leader's driver and waits until every live node applied it;
    /// returns the index of the removal.</summary>
    private static LogIndex Remove(ScenarioCluster c, int leader, int id)
    {
        var node = new NodeId((ulong)id);
        Assert.Equal(ProposeStatus.Accepted, c[leader].ChangeMembership(new ConfChange(ConfChangeType.RemoveNode, node, ReadOnlyMemory<byte>.Empty)));
        var index = c.Node(leader).LastIndex;
        c.Stabilize();
        c.TickAll(2);
        c[id].Stop();
        foreach (var host in c.Hosts.Values.Where(h => h.IsUp))
        {
            Assert.False(host.ConfState.IsMember(node), $"node {host.Id} still lists {node}");
        }

        return index;
    }
}
