using System.Net;
using System.Text;

namespace Stcache.Integration.Tests;

/// <summary>
/// Ticks after a stall (docs/RAFT.md): real stcached processes frozen with SIGSTOP well past the election timeout
/// (default settings: 50 ms ticks, 10-tick timeout, so 0.5-1 s). When every node stalls, the one tick each node's
/// driver delivers after it lets the waiting heartbeats arrive first: no election. When the leader alone stalls,
/// the followers rightly replace it, and the old leader, resumed with its lease ended, serves no stale read.
/// </summary>
public sealed class StallTests : ProcessTest
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(60);
    private static readonly TimeSpan s_stall = TimeSpan.FromSeconds(3);

    [Fact]
    public async Task EveryNodeStoppedPastTheElectionTimeout_KeepsItsLeaderAndTerm()
    {
        var nodes = StartStaticCluster();
        var leader = await Api.WaitForLeaderAsync(nodes, s_wait);
        await WriteAsync(leader, "k", "v1");
        var (term, leaderId) = await AgreedTermAndLeaderAsync(nodes);

        var logged = nodes.ToDictionary(n => n, n => n.Output.Length);
        await Node.SignalAsync("STOP", nodes);
        await Task.Delay(s_stall); // the stall itself: a timed wait by design
        await Node.SignalAsync("CONT", nodes);

        await WriteAsync(leader, "k", "v2");
        await Api.WaitUntilAsync("every node to report the stall it was collapsed from", () =>
            Task.FromResult(nodes.All(n => n.Output.Contains("clock jumped", StringComparison.Ordinal))), s_wait, nodes);
        var (termAfter, leaderAfter) = await AgreedTermAndLeaderAsync(nodes);
        Assert.Equal(term, termAfter);
        Assert.Equal(leaderId, leaderAfter);
        foreach (var node in nodes)
        {
            Assert.DoesNotContain("started an election", node.Output[logged[node]..], StringComparison.Ordinal);
        }
    }

    [Fact]
    public async Task LeaderStoppedAlone_IsReplaced_AndServesNoStaleReadWhenResumed()
    {
        var nodes = StartStaticCluster();
        var old = await Api.WaitForLeaderAsync(nodes, s_wait);
        await WriteAsync(old, "k", "v1");
        var (term, _) = await AgreedTermAndLeaderAsync(nodes);
        var survivors = nodes.Where(n => n != old).ToArray();

        await Node.SignalAsync("STOP", old);
        var successor = await Api.WaitForLeaderAsync(survivors, s_wait);
        await WriteAsync(successor, "k", "v2");

        // Reads sent to the old leader while it is stopped wait in its socket; it meets them the moment it resumes,
        // believing itself leader, its lease measured in ticks it has not yet been given.
        var reads = new[] { "lease", "linearizable" }
            .Select(level => Api.SendAsync(HttpMethod.Get, $"http://{old.Http}/v1/kv/k?consistency={level}"))
            .ToList();
        await Task.Delay(s_stall); // the stall itself (already past the election that replaced it): a timed wait
        await Node.SignalAsync("CONT", old);
        foreach (var read in reads)
        {
            var (status, body, _) = await read;
            Assert.NotEqual("v1", body);
            if (status == HttpStatusCode.OK)
            {
                Assert.Equal("v2", body);
            }
        }

        await Api.WaitUntilAsync("the old leader to follow the new one", async () =>
            (await Api.StatusAsync(old)) is { } s && s.GetProperty("role").GetString() == "follower" && s.GetProperty("term").GetUInt64() > term
            && s.GetProperty("leader").GetString() == (await Api.StatusAsync(successor))?.GetProperty("leader").GetString(), s_wait, nodes);
        var lease = await Api.SendThroughElectionsAsync(HttpMethod.Get, $"http://{old.Http}/v1/kv/k?consistency=lease");
        Assert.Equal(HttpStatusCode.OK, lease.Status);
        Assert.Equal("v2", lease.Body);
        await WriteAsync(old, "k", "v3");
    }

    private Node[] StartStaticCluster()
    {
        var ports = Enumerable.Range(0, 3).Select(_ => (Http: FreePorts.Next(), Raft: FreePorts.Next())).ToArray();
        string cluster = string.Join(',', ports.Select((p, i) => $"{i + 1}/127.0.0.1:{p.Raft}"));
        var nodes = ports.Select((p, i) => new Node($"n{i + 1}", WorkDirectory.Path, p.Http, p.Raft, n =>
            [$"--http_addr={n.Http}", $"--raft_addr={n.Raft}", $"--raft_id={i + 1}", $"--raft_cluster={cluster}", $"--node={Path.Combine(WorkDirectory.Path, "n" + (i + 1))}"])).ToArray();
        foreach (var node in nodes)
        {
            Nodes.Add(node);
            node.Start();
        }

        return nodes;
    }

    private static async Task WriteAsync(Node node, string key, string value)
    {
        var (status, body, _) = await Api.SendThroughElectionsAsync(HttpMethod.Put, $"http://{node.Http}/v1/kv/{key}", Encoding.UTF8.GetBytes(value));
        Assert.True(status == HttpStatusCode.OK, $"PUT {key}={value} on {node.Name}: {(int)status} {body}");
    }

    /// <summary>The term and leader every node reports, once they agree.</summary>
    private static async Task<(ulong Term, string Leader)> AgreedTermAndLeaderAsync(Node[] nodes)
    {
        (ulong Term, string Leader) agreed = default;
        await Api.WaitUntilAsync("every node to report one term and leader", async () =>
        {
            var statuses = await Task.WhenAll(nodes.Select(Api.StatusAsync));
            var seen = statuses.Select(s => s is { } x ? (x.GetProperty("term").GetUInt64(), x.GetProperty("leader").GetString() ?? "0") : (0UL, "0")).Distinct().ToList();
            if (seen.Count != 1 || seen[0].Item2 == "0")
            {
                return false;
            }

            agreed = seen[0];
            return true;
        }, s_wait, nodes);
        return agreed;
    }
}
