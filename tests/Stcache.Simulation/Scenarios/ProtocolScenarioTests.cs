using Stcache.Raft;
using Stcache.Simulation.Sim;

namespace Stcache.Simulation.Scenarios;

/// <summary>
/// The protocol behaviours the design brief asks us to show (the raft-demo debugging scenarios, the Raft paper's
/// Figure 8, and the operational paths), each on a small cluster driven tick by tick through the simulator's
/// host, with the safety oracle checking every step.
/// </summary>
public sealed class ProtocolScenarioTests
{
    private static readonly NodeId s_n1 = new(1);
    private static readonly NodeId s_n2 = new(2);
    private static readonly NodeId s_n5 = new(5);

    [Fact]
    public void ElectionWithoutMajority_WithoutPreVote_TermsKeepRising()
    {
        var c = new ScenarioCluster(3, preVote: false, checkQuorum: false);
        c.Isolate(1);
        c.Isolate(2);
        c.Isolate(3);
        c.TickAll(200);
        Assert.Null(c.Leader());
        foreach (var id in new[] { 1, 2, 3 })
        {
            Assert.True(c.Node(id).Term.Value >= 5, $"node {id} term {c.Node(id).Term} should keep rising");
        }
    }

    [Fact]
    public void ElectionWithoutMajority_WithPreVote_TermsDoNotRise()
    {
        var c = new ScenarioCluster(3, preVote: true, checkQuorum: false);
        var before = c.Node(1).Term;
        c.Isolate(1);
        c.Isolate(2);
        c.Isolate(3);
        c.TickAll(200);
        Assert.Null(c.Leader());
        foreach (var id in new[] { 1, 2, 3 })
        {
            Assert.Equal(before, c.Node(id).Term);
        }
    }

    [Fact]
    public void WithPreVote_ReturningNodeDoesNotDeposeLeader()
    {
        var c = new ScenarioCluster(3, preVote: true, checkQuorum: false);
        c.Elect(1);
        var term = c.Node(1).Term;
        c.Isolate(3);
        c.Set(1, "k", "v"); // node 3's log falls behind, so nobody will pre-vote for it
        c.TickAll(100);
        Assert.Equal(term, c.Node(3).Term);
        c.Heal();
        c.TickAll(50);
        Assert.Equal(RaftRole.Leader, c.Node(1).Role);
        Assert.Equal(term, c.Node(1).Term);
        Assert.Equal(1, c.Oracle.LeaderTermCount);
    }

    [Fact]
    public void WithoutPreVote_ReturningNodeDisruptsLeader()
    {
        var c = new ScenarioCluster(3, preVote: false, checkQuorum: false);
        c.Elect(1);
        var term = c.Node(1).Term;
        c.Isolate(3);
        c.Set(1, "k", "v");
        c.TickAll(100);
        Assert.True(c.Node(3).Term > term);
        c.Heal();
        c.TickAll(50);

        // The stale node cannot win (its log is behind) but its higher term forced a new election.
        Assert.True(c.Node(1).Term > term);
        Assert.NotEqual(3, c.Leader());
    }

    [Theory]
    [InlineData(3, new[] { 3 })]
    [InlineData(5, new[] { 4, 5 })]
    public void ElectionWonByMajority(int size, int[] isolated)
    {
        var c = new ScenarioCluster(size);
        foreach (var id in isolated)
        {
            c.Isolate(id);
        }

        for (int i = 0; i < 100 && c.Leader() is null; i++)
        {
            c.TickAll();
        }

        var leader = Assert.IsType<int>(c.Leader());
        Assert.DoesNotContain(leader, isolated);
        Assert.Equal(1, c.Oracle.LeaderTermCount);
        foreach (var id in c.Hosts.Keys.Except(isolated))
        {
            Assert.Equal(c.Node(leader).Term, c.Node(id).Term);
            Assert.Equal(new NodeId((ulong)leader), c.Node(id).Leader);
        }
    }

    [Fact]
    public void HeartbeatsHoldLeadership()
    {
        var c = new ScenarioCluster(3);
        c.Elect(1);
        var term = c.Node(1).Term;
        c.TickAll(50 * 10 * 2); // fifty maximal election timeouts
        Assert.Equal(RaftRole.Leader, c.Node(1).Role);
        Assert.Equal(term, c.Node(1).Term);
        Assert.Equal(1, c.Oracle.LeaderTermCount);
    }

    [Fact]
    public void LeaderThatLosesItsMajorityStepsDown_AndItsUncommittedWriteIsLost()
    {
        var c = new ScenarioCluster(3, checkQuorum: true);
        c.Elect(1);
        var term = c.Node(1).Term;
        c.Isolate(1);
        var write = c.Set(1, "k", "from-the-old-leader");
        Assert.True(write.Result.IsAccepted);
        c.TickAll(2 * 10);
        Assert.NotEqual(RaftRole.Leader, c.Node(1).Role); // check-quorum
        var newLeader = Assert.IsType<int>(c.Leader());
        Assert.NotEqual(1, newLeader);
        Assert.True(c.Node(newLeader).Term > term);
        var replacing = c.Set(newLeader, "k", "from-the-new-leader");
        c.Stabilize();
        c.Heal();
        c.TickAll(5);
        Assert.Equal(WriteOutcome.Committed, replacing.Outcome);
        Assert.Equal(WriteOutcome.Lost, write.Outcome);
        Assert.Equal("from-the-new-leader", c[1].Machine.Get("k"));
    }

    [Fact]
    public void TwoOfThreeDown_ServiceIsUnavailableNotInconsistent()
    {
        var c = new ScenarioCluster(3);
        c.Elect(1);
        c.Set(1, "k", "v");
        c.TickAll(2);
        c.Crash(2);
        c.Crash(3);
        c.TickAll(2 * 10);
        Assert.NotEqual(RaftRole.Leader, c.Node(1).Role);
        Assert.False(c.Set(1, "k", "w").Result.IsAccepted);
        var read = c.Read(1, "k");
        c.TickAll(50);
        Assert.False(read.Done);

        c.Restart(2);
        for (int i = 0; i < 100 && c.Leader() is null; i++)
        {
            c.TickAll();
        }

        var leader = Assert.IsType<int>(c.Leader());
        var fresh = c.Read(leader, "k");
        c.TickAll(3);
        Assert.True(fresh.Done);
        Assert.Equal("v", fresh.Value);
    }

    [Fact]
    public void ReplicationAcknowledgedByAllCommitsAndIsApplied()
    {
        var c = new ScenarioCluster(3);
        c.Elect(1);
        var write = c.Set(1, "k", "v");
        Assert.True(write.Result.IsAccepted);
        c.Stabilize();
        Assert.Equal(WriteOutcome.Committed, write.Outcome); // applied on the leader before the client is answered
        Assert.Equal("v", c[1].Machine.Get("k"));
        c.TickAll(1); // followers learn the commit index with the next heartbeat
        Assert.Equal("v", c[2].Machine.Get("k"));
        Assert.Equal("v", c[3].Machine.Get("k"));
    }

    [Fact]
    public void AProposalBatchGoesOutAsOneAppendPerFollowerAndEachWriteIsAnsweredAtItsIndex()
    {
        var c = new ScenarioCluster(3);
        c.Elect(1);
        Assert.Empty(c.InFlight);
        var sets = Enumerable.Range(0, 10).Select(i => ("k" + i, "v" + i)).ToList();
        var writes = c.SetMany(1, sets);

        // Proposed one by one, the same ten writes left as ten Appends to each follower.
        var appends = c.InFlight.Where(m => m.Type == MessageType.Append).ToList();
        Assert.Equal(2, appends.Count);
        Assert.All(appends, append => Assert.Equal(10, append.Entries.Length));
        c.Stabilize();
        for (int i = 0; i < sets.Count; i++)
        {
            Assert.True(writes[i].Result.IsAccepted);
            Assert.Equal(writes[0].Result.FirstIndex + (ulong)i, writes[i].Result.FirstIndex);
            Assert.Equal(WriteOutcome.Committed, writes[i].Outcome);
            Assert.Equal(sets[i].Item2, c[1].Machine.Get(sets[i].Item1));
        }

        c.TickAll(1);
        Assert.Equal("v9", c[3].Machine.Get("k9"));
    }

    [Fact]
    public void AProposalBatchOnAFollowerIsRefusedAsAWhole()
    {
        var c = new ScenarioCluster(3);
        c.Elect(1);
        var writes = c.SetMany(2, [("a", "1"), ("b", "2")]);
        Assert.All(writes, write => Assert.Equal(ProposeStatus.NotLeader, write.Result.Status));
        Assert.Empty(c.InFlight);
        c.TickAll(2);
        Assert.All(writes, write => Assert.Null(write.Outcome));
        Assert.Null(c[1].Machine.Get("a"));
    }

    [Fact]
    public void ReplicationAcknowledgedByBareMajorityCommits()
    {
        var c = new ScenarioCluster(5);
        c.Elect(1);
        c.Isolate(4);
        c.Isolate(5);
        var write = c.Set(1, "k", "v");
        c.Stabilize();
        Assert.Equal(WriteOutcome.Committed, write.Outcome);
        c.TickAll(1);
        Assert.Equal("v", c[2].Machine.Get("k"));
        Assert.Equal("v", c[3].Machine.Get("k"));
        Assert.Null(c[4].Machine.Get("k"));
        Assert.Null(c[5].Machine.Get("k"));
    }

    [Fact]
    public void ReplicationAcknowledgedByMinorityDoesNotCommit()
    {
        var c = new ScenarioCluster(5);
        c.Elect(1);
        c.Isolate(3);
        c.Isolate(4);
        c.Isolate(5);
        var write = c.Set(1, "k", "v");
        c.Stabilize();
        c.TickAll(3);
        Assert.Null(write.Outcome);
        Assert.True(c.Node(1).CommitIndex < write.Result.FirstIndex);
        Assert.Null(c[1].Machine.Get("k"));

        c.Heal();
        c.TickAll(2);
        Assert.Equal(WriteOutcome.Committed, write.Outcome);
    }

    /// <summary>
    /// Raft paper, Figure 8: an entry from an earlier term stored on a majority is not committed by counting
    /// replicas; only an entry of the leader's current term commits it. Otherwise a later leader could overwrite it.
    /// </summary>
    [Fact]
    public void Figure8_OldTermEntryOnMajorityIsNotCommittedByCounting()
    {
        var (c, index) = Figure8Setup();
        Assert.True(c.Node(1).CommitIndex < index, $"index {index} must not commit by counting: {c.Describe()}");
        Assert.False(c.Oracle.TryGetCommitted(index, out _));

        // (e) once an entry of term 4 reaches a majority, both commit.
        c.Stabilize();
        c.TickAll(1);
        Assert.True(c.Node(1).CommitIndex > index);
        Assert.True(c.Oracle.TryGetCommitted(index, out var committed));
        Assert.Equal(new Term(2), committed.Term);
    }

    [Fact]
    public void Figure8_UncommittedOldTermEntryMayBeOverwrittenByLaterLeader()
    {
        var (c, index) = Figure8Setup();

        // (d) S1 crashes before committing an entry of its term; S5 (last log term 3) wins and overwrites index.
        c.Crash(1);
        c.Restart(5);
        CampaignUntilLeader(c, 5);
        c.Stabilize();
        c.TickAll(2);
        Assert.True(c[2].Log.TryGetEntry(index, out var overwritten));
        Assert.Equal(new Term(3), overwritten.Term);
        Assert.True(c.Oracle.TryGetCommitted(index, out var committed));
        Assert.Equal(new Term(3), committed.Term);
    }

    [Fact]
    public void LeadershipTransfer()
    {
        var c = new ScenarioCluster(3);
        c.Elect(1);
        c.Set(1, "k", "v");
        c.Stabilize();
        var term = c.Node(1).Term;
        Assert.Equal(ProposeStatus.Accepted, c.Node(1).TransferLeadership(new NodeId(3)));
        c[1].Process();
        c.Stabilize();
        c.TickAll(1);
        Assert.Equal(3, c.Leader());
        Assert.True(c.Node(3).Term > term);
        Assert.NotEqual(RaftRole.Leader, c.Node(1).Role);
        var write = c.Set(3, "k", "w");
        c.Stabilize();
        Assert.Equal(WriteOutcome.Committed, write.Outcome);
    }

    [Fact]
    public void ReadIndexFromFollower()
    {
        var c = new ScenarioCluster(3);
        c.Elect(1);
        c.Set(1, "k", "v");
        c.Stabilize();
        var read = c.Read(2, "k");
        Assert.Equal(ReadStatus.Accepted, read.Status);
        c.Stabilize();
        c.TickAll(2);
        Assert.True(read.Done);
        Assert.Equal("v", read.Value);

        // A follower cut off from the leader cannot confirm a read.
        c.Isolate(3);
        var stale = c.Read(3, "k");
        c.Set(1, "k", "w");
        c.TickAll(5);
        Assert.False(stale.Done);
    }

    [Fact]
    public void LeaseReadOnLeaderNeedsNoRound()
    {
        var c = new ScenarioCluster(3, checkQuorum: true);
        c.Elect(1);
        c.Set(1, "k", "v");
        c.TickAll(2); // heartbeat rounds acknowledged: the lease is fresh
        int delivered = c.Delivered;
        var lease = c.Read(1, "k", lease: true);
        Assert.True(lease.Done);
        Assert.Equal("v", lease.Value);
        Assert.Equal(delivered, c.Delivered);

        // A ReadIndex read on the leader waits for a heartbeat round.
        var confirmed = c.Read(1, "k");
        Assert.False(confirmed.Done);
        c.TickAll(1);
        Assert.True(confirmed.Done);
    }

    [Fact]
    public void LearnerCatchesUpAndIsPromoted()
    {
        var c = new ScenarioCluster(3);
        c.Elect(1);
        for (int i = 0; i < 10; i++)
        {
            c.Set(1, "k" + i, "v" + i);
            c.Stabilize();
        }

        c.AddHost(4).Start();
        Assert.Equal(ProposeStatus.Accepted, c.ProposeConfChange(1, ConfChangeType.AddLearner, 4).Status);
        c.Stabilize();
        c.TickAll(3);
        Assert.Equal("v9", c[4].Machine.Get("k9"));

        // No one proposes the promotion: the leader's driver does, once the learner caught up.
        c.TickAll(3);
        foreach (var id in new[] { 1, 2, 3, 4 })
        {
            Assert.Equal([s_n1, s_n2, new NodeId(3), new NodeId(4)], c.Node(id).ConfState.Voters);
            Assert.Equal(c.Node(id).ConfState, c[id].ConfState);
        }
    }

    [Fact]
    public void RemovedLeaderStepsDown()
    {
        var c = new ScenarioCluster(3);
        c.Elect(1);
        Assert.Equal(ProposeStatus.Accepted, c.ProposeConfChange(1, ConfChangeType.RemoveNode, 1).Status);
        c.Stabilize();
        c.TickAll(1);
        Assert.NotEqual(RaftRole.Leader, c.Node(1).Role);
        c[1].Stop();
        for (int i = 0; i < 100 && c.Leader() is null; i++)
        {
            c.TickAll();
        }

        var leader = Assert.IsType<int>(c.Leader());
        Assert.NotEqual(1, leader);
        Assert.Equal([s_n2, new NodeId(3)], c.Node(leader).ConfState.Voters);
        var write = c.Set(leader, "k", "v");
        c.Stabilize();
        Assert.Equal(WriteOutcome.Committed, write.Outcome);
    }

    [Fact]
    public void FollowerFarBehindIsCaughtUpBySnapshot()
    {
        var c = new ScenarioCluster(3, snapshotIntervalEntries: 5, snapshotTrailingEntries: 0);
        c.Elect(1);
        c.Isolate(3);
        for (int i = 0; i < 30; i++)
        {
            c.Set(1, "k" + (i % 4), "v" + i);
            c.Stabilize();
            if (i % 5 == 4)
            {
                c.TickAll(1); // the snapshot policy is checked on ticks
            }
        }

        Assert.True(c[1].SnapshotsTaken > 0);
        Assert.True(c[1].Log.SnapshotMetadata.Index > c[3].Log.LastIndex);
        c.Heal();
        c.TickAll(5);
        Assert.True(c[3].SnapshotsInstalled >= 1);
        Assert.Equal(c[1].Applied, c[3].Applied);
        for (int k = 0; k < 4; k++)
        {
            Assert.Equal(c[1].Machine.Get("k" + k), c[3].Machine.Get("k" + k));
        }

        // And it survives a restart from its snapshot plus log.
        c.Crash(3);
        c.Restart(3);
        c.TickAll(12);
        Assert.Equal(c[1].Machine.Get("k1"), c[3].Machine.Get("k1"));
    }

    /// <summary>Builds Figure 8 (c): S1 leads term 4 and has replicated its term-2 entry at <c>index</c> to a
    /// majority (S1, S2, S3) while its own term-4 entry has reached nobody. S5 holds a term-3 entry at index.</summary>
    private static (ScenarioCluster Cluster, LogIndex Index) Figure8Setup()
    {
        var c = new ScenarioCluster(5, preVote: false, checkQuorum: false, configure: config => config with { AppendBytesMax = 1 });
        c.Elect(1);
        c.TickAll(1);
        Assert.Equal(new Term(2), c.Node(1).Term);

        // (a) S1 (term 2) replicates an entry to S2 only.
        var write = c.Set(1, "k", "term-2");
        var index = write.Result.FirstIndex;
        c.Stabilize(m => !(m.Type == MessageType.Append && m.From == s_n1 && m.To != s_n2));
        Assert.True(c.Node(1).CommitIndex < index);

        // (b) S1 crashes; S5 wins term 3 with votes from S3, S4 and appends its own entry at index, which reaches nobody.
        c.Crash(1);
        CampaignUntilLeader(c, 5, m => !(m.Type == MessageType.Append && m.From == s_n5));
        Assert.Equal(new Term(3), c.Node(5).Term);
        Assert.True(c[5].Log.TryGetEntry(index, out var s5Entry));
        Assert.Equal(new Term(3), s5Entry.Term);
        c.Crash(5);

        // (c) S1 restarts and wins term 4 (votes from S2, S3, S4); it replicates its term-2 entry but none of term 4.
        c.Restart(1);
        // The network strips S1's term-4 entries from its appends (as if S1 had sent only the older ones).
        CampaignUntilLeader(c, 1, rewrite: m => m.Type == MessageType.Append ? m with { Entries = m.Entries.Where(e => e.Term != new Term(4)).ToArray() } : m);
        Assert.Equal(new Term(4), c.Node(1).Term);
        foreach (var id in new[] { 1, 2, 3 })
        {
            Assert.True(c[id].Log.TryGetEntry(index, out var entry), $"node {id} lacks {index}: {c.Describe()}");
            Assert.Equal(new Term(2), entry.Term);
        }

        return (c, index);
    }

    private static void CampaignUntilLeader(ScenarioCluster c, int id, Func<Message, bool>? keep = null, Func<Message, Message>? rewrite = null)
    {
        for (int attempt = 0; attempt < 5 && c.Node(id).Role != RaftRole.Leader; attempt++)
        {
            c.Node(id).Campaign();
            c[id].Process();
            c.Stabilize(keep, rewrite);
        }

        Assert.Equal(RaftRole.Leader, c.Node(id).Role);
    }
}
