using Stcache.Cache;
using Stcache.Raft;

namespace Stcache.Integration.Tests;

/// <summary>
/// The host's side of the "you are not a member" notice in the peer handshake, on the real RaftHost in process: what
/// it tells dialers, and when a notice it hears means it was removed. A peer that is behind must never shut a live
/// member down.
/// </summary>
public sealed class RemovalNoticeTests
{
    [Fact]
    public async Task Only_a_notice_newer_than_this_nodes_own_state_shuts_it_down()
    {
        var id = SingleNodeHost.Id;
        var (host, clock) = SingleNodeHost.Start(SingleNodeHost.Options with { RequestTimeout = TimeSpan.FromSeconds(2) });
        await using var running = host;
        var removed = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        host.RemovedFromCluster += () => removed.TrySetResult();
        Assert.True((await SingleNodeHost.WriteWhenLeaderAsync(host, clock, "k", "v")).Succeeded);

        // What it tells dialers: nothing to a member, its applied index to anyone else.
        Assert.Null(host.NotAMemberAsOf(id));
        var applied = host.Cache.AppliedIndex;
        Assert.True(host.NotAMemberAsOf(new NodeId(9)) >= applied);

        // Notices from peers that are behind or level: ignored. Inputs run in order, so once the next write is
        // applied both were handled.
        host.ReportNotAMember(new NodeId(2), applied);
        host.ReportNotAMember(new NodeId(3), applied.Previous);
        Assert.True((await clock.RunUntilAsync(host, host.ProposeAsync(CacheCommand.Set("k", "w"u8.ToArray())))).Succeeded);
        Assert.False(removed.Task.IsCompleted, "a peer that is not ahead shut a member down");
        Assert.False(host.Completion.IsCompleted);

        // A peer whose configuration is newer than everything this node applied: it was removed.
        host.ReportNotAMember(new NodeId(2), new LogIndex(host.Cache.AppliedIndex.Value + 100));
        await clock.AdvanceUntilAsync(host, removed.Task);
    }
}
