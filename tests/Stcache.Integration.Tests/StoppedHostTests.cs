using Stcache.Server;

namespace Stcache.Integration.Tests;

/// <summary>A write handed to a host that has already stopped fails with the shutdown error; it never hangs.</summary>
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
}
