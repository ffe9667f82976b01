using System.Text;
using Stcache.Raft;

namespace Stcache.Raft.Tests;

public sealed class MembershipTransferSnapshotTests
{
    private static ReadOnlyMemory<byte> Bytes(string s) => Encoding.UTF8.GetBytes(s);

    private static MiniCluster ElectedCluster(int size)
    {
        var cluster = new MiniCluster(size);
        cluster[1].Campaign();
        cluster.Stabilize();
        Assert.Equal(1, cluster.Leader());
        return cluster;
    }

    [Fact]
    public void TransferMovesLeadershipToCaughtUpTarget()
    {
        var cluster = ElectedCluster(3);
        Assert.Equal(ProposeStatus.Accepted, cluster[1].TransferLeadership(new NodeId(3)));
        cluster.Stabilize();
        Assert.Equal(3, cluster.Leader());
        Assert.Equal(RaftRole.Follower, cluster[1].Role);
    }

    [Fact]
    public void TransferToLaggingTargetCatchesItUpFirst()
    {
        var cluster = ElectedCluster(3);
        cluster.Isolate(3);
        cluster[1].Propose(Bytes("a"));
        cluster.Stabilize();
        cluster.Heal();
        Assert.Equal(ProposeStatus.Accepted, cluster[1].TransferLeadership(new NodeId(3)));
        Assert.Equal(ProposeStatus.TransferInProgress, cluster[1].Propose(Bytes("refused")).Status);
        cluster.TickAll(2);
        Assert.Equal(3, cluster.Leader());
        Assert.Equal(cluster[3].LastIndex, cluster[1].LastIndex);
    }

    [Fact]
    public void RemovedLeaderStepsDownOnceChangeCommits()
    {
        var cluster = ElectedCluster(3);
        var result = cluster[1].ProposeConfChange(new ConfChange(ConfChangeType.RemoveNode, new NodeId(1), ReadOnlyMemory<byte>.Empty));
        Assert.True(result.IsAccepted);
        cluster.Stabilize();
        Assert.NotEqual(RaftRole.Leader, cluster[1].Role);
        Assert.False(cluster[2].ConfState.IsVoter(new NodeId(1)));
        cluster.Nodes.Remove(1);
        cluster.TickAll(40);
        Assert.Contains(cluster.Leader(), new[] { 2, 3 });
    }

    [Fact]
    public void RemovedFollowerLearnsItsRemovalCommitted()
    {
        // The removed node is told the commit by the append the leader broadcasts as the change commits, before
        // the leader forgets it; without it the removed node could not shut itself down.
        var cluster = ElectedCluster(3);
        Assert.True(cluster[1].ProposeConfChange(new ConfChange(ConfChangeType.RemoveNode, new NodeId(3), ReadOnlyMemory<byte>.Empty)).IsAccepted);
        cluster.Stabilize();
        Assert.False(cluster[1].ConfState.IsMember(new NodeId(3)));
        Assert.Equal(cluster[1].CommitIndex, cluster[3].CommitIndex);
        Assert.False(cluster[3].ConfState.IsMember(new NodeId(3)));
    }

    [Fact]
    public void OneConfChangeAtATime()
    {
        var cluster = ElectedCluster(3);
        var first = cluster[1].ProposeConfChange(new ConfChange(ConfChangeType.AddLearner, new NodeId(4), ReadOnlyMemory<byte>.Empty));
        Assert.True(first.IsAccepted);
        var second = cluster[1].ProposeConfChange(new ConfChange(ConfChangeType.AddLearner, new NodeId(5), ReadOnlyMemory<byte>.Empty));
        Assert.Equal(ProposeStatus.ConfChangeInProgress, second.Status);
    }

    [Fact]
    public void LearnerJoinsFromEmptyStateThenIsPromoted()
    {
        var cluster = ElectedCluster(3);
        cluster[1].Propose(Bytes("before-join"));
        cluster.Stabilize();
        var learner = new RaftConfig { Id = new NodeId(4), RandomSeed = 42 };
        cluster.Configs[4] = learner;
        cluster.Stored[4] = PersistentState.Empty;
        cluster.Nodes[4] = new RaftNode(learner, PersistentState.Empty);
        cluster.Applied[4] = [];
        Assert.True(cluster[1].ProposeConfChange(new ConfChange(ConfChangeType.AddLearner, new NodeId(4), ReadOnlyMemory<byte>.Empty)).IsAccepted);
        cluster.Stabilize();
        cluster.TickAll(2);
        Assert.Equal(cluster[1].LastIndex, cluster[4].LastIndex);
        Assert.True(cluster[4].ConfState.IsLearner(new NodeId(4)));
        Assert.True(cluster[1].ProposeConfChange(new ConfChange(ConfChangeType.AddVoter, new NodeId(4), ReadOnlyMemory<byte>.Empty)).IsAccepted);
        cluster.TickAll(2);
        Assert.True(cluster[4].ConfState.IsVoter(new NodeId(4)));
        Assert.Equal(4, cluster[1].ConfState.Voters.Count);
        Assert.Contains(cluster.Applied[4], e => e.Data.Span.SequenceEqual(Bytes("before-join").Span));
    }

    [Fact]
    public void FollowerBehindCompactionIsSentSnapshot()
    {
        var cluster = ElectedCluster(3);
        cluster.Isolate(3);
        for (int i = 0; i < 20; i++)
        {
            cluster[1].Propose(Bytes($"v{i}"));
            cluster.Stabilize();
        }

        var leader = cluster[1];
        var meta = new SnapshotMetadata(leader.AppliedIndex, leader.Term, leader.ConfState);
        leader.SnapshotTaken(meta, trailingEntries: 0);
        cluster.Heal();
        cluster.TickAll(3);
        Assert.Equal(RaftRole.Follower, cluster[3].Role);
        Assert.True(cluster[3].CommitIndex >= meta.Index);
        Assert.Equal(leader.LastIndex, cluster[3].LastIndex);
    }

    [Fact]
    public void LostSnapshotWithoutReportIsRetried()
    {
        var cluster = ElectedCluster(3);
        cluster.Isolate(3);
        for (int i = 0; i < 5; i++)
        {
            cluster[1].Propose(Bytes($"v{i}"));
            cluster.Stabilize();
        }

        var leader = cluster[1];
        leader.SnapshotTaken(new SnapshotMetadata(leader.AppliedIndex, leader.Term, leader.ConfState), trailingEntries: 0);
        cluster.Heal();
        int dropped = 0;
        cluster.Drop = m => m.Type == MessageType.Snapshot && dropped++ == 0;
        cluster.TickAll(80);
        Assert.True(dropped >= 2);
        Assert.Equal(leader.LastIndex, cluster[3].LastIndex);
    }

    [Fact]
    public void CheckQuorumLeaderStepsDownWhenIsolated()
    {
        var cluster = ElectedCluster(3);
        cluster.Isolate(1);
        cluster.TickAll(25);
        Assert.NotEqual(RaftRole.Leader, cluster[1].Role);
        Assert.Equal(1, cluster.Nodes.Count(n => n.Value.Role == RaftRole.Leader));
    }

    [Fact]
    public void PreVoteKeepsPartitionedNodeFromRaisingTerm()
    {
        var cluster = ElectedCluster(3);
        var term = cluster[1].Term;
        cluster.Isolate(3);
        cluster.TickAll(60);
        Assert.Equal(term, cluster[3].Term);
        cluster.Heal();
        cluster.TickAll(5);
        Assert.Equal(1, cluster.Leader());
        Assert.Equal(term, cluster[1].Term);
    }

    [Fact]
    public void LeaseReadOnLeaderNeedsNoRound()
    {
        var cluster = ElectedCluster(3);
        cluster.TickAll(2);
        Assert.Equal(ReadStatus.Accepted, cluster[1].ReadIndex(9, lease: true));
        var ready = cluster[1].GetReady();
        Assert.Contains(ready.ReadStates, r => r.RequestId == 9);
        Assert.DoesNotContain(ready.Messages, m => m.Type == MessageType.Heartbeat);
        cluster[1].Advance(ready);
    }

    [Fact]
    public void ReadIndexIsNotServedWithoutQuorumRound()
    {
        var cluster = ElectedCluster(3);
        cluster.Isolate(1);
        Assert.Equal(ReadStatus.Accepted, cluster[1].ReadIndex(5));
        cluster.Stabilize();
        Assert.DoesNotContain(cluster.Reads, r => r.Read.RequestId == 5);
        cluster.Heal();
        cluster.TickAll(1);
        Assert.Contains(cluster.Reads, r => r.Node == 1 && r.Read.RequestId == 5);
    }
}

/// <summary>
/// A node wiped and added back under its old id replays the log from index 1; a prefix of that log may name a
/// configuration in which it is the only voter (the first founder's AddVoter). It must not campaign while a leader
/// has told it of a commit index beyond its log (sim seeds 3390, 4061, 6311, 7660, 9728).
/// </summary>
public sealed class StaleLogCampaignTests
{
    private static readonly NodeId s_self = new(1);
    private static readonly NodeId s_leaderId = new(2);

    private static void Drain(RaftNode node)
    {
        while (node.HasReady())
        {
            node.Advance(node.GetReady());
        }
    }

    private static RaftNode WipedNodeHoldingFirstFounderOnly(bool preVote)
    {
        var node = new RaftNode(new RaftConfig { Id = s_self, RandomSeed = 42, PreVote = preVote }, PersistentState.Empty);
        var founder = new ConfChange(ConfChangeType.AddVoter, s_self, ReadOnlyMemory<byte>.Empty).Encode();
        node.Step(new Message
        {
            Type = MessageType.Append,
            From = s_leaderId,
            To = s_self,
            Term = new Term(5),
            Index = LogIndex.Zero,
            LogTerm = Term.Zero,
            Commit = new LogIndex(10),
            Entries = [new Entry(new Term(1), new LogIndex(1), EntryType.ConfChange, founder)],
        });
        Drain(node);

        // The premise: the applied prefix names this node as the only voter.
        Assert.Equal([s_self], node.ConfState.Voters);
        Assert.Equal(new LogIndex(1), node.CommitIndex);
        return node;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void WipedNodeBehindTheKnownCommitNeverCampaigns(bool preVote)
    {
        var node = WipedNodeHoldingFirstFounderOnly(preVote);
        for (int tick = 0; tick < 200; tick++)
        {
            node.Tick();
            Drain(node);
            Assert.Equal(RaftRole.Follower, node.Role);
        }

        node.Campaign();
        Drain(node);
        Assert.Equal(RaftRole.Follower, node.Role);
        Assert.Equal(new Term(5), node.Term);

        // It still votes: its timer ran on, so the leader's lease lapsed and an up-to-date candidate gets its vote.
        node.Step(new Message
        {
            Type = preVote ? MessageType.PreVote : MessageType.Vote,
            From = new NodeId(3),
            To = s_self,
            Term = new Term(6),
            Index = new LogIndex(10),
            LogTerm = new Term(5),
            Campaign = CampaignKind.Election,
        });
        var ready = node.GetReady();
        var response = Assert.Single(ready.Messages.Concat(ready.MessagesAfterPersist));
        Assert.False(response.Reject);
        node.Advance(ready);
    }

    [Fact]
    public void CaughtUpNodeCampaignsAgain()
    {
        var node = WipedNodeHoldingFirstFounderOnly(preVote: true);
        var rest = Enumerable.Range(2, 9).Select(i => new Entry(new Term(5), new LogIndex((ulong)i), EntryType.Normal, ReadOnlyMemory<byte>.Empty)).ToArray();
        node.Step(new Message
        {
            Type = MessageType.Append,
            From = s_leaderId,
            To = s_self,
            Term = new Term(5),
            Index = new LogIndex(1),
            LogTerm = new Term(1),
            Commit = new LogIndex(10),
            Entries = rest,
        });
        Drain(node);
        for (int tick = 0; tick < 200 && node.Role != RaftRole.Leader; tick++)
        {
            node.Tick();
            Drain(node);
        }

        Assert.Equal(RaftRole.Leader, node.Role);
    }
}

public sealed class ReadyContractTests
{
    [Fact]
    public void InputBetweenGetReadyAndAdvanceIsRefused()
    {
        var cluster = new MiniCluster(1);
        var node = cluster[1];
        var ready = node.GetReady();
        Assert.Throws<InvalidOperationException>(() => node.Tick());
        node.Advance(ready);
        node.Tick();
    }

    [Fact]
    public void StaleEntryViewThrowsInsteadOfReadingChangedEntries()
    {
        var cluster = new MiniCluster(1);
        cluster[1].Campaign();
        cluster.Stabilize();
        var node = cluster[1];
        node.Propose(new byte[] { 1 });
        var ready = node.GetReady();
        var kept = ready.Entries;
        Assert.Single(kept);
        node.Advance(ready);
        cluster.Stabilize();
        node.SnapshotTaken(new SnapshotMetadata(node.AppliedIndex, node.Term, node.ConfState), trailingEntries: 0);
        Assert.Throws<InvalidOperationException>(() => kept[0]);
    }
}
