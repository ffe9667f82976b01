using System.Net.Sockets;
using System.Runtime.InteropServices;
using System.Text;
using Stcache.Integration.Tests;

namespace Stcache.Resp.Clients.Tests;

using Node = Stcache.Integration.Tests.Node;

/// <summary>One single-node cluster with 8 MiB values, for the RESP transport's buffers and its closing paths.</summary>
public sealed class TransportFixture : RespClusterTest, IAsyncLifetime
{
    public Node Single { get; private set; } = null!;

    public int Port => RespPorts[Single];

    public new async Task InitializeAsync()
    {
        Single = StartSingle("transport", "--max-value-bytes=8388608");
        await WaitForClusterAsync([Single]);
    }
}

/// <summary>
/// What the RESP transport must do whichever it is (on x64 Linux the node's own epoll loop, elsewhere the runtime's
/// sockets): requests and replies larger than any buffer, written and read in many pieces; clients that vanish in
/// the middle of a request or of their replies.
/// </summary>
public sealed class TransportTests(TransportFixture fixture) : IClassFixture<TransportFixture>
{
    [Fact]
    public async Task TheListenerNamesItsTransport()
    {
        string expected = OperatingSystem.IsLinux() && RuntimeInformation.ProcessArchitecture == Architecture.X64 ? "transport: epoll" : "transport: sockets";
        await Api.WaitUntilAsync("the RESP listener's start-up line", () => Task.FromResult(fixture.Single.Output.Contains(expected, StringComparison.Ordinal)),
            TimeSpan.FromSeconds(30), fixture.Single);
    }

    [Fact]
    public async Task LargeValuesCrossManyReadsAndSends()
    {
        string value = string.Create(6 << 20, 0, (span, _) =>
        {
            for (int i = 0; i < span.Length; i++)
            {
                span[i] = (char)('a' + (i * 7 % 26));
            }
        });
        await using var client = await RawClient.ConnectAsync(fixture.Port);
        Assert.Equal("+OK", await client.CommandAsync("SET", "large", value));

        // Five 6 MiB replies in one pipeline: far more than the socket's send buffer, so the node waits to send.
        byte[] pipeline = [.. Enumerable.Range(0, 5).SelectMany(_ => RawClient.Encode("GET", "large")), .. RawClient.Encode("PING")];
        await client.SendAsync(pipeline);
        string expected = $"${value.Length}\r\n{value}\r\n";
        for (int i = 0; i < 5; i++)
        {
            Assert.True(expected == await client.ReadReplyAsync(TimeSpan.FromSeconds(60)), $"reply {i} differs from the value set");
        }

        Assert.Equal("+PONG", await client.ReadReplyAsync());
    }

    [Fact]
    public async Task ASlowReadersPipelineOfLargeRepliesIsHeldOneReplyAtATime()
    {
        // 300 GETs of a 1 MiB value in one pipeline from a client that reads nothing yet. The node must stop making
        // replies once the socket is full, not build 300 MiB of them (it did: a batch's reads were all answered
        // before the first flush). Then the client reads every reply.
        string value = new('m', 1 << 20);
        await using var watcher = await RawClient.ConnectAsync(fixture.Port);
        Assert.Equal("+OK", await watcher.CommandAsync("SET", "slow-reader", value));
        long before = await RssAsync(watcher);

        await using var slow = await RawClient.ConnectAsync(fixture.Port);
        await slow.SendAsync([.. Enumerable.Range(0, 300).SelectMany(_ => RawClient.Encode("GET", "slow-reader"))]);
        long most = before;
        // An absence is observed for a bounded time: the node's size, asked again as soon as each answer arrives.
        var until = DateTime.UtcNow + TimeSpan.FromSeconds(3);
        while (DateTime.UtcNow < until)
        {
            most = Math.Max(most, await RssAsync(watcher));
        }

        Assert.True(most - before < 150L << 20, $"the node grew by {(most - before) >> 20} MiB while the replies waited");
        string expected = $"${value.Length}\r\n{value}\r\n";
        for (int i = 0; i < 300; i++)
        {
            Assert.True(expected == await slow.ReadReplyAsync(TimeSpan.FromSeconds(60)), $"reply {i} differs from the value set");
        }

        static async Task<long> RssAsync(RawClient client)
        {
            string info = await client.CommandAsync("INFO", "memory");
            int at = info.IndexOf("used_memory_rss:", StringComparison.Ordinal) + "used_memory_rss:".Length;
            return long.Parse(info.AsSpan(at, info.IndexOf('\r', at) - at), System.Globalization.CultureInfo.InvariantCulture);
        }
    }

    [Fact]
    public async Task ClientsThatVanishMidRequestOrMidReplyHurtNoOne()
    {
        await using var bystander = await RawClient.ConnectAsync(fixture.Port);
        Assert.Equal("+OK", await bystander.CommandAsync("SET", "vanish", new string('v', 1000)));
        byte[] partial = Encoding.ASCII.GetBytes("*3\r\n$3\r\nSET\r\n$6\r\nvanish\r\n$1000\r\nabc");
        byte[] unread = [.. Enumerable.Range(0, 2_000).SelectMany(_ => RawClient.Encode("GET", "vanish"))];
        for (int round = 0; round < 10; round++)
        {
            using (var half = new TcpClient())
            {
                await half.ConnectAsync("127.0.0.1", fixture.Port);
                await half.GetStream().WriteAsync(partial);
            }

            using (var greedy = new TcpClient())
            {
                // Closing with replies unread resets the connection while the node is still sending to it.
                await greedy.ConnectAsync("127.0.0.1", fixture.Port);
                await greedy.GetStream().WriteAsync(unread);
                greedy.Client.LingerState = new LingerOption(true, 0);
            }

            Assert.Equal("+PONG", await bystander.CommandAsync("PING"));
        }

        Assert.StartsWith("$1000\r\nvvv", await bystander.CommandAsync("GET", "vanish"), StringComparison.Ordinal);
        await Api.WaitUntilAsync("the vanished clients' connections are closed", async () =>
        {
            string info = await bystander.CommandAsync("INFO", "clients");
            return info.Contains("connected_clients:1\r\n", StringComparison.Ordinal);
        }, TimeSpan.FromSeconds(30), fixture.Single);
        Assert.True(fixture.Single.IsRunning);
    }
}

public sealed class EpollSwitchTests
{
    // -1 stands for the default: one loop per two cores.
    [Theory]
    [InlineData(null, -1)]
    [InlineData("", -1)]
    [InlineData("1", 1)]
    [InlineData("2", 2)]
    [InlineData("0", 0)]
    [InlineData("false", 0)]
    [InlineData("1000", 64)]
    [InlineData("-1", -1)]
    [InlineData("many", -1)]
    public void TheSwitchNamesTheNumberOfLoops(string? value, int loops) =>
        Assert.Equal(loops < 0 ? Math.Clamp(Environment.ProcessorCount / 2, 1, 64) : loops, Stcache.Server.Resp.EpollLoop.Requested(value));
}
