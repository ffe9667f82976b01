using System.Text;
using Microsoft.Extensions.Caching.Distributed;
using Microsoft.Extensions.Caching.StackExchangeRedis;
using Microsoft.Extensions.Options;
using Stcache.Integration.Tests;
using Xunit.Abstractions;

namespace Stcache.Resp.Clients.Tests;

/// <summary>ASP.NET Core's RedisCache (Microsoft.Extensions.Caching.StackExchangeRedis), unchanged, as an
/// IDistributedCache over the 3-node cluster: absolute and sliding expiry, get, refresh, remove, across a failover.</summary>
public sealed class DistributedCacheTests(ITestOutputHelper output) : RespClusterTest
{
    [Fact]
    public async Task RedisCacheWorksAndSurvivesALeaderKill()
    {
        try
        {
            await RunAsync();
        }
        catch
        {
            output.WriteLine(Logs());
            throw;
        }
    }

    private async Task RunAsync()
    {
        var nodes = StartCluster("dc");
        var leader = await WaitForClusterAsync(nodes);
        using var cache = new RedisCache(Options.Create(new RedisCacheOptions
        {
            Configuration = string.Join(',', nodes.Select(Endpoint)) + ",abortConnect=false,syncTimeout=10000,asyncTimeout=10000",
            InstanceName = "app:",
        }));

        byte[] value = Encoding.UTF8.GetBytes("cached value");
        await cache.SetAsync("plain", value, new DistributedCacheEntryOptions());
        Assert.Equal(value, await cache.GetAsync("plain"));

        // Absolute expiry: gone after it passes.
        await cache.SetAsync("absolute", value, new DistributedCacheEntryOptions { AbsoluteExpirationRelativeToNow = TimeSpan.FromSeconds(2) });
        Assert.Equal(value, await cache.GetAsync("absolute"));
        await Api.WaitUntilAsync("the absolute entry expires", async () => await cache.GetAsync("absolute") is null, Wait, nodes);

        // Sliding expiry: each Get/Refresh extends it; untouched it expires.
        await cache.SetAsync("sliding", value, new DistributedCacheEntryOptions { SlidingExpiration = TimeSpan.FromSeconds(3) });
        for (int i = 0; i < 4; i++)
        {
            await Task.Delay(TimeSpan.FromSeconds(1)); // the clock a sliding expiry measures; no event to await
            if (i % 2 == 0)
            {
                Assert.Equal(value, await cache.GetAsync("sliding"));
            }
            else
            {
                await cache.RefreshAsync("sliding");
            }
        }

        Assert.Equal(value, await cache.GetAsync("sliding"));
        await Api.WaitUntilAsync("the sliding entry expires untouched", async () =>
        {
            // Read it raw, so the read does not slide it.
            await using var raw = await RawClient.ConnectAsync(RespPorts[leader]);
            return await raw.CommandAsync("EXISTS", "app:sliding") == ":0";
        }, Wait, nodes);

        await cache.RemoveAsync("plain");
        Assert.Null(await cache.GetAsync("plain"));

        // Across a failover: what was set before is still there, and sets go on.
        await cache.SetAsync("durable", value, new DistributedCacheEntryOptions { AbsoluteExpirationRelativeToNow = TimeSpan.FromMinutes(5) });
        await leader.KillAsync();
        var deadline = DateTime.UtcNow + Wait;
        while (true)
        {
            try
            {
                await cache.SetAsync("after", value, new DistributedCacheEntryOptions { SlidingExpiration = TimeSpan.FromMinutes(1) });
                break;
            }
            catch (Exception e) when (e is StackExchange.Redis.RedisException or TimeoutException && DateTime.UtcNow < deadline)
            {
                await Task.Delay(100);
            }
        }

        Assert.Equal(value, await cache.GetAsync("durable"));
        Assert.Equal(value, await cache.GetAsync("after"));
        await cache.RemoveAsync("durable");
        Assert.Null(await cache.GetAsync("durable"));
    }
}
