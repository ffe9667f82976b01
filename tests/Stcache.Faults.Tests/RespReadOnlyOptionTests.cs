using Stcache.Faults.Tests.Harness;
using Stcache.Faults.Tests.Workload;
using Xunit.Abstractions;

namespace Stcache.Faults.Tests;

/// <summary><c>--resp-readonly</c>: connections start in READONLY mode; READWRITE leaves it, RESET returns to it.</summary>
[Collection(ProcessCollection.Name)]
public sealed class RespReadOnlyOptionTests(ITestOutputHelper output)
{
    [Fact(Timeout = 90_000)]
    public async Task Connections_start_in_readonly_mode_with_the_option()
    {
        var options = new ClusterOptions { Voters = 3, Spares = 0, Resp = true, ExtraArguments = ["--resp-readonly=true"] };
        await using var cluster = await StcacheCluster.StartAsync(options, output.WriteLine, TimeSpan.FromSeconds(30));
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await using var client = await RespClient.ConnectAsync(cluster.Nodes[0].RespPort, timeout.Token);

        Assert.Contains(" flags=r ", await InfoAsync(client, timeout.Token), StringComparison.Ordinal);
        Assert.Equal("OK", (await client.ExecuteAsync(["READWRITE"], timeout.Token)).Text);
        Assert.Contains(" flags=N ", await InfoAsync(client, timeout.Token), StringComparison.Ordinal);
        Assert.Equal("RESET", (await client.ExecuteAsync(["RESET"], timeout.Token)).Text);
        Assert.Contains(" flags=r ", await InfoAsync(client, timeout.Token), StringComparison.Ordinal);
        Assert.Equal("OK", (await client.ExecuteAsync(["SET", "k", "v"], timeout.Token)).Text);
        Assert.Equal("v", (await client.ExecuteAsync(["GET", "k"], timeout.Token)).Text);
    }

    private static async Task<string> InfoAsync(RespClient client, CancellationToken cancellationToken) =>
        (await client.ExecuteAsync(["CLIENT", "INFO"], cancellationToken)).Text ?? string.Empty;
}
