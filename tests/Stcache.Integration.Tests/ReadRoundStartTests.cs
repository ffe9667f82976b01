using Stcache.Server;

namespace Stcache.Integration.Tests;

/// <summary>
/// Where a read round starts (<see cref="RaftHost.StartReadRound"/>): a round handed over by the answer to the last
/// one, inside the host's pass, starts in that pass (its batch is closed and its read asked of the driver before the
/// hand-over returns), at most once per pass; any other round, and every lease round, goes through the input queue to
/// a pass of its own. Node 1 is the one voter of its cluster, so it answers each round in the Ready after it starts.
/// Runs the real RaftHost in process.
/// </summary>
public sealed class ReadRoundStartTests
{
    private static readonly TimeSpan s_limit = TimeSpan.FromSeconds(20);

    // Set by a thread while it hands a round over: a round taken with it set was taken inside that hand-over.
    [ThreadStatic]
    private static bool s_handingOver;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_round_handed_over_by_the_last_rounds_answer_starts_in_its_pass_once_per_pass(bool lease)
    {
        var (host, clock) = SingleNodeHost.Start();
        await using var running = host;
        await SingleNodeHost.WriteWhenLeaderAsync(host, clock, "warm", "up");

        // Three rounds chained as the batcher chains them: each one's answer hands over the next. Each records whether
        // it was taken (its batch closed) inside the hand-over, i.e. before StartReadRound returned.
        const int rounds = 3;
        var takenInsideHandOver = new bool?[rounds];
        var requests = new ReadRequest[rounds];
        for (int i = rounds - 1; i >= 0; i--)
        {
            int round = i;
            requests[round] = host.NewReadRequest(() =>
            {
                if (round + 1 < rounds)
                {
                    HandOver(() => host.StartReadRound(lease, requests[round + 1], Taken(round + 1)));
                }
            });
        }

        Action Taken(int round) => () => takenInsideHandOver[round] = s_handingOver;

        host.StartReadRound(lease, requests[0], Taken(0));
        foreach (var request in requests)
        {
            var point = await request.Completion.Task.WaitAsync(s_limit);
            Assert.True(point.Index.Value > 0);
        }

        Assert.False(takenInsideHandOver[0]); // handed over by a client: queued
        if (lease)
        {
            // Lease rounds go to the loop after its due ticks: never started inside a hand-over.
            Assert.False(takenInsideHandOver[1]);
        }
        else
        {
            Assert.True(takenInsideHandOver[1]);
        }

        // The third was handed over inside the pass that started (and answered) the second: queued, one per pass.
        Assert.False(takenInsideHandOver[2]);
    }

    [Fact]
    public async Task A_round_handed_over_outside_a_pass_is_queued_for_the_loop()
    {
        var (host, clock) = SingleNodeHost.Start();
        await using var running = host;
        await SingleNodeHost.WriteWhenLeaderAsync(host, clock, "warm", "up");

        bool? takenInside = null;
        var request = host.NewReadRequest(() => { });
        HandOver(() => host.StartReadRound(false, request, () => takenInside = s_handingOver));
        await request.Completion.Task.WaitAsync(s_limit);
        Assert.False(takenInside);
    }

    private static void HandOver(Action handOver)
    {
        s_handingOver = true;
        try
        {
            handOver();
        }
        finally
        {
            s_handingOver = false;
        }
    }
}
