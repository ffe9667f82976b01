using Stcache.Raft;

namespace Stcache.Raft.Tests;

/// <summary>
/// A node that may not campaign (a voter whose log is known stale, a learner) and hears no leader probes the members
/// of its configuration once per election timeout, so that a member that removed it can say so (docs/RAFT.md,
/// "Removed nodes"); a probe changes nothing where it arrives.
/// </summary>
public sealed class ProbeTests
{
    private const int ElectionTimeout = 10;
    private static readonly NodeId s_self = new(1);
    private static readonly NodeId s_leader = new(2);
    private static readonly NodeId s_other = new(3);

    private static ConfChange Change(ConfChangeType type, NodeId id) => new(type, id, ReadOnlyMemory<byte>.Empty);

    /// <summary>A voter of {1, 2, 3} whose leader told it of commit 10 while its log ends at 3.</summary>
    private static RaftNode StaleVoter()
    {
        var node = new RaftNode(new RaftConfig { Id = s_self, RandomSeed = 7 },
            PersistentState.Bootstrap([Change(ConfChangeType.AddVoter, s_self), Change(ConfChangeType.AddVoter, s_leader), Change(ConfChangeType.AddVoter, s_other)]));
        node.Step(new Message { Type = MessageType.Append, From = s_leader, To = s_self, Term = new Term(5), Index = new LogIndex(3), LogTerm = new Term(1), Commit = new LogIndex(10) });
        MiniCluster.Drain(node);
        Assert.Equal(new LogIndex(3), node.LastIndex);
        return node;
    }

    /// <summary>A learner of voters {2, 3}: it applied its own addition at index 3.</summary>
    private static RaftNode Learner()
    {
        var node = new RaftNode(new RaftConfig { Id = s_self, RandomSeed = 7 },
            PersistentState.Bootstrap([Change(ConfChangeType.AddVoter, s_leader), Change(ConfChangeType.AddVoter, s_other)]));
        node.Step(new Message
        {
            Type = MessageType.Append,
            From = s_leader,
            To = s_self,
            Term = new Term(5),
            Index = new LogIndex(2),
            LogTerm = new Term(1),
            Commit = new LogIndex(3),
            Entries = [new Entry(new Term(5), new LogIndex(3), EntryType.ConfChange, Change(ConfChangeType.AddLearner, s_self).Encode())],
        });
        MiniCluster.Drain(node);
        Assert.Equal([s_self], node.ConfState.Learners);
        return node;
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public void NodeThatMayNotCampaignProbesEveryMemberOncePerElectionTimeout(bool learner)
    {
        var node = learner ? Learner() : StaleVoter();
        var probes = new List<(long Tick, Message Probe)>();
        for (int tick = 1; tick <= 20 * ElectionTimeout; tick++)
        {
            node.Tick();
            foreach (var message in MiniCluster.Drain(node))
            {
                Assert.Equal(MessageType.Probe, message.Type);
                Assert.Equal(new Term(5), message.Term);
                probes.Add((tick, message));
            }

            Assert.Equal(RaftRole.Follower, node.Role);
            Assert.Equal(new Term(5), node.Term);
        }

        foreach (var peer in new[] { s_leader, s_other })
        {
            var ticks = probes.Where(p => p.Probe.To == peer).Select(p => p.Tick).ToList();
            Assert.InRange(ticks[0], ElectionTimeout, 2 * ElectionTimeout);
            Assert.All(ticks.Zip(ticks.Skip(1)), pair => Assert.Equal(ElectionTimeout, pair.Second - pair.First));
            Assert.InRange(ticks.Count, 18, 20);
        }

        Assert.DoesNotContain(probes, p => p.Probe.To == s_self);

        // A leader heard again stops the probes until it is silent for an election timeout.
        node.Step(new Message { Type = MessageType.Heartbeat, From = s_leader, To = s_self, Term = new Term(5), Commit = new LogIndex(3) });
        MiniCluster.Drain(node);
        for (int tick = 0; tick < ElectionTimeout - 1; tick++)
        {
            node.Tick();
            Assert.DoesNotContain(MiniCluster.Drain(node), m => m.Type == MessageType.Probe);
        }
    }

    [Fact]
    public void VoterThatMayCampaignDoesNotProbe()
    {
        var node = new RaftNode(new RaftConfig { Id = s_self, RandomSeed = 7 },
            PersistentState.Bootstrap([Change(ConfChangeType.AddVoter, s_self), Change(ConfChangeType.AddVoter, s_leader), Change(ConfChangeType.AddVoter, s_other)]));
        for (int tick = 0; tick < 5 * ElectionTimeout; tick++)
        {
            node.Tick();
            Assert.DoesNotContain(MiniCluster.Drain(node), m => m.Type == MessageType.Probe);
        }
    }

    /// <summary>Two identical followers, one of them probed every tick from a higher term: they must stay identical
    /// (term, leader, role, everything they send), so a probe neither raises a term nor resets an election timer.</summary>
    [Fact]
    public void ProbeChangesNothingWhereItArrives()
    {
        RaftNode Follower()
        {
            var node = new RaftNode(new RaftConfig { Id = s_self, RandomSeed = 7 },
                PersistentState.Bootstrap([Change(ConfChangeType.AddVoter, s_self), Change(ConfChangeType.AddVoter, s_leader), Change(ConfChangeType.AddVoter, s_other)]));
            node.Step(new Message { Type = MessageType.Append, From = s_leader, To = s_self, Term = new Term(5), Index = new LogIndex(3), LogTerm = new Term(1), Commit = new LogIndex(3) });
            MiniCluster.Drain(node);
            return node;
        }

        var probed = Follower();
        var quiet = Follower();
        bool campaigned = false;
        for (int tick = 0; tick < 3 * ElectionTimeout; tick++)
        {
            probed.Step(new Message { Type = MessageType.Probe, From = s_other, To = s_self, Term = new Term(9) });
            probed.Tick();
            quiet.Tick();
            var fromProbed = MiniCluster.Drain(probed).Select(m => m.ToString()).ToList();
            var fromQuiet = MiniCluster.Drain(quiet).Select(m => m.ToString()).ToList();
            Assert.Equal(fromQuiet, fromProbed);
            Assert.Equal(quiet.Term, probed.Term);
            Assert.Equal(quiet.Leader, probed.Leader);
            Assert.Equal(quiet.Role, probed.Role);
            campaigned |= probed.Role == RaftRole.PreCandidate;
        }

        Assert.True(campaigned, "the probed follower never campaigned: its election timer was reset");
        Assert.True(probed.Term < new Term(9));
    }

    [Fact]
    public void ProbeIsAValidMessageWithoutEntries()
    {
        Assert.Null(new Message { Type = MessageType.Probe, From = s_self, To = s_leader, Term = new Term(1) }.Validate());
        Assert.NotNull(new Message { Type = MessageType.Probe + 1, From = s_self, To = s_leader, Term = new Term(1) }.Validate());
    }
}
