using System.Diagnostics;
using System.Net;
using Xunit.Abstractions;

namespace Stcache.Integration.Tests;

/// <summary>The stcache seed's walkthrough (000/001), step by step, on real processes.</summary>
public sealed class Seed000Tests(ITestOutputHelper output) : ProcessTest
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(30);


    private Node NewNode(int i, Func<Node, string[]> arguments)
    {
        var node = new Node($"node{i}", WorkDirectory.Path, FreePorts.Next(), FreePorts.Next(), arguments);
        Nodes.Add(node);
        return node;
    }

    [Fact]
    public async Task BootstrapJoinReplicateForwardFailoverAndCatchUp()
    {
        // 1. node0 bootstraps and becomes leader.
        var node0 = NewNode(0, n => [$"--http={n.Http}", $"--raft={n.Raft}", "--node=./node0", "-bootstrap=true"]);
        node0.Start();
        await Api.WaitForLeaderAsync([node0], s_wait);
        Assert.Contains("became leader", node0.Output, StringComparison.Ordinal);

        // 2-3. node1 and node2 join through node0's HTTP address.
        var node1 = NewNode(1, n => [$"--http={n.Http}", $"--raft={n.Raft}", "--node=./node1", $"--join={node0.Http}"]);
        var node2 = NewNode(2, n => [$"--http={n.Http}", $"--raft={n.Raft}", "--node=./node2", $"--join={node0.Http}"]);
        node1.Start();
        node2.Start();
        await Api.WaitUntilAsync("three voters", async () =>
            (await Api.StatusAsync(node0))?.GetProperty("voters").GetArrayLength() == 3, s_wait, Nodes.ToArray());
        await Api.WaitForLeaderAsync(Nodes, s_wait);

        // 4. set on the leader, get on every node.
        Assert.Equal("ok\n", await Api.GetStringAsync($"http://{node0.Http}/set?key=abc&value=efg"));
        foreach (var node in Nodes)
        {
            Assert.Equal("efg", await Api.GetStringAsync($"http://{node.Http}/get?key=abc"));
        }

        // 5a. a write sent to a follower is forwarded to the leader; the answer names the leader.
        var (status, body, response) = await Api.SendAsync(HttpMethod.Get, $"http://{node1.Http}/set?key=fwd&value=1");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("ok\n", body);
        Assert.Equal(node0.Http, response.Headers.GetValues("X-Stcache-Leader").Single());
        Assert.Equal("1", await Api.GetStringAsync($"http://{node2.Http}/get?key=fwd"));

        // 5b. with --forward-writes=false a follower refuses as the seed does. Restart node2 that way (its data
        // directory resumes its identity; the --join flag given again is harmless).
        await node2.StopAsync();
        node2.Start("--forward-writes=false");
        await Api.WaitForLeaderAsync(Nodes, s_wait);
        (status, body, _) = await Api.SendAsync(HttpMethod.Get, $"http://{node2.Http}/set?key=abc&value=efg");
        Assert.Equal(HttpStatusCode.Forbidden, status);
        Assert.StartsWith("write method not allowed", body, StringComparison.Ordinal);
        Assert.Contains(node0.Http, body, StringComparison.Ordinal);

        // 7. kill -9 the leader: another node wins and accepts writes; followers read them.
        var stopwatch = Stopwatch.StartNew();
        await node0.KillAsync();
        var newLeader = await Api.WaitForLeaderAsync(Nodes, s_wait);
        Assert.NotSame(node0, newLeader);
        await Api.WaitUntilAsync("a write acknowledged by the new leader", async () =>
            (await Api.SendAsync(HttpMethod.Get, $"http://{newLeader.Http}/set?key=cba&value=gfe")).Status == HttpStatusCode.OK, s_wait, Nodes.ToArray());
        output.WriteLine($"failover: kill -9 to first acknowledged write {stopwatch.ElapsedMilliseconds} ms");
        var otherFollower = newLeader == node1 ? node2 : node1;
        Assert.Equal("gfe", await Api.GetStringAsync($"http://{otherFollower.Http}/get?key=cba"));

        // 9. restart the old leader (same command line, -bootstrap=true again is harmless): follower, caught up.
        node0.Start();
        await Api.WaitUntilAsync("old leader caught up", async () =>
            (await Api.SendAsync(HttpMethod.Get, $"http://{node0.Http}/get?key=cba&consistency=stale")).Body == "gfe", s_wait, Nodes.ToArray());
        Assert.Equal("gfe", await Api.GetStringAsync($"http://{node0.Http}/get?key=cba"));
        var status0 = await Api.StatusAsync(node0);
        Assert.Equal("follower", status0!.Value.GetProperty("role").GetString());
        Assert.Equal(3, status0.Value.GetProperty("voters").GetArrayLength());
    }
}
