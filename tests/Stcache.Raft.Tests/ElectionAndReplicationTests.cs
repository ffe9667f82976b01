using System.Text;
using Stcache.Raft;

namespace Stcache.Raft.Tests;

public sealed class ElectionAndReplicationTests
{
    private static ReadOnlyMemory<byte> Bytes(string s) => Encoding.UTF8.GetBytes(s);

    [Fact]
    public void CampaignWinsWithMajorityAndCommitsNoop()
    {
        var cluster = new MiniCluster(3);
        cluster[1].Campaign();
        cluster.Stabilize();
        Assert.Equal(1, cluster.Leader());
        Assert.Equal(new Term(2), cluster[1].Term);
        foreach (var node in cluster.Nodes.Values)
        {
            Assert.Equal(new LogIndex(4), node.CommitIndex);
        }
    }

    [Fact]
    public void ProposalCommitsAndAppliesOnEveryNode()
    {
        var cluster = new MiniCluster(3);
        cluster[1].Campaign();
        cluster.Stabilize();
        var result = cluster[1].Propose(Bytes("x"));
        Assert.True(result.IsAccepted);
        cluster.Stabilize();
        foreach (var (id, applied) in cluster.Applied)
        {
            Assert.Contains(applied, e => e.Index == result.FirstIndex && e.Term == result.Term);
        }
    }

    [Fact]
    public void TickedClusterElectsExactlyOneLeader()
    {
        var cluster = new MiniCluster(5);
        cluster.TickAll(40);
        cluster.Leader();
    }

    [Fact]
    public void ReadIndexOnFollowerIsConfirmedByLeader()
    {
        var cluster = new MiniCluster(3);
        cluster[1].Campaign();
        cluster.Stabilize();
        Assert.Equal(ReadStatus.Accepted, cluster[2].ReadIndex(77));
        cluster.Stabilize();
        Assert.Contains(cluster.Reads, r => r.Node == 2 && r.Read.RequestId == 77 && r.Read.Index == cluster[1].CommitIndex);
    }

    [Fact]
    public void RestartedNodeRecoversLogAndCatchesUp()
    {
        var cluster = new MiniCluster(3);
        cluster[1].Campaign();
        cluster.Stabilize();
        cluster.Isolate(3);
        cluster[1].Propose(Bytes("a"));
        cluster.Stabilize();
        cluster.Restart(3);
        cluster.Heal();
        cluster.TickAll(3);
        Assert.Equal(cluster[1].CommitIndex, cluster[3].CommitIndex);
    }
}
