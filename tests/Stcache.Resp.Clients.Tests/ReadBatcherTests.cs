using Stcache.Node;
using Stcache.Raft;
using Stcache.Server;

namespace Stcache.Resp.Clients.Tests;

/// <summary>One confirmation round serves every read that joined its batch before the Raft loop took it. A read that
/// arrives after the loop took the batch joins the next one (a round begun before it arrived could miss a write
/// acknowledged in between), which goes to the loop when the round in flight is answered.</summary>
public sealed class ReadBatcherTests
{
    private sealed record Round(ReadRequest Request, Action Taken);

    private static (ReadBatcher Batcher, List<Round> Rounds) NewBatcher(TimeSpan? deadline = null, int lanes = 1)
    {
        var rounds = new List<Round>();
        var batcher = new ReadBatcher(
            finished =>
            {
                var request = new ReadRequest { Finished = finished };
                if (deadline is { } limit)
                {
                    request.StartDeadline(limit, TimeProvider.System);
                }

                return request;
            },
            (request, taken) =>
            {
                lock (rounds)
                {
                    rounds.Add(new Round(request, taken));
                }
            },
            lanes);
        return (batcher, rounds);
    }

    private static ReadPoint At(ulong index, long time) => new(new LogIndex(index), time);

    /// <summary>A read in a lane that notes which thread resumed it, and when (in the order of the list).</summary>
    private sealed class RecordingRead(int id, List<(int Read, int Thread, bool Pool)> resumed) : ReadBatcher.LaneRead
    {
        public TaskCompletionSource<ReadOutcome> Outcome { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public override void Resume(ReadOutcome outcome)
        {
            lock (resumed)
            {
                resumed.Add((id, Environment.CurrentManagedThreadId, Thread.CurrentThread.IsThreadPoolThread));
            }

            Outcome.SetResult(outcome);
        }
    }

    [Fact]
    public async Task ReadsJoinTheOpenBatchAndTheNextGoesToTheLoopWhenTheRoundIsAnswered()
    {
        var (batcher, rounds) = NewBatcher();
        var first = batcher.WaitAsync();
        var second = batcher.WaitAsync();
        Assert.Equal(1, batcher.Rounds);
        Assert.Same(first, second);
        Assert.Single(rounds);

        // The loop takes the batch: later reads wait for the next round, not handed over while one is in flight.
        rounds[0].Taken();
        var third = batcher.WaitAsync();
        var fourth = batcher.WaitAsync();
        Assert.NotSame(first, third);
        Assert.Same(third, fourth);
        Assert.Equal(1, batcher.Rounds);

        rounds[0].Request.Complete(At(1, 1000));
        Assert.Equal(2, batcher.Rounds);
        Assert.Equal(2, rounds.Count);
        Assert.Equal(1000, (await first).ReadTimeUnixMs);
        Assert.True((await second).Succeeded);
        Assert.False(third.IsCompleted);

        // Handed over but not yet taken: still open.
        Assert.Same(third, batcher.WaitAsync());
        rounds[1].Taken();
        var fifth = batcher.WaitAsync();
        Assert.NotSame(third, fifth);
        rounds[1].Request.Fail(new RaftHostException(HostErrorKind.NoLeader, "leader changed"));

        // A failed round is an outcome for each of its reads, not an exception thrown into each.
        Assert.Equal(new ReadOutcome(FailureKind.NoLeader, "leader changed"), await third);
        Assert.Equal(FailureKind.NoLeader, (await fourth).Failure);
        Assert.Equal(3, batcher.Rounds);
        Assert.False(fifth.IsCompleted);

        // A round answered twice (the driver after the deadline) hands nothing over twice.
        rounds[2].Request.Complete(At(3, 3000));
        rounds[2].Request.Fail(new RaftHostException(HostErrorKind.Timeout, "late"));
        var answered = await fifth;
        Assert.True(answered.Succeeded);
        Assert.Equal(3000, answered.ReadTimeUnixMs);
        Assert.Equal(3, batcher.Rounds);
    }

    [Fact]
    public async Task ReadsInLanesResumeInTurnOnOneWorkItemPerLaneAndNeverFromAnEarlierRound()
    {
        var (batcher, rounds) = NewBatcher(lanes: 2);
        var resumed = new List<(int Read, int Thread, bool Pool)>();
        Task<ReadOutcome> Read(int i)
        {
            var read = new RecordingRead(i, resumed);
            batcher.JoinLane(read);
            return read.Outcome.Task;
        }

        var reads = Enumerable.Range(0, 8).Select(Read).ToArray();
        var outside = batcher.WaitAsync();
        Assert.Single(rounds);

        // Taken by the loop: a read arriving now waits for the next round, in a lane or not.
        rounds[0].Taken();
        var next = Read(8);
        var nextOutside = batcher.WaitAsync();
        rounds[0].Request.Complete(At(7, 7000));
        foreach (var outcome in await Task.WhenAll([.. reads, outside]))
        {
            Assert.True(outcome.Succeeded);
            Assert.Equal(7000, outcome.ReadTimeUnixMs);
        }

        // The reads joined the lanes in turn (0, 2, 4, 6 and 1, 3, 5, 7); each lane resumed its reads in the order
        // they joined, one after another on one pool thread: one work item per lane, not one per read.
        List<(int Read, int Thread, bool Pool)> done;
        lock (resumed)
        {
            done = [.. resumed];
        }

        foreach (int lane in new[] { 0, 1 })
        {
            var inLane = done.Where(r => r.Read % 2 == lane).ToList();
            Assert.Equal(Enumerable.Range(0, 4).Select(k => 2 * k + lane), inLane.Select(r => r.Read));
            Assert.Single(inLane.Select(r => r.Thread).Distinct());
            Assert.All(inLane, r => Assert.True(r.Pool));
        }

        Assert.False(next.IsCompleted);
        Assert.False(nextOutside.IsCompleted);
        Assert.Equal(2, rounds.Count);

        // The next rounds: each read gets its own round's answer.
        for (int round = 1; round <= 3; round++)
        {
            Task<ReadOutcome>[] later = round == 1 ? [next] : [.. Enumerable.Range(0, 5).Select(Read)];
            rounds[round].Taken();
            var after = Read(100 + round);
            rounds[round].Request.Complete(At((ulong)(10 + round), 10_000 + round));
            foreach (var outcome in await Task.WhenAll(later))
            {
                Assert.Equal(10_000 + round, outcome.ReadTimeUnixMs);
            }

            Assert.False(after.IsCompleted);
            if (round == 3)
            {
                rounds[4].Request.Fail(new RaftHostException(HostErrorKind.NoLeader, "leader changed"));
                Assert.Equal(FailureKind.NoLeader, (await after).Failure);
            }
        }

        Assert.Equal(10_001, (await nextOutside).ReadTimeUnixMs);
    }

    [Fact]
    public async Task ABatchAnsweredBeforeTheLoopTookItIsNotJoined()
    {
        var (batcher, rounds) = NewBatcher();
        var timedOut = batcher.WaitAsync();
        rounds[0].Request.Fail(new RaftHostException(HostErrorKind.Timeout, "queue full"));
        Assert.Equal(FailureKind.Timeout, (await timedOut).Failure);

        var next = batcher.WaitAsync();
        Assert.Equal(2, batcher.Rounds);
        Assert.False(next.IsCompleted);

        // The late 'taken' of the ended batch does not close the new one.
        rounds[0].Taken();
        Assert.Same(next, batcher.WaitAsync());
    }

    [Fact]
    public async Task AReadWaitsNoLongerThanItsBatchDeadlineEvenBehindAStuckRound()
    {
        var (batcher, rounds) = NewBatcher(TimeSpan.FromMilliseconds(200));
        var stuck = batcher.WaitAsync();
        rounds[0].Taken();
        var behind = batcher.WaitAsync();
        var outcome = await behind;
        Assert.Equal(FailureKind.Timeout, outcome.Failure);
        Assert.Equal(RaftHost.ReadTimeoutMessage, outcome.Detail);
        Assert.Equal(FailureKind.Timeout, (await stuck).Failure);

        // Both ended: the next read opens a batch and hands it to the loop at once.
        int before = (int)batcher.Rounds;
        _ = batcher.WaitAsync();
        Assert.Equal(before + 1, batcher.Rounds);
    }
}
