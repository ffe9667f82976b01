using Stcache.Raft;

namespace Stcache.Raft.Tests;

/// <summary>
/// The Ready contract with <see cref="RaftConfig.AsyncStorageWrites"/>: the host calls Advance before the Ready's
/// entries are durable and reports the sync later with <see cref="RaftNode.ReportPersisted"/>. Until then the leader
/// does not count its own copy, nothing is applied beyond the local persist, a follower's acknowledgement waits in
/// MessagesAfterPersist, and no entry is handed out twice.
/// </summary>
public sealed class AsyncStorageWritesTests
{
    private static MiniCluster ClusterLedBy1()
    {
        var cluster = new MiniCluster(3, config => config with { AsyncStorageWrites = true });
        cluster[1].Campaign();
        cluster.Stabilize();
        Assert.Equal(RaftRole.Leader, cluster[1].Role);
        return cluster;
    }

    /// <summary>One Ready of the leader handed to the writer (Advance without waiting for the sync).</summary>
    private static Ready HandOff(RaftNode node)
    {
        Assert.True(node.HasReady());
        var ready = node.GetReady();
        node.Advance(ready);
        return ready;
    }

    /// <summary>A follower steps the message and hands its Ready off, persisted at once; returns its acknowledgements.</summary>
    private static List<Message> FollowerPersists(RaftNode follower, Message append)
    {
        follower.Step(append);
        var acks = new List<Message>();
        while (follower.HasReady())
        {
            var ready = follower.GetReady();
            Assert.DoesNotContain(ready.Messages, m => m.Type == MessageType.AppendResponse);
            acks.AddRange(ready.MessagesAfterPersist.Where(m => m.Type == MessageType.AppendResponse));
            follower.Advance(ready);
            if (ready.Entries.Count > 0)
            {
                follower.ReportPersisted(ready.Entries[^1].Index, ready.Entries[^1].Term);
            }
        }

        return acks;
    }

    [Fact]
    public void LeaderCountsItsOwnCopyOnlyOnceItIsPersisted()
    {
        var cluster = ClusterLedBy1();
        var leader = cluster[1];
        Assert.True(leader.Propose("a"u8.ToArray()).IsAccepted);
        var ready = HandOff(leader);
        var entry = Assert.Single(ready.Entries);

        // Follower 2 acknowledges; follower 3 never hears. With its own copy the leader would hold a quorum of 2.
        var append = Assert.Single(ready.Messages, m => m.Type == MessageType.Append && m.To == new NodeId(2));
        foreach (var ack in FollowerPersists(cluster[2], append))
        {
            leader.Step(ack);
        }

        Assert.True(leader.CommitIndex < entry.Index, $"committed {leader.CommitIndex} before the leader's own persist of {entry.Index}");

        leader.ReportPersisted(entry.Index, entry.Term);
        Assert.Equal(entry.Index, leader.CommitIndex);
    }

    [Fact]
    public void CommittedEntriesWaitForTheLocalPersist()
    {
        var cluster = ClusterLedBy1();
        var leader = cluster[1];
        Assert.True(leader.Propose("a"u8.ToArray()).IsAccepted);
        var ready = HandOff(leader);
        var entry = Assert.Single(ready.Entries);

        // Both followers acknowledge: committed by them alone, while the leader's write is still in flight.
        foreach (var append in ready.Messages.Where(m => m.Type == MessageType.Append).ToList())
        {
            foreach (var ack in FollowerPersists(cluster[(int)append.To.Value], append))
            {
                leader.Step(ack);
            }
        }

        Assert.Equal(entry.Index, leader.CommitIndex);
        var handedOut = new List<Entry>();
        while (leader.HasReady())
        {
            var next = HandOff(leader);
            handedOut.AddRange(next.CommittedEntries);
        }

        Assert.DoesNotContain(handedOut, e => e.Index == entry.Index);
        Assert.True(leader.AppliedIndex < entry.Index);

        leader.ReportPersisted(entry.Index, entry.Term);
        var applied = HandOff(leader);
        Assert.Contains(applied.CommittedEntries, e => e.Index == entry.Index);
        Assert.Equal(entry.Index, leader.AppliedIndex);
    }

    [Fact]
    public void EntriesInFlightAreHandedOutOnceAndAsACopy()
    {
        var cluster = ClusterLedBy1();
        var leader = cluster[1];
        Assert.True(leader.Propose("a"u8.ToArray()).IsAccepted);
        var first = HandOff(leader);
        var a = Assert.Single(first.Entries);

        Assert.True(leader.Propose("b"u8.ToArray()).IsAccepted);
        Assert.True(leader.Propose("c"u8.ToArray()).IsAccepted);
        var second = HandOff(leader);
        Assert.Equal([a.Index.Next, a.Index.Next.Next], second.Entries.Select(e => e.Index));

        // Nothing more to persist while both are in flight.
        while (leader.HasReady())
        {
            Assert.Empty(HandOff(leader).Entries);
        }

        // The first Ready's entries stay readable after the log changed (a view would throw: the writer keeps them).
        for (int i = 0; i < 100; i++)
        {
            Assert.True(leader.Propose("x"u8.ToArray()).IsAccepted);
        }

        Assert.Equal(a, first.Entries[0]);

        leader.ReportPersisted(a.Index, a.Term);
        leader.ReportPersisted(second.Entries[^1].Index, second.Entries[^1].Term);
        var rest = HandOff(leader);
        Assert.Equal(100, rest.Entries.Count);
        Assert.Equal(second.Entries[^1].Index.Next, rest.Entries[0].Index);
    }

    [Fact]
    public void FollowerAcknowledgesOnlyAfterPersistAndAReportOfReplacedEntriesIsIgnored()
    {
        var cluster = new MiniCluster(5, config => config with { AsyncStorageWrites = true });
        cluster[1].Campaign();
        cluster.Stabilize();
        var leader = cluster[1];
        var follower = cluster[3];
        Assert.True(leader.Propose("a"u8.ToArray()).IsAccepted);
        Assert.True(leader.Propose("b"u8.ToArray()).IsAccepted);
        var ready = HandOff(leader);

        // Only follower 3 gets the entries; its acknowledgement is held for the sync, and they are in flight.
        foreach (var append in ready.Messages.Where(m => m.Type == MessageType.Append && m.To == follower.Id))
        {
            follower.Step(append);
        }

        var taken = follower.GetReady();
        Assert.Equal(2, taken.Entries.Count);
        Assert.Contains(taken.MessagesAfterPersist, m => m.Type == MessageType.AppendResponse && !m.Reject);
        Assert.DoesNotContain(taken.Messages, m => m.Type == MessageType.AppendResponse);
        follower.Advance(taken);

        // Node 2, which never got them, wins a later term with 4 and 5, then replaces them on node 3.
        cluster.Isolate(1);
        cluster.Isolate(3);
        cluster[2].Campaign();
        cluster.Stabilize();
        Assert.Equal(RaftRole.Leader, cluster[2].Role);
        cluster.Heal();
        cluster.Isolate(1);
        cluster.TickAll(2); // node 2's heartbeat finds node 3, which then takes node 2's log
        var replaced = taken.Entries[0];
        Assert.True(follower.LastIndex >= replaced.Index);
        Assert.True(follower.Term > replaced.Term);

        // The writer now reports the replaced batch: it proves nothing about the entries that took its place.
        follower.ReportPersisted(taken.Entries[^1].Index, taken.Entries[^1].Term);
        follower.AssertInvariants();
        cluster.Stabilize();
        Assert.True(follower.CommitIndex >= replaced.Index);
        Assert.DoesNotContain(cluster.Applied[3], e => e.Index == replaced.Index && e.Term == replaced.Term);
        Assert.Contains(cluster.Applied[3], e => e.Index == replaced.Index);
    }

    [Fact]
    public void ReportPersistedWithoutAsyncStorageWritesIsRefused()
    {
        var cluster = new MiniCluster(1);
        cluster[1].Campaign();
        cluster.Stabilize();
        Assert.Throws<InvalidOperationException>(() => cluster[1].ReportPersisted(cluster[1].LastIndex, cluster[1].Term));
    }
}
