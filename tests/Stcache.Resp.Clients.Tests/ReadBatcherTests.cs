using Stcache.Node;
using Stcache.Raft;
using Stcache.Server;

namespace Stcache.Resp.Clients.Tests;

/// <summary>One confirmation round serves every read waiting when it starts; a read that arrives during a round
/// waits for the next one (a round begun before it arrived could miss a write acknowledged in between).</summary>
public sealed class ReadBatcherTests
{
    [Fact]
    public async Task ReadsWaitingTogetherShareOneRoundAndLateReadsTakeTheNext()
    {
        var rounds = new List<TaskCompletionSource<ReadPoint>>();
        var batcher = new ReadBatcher(_ =>
        {
            lock (rounds)
            {
                var round = new TaskCompletionSource<ReadPoint>(TaskCreationOptions.RunContinuationsAsynchronously);
                rounds.Add(round);
                return round.Task;
            }
        });

        var first = batcher.WaitAsync(CancellationToken.None);
        var second = batcher.WaitAsync(CancellationToken.None);
        var third = batcher.WaitAsync(CancellationToken.None);
        Assert.Equal(1, batcher.Rounds);
        Assert.False(second.IsCompleted);

        rounds[0].SetResult(new ReadPoint(new LogIndex(1), 1000));
        Assert.Equal(1000, (await first).TimeUnixMs);
        Assert.False(second.IsCompleted || third.IsCompleted);
        await WaitForRoundsAsync(rounds, 2);
        var late = batcher.WaitAsync(CancellationToken.None);

        rounds[1].SetResult(new ReadPoint(new LogIndex(2), 2000));
        Assert.Equal([2000L, 2000L], (await Task.WhenAll(second, third)).Select(p => p.TimeUnixMs));
        Assert.False(late.IsCompleted);
        await WaitForRoundsAsync(rounds, 3);
        rounds[2].SetException(new RaftHostException(HostErrorKind.NoLeader, "leader changed"));
        await Assert.ThrowsAsync<RaftHostException>(() => late);
        Assert.Equal(3, batcher.Rounds);
    }

    private static async Task WaitForRoundsAsync(List<TaskCompletionSource<ReadPoint>> rounds, int count)
    {
        // The next round starts from the previous one's continuation; bounded wait for it.
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (true)
        {
            lock (rounds)
            {
                if (rounds.Count >= count)
                {
                    return;
                }
            }

            Assert.True(DateTime.UtcNow < deadline, $"round {count} never started");
            await Task.Yield();
        }
    }
}
