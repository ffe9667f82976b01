using System.Net;
using System.Text;

namespace Stcache.Integration.Tests;

/// <summary>PUT /v1/kv/{key}?ttl=SECONDS: the leader turns the TTL into an absolute expiry in the log; reads stop
/// seeing the key once it has passed (issue 11: the TTL used to be accepted and ignored).</summary>
public sealed class HttpTtlTests : ProcessTest
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task A_key_written_with_a_ttl_expires_and_a_bad_ttl_is_refused()
    {
        var node = new Node("n1", WorkDirectory.Path, FreePorts.Next(), FreePorts.Next(),
            n => ["--http=" + n.Http, "--raft=" + n.Raft, "--node=" + Path.Combine(WorkDirectory.Path, "n1"), "--bootstrap=true"]);
        Nodes.Add(node);
        node.Start();
        await Api.WaitForLeaderAsync([node], s_wait);
        string url = $"http://{node.Http}/v1/kv/x";

        var started = DateTime.UtcNow;
        var (status, body, _) = await Api.SendThroughElectionsAsync(HttpMethod.Put, url + "?ttl=2", Encoding.UTF8.GetBytes("v"));
        Assert.Equal(HttpStatusCode.OK, status);
        (status, body, _) = await Api.SendAsync(HttpMethod.Get, url);
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("v", body);

        (status, _, _) = await Api.SendAsync(HttpMethod.Put, $"http://{node.Http}/v1/kv/forever", Encoding.UTF8.GetBytes("v"));
        Assert.Equal(HttpStatusCode.OK, status);

        await Api.WaitUntilAsync("the key to expire", async () => (await Api.SendAsync(HttpMethod.Get, url)).Status == HttpStatusCode.NotFound, s_wait, node);
        Assert.True(DateTime.UtcNow - started >= TimeSpan.FromSeconds(1.9), "expired before its TTL");
        // A stale read judges expiry at the last applied log time: once any later write is applied, the key is gone
        // for it too.
        (status, _, _) = await Api.SendAsync(HttpMethod.Put, $"http://{node.Http}/v1/kv/later", Encoding.UTF8.GetBytes("v"));
        Assert.Equal(HttpStatusCode.OK, status);
        (status, _, _) = await Api.SendAsync(HttpMethod.Get, url + "?consistency=stale");
        Assert.Equal(HttpStatusCode.NotFound, status);
        (status, _, _) = await Api.SendAsync(HttpMethod.Get, $"http://{node.Http}/v1/kv/forever");
        Assert.Equal(HttpStatusCode.OK, status);

        (status, _, _) = await Api.SendAsync(HttpMethod.Put, url + "?ttl=0", Encoding.UTF8.GetBytes("v"));
        Assert.Equal(HttpStatusCode.BadRequest, status);
        (status, _, _) = await Api.SendAsync(HttpMethod.Put, url + "?ttl=soon", Encoding.UTF8.GetBytes("v"));
        Assert.Equal(HttpStatusCode.BadRequest, status);
    }
}
