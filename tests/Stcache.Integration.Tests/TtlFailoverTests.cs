using System.Globalization;
using System.Net;
using System.Text;

namespace Stcache.Integration.Tests;

/// <summary>
/// Issue 11: a TTL survives a failover. A key written with a TTL before the leader is killed with kill -9 keeps the
/// expiry the old leader stamped, as seen through the new leader and a follower; it is readable until then and not
/// after (docs/CACHE.md: the nodes share this machine's clock, so the skew bound is the clocks' agreement here).
/// </summary>
public sealed class TtlFailoverTests : ProcessTest
{
    private const int TtlSeconds = 8;
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task A_ttl_written_before_a_leader_kill_expires_at_its_stamped_time_on_the_new_leader_and_a_follower()
    {
        var ports = Enumerable.Range(0, 3).Select(_ => (Http: FreePorts.Next(), Raft: FreePorts.Next())).ToArray();
        string cluster = string.Join(',', ports.Select((p, i) => $"{i + 1}/127.0.0.1:{p.Raft}"));
        var nodes = ports.Select((p, i) =>
        {
            var node = new Node($"n{i + 1}", WorkDirectory.Path, p.Http, p.Raft, n =>
                [$"--http_addr={n.Http}", $"--raft_addr={n.Raft}", $"--raft_id={i + 1}", $"--raft_cluster={cluster}"]);
            Nodes.Add(node);
            node.Start();
            return node;
        }).ToArray();

        var leader = await Api.WaitForLeaderAsync(nodes, s_wait);
        long before = Now();
        var (status, body, _) = await Api.SendThroughElectionsAsync(HttpMethod.Put, $"http://{leader.Http}/v1/kv/session?ttl={TtlSeconds}", Encoding.UTF8.GetBytes("v"));
        long after = Now();
        Assert.True(status == HttpStatusCode.OK, body);

        // The leader stamped now + TTL with its clock: this machine's, so between the instants around the write.
        long expiresAt = await ExpiresAtAsync(leader);
        Assert.InRange(expiresAt, before + (TtlSeconds * 1000), after + (TtlSeconds * 1000));

        // Every node has applied it (a stale read answers from the node's own state) with the same expiry.
        foreach (var node in nodes)
        {
            await Api.WaitUntilAsync($"{node.Name} applied the write", async () =>
                (await Api.SendAsync(HttpMethod.Get, $"http://{node.Http}/v1/kv/session?consistency=stale")).Status == HttpStatusCode.OK, s_wait, nodes);
        }

        await leader.KillAsync(entireProcessTree: false);
        var survivors = nodes.Where(n => n != leader).ToArray();
        var newLeader = await Api.WaitForLeaderAsync(survivors, s_wait);
        var follower = survivors.Single(n => n != newLeader);

        // A write on the new leader commits an entry of its term, with its log time.
        (status, body, _) = await Api.SendThroughElectionsAsync(HttpMethod.Put, $"http://{newLeader.Http}/v1/kv/after-failover", Encoding.UTF8.GetBytes("x"));
        Assert.True(status == HttpStatusCode.OK, body);

        // Before the stamped expiry: readable through both survivors, with the old leader's expiry (not reset or
        // restarted by the failover). These reads, and the ones below, are asked again through an election's 503:
        // an error says nothing about the key.
        Assert.True(Now() < expiresAt - 1_000, $"the failover took too long to check the key before it expires ({expiresAt - Now()} ms left)");
        foreach (var node in survivors)
        {
            foreach (string consistency in new[] { "linearizable", "lease" })
            {
                var (readStatus, value, response) = await Api.SendThroughElectionsAsync(HttpMethod.Get, $"http://{node.Http}/v1/kv/session?consistency={consistency}");
                Assert.True(readStatus == HttpStatusCode.OK, $"{node.Name} {consistency}: {readStatus} {value}");
                Assert.Equal("v", value);
                Assert.Equal(expiresAt, long.Parse(response.Headers.GetValues("X-Stcache-Expires-At").Single(), CultureInfo.InvariantCulture));
            }
        }

        // Waiting for a wall-clock instant: the stamped expiry. A read confirmed after it is served at a later
        // leader time, so the key is gone at once, through the leader and the follower alike.
        // Task.Delay runs on the monotonic clock and may end a millisecond before the wall clock gets there.
        for (long wait = expiresAt - Now() + 1; wait > 0; wait = expiresAt - Now() + 1)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(wait));
        }

        foreach (var node in new[] { newLeader, follower })
        {
            foreach (string consistency in new[] { "linearizable", "lease" })
            {
                var (readStatus, value, _) = await Api.SendThroughElectionsAsync(HttpMethod.Get, $"http://{node.Http}/v1/kv/session?consistency={consistency}");
                Assert.True(readStatus == HttpStatusCode.NotFound, $"{node.Name} {consistency} read at {Now()} (expiry {expiresAt}): {readStatus} {value}");
            }
        }

        // A stale read judges at the node's log time: once a later write is applied there, it is gone too.
        (status, body, _) = await Api.SendThroughElectionsAsync(HttpMethod.Put, $"http://{newLeader.Http}/v1/kv/later", Encoding.UTF8.GetBytes("x"));
        Assert.True(status == HttpStatusCode.OK, body);
        foreach (var node in survivors)
        {
            await Api.WaitUntilAsync($"{node.Name} applied the later write", async () =>
                (await Api.SendAsync(HttpMethod.Get, $"http://{node.Http}/v1/kv/later?consistency=stale")).Status == HttpStatusCode.OK, s_wait, nodes);
            var (readStatus, _, _) = await Api.SendAsync(HttpMethod.Get, $"http://{node.Http}/v1/kv/session?consistency=stale");
            Assert.Equal(HttpStatusCode.NotFound, readStatus);
        }

        // The killed leader comes back from its disk and agrees: the key's expiry has passed there too.
        leader.Start();
        await Api.WaitUntilAsync($"{leader.Name} restarted and caught up", async () =>
            (await Api.SendAsync(HttpMethod.Get, $"http://{leader.Http}/v1/kv/later?consistency=stale")).Status == HttpStatusCode.OK, s_wait, nodes);
        Assert.Equal(HttpStatusCode.NotFound, (await Api.SendThroughElectionsAsync(HttpMethod.Get, $"http://{leader.Http}/v1/kv/session")).Status);
    }

    private static long Now() => DateTimeOffset.UtcNow.ToUnixTimeMilliseconds();

    private static async Task<long> ExpiresAtAsync(Node node)
    {
        var (status, body, response) = await Api.SendAsync(HttpMethod.Get, $"http://{node.Http}/v1/kv/session");
        Assert.True(status == HttpStatusCode.OK, body);
        return long.Parse(response.Headers.GetValues("X-Stcache-Expires-At").Single(), CultureInfo.InvariantCulture);
    }
}
