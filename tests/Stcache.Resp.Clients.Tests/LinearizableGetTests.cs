using Stcache.Integration.Tests;

namespace Stcache.Resp.Clients.Tests;

/// <summary>Linearizable GETs on a node left without a quorum: the shortcut's error is the general path's.</summary>
public sealed class LinearizableGetTests : RespClusterTest
{
    [Fact]
    public async Task GetsWithoutALeaderAreAnsweredAsOtherReadsAre()
    {
        var nodes = StartCluster("lget", "--request-timeout-ms=1500");
        var leader = await WaitForClusterAsync(nodes);
        var survivor = nodes.First(n => n != leader);
        await using (var writer = await RawClient.ConnectAsync(RespPorts[leader]))
        {
            Assert.Equal("+OK", await writer.CommandAsync("SET", "lget", "v"));
        }

        foreach (var node in nodes.Where(n => n != survivor))
        {
            await node.KillAsync();
        }

        await using var client = await RawClient.ConnectAsync(RespPorts[survivor]);
        await Api.WaitUntilAsync("the survivor knows no leader", async () =>
            (await client.CommandAsync("INFO", "raft")).Contains("raft_leader_id:0\r\n", StringComparison.Ordinal), Wait, survivor);

        // Two GETs at the head of what arrived (the shortcut, one confirmation), then STRLEN and a GET (the general
        // path, another).
        await client.SendAsync([.. RawClient.Encode("GET", "lget"), .. RawClient.Encode("GET", "lget"),
            .. RawClient.Encode("STRLEN", "lget"), .. RawClient.Encode("GET", "lget")]);
        var replies = new List<string>();
        for (int i = 0; i < 4; i++)
        {
            replies.Add(await client.ReadReplyAsync());
        }

        const string NoLeader = "-CLUSTERDOWN no leader elected within the request timeout (no quorum?)";
        Assert.True(replies.All(r => r == NoLeader), $"{string.Join(" | ", replies)}\n{Logs()}");
    }
}
