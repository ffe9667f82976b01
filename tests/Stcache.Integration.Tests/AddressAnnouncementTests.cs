using System.Net;
using System.Text.Json;

namespace Stcache.Integration.Tests;

/// <summary>
/// A static cluster (<c>--raft_cluster</c>, raft addresses only) learns every member's HTTP address before any
/// failover: the leader announces its own, and each follower asks the leader to record its own. Without the
/// followers' announcements, a follower's address stayed unknown until it first led, and after a failover to it the
/// surviving follower could not forward a write until the new leader's announcement had committed.
/// </summary>
public sealed class AddressAnnouncementTests : ProcessTest
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Every_founder_of_a_static_cluster_has_its_http_address_in_the_member_book()
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
        var expected = nodes.Select((n, i) => ((i + 1).ToString(System.Globalization.CultureInfo.InvariantCulture), n.Http)).ToHashSet();
        await Api.WaitUntilAsync("every member's HTTP address in the leader's member book", async () =>
        {
            var (code, body, _) = await Api.SendAsync(HttpMethod.Get, $"http://{leader.Http}/v1/cluster");
            if (code != HttpStatusCode.OK)
            {
                return false;
            }

            using var document = JsonDocument.Parse(body);
            var known = document.RootElement.GetProperty("members").EnumerateArray()
                .Select(m => m.GetProperty("member"))
                .Select(m => (m.GetProperty("id").GetString()!, m.GetProperty("apiAddress").GetString()!))
                .ToHashSet();
            return known.SetEquals(expected);
        }, s_wait, nodes);
    }
}
