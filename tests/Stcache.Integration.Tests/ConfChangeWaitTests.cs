using Stcache.Node;
using Stcache.Raft;
using Stcache.Server;

namespace Stcache.Integration.Tests;

/// <summary>
/// A membership change refused because another is in flight waits for the host's signal, not a timer: the host
/// answers <see cref="RaftHost.WaitForLogAppliedAsync"/> once it has applied the log it held when it took the wait
/// (the change in flight is in it), and the change tried then goes through. No clock moves in between, so a wait
/// that polled on the host's clock would never end here.
/// </summary>
public sealed class ConfChangeWaitTests
{
    [Fact]
    public async Task A_change_refused_while_another_is_in_flight_goes_through_once_the_log_it_waited_for_is_applied()
    {
        await using var node = await GatedNode.StartLeadingAsync();
        var (host, store, _) = node;

        // Hold the loop in a save, so that both changes reach it in one pass: the first is proposed, the second refused.
        var held = await node.HoldInSaveAsync("held");
        var first = host.ChangeMembershipAsync(new ConfChange(ConfChangeType.AddLearner, new NodeId(2), ReadOnlyMemory<byte>.Empty));
        var second = host.ChangeMembershipAsync(new ConfChange(ConfChangeType.AddLearner, new NodeId(3), ReadOnlyMemory<byte>.Empty));
        store.Open();

        var refused = await Assert.ThrowsAsync<RaftHostException>(() => second.WaitAsync(TimeSpan.FromSeconds(20)));
        Assert.Equal(HostErrorKind.ConfChangeInProgress, refused.Kind);

        var applied = await host.WaitForLogAppliedAsync(TimeSpan.FromSeconds(20)).WaitAsync(TimeSpan.FromSeconds(20));
        await first.WaitAsync(TimeSpan.FromSeconds(20));
        Assert.True(host.Status.ConfState.IsLearner(new NodeId(2)), "the status does not show the change in flight applied");
        Assert.True(host.Status.Applied >= applied, $"waited for {applied}, the status shows {host.Status.Applied}");

        await host.ChangeMembershipAsync(new ConfChange(ConfChangeType.AddLearner, new NodeId(3), ReadOnlyMemory<byte>.Empty)).WaitAsync(TimeSpan.FromSeconds(20));
        Assert.True(host.Status.ConfState.IsLearner(new NodeId(3)));
        Assert.True((await held).Succeeded);
    }

    [Fact]
    public async Task The_wait_times_out_on_the_host_clock_while_the_log_cannot_be_applied()
    {
        await using var node = await GatedNode.StartLeadingAsync();
        var (host, store, clock) = node;
        var held = await node.HoldInSaveAsync("held");
        var wait = host.WaitForLogAppliedAsync(TimeSpan.FromSeconds(2));
        clock.Time.Advance(TimeSpan.FromSeconds(2));
        var error = await Assert.ThrowsAsync<RaftHostException>(() => wait.WaitAsync(TimeSpan.FromSeconds(20)));
        Assert.Equal(HostErrorKind.Timeout, error.Kind);

        store.Open();
        Assert.True((await clock.RunUntilAsync(host, held)).Succeeded);
    }
}
