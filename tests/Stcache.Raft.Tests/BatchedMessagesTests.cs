using Stcache.Raft;

namespace Stcache.Raft.Tests;

/// <summary>
/// Per-batch message costs: a commit index that moves while the leader takes input reaches each follower once, in
/// the append that carries the next entries when there is one; a follower acknowledges the appends of one Ready once.
/// </summary>
public sealed class BatchedMessagesTests
{
    private static MiniCluster ClusterLedBy1()
    {
        var cluster = new MiniCluster(3);
        cluster[1].Campaign();
        cluster.Stabilize();
        Assert.Equal(RaftRole.Leader, cluster[1].Role);
        return cluster;
    }

    /// <summary>The leader proposes, the followers acknowledge: returns the acknowledgements, not yet stepped.</summary>
    private static List<Message> ProposeAndCollectAcks(MiniCluster cluster, string value)
    {
        var leader = cluster[1];
        Assert.True(leader.Propose(System.Text.Encoding.UTF8.GetBytes(value)).IsAccepted);
        var appends = MiniCluster.Drain(leader).Where(m => m.Type == MessageType.Append).ToList();
        Assert.Equal(2, appends.Count);
        var acks = new List<Message>();
        foreach (var append in appends)
        {
            var follower = cluster[(int)append.To.Value];
            follower.Step(append);
            acks.AddRange(MiniCluster.Drain(follower).Where(m => m.Type == MessageType.AppendResponse));
        }

        return acks;
    }

    [Fact]
    public void CommitMovedBeforeAProposalTravelsInItsAppend()
    {
        var cluster = ClusterLedBy1();
        var leader = cluster[1];
        var acks = ProposeAndCollectAcks(cluster, "a");
        var committedBefore = leader.CommitIndex;

        // One loop pass: the acknowledgements move the commit index, then a new proposal arrives.
        foreach (var ack in acks)
        {
            leader.Step(ack);
        }

        Assert.True(leader.Propose("b"u8.ToArray()).IsAccepted);
        var sent = MiniCluster.Drain(leader);

        Assert.True(leader.CommitIndex > committedBefore);
        var appends = sent.Where(m => m.Type == MessageType.Append).ToList();
        Assert.Equal(2, appends.Count); // one per follower: no separate, empty commit broadcast
        Assert.All(appends, append =>
        {
            Assert.Equal(leader.CommitIndex, append.Commit);
            Assert.Single(append.Entries);
        });
    }

    [Fact]
    public void CommitMovedWithNothingToProposeIsSentAtOnce()
    {
        var cluster = ClusterLedBy1();
        var leader = cluster[1];
        var acks = ProposeAndCollectAcks(cluster, "a");
        foreach (var ack in acks)
        {
            leader.Step(ack);
        }

        Assert.True(leader.HasReady());
        var appends = MiniCluster.Drain(leader).Where(m => m.Type == MessageType.Append).ToList();
        Assert.Equal(2, appends.Count);
        Assert.All(appends, append =>
        {
            Assert.Equal(leader.CommitIndex, append.Commit);
            Assert.Empty(append.Entries);
        });
        Assert.False(leader.HasReady());
    }

    [Fact]
    public void FollowerAcknowledgesTheAppendsOfOneReadyOnce()
    {
        var cluster = ClusterLedBy1();
        var leader = cluster[1];
        var follower = cluster[2];
        Assert.True(leader.Propose("a"u8.ToArray()).IsAccepted);
        var first = MiniCluster.Drain(leader).Single(m => m.Type == MessageType.Append && m.To == new NodeId(2));
        Assert.True(leader.Propose("b"u8.ToArray()).IsAccepted);
        var second = MiniCluster.Drain(leader).Single(m => m.Type == MessageType.Append && m.To == new NodeId(2));

        follower.Step(first);
        follower.Step(second);
        var acks = MiniCluster.Drain(follower).Where(m => m.Type == MessageType.AppendResponse).ToList();

        var ack = Assert.Single(acks);
        Assert.False(ack.Reject);
        Assert.Equal(second.Entries[^1].Index, ack.Index);
    }

    [Fact]
    public void RejectionIsNeverFoldedIntoAnAcknowledgement()
    {
        var cluster = ClusterLedBy1();
        var leader = cluster[1];
        var follower = cluster[2];
        Assert.True(leader.Propose("a"u8.ToArray()).IsAccepted);
        var append = MiniCluster.Drain(leader).Single(m => m.Type == MessageType.Append && m.To == new NodeId(2));

        follower.Step(append);
        follower.Step(append with { Index = append.Index + 5UL, LogTerm = append.Term, Entries = [] }); // a gap: rejected
        var answers = MiniCluster.Drain(follower).Where(m => m.Type == MessageType.AppendResponse).ToList();

        Assert.Equal(2, answers.Count);
        Assert.False(answers[0].Reject);
        Assert.True(answers[1].Reject);
    }
}
