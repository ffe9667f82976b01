using Stcache.Raft;
using Stcache.Server;

namespace Stcache.Integration.Tests;

/// <summary>A request handed to a host that has stopped, or waiting in it when it stops, fails with the shutdown
/// error: it never hangs, and it is not a timeout or an ObjectDisposedException.</summary>
public sealed class StoppedHostTests
{
    [Fact]
    public async Task A_write_started_after_the_node_stopped_fails_with_the_shutdown_error_instead_of_hanging()
    {
        var (host, clock) = SingleNodeHost.Start();
        Assert.True((await SingleNodeHost.WriteWhenLeaderAsync(host, clock, "before", "stop")).Succeeded);
        await host.DisposeAsync();

        var batch = host.StartProposals([SingleNodeHost.Set("after").Encode()], TimeSpan.FromMinutes(1), default);
        await batch.WaitAsync().AsTask().WaitAsync(TimeSpan.FromSeconds(20));
        Assert.Equal(HostErrorKind.ShuttingDown, batch.Slots[0].Error?.Kind);

        var write = host.ProposeAsync(SingleNodeHost.Set("after", "again"));
        var error = await Assert.ThrowsAsync<RaftHostException>(() => write.WaitAsync(TimeSpan.FromSeconds(20)));
        Assert.Equal(HostErrorKind.ShuttingDown, error.Kind);
    }

    [Fact]
    public async Task Reads_waits_and_membership_changes_after_the_stop_fail_with_the_shutdown_error()
    {
        var (host, clock) = SingleNodeHost.Start();
        Assert.True((await SingleNodeHost.WriteWhenLeaderAsync(host, clock, "before", "stop")).Succeeded);
        await host.DisposeAsync();

        // The host's stop token was disposed with it: these used to throw ObjectDisposedException.
        await AssertShuttingDownAsync(host.ReadBarrierAsync(lease: false));
        await AssertShuttingDownAsync(host.WaitForAppliedAsync(new LogIndex(1_000), TimeSpan.FromMinutes(1)));
        await AssertShuttingDownAsync(host.WaitForLogAppliedAsync(TimeSpan.FromMinutes(1)));
        await AssertShuttingDownAsync(host.ChangeMembershipAsync(new ConfChange(ConfChangeType.AddLearner, new NodeId(2), ReadOnlyMemory<byte>.Empty)));
    }

    [Fact]
    public async Task A_wait_pending_when_the_node_stops_fails_with_the_shutdown_error_not_a_timeout()
    {
        var (host, clock) = SingleNodeHost.Start();
        Assert.True((await SingleNodeHost.WriteWhenLeaderAsync(host, clock, "before", "stop")).Succeeded);

        // An index no one will write: the wait is pending when the stop comes (the clock stands still, so its
        // deadline cannot pass first).
        var wait = host.WaitForAppliedAsync(new LogIndex(1_000), TimeSpan.FromMinutes(1));
        await host.DisposeAsync();
        await AssertShuttingDownAsync(wait);
    }

    private static async Task AssertShuttingDownAsync(Task request)
    {
        var error = await Assert.ThrowsAsync<RaftHostException>(() => request.WaitAsync(TimeSpan.FromSeconds(20)));
        Assert.Equal(HostErrorKind.ShuttingDown, error.Kind);
    }
}
