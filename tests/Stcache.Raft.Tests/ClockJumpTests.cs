using Stcache.Raft;

namespace Stcache.Raft.Tests;

/// <summary>
/// <see cref="RaftNode.ClockJumped"/> (docs/RAFT.md, "Ticks after a stall"): the tick count takes the skipped ticks,
/// so a lease is never judged by a clock that skipped time, and no timer advances, so a follower waits longer, not
/// shorter, before it votes for another candidate.
/// </summary>
public sealed class ClockJumpTests
{
    private const int ElectionTimeout = 10;

    /// <summary>Node 1 leads a 3-node cluster whose nodes are past the start-up quiet period; its lease holds.</summary>
    private static MiniCluster LedByOne()
    {
        var cluster = new MiniCluster(3);
        cluster[1].Campaign();
        cluster.Stabilize();
        cluster.TickAll(ElectionTimeout);
        Assert.Equal(1, cluster.Leader());
        return cluster;
    }

    /// <summary>Asks node 1 for a lease read: true if its next Ready answers it; the messages it sends (a round
    /// the read needs) are delivered.</summary>
    private static bool AnsweredAtOnce(MiniCluster cluster, ulong requestId)
    {
        var leader = cluster[1];
        Assert.Equal(ReadStatus.Accepted, leader.ReadIndex(requestId, lease: true));
        var ready = leader.GetReady();
        bool answered = ready.ReadStates.Any(r => r.RequestId == requestId);
        leader.Advance(ready);
        foreach (var m in ready.Messages)
        {
            cluster[(int)m.To.Value].Step(m);
        }

        return answered;
    }

    [Fact]
    public void AJumpEndsTheLeadersLease()
    {
        var cluster = LedByOne();
        Assert.True(AnsweredAtOnce(cluster, 1), "the lease must hold before the jump");

        // Even a jump shorter than the lease ends it: the next quorum round renews it.
        cluster[1].ClockJumped(1);
        Assert.False(AnsweredAtOnce(cluster, 2), "a lease read was served after the clock jumped");
        cluster.Stabilize();
        Assert.Contains(cluster.Reads, r => r.Node == 1 && r.Read.RequestId == 2);
        Assert.True(AnsweredAtOnce(cluster, 3), "a round sent after the jump must renew the lease");
    }

    [Fact]
    public void ARoundSentBeforeTheJumpAndAcknowledgedAfterItGivesNoLease()
    {
        var cluster = LedByOne();
        cluster[1].Tick(); // a heartbeat round goes out
        var acks = MiniCluster.Drain(cluster[1])
            .Where(m => m.Type == MessageType.Heartbeat)
            .SelectMany(m =>
            {
                var follower = cluster[(int)m.To.Value];
                follower.Step(m);
                return MiniCluster.Drain(follower);
            })
            .ToList();
        Assert.NotEmpty(acks);

        cluster[1].ClockJumped(5 * ElectionTimeout);
        foreach (var ack in acks)
        {
            cluster[1].Step(ack);
        }

        Assert.Equal(RaftRole.Leader, cluster[1].Role);
        Assert.False(AnsweredAtOnce(cluster, 4), "acknowledgements of a round sent before the jump renewed the lease");
    }

    [Fact]
    public void AFollowersTimersDoNotRunOnAJump_ItStillRefusesCandidates()
    {
        var cluster = LedByOne();
        var term = cluster[2].Term;
        cluster[2].ClockJumped(5 * ElectionTimeout);
        Assert.DoesNotContain(MiniCluster.Drain(cluster[2]), m => m.Type is MessageType.PreVote or MessageType.Vote);

        // Node 3 campaigns (a pre-vote at the next term): node 2 heard its leader within an election timeout of
        // delivered ticks, so it refuses; the leader's lease may rely on that.
        cluster[2].Step(new Message { Type = MessageType.PreVote, From = new NodeId(3), To = new NodeId(2), Term = term.Next, Index = cluster[3].LastIndex, LogTerm = term });
        Assert.DoesNotContain(MiniCluster.Drain(cluster[2]), m => m.Type == MessageType.PreVoteResponse && !m.Reject);
        Assert.Equal(RaftRole.Follower, cluster[2].Role);
        Assert.Equal(term, cluster[2].Term);
    }
}
