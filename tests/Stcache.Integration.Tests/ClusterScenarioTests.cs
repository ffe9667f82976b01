using System.Diagnostics;
using System.Net;
using System.Text;
using System.Text.Json;

namespace Stcache.Integration.Tests;

/// <summary>Seed 004 (shaj13), raft-demo's static cluster, full restarts and exact value round-trips.</summary>
public sealed class ClusterScenarioTests : ProcessTest
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(30);


    private Node NewNode(string name, Func<Node, string[]> arguments)
    {
        var node = new Node(name, WorkDirectory.Path, FreePorts.Next(), FreePorts.Next(), arguments);
        Nodes.Add(node);
        return node;
    }

    /// <summary>Three raft-demo style founders with ids 1..3 (<c>--raft_cluster</c>), started.</summary>
    private Node[] StartStaticCluster(string name, Func<int, string[]> extra)
    {
        var ports = Enumerable.Range(0, 3).Select(_ => (Http: FreePorts.Next(), Raft: FreePorts.Next())).ToArray();
        string cluster = string.Join(',', ports.Select((p, i) => $"{i + 1}/127.0.0.1:{p.Raft}"));
        var nodes = ports.Select((p, i) => new Node($"{name}{i + 1}", WorkDirectory.Path, p.Http, p.Raft, n =>
            [$"--http_addr={n.Http}", $"--raft_addr={n.Raft}", $"--raft_id={i + 1}", $"--raft_cluster={cluster}", .. extra(i + 1)])).ToArray();
        foreach (var node in nodes)
        {
            Nodes.Add(node);
            node.Start();
        }

        return nodes;
    }

    [Fact]
    public async Task Shaj13WalkthroughJoinByRaftAddressCatchUpAndRemoval()
    {
        var first = NewNode("n1", n => ["-state_dir=" + Path.Combine(WorkDirectory.Path, "1"), "-raft", $":{n.RaftPort}", "-api", $":{n.HttpPort}"]);
        first.Start();
        await Api.WaitForLeaderAsync([first], s_wait);
        var (status, _, _) = await Api.SendThroughElectionsAsync(HttpMethod.Put, $"http://{first.Http}/", Encoding.UTF8.GetBytes("{\"Key\":\"hello\", \"Value\":\"medium\"}"));
        Assert.True(status is HttpStatusCode.OK or HttpStatusCode.NoContent, status.ToString());
        Assert.Equal("medium", await Api.GetStringAsync($"http://{first.Http}/hello"));

        var second = NewNode("n2", n => ["-state_dir", Path.Combine(WorkDirectory.Path, "2"), "-raft", $":{n.RaftPort}", "-api", $":{n.HttpPort}", "-join", $":{first.RaftPort}"]);
        var third = NewNode("n3", n => ["-state_dir", Path.Combine(WorkDirectory.Path, "3"), "-raft", $":{n.RaftPort}", "-api", $":{n.HttpPort}", "-join", $":{first.RaftPort}"]);
        second.Start();
        third.Start();
        await Api.WaitUntilAsync("three members", async () =>
            JsonDocument.Parse(await Api.GetStringAsync($"http://{first.Http}/mgmt/nodes")).RootElement.GetArrayLength() == 3, s_wait, [.. Nodes]);
        await Api.WaitForLeaderAsync(Nodes, s_wait);

        // A member joins as a learner and is promoted once caught up; /mgmt/nodes lists learners too. Stopping a node
        // while the other joiner is still a learner leaves two voters, one of them down: no quorum, and the write
        // below would rightly time out (a 503 seen once in CI).
        await Api.WaitUntilAsync("three voters", async () =>
            JsonDocument.Parse(await Api.GetStringAsync($"http://{first.Http}/v1/status")).RootElement.GetProperty("voters").GetArrayLength() == 3, s_wait, [.. Nodes]);

        // Writes are accepted by any member.
        string answer;
        (status, answer, _) = await Api.SendThroughElectionsAsync(HttpMethod.Put, $"http://{third.Http}/", Encoding.UTF8.GetBytes("{\"Key\":\"foo\", \"Value\":\"foo\"}"));
        Assert.True(status is HttpStatusCode.OK or HttpStatusCode.NoContent, $"{status} {answer}");
        Assert.Equal("foo", await Api.GetStringAsync($"http://{second.Http}/foo"));

        // Stop one node, overwrite, restart it: it has caught up.
        await third.StopAsync();
        (status, answer, _) = await Api.SendThroughElectionsAsync(HttpMethod.Put, $"http://{first.Http}/", Encoding.UTF8.GetBytes("{\"Key\":\"foo\", \"Value\":\"bar\"}"));
        Assert.True(status is HttpStatusCode.OK or HttpStatusCode.NoContent, $"{status} {answer}");
        Assert.Equal("bar", await Api.GetStringAsync($"http://{first.Http}/foo"));
        third.Start();
        await Api.WaitUntilAsync("restarted node caught up", async () =>
            (await Api.SendAsync(HttpMethod.Get, $"http://{third.Http}/foo?consistency=stale")).Body == "bar", s_wait, [.. Nodes]);

        // List members, delete one: it shuts itself down.
        var members = JsonDocument.Parse(await Api.GetStringAsync($"http://{first.Http}/mgmt/nodes")).RootElement;
        string thirdId = members.EnumerateArray().Single(m => m.GetProperty("apiAddress").GetString() == third.Http).GetProperty("id").GetString()!;
        (status, _, _) = await Api.SendThroughElectionsAsync(HttpMethod.Delete, $"http://{first.Http}/{thirdId}"); // as the seed writes it
        Assert.Equal(HttpStatusCode.OK, status);
        await third.WaitForExitAsync(s_wait);

        // The member list is the answering node's own view: when the removal was forwarded to a leader elsewhere,
        // this node may apply it a moment after the OK.
        await Api.WaitUntilAsync("two members listed", async () =>
            JsonDocument.Parse(await Api.GetStringAsync($"http://{first.Http}/mgmt/nodes")).RootElement.GetArrayLength() == 2, s_wait, [.. Nodes]);
    }

    [Fact]
    public async Task NodeRemovedWhileDownShutsItselfDownWhenItComesBack()
    {
        // It never received the entry that removed it; the members it dials tell it in the handshake.
        var nodes = StartStaticCluster("gone", id => [$"--node={Path.Combine(WorkDirectory.Path, $"gone-{id}")}"]);
        var leader = await Api.WaitForLeaderAsync(nodes, s_wait);
        int goneIndex = Array.FindIndex(nodes, n => n != leader);
        var gone = nodes[goneIndex];
        await gone.StopAsync();
        var (status, body, _) = await Api.SendThroughElectionsAsync(HttpMethod.Delete, $"http://{leader.Http}/v1/cluster/members/{goneIndex + 1}");
        Assert.True(status == HttpStatusCode.OK, $"{status}: {body}");
        Assert.Equal("ok\n", await Api.GetStringAsync($"http://{leader.Http}/set?key=after&value=removal"));

        gone.Start();
        await gone.WaitForExitAsync(s_wait);
        Assert.Contains("removed from the cluster while it was away", gone.Output, StringComparison.Ordinal);
        Assert.Equal(0, gone.ExitCode);
        Assert.Equal("removal", await Api.GetStringAsync($"http://{leader.Http}/get?key=after"));
        Assert.Equal(2, JsonDocument.Parse(await Api.GetStringAsync($"http://{leader.Http}/mgmt/nodes")).RootElement.GetArrayLength());
    }

    [Fact]
    public async Task WriteThroughAFollowerIsVisibleThereOnceAnswered()
    {
        // Read-your-writes on the node the client talks to, as etcd gives: the follower that forwarded a write
        // answers only after applying it, so a stale read there right after never misses it.
        var nodes = StartStaticCluster("ryw", id => [$"--node={Path.Combine(WorkDirectory.Path, $"ryw-{id}")}"]);
        var leader = await Api.WaitForLeaderAsync(nodes, s_wait);
        var follower = nodes.First(n => n != leader);
        for (int i = 0; i < 200; i++)
        {
            var (status, body, _) = await Api.SendThroughElectionsAsync(HttpMethod.Put, $"http://{follower.Http}/v1/kv/ryw", Encoding.UTF8.GetBytes($"v{i}"));
            Assert.True(status == HttpStatusCode.OK, $"{status}: {body}");
            (status, body, _) = await Api.SendAsync(HttpMethod.Get, $"http://{follower.Http}/v1/kv/ryw?consistency=stale");
            Assert.Equal((HttpStatusCode.OK, $"v{i}"), (status, body));
        }
    }

    [Fact]
    public async Task FollowerFarBehindIsCaughtUpBySnapshot()
    {
        // Snapshot every 50 entries and keep only 10 behind it, so a follower that misses 300 writes can only be
        // repaired with a snapshot.
        var nodes = StartStaticCluster("lag", id =>
            [$"--node={Path.Combine(WorkDirectory.Path, $"lag-{id}")}", "--snapshot-threshold=50", "--snapshot-trailing=10", "--snapshot-interval-s=0"]);
        var leader = await Api.WaitForLeaderAsync(nodes, s_wait);
        var lagging = nodes.First(n => n != leader);
        await lagging.StopAsync();
        for (int i = 0; i < 300; i++)
        {
            Assert.Equal("ok\n", await Api.GetStringAsync($"http://{leader.Http}/set?key=k{i}&value=v{i}"));
        }

        // Every running node has snapshotted (and so compacted) well past what the lagging one holds.
        await Api.WaitUntilAsync("snapshots past index 250 on the running nodes", async () =>
        {
            foreach (var node in nodes.Where(n => n != lagging))
            {
                if ((await Api.StatusAsync(node))?.GetProperty("snapshotIndex").GetUInt64() is not >= 250)
                {
                    return false;
                }
            }

            return true;
        }, s_wait, nodes);
        lagging.Start();
        await Api.WaitUntilAsync("the lagging follower installs a snapshot and serves the last write", async () =>
        {
            var (status, body, _) = await Api.SendAsync(HttpMethod.Get, $"http://{lagging.Http}/v1/kv/k299?consistency=stale");
            return status == HttpStatusCode.OK && body == "v299";
        }, s_wait, nodes);
        // The value is visible once the snapshot is restored; the log line that says so comes a moment later.
        await Api.WaitUntilAsync("the lagging follower logs a snapshot install", () =>
            Task.FromResult(lagging.Output.Contains("Snapshot from the leader installed", StringComparison.Ordinal)), s_wait, nodes);

        // It came as the leader's stored file, streamed into the follower's snapshot store and installed from there.
        Assert.Contains("into the snapshot store", lagging.Output, StringComparison.Ordinal);
        for (int i = 0; i < 300; i += 37)
        {
            Assert.Equal($"v{i}", await Api.GetStringAsync($"http://{lagging.Http}/v1/kv/k{i}?consistency=stale"));
        }
    }

    [Fact]
    public async Task RaftDemoStaticClusterFailsFastWithoutMajorityAndRestartsFromSnapshotPlusLog()
    {
        var nodes = StartStaticCluster("demo", _ => ["--request-timeout-ms=2000"]);
        var leader = await Api.WaitForLeaderAsync(nodes, s_wait);
        Assert.True(Directory.Exists(Path.Combine(WorkDirectory.Path, "node-1")), "data directory defaults to one per node id");

        // Values with commas, spaces, newlines, unicode and arbitrary bytes round-trip exactly.
        string tricky = "a,b c\nd é 🙂 \"q\" & = %";
        var follower = nodes.First(n => n != leader);
        Assert.Equal("ok\n", await Api.GetStringAsync($"http://{follower.Http}/set?key={Uri.EscapeDataString("k,1 ü")}&value={Uri.EscapeDataString(tricky)}"));
        Assert.Equal(tricky, await Api.GetStringAsync($"http://{leader.Http}/get?key={Uri.EscapeDataString("k,1 ü")}"));
        byte[] binary = [.. Enumerable.Range(0, 256).Select(i => (byte)i), 0, 0, 255];
        var (status, _, _) = await Api.SendThroughElectionsAsync(HttpMethod.Put, $"http://{follower.Http}/v1/kv/bin", binary);
        Assert.Equal(HttpStatusCode.OK, status);
        var bytesBack = await Api.Client.GetByteArrayAsync($"http://{follower.Http}/v1/kv/bin");
        Assert.Equal(binary, bytesBack);
        (status, _, _) = await Api.SendThroughElectionsAsync(HttpMethod.Put, $"http://{leader.Http}/", Encoding.UTF8.GetBytes(JsonSerializer.Serialize(new { Key = "json", Value = tricky })));
        Assert.True(status is HttpStatusCode.OK or HttpStatusCode.NoContent);
        Assert.Equal(tricky, await Api.GetStringAsync($"http://{follower.Http}/json"));

        // Keys only a snapshot will hold: written, snapshotted on every node, then the log moves on.
        for (int i = 0; i < 20; i++)
        {
            Assert.Equal("ok\n", await Api.GetStringAsync($"http://{leader.Http}/set?key=snap{i}&value=v{i}"));
        }

        await Api.WaitUntilAsync("all nodes applied", async () =>
        {
            var statuses = await Task.WhenAll(nodes.Select(Api.StatusAsync));
            return statuses.Select(s => s!.Value.GetProperty("applied").GetUInt64()).Distinct().Count() == 1;
        }, s_wait, nodes);
        foreach (var node in nodes)
        {
            (status, var body, _) = await Api.SendAsync(HttpMethod.Post, $"http://{node.Http}/v1/snapshot");
            Assert.True(status == HttpStatusCode.OK, body);
        }

        for (int i = 0; i < 5; i++)
        {
            Assert.Equal("ok\n", await Api.GetStringAsync($"http://{leader.Http}/set?key=log{i}&value=w{i}"));
        }

        // Two of three down: a write fails fast with 503 instead of succeeding.
        var currentLeader = await Api.WaitForLeaderAsync(nodes, s_wait);
        var survivor = nodes.First(n => n != currentLeader);
        foreach (var node in nodes.Where(n => n != survivor))
        {
            await node.KillAsync();
        }

        var stopwatch = Stopwatch.StartNew();
        (status, var answer, var response) = await Api.SendAsync(HttpMethod.Get, $"http://{survivor.Http}/set?key=lost&value=x");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, status);
        string outcome = response.Headers.GetValues("X-Stcache-Outcome").Single();
        Assert.True(stopwatch.Elapsed < TimeSpan.FromSeconds(10), $"took {stopwatch.Elapsed}: {answer}");

        // Full-cluster restart: every key comes back from snapshot plus log.
        await survivor.StopAsync();
        foreach (var node in nodes)
        {
            node.Start();
        }

        var newLeader = await Api.WaitForLeaderAsync(nodes, s_wait);
        foreach (var node in nodes)
        {
            await Api.WaitUntilAsync($"{node.Name} restored", async () =>
                (await Api.SendAsync(HttpMethod.Get, $"http://{node.Http}/get?key=log4&consistency=stale")).Body == "w4", s_wait, nodes);
            for (int i = 0; i < 20; i++)
            {
                Assert.Equal($"v{i}", await Api.GetStringAsync($"http://{node.Http}/get?key=snap{i}"));
            }

            Assert.Equal(tricky, await Api.GetStringAsync($"http://{node.Http}/get?key={Uri.EscapeDataString("k,1 ü")}"));
            Assert.Equal(binary, await Api.Client.GetByteArrayAsync($"http://{node.Http}/v1/kv/bin"));
            if (outcome == "not-applied")
            {
                // A 503 that says "not applied" is a promise.
                Assert.Equal(string.Empty, await Api.GetStringAsync($"http://{node.Http}/get?key=lost"));
            }
            var nodeStatus = await Api.StatusAsync(node);
            Assert.True(nodeStatus!.Value.GetProperty("snapshotIndex").GetUInt64() > 0, "restarted from a snapshot");
        }

        Assert.NotNull(newLeader);
    }
}
