using System.Net;
using System.Text;
using Stcache.Faults.Tests.Harness;

namespace Stcache.Faults.Tests;

/// <summary>One 3-node cluster shared by the hostile-input tests, with a small value limit so limits are cheap to hit.</summary>
public sealed class HostileClusterFixture : IAsyncLifetime
{
    public const int ValueBytesMax = 4096;

    public StcacheCluster Cluster { get; private set; } = null!;

    public HttpClient Http { get; } = new(new SocketsHttpHandler { PooledConnectionLifetime = TimeSpan.FromSeconds(5) })
    {
        Timeout = TimeSpan.FromSeconds(10),
    };

    public async Task InitializeAsync()
    {
        Cluster = await StcacheCluster.StartAsync(
            new ClusterOptions
            {
                Voters = 3,
                Spares = 0,
                TickMilliseconds = 50,
                ElectionTicks = 20,
                ExtraArguments = ["--max-value-bytes=" + ValueBytesMax.ToString(System.Globalization.CultureInfo.InvariantCulture)],
            },
            _ => { },
            TimeSpan.FromSeconds(60));
    }

    public async Task DisposeAsync()
    {
        Http.Dispose();
        await Cluster.DisposeAsync();
    }

    /// <summary>Every node still answers /healthz, and a write through each node is acknowledged and readable.</summary>
    public async Task AssertHealthyAsync(string after)
    {
        foreach (var node in Cluster.Nodes)
        {
            Assert.True(node.IsRunning, $"{node.Name} exited after {after}:\n{node.Tail(30)}");
            using var health = await Http.GetAsync(new Uri(node.BaseUri, "/healthz"));
            Assert.True(health.StatusCode == HttpStatusCode.OK, $"{node.Name} /healthz answered {(int)health.StatusCode} after {after}");
        }

        foreach (var node in Cluster.Nodes)
        {
            string value = "alive-" + Guid.NewGuid().ToString("N");
            await WriteAsync(node, value, after);
            string read = await Http.GetStringAsync(new Uri(node.BaseUri, "/v1/kv/health-check"));
            Assert.Equal(value, read);
        }
    }

    /// <summary>
    /// A write through <paramref name="node"/>, acknowledged within 20 s. A 503 is an election in progress or a
    /// commit slower than the request timeout (on two loaded cores a heartbeat can be late) and is retried once a
    /// leader is known; rewriting the value is harmless. Anything else, or no success by the deadline, fails.
    /// </summary>
    private async Task WriteAsync(NodeProcess node, string value, string after)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(20);
        while (true)
        {
            await Cluster.WaitForLeaderAsync(TimeSpan.FromSeconds(20));
            using var put = await Http.PutAsync(new Uri(node.BaseUri, "/v1/kv/health-check"), new StringContent(value, Encoding.UTF8));
            if (put.StatusCode == HttpStatusCode.OK)
            {
                return;
            }

            string body = await put.Content.ReadAsStringAsync();
            Assert.True(put.StatusCode == HttpStatusCode.ServiceUnavailable && DateTime.UtcNow < deadline,
                $"write via {node.Name} answered {(int)put.StatusCode} after {after}: {body}");
        }
    }
}

[CollectionDefinition(Name)]
public sealed class HostileCollection : ICollectionFixture<HostileClusterFixture>
{
    public const string Name = "hostile input on one cluster";
}
