using Stcache.Raft;

namespace Stcache.Raft.Tests;

/// <summary>
/// ReadIndex rounds (thesis §6.4): a read is confirmed by a heartbeat round that started after it arrived and that a
/// quorum acknowledged; while one round is in flight, later reads wait for the next, started when it is answered.
/// </summary>
public sealed class ReadRoundTests
{
    private static MiniCluster ElectedCluster(int size)
    {
        var cluster = new MiniCluster(size);
        cluster[1].Campaign();
        cluster.Stabilize();
        Assert.Equal(1, cluster.Leader());

        // One periodic heartbeat: every follower has acknowledged the same round.
        cluster.TickAll(1);
        return cluster;
    }

    [Fact]
    public void AReadIsNeverServedByARoundThatStartedBeforeItArrived()
    {
        var cluster = ElectedCluster(3);
        var leader = cluster[1];
        Assert.Equal(ReadStatus.Accepted, leader.ReadIndex(5));
        var heartbeat = MiniCluster.Drain(leader).First(m => m.Type == MessageType.Heartbeat);
        var follower = cluster[(int)heartbeat.To.Value];
        follower.Step(heartbeat);
        var answer = MiniCluster.Drain(follower).Single(m => m.Type == MessageType.HeartbeatResponse);

        // Read 6 arrives while read 5's round is in flight: it waits for a round of its own, started once that one
        // is answered (no second round in flight meanwhile).
        Assert.Equal(ReadStatus.Accepted, leader.ReadIndex(6));
        Assert.DoesNotContain(MiniCluster.Drain(leader), m => m.Type == MessageType.Heartbeat);
        leader.Step(answer);
        var ready = leader.GetReady();
        Assert.Contains(ready.ReadStates, r => r.RequestId == 5);
        Assert.DoesNotContain(ready.ReadStates, r => r.RequestId == 6);
        var next = ready.Messages.Where(m => m.Type == MessageType.Heartbeat).ToList();
        Assert.NotEmpty(next);
        Assert.All(next, m => Assert.True(m.Round > heartbeat.Round));
        leader.Advance(ready);

        // A late answer to the old round (the other follower's, say) does not serve read 6 either.
        var other = cluster[heartbeat.To.Value == 2 ? 3 : 2];
        other.Step(heartbeat with { To = other.Id });
        leader.Step(MiniCluster.Drain(other).Single(m => m.Type == MessageType.HeartbeatResponse));
        Assert.False(leader.HasReady() && leader.GetReady().ReadStates.Any(r => r.RequestId == 6));
    }
}
