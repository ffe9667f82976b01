using System.Diagnostics;
using StackExchange.Redis;
using Stcache.Integration.Tests;
using Xunit.Abstractions;

namespace Stcache.Resp.Clients.Tests;

/// <summary>
/// StackExchange.Redis, unchanged, with all three nodes in its endpoint list (compiled against 2.x here and 3.x in
/// Stcache.Resp.Clients3.Tests): it finds the leader as its primary, keeps writing through a leader kill, and every
/// write it acknowledged is still there afterwards on every surviving node.
/// </summary>
public sealed class StackExchangeRedisTests(ITestOutputHelper output) : RespClusterTest
{
#if SER3
    private const string Client = "StackExchange.Redis 3.x";
#else
    private const string Client = "StackExchange.Redis 2.x";
#endif

    [Fact]
    public async Task ConnectsToAllNodesAndLosesNoAcknowledgedWriteAcrossALeaderKill()
    {
        try
        {
            await FailoverAsync();
        }
        catch
        {
            output.WriteLine(Logs());
            throw;
        }
    }

    private async Task FailoverAsync()
    {
        var nodes = StartCluster("ser");
        var leader = await WaitForClusterAsync(nodes);
        var options = ConfigurationOptions.Parse(string.Join(',', nodes.Select(Endpoint)));
        options.AbortOnConnectFail = false;
        options.ConnectTimeout = 5000;
        options.SyncTimeout = 10_000;
        options.AsyncTimeout = 10_000;
        var log = new StringWriter();
        await using var redis = await ConnectionMultiplexer.ConnectAsync(options, log);
        output.WriteLine($"{Client} connect log:\n{log}");
        var events = new System.Collections.Concurrent.ConcurrentQueue<string>();
        redis.ConfigurationChanged += (_, e) => events.Enqueue($"{DateTime.UtcNow:HH:mm:ss.fff} configuration changed {e.EndPoint}");
        redis.ConfigurationChangedBroadcast += (_, e) => events.Enqueue($"{DateTime.UtcNow:HH:mm:ss.fff} broadcast {e.EndPoint}");
        redis.ConnectionFailed += (_, e) => events.Enqueue($"{DateTime.UtcNow:HH:mm:ss.fff} connection failed {e.EndPoint} {e.ConnectionType} {e.FailureType}");
        redis.ConnectionRestored += (_, e) => events.Enqueue($"{DateTime.UtcNow:HH:mm:ss.fff} connection restored {e.EndPoint} {e.ConnectionType}");
        using var dump = new Dump(() => output.WriteLine(string.Join("\n", events)));
        Assert.True(redis.IsConnected, log.ToString());

        // The leader reports role:master, followers role:slave naming the leader's RESP address.
        var primary = redis.GetServer(Endpoint(leader));
        await Api.WaitUntilAsync("the leader seen as primary, the followers as replicas", () =>
            Task.FromResult(!primary.IsReplica && nodes.Where(n => n != leader).All(n => redis.GetServer(Endpoint(n)).IsReplica)), Wait, nodes);

        var db = redis.GetDatabase();
        var acknowledged = new Dictionary<string, string>();
        for (int i = 0; i < 30; i++)
        {
            Assert.True(await db.StringSetAsync($"ser:{i}", $"v{i}"));
            acknowledged[$"ser:{i}"] = $"v{i}";
        }

        Assert.Equal("v7", (string?)await db.StringGetAsync("ser:7"));
        Assert.Equal(5, await db.StringIncrementAsync("ser:counter", 5));
        Assert.True(await db.KeyDeleteAsync("ser:0"));
        acknowledged.Remove("ser:0");
        Assert.False(await db.KeyExistsAsync("ser:0"));
        Assert.Equal("v1", (string?)await db.StringGetAsync("ser:1", CommandFlags.PreferReplica));

        await leader.KillAsync();
        long counter = 5;
        var failover = Stopwatch.StartNew();
        for (int i = 30; i < 90; i++)
        {
            var deadline = DateTime.UtcNow + Wait;
            while (true)
            {
                try
                {
                    if (await db.StringSetAsync($"ser:{i}", $"v{i}"))
                    {
                        acknowledged[$"ser:{i}"] = $"v{i}";
                    }

                    counter = await db.StringIncrementAsync("ser:counter");
                    break;
                }
                catch (Exception e) when (e is RedisException or TimeoutException && DateTime.UtcNow < deadline)
                {
                    // Not acknowledged: no claim about it. Retry until the client finds the new leader.
                    await Task.Delay(50);
                }
            }
        }

        output.WriteLine($"60 writes through the failover in {failover.ElapsedMilliseconds} ms; counter {counter}");
        var survivors = nodes.Where(n => n.IsRunning).ToArray();
        await WaitForClusterAsync(nodes, notThis: leader);
        foreach (var node in survivors)
        {
            await using var direct = await ConnectionMultiplexer.ConnectAsync(Endpoint(node) + ",allowAdmin=true");
            var nodeDb = direct.GetDatabase();
            foreach (var (key, value) in acknowledged)
            {
                Assert.Equal(value, (string?)await nodeDb.StringGetAsync(key));
            }

            Assert.True((long)await nodeDb.StringGetAsync("ser:counter") >= counter, $"counter on {node.Name}");
        }
    }

    private sealed class Dump(Action action) : IDisposable
    {
        public void Dispose() => action();
    }

    [Fact]
    public async Task ExpiryAndTransactions()
    {
        var nodes = StartCluster("sert");
        await WaitForClusterAsync(nodes);
        await using var redis = await ConnectionMultiplexer.ConnectAsync(string.Join(',', nodes.Select(Endpoint)));
        var db = redis.GetDatabase();
        Assert.True(await db.StringSetAsync("t:short", "x", TimeSpan.FromMilliseconds(2500)));
        var ttl = await db.KeyTimeToLiveAsync("t:short");
        Assert.NotNull(ttl);
        Assert.True(ttl <= TimeSpan.FromMilliseconds(2500));
        await Api.WaitUntilAsync("the key expires", async () => !await db.KeyExistsAsync("t:short"), Wait, nodes);

        var transaction = db.CreateTransaction();
        transaction.AddCondition(Condition.KeyNotExists("t:guard"));
        var set = transaction.StringSetAsync("t:a", "1");
        var incr = transaction.StringIncrementAsync("t:a");
        Assert.True(await transaction.ExecuteAsync());
        Assert.True(await set);
        Assert.Equal(2, await incr);
    }
}
