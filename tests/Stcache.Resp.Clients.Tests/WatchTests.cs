using System.Globalization;
using Stcache.Integration.Tests;
using Xunit.Abstractions;

namespace Stcache.Resp.Clients.Tests;

using Node = Stcache.Integration.Tests.Node;

/// <summary>A 3-node cluster for WATCH across nodes; no test stops a node.</summary>
public sealed class WatchCluster : RespClusterTest, IAsyncLifetime
{
    public Node[] Members { get; private set; } = [];

    public Node Leader { get; private set; } = null!;

    public new async Task InitializeAsync()
    {
        Members = StartCluster("watch");
        Leader = await WaitForClusterAsync(Members);
    }

    public Task<RawClient> ConnectAsync(Node node) => RawClient.ConnectAsync(RespPorts[node]);

    public string NodeLogs() => Logs();
}

/// <summary>
/// WATCH … MULTI … EXEC across a real cluster: EXEC answers a null and applies nothing when another client changed a
/// watched key in between, whichever node either client is on; the check is made in the log entry, so concurrent
/// optimistic transactions never lose an update.
/// </summary>
public sealed class WatchTests(WatchCluster cluster, ITestOutputHelper output) : IClassFixture<WatchCluster>
{
    private Node[] Followers => [.. cluster.Members.Where(n => n != cluster.Leader)];

    private static async Task<string> TransactionAsync(RawClient client, params string[][] commands)
    {
        Assert.Equal("+OK", await client.CommandAsync("MULTI"));
        foreach (string[] command in commands)
        {
            Assert.Equal("+QUEUED", await client.CommandAsync(command));
        }

        return await client.CommandAsync("EXEC");
    }

    [Fact]
    public async Task ExecAbortsWhenAnotherNodeChangedTheWatchedKey()
    {
        // (watcher's node, writer's node): follower and another follower, follower and leader, leader and follower.
        var pairs = new[] { (Followers[0], Followers[1]), (Followers[0], cluster.Leader), (cluster.Leader, Followers[1]) };
        int round = 0;
        foreach (var (watcherNode, writerNode) in pairs)
        {
            string key = "watch:changed:" + round++.ToString(CultureInfo.InvariantCulture);
            await using var watcher = await cluster.ConnectAsync(watcherNode);
            await using var writer = await cluster.ConnectAsync(writerNode);
            Assert.Equal("+OK", await writer.CommandAsync("SET", key, "before"));

            Assert.Equal("+OK", await watcher.CommandAsync("WATCH", key));
            Assert.Equal("+OK", await writer.CommandAsync("SET", key, "theirs"));
            Assert.Equal("*-1", await TransactionAsync(watcher, ["SET", key, "mine"], ["SET", key + ":side", "x"]));
            Assert.Equal("$6\r\ntheirs\r\n", await watcher.CommandAsync("GET", key));
            Assert.Equal(":0", await watcher.CommandAsync("EXISTS", key + ":side"));

            // Deleted by the other client: aborted too.
            Assert.Equal("+OK", await watcher.CommandAsync("WATCH", key));
            Assert.Equal(":1", await writer.CommandAsync("DEL", key));
            Assert.Equal("*-1", await TransactionAsync(watcher, ["SET", key, "mine"]));

            // Created by the other client after watching an absent key: aborted, even with nothing queued.
            Assert.Equal("+OK", await watcher.CommandAsync("WATCH", key));
            Assert.Equal("+OK", await writer.CommandAsync("SET", key, "new"));
            Assert.Equal("*-1", await TransactionAsync(watcher));
            Assert.Equal("$3\r\nnew\r\n", await writer.CommandAsync("GET", key));

            // Absent when watched, then created and deleted again by the other client: aborted, as in Redis.
            Assert.Equal(":1", await writer.CommandAsync("DEL", key));
            Assert.Equal("+OK", await watcher.CommandAsync("WATCH", key));
            Assert.Equal("+OK", await writer.CommandAsync("SET", key, "brief"));
            Assert.Equal(":1", await writer.CommandAsync("DEL", key));
            Assert.Equal("*-1", await TransactionAsync(watcher, ["SET", key, "mine"]));
            Assert.Equal(":0", await writer.CommandAsync("EXISTS", key));
        }
    }

    [Fact]
    public async Task ExecAppliesWhenTheWatchedKeysAreUnchanged()
    {
        await using var watcher = await cluster.ConnectAsync(Followers[0]);
        await using var writer = await cluster.ConnectAsync(Followers[1]);
        Assert.Equal("+OK", await writer.CommandAsync("SET", "watch:same", "1"));

        // The follower's WATCH sees the write made through the other follower (a confirmation round first), so the
        // transaction, whose check is made in its log entry, goes through.
        Assert.Equal("+OK", await watcher.CommandAsync("WATCH", "watch:same", "watch:absent"));
        Assert.Equal("+OK", await writer.CommandAsync("SET", "watch:unrelated", "x"));
        Assert.Equal("*2\r\n:2\r\n$1\r\n2\r\n", await TransactionAsync(watcher, ["INCR", "watch:same"], ["GET", "watch:same"]));

        // UNWATCH forgets: a later change no longer aborts.
        Assert.Equal("+OK", await watcher.CommandAsync("WATCH", "watch:same"));
        Assert.Equal("+OK", await watcher.CommandAsync("UNWATCH"));
        Assert.Equal(":3", await writer.CommandAsync("INCR", "watch:same"));
        Assert.Equal("*1\r\n:4\r\n", await TransactionAsync(watcher, ["INCR", "watch:same"]));
    }

    /// <summary>
    /// Clients on all three nodes increment one counter with WATCH/GET/MULTI/SET/EXEC. Every EXEC that answered an array
    /// must be counted exactly once: a version check made by a read before proposing lets two of them pass together and
    /// one increment is lost.
    /// </summary>
    [Fact]
    public async Task ConcurrentOptimisticIncrementsLoseNothing()
    {
        const string key = "watch:counter";
        const int clientsPerNode = 2;
        const int attempts = 25;
        await using (var setup = await cluster.ConnectAsync(cluster.Leader))
        {
            Assert.Equal("+OK", await setup.CommandAsync("SET", key, "0"));
        }

        int committed = 0;
        int aborted = 0;
        var workers = cluster.Members.SelectMany(node => Enumerable.Range(0, clientsPerNode).Select(_ => Task.Run(async () =>
        {
            await using var client = await cluster.ConnectAsync(node);
            for (int i = 0; i < attempts; i++)
            {
                Assert.Equal("+OK", await client.CommandAsync("WATCH", key));
                string value = await client.CommandAsync("GET", key);
                long current = long.Parse(value.Split("\r\n")[1], CultureInfo.InvariantCulture);
                string reply = await TransactionAsync(client, ["SET", key, (current + 1).ToString(CultureInfo.InvariantCulture)]);
                if (reply == "*-1")
                {
                    Interlocked.Increment(ref aborted);
                }
                else
                {
                    Assert.Equal("*1\r\n+OK\r\n", reply);
                    Interlocked.Increment(ref committed);
                }
            }
        }))).ToList();
        await Task.WhenAll(workers);

        await using var reader = await cluster.ConnectAsync(Followers[0]);
        string final = await reader.CommandAsync("GET", key);
        output.WriteLine($"committed {committed}, aborted {aborted}, final {final.Replace("\r\n", " ", StringComparison.Ordinal)}");
        Assert.True(committed > 0, cluster.NodeLogs());
        string expected = committed.ToString(CultureInfo.InvariantCulture);
        Assert.Equal($"${expected.Length}\r\n{expected}\r\n", final);
    }
}
