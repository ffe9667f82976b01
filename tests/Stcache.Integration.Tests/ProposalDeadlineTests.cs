using Microsoft.Extensions.Time.Testing;
using Stcache.Cache;
using Stcache.Raft;
using Stcache.Server;

namespace Stcache.Integration.Tests;

/// <summary>
/// A write's deadline and its caller's cancellation without a timer or a cancellation source per write: one list of
/// pending proposal batches with one timer (<see cref="ProposalDeadlines"/>), and batches answered through one
/// reusable completion each. Timeouts must still answer with the same errors ("not applied" when the write was never
/// proposed, "outcome unknown" when it was), and a caller that goes away must free its waiter.
/// </summary>
public sealed class ProposalDeadlineTests
{
    private static readonly ReadOnlyMemory<byte>[] s_two = [new byte[] { 1 }, new byte[] { 2 }];

    [Fact]
    public async Task A_batch_past_its_deadline_fails_each_slot_by_whether_it_was_proposed()
    {
        var time = new FakeTimeProvider();
        using var deadlines = new ProposalDeadlines(time);
        var batch = new ProposalBatch(s_two);
        deadlines.Add(batch, TimeSpan.FromSeconds(5));
        Assert.True(batch.Slots[1].TryMarkProposed()); // the driver took the second, not the first
        var wait = batch.WaitAsync().AsTask();

        time.Advance(TimeSpan.FromSeconds(4.9));
        Assert.False(wait.IsCompleted);
        time.Advance(TimeSpan.FromSeconds(0.1));
        await wait.WaitAsync(TimeSpan.FromSeconds(10));

        var notProposed = batch.Slots[0].Error!;
        Assert.Equal(HostErrorKind.Timeout, notProposed.Kind);
        Assert.False(notProposed.OutcomeUnknown);
        Assert.Equal(ProposalSlot.NotProposedMessage, notProposed.Message);
        Assert.False(batch.Slots[0].TryMarkProposed()); // abandoned: the driver will not propose it any more

        var proposed = batch.Slots[1].Error!;
        Assert.Equal(HostErrorKind.Timeout, proposed.Kind);
        Assert.True(proposed.OutcomeUnknown);
        Assert.Equal(ProposalSlot.NotCommittedMessage, proposed.Message);
        Assert.Equal(0, deadlines.Count);
    }

    [Fact]
    public async Task An_answered_batch_leaves_the_list_and_a_late_answer_is_ignored()
    {
        var time = new FakeTimeProvider();
        using var deadlines = new ProposalDeadlines(time);
        var batch = new ProposalBatch(s_two);
        deadlines.Add(batch, TimeSpan.FromSeconds(5));
        Assert.Equal(1, deadlines.Count);

        batch.Slots[0].Complete(new ApplyResult(ApplyStatus.Ok, 7, false, null));
        Assert.Equal(1, deadlines.Count); // one slot still pending
        batch.Slots[1].Fail(new RaftHostException(HostErrorKind.Lost, "lost"));
        await batch.WaitAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(0, deadlines.Count);

        // The deadline passing, and a second answer from the driver, change nothing.
        time.Advance(TimeSpan.FromSeconds(10));
        batch.Slots[0].Fail(new RaftHostException(HostErrorKind.Lost, "late"));
        Assert.Null(batch.Slots[0].Error);
        Assert.Equal(7UL, batch.Slots[0].Result.Version);
        Assert.Equal(HostErrorKind.Lost, batch.Slots[1].Error!.Kind);
    }

    [Fact]
    public async Task Deadlines_expire_in_deadline_order_whatever_order_they_were_added_in()
    {
        var time = new FakeTimeProvider();
        using var deadlines = new ProposalDeadlines(time);
        var late = new ProposalBatch(s_two[..1]);
        var early = new ProposalBatch(s_two[..1]);
        var middle = new ProposalBatch(s_two[..1]);
        deadlines.Add(late, TimeSpan.FromSeconds(5));
        deadlines.Add(early, TimeSpan.FromSeconds(1)); // a retry's shorter remainder
        deadlines.Add(middle, TimeSpan.FromSeconds(3));
        var earlyDone = early.WaitAsync().AsTask();
        var middleDone = middle.WaitAsync().AsTask();
        var lateDone = late.WaitAsync().AsTask();

        time.Advance(TimeSpan.FromSeconds(1));
        await earlyDone.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.False(middleDone.IsCompleted);
        Assert.False(lateDone.IsCompleted);

        time.Advance(TimeSpan.FromSeconds(2));
        await middleDone.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.False(lateDone.IsCompleted);

        time.Advance(TimeSpan.FromSeconds(2));
        await lateDone.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(0, deadlines.Count);
    }

    [Fact]
    public async Task Disposing_the_list_answers_every_pending_batch()
    {
        var time = new FakeTimeProvider();
        var deadlines = new ProposalDeadlines(time);
        var batch = new ProposalBatch(s_two);
        deadlines.Add(batch, TimeSpan.FromSeconds(5));
        deadlines.Dispose();
        await batch.WaitAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(10));
        Assert.All(batch.Slots, slot => Assert.Equal(HostErrorKind.Timeout, slot.Error!.Kind));
    }

    [Fact]
    public async Task A_caller_that_goes_away_frees_its_write_which_is_never_applied_if_not_yet_proposed()
    {
        await using var node = await GatedNode.StartLeadingAsync();
        var (host, store, clock) = node;
        var held = await node.HoldInSaveAsync("held");

        using var client = new CancellationTokenSource();
        var abandoned = host.ProposeAsync(Set("abandoned"), client.Token);
        Assert.Equal(2, host.PendingProposalBatches);
        await client.CancelAsync();
        var error = await Assert.ThrowsAsync<RaftHostException>(() => abandoned.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(HostErrorKind.Timeout, error.Kind);
        Assert.False(error.OutcomeUnknown, error.Message);
        Assert.Equal(1, host.PendingProposalBatches);

        store.Open();
        Assert.True((await clock.RunUntilAsync(host, held)).Succeeded);
        Assert.Equal(0, host.PendingProposalBatches);
        Assert.True(host.Cache.TryGet("held", out _));
        Assert.False(host.Cache.TryGet("abandoned", out _));
    }

    [Fact]
    public async Task A_write_stuck_in_the_log_save_times_out_on_the_host_clock_with_outcome_unknown()
    {
        var timeout = TimeSpan.FromSeconds(2);
        await using var node = await GatedNode.StartLeadingAsync(SingleNodeHost.Options with { RequestTimeout = timeout });
        var (host, store, clock) = node;
        var stuck = await node.HoldInSaveAsync("stuck");
        var queued = host.ProposeAsync(Set("queued"));

        clock.Time.Advance(timeout);
        var proposed = await Assert.ThrowsAsync<RaftHostException>(() => stuck.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(HostErrorKind.Timeout, proposed.Kind);
        Assert.True(proposed.OutcomeUnknown, proposed.Message);
        var notProposed = await Assert.ThrowsAsync<RaftHostException>(() => queued.WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.False(notProposed.OutcomeUnknown, notProposed.Message);
        Assert.Equal(0, host.PendingProposalBatches);

        // The stuck write was in the log: it is applied once the disk answers, though its caller heard "unknown".
        store.Open();
        Assert.True((await clock.RunUntilAsync(host, host.ProposeAsync(Set("after")))).Succeeded);
        Assert.True(host.Cache.TryGet("stuck", out _));
        Assert.False(host.Cache.TryGet("queued", out _));
    }

    private static CacheCommand Set(string key) => SingleNodeHost.Set(key);
}
