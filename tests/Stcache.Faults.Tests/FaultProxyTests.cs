using System.Net;
using System.Net.Sockets;
using System.Text;
using Stcache.Faults.Tests.Harness;

namespace Stcache.Faults.Tests;

public sealed class FaultProxyTests
{
    [Fact(Timeout = 20_000)]
    public async Task Pass_forwards_both_ways_and_blackhole_silences_then_heals()
    {
        using var server = new TcpListener(IPAddress.Loopback, 0);
        server.Start();
        var echo = Task.Run(async () =>
        {
            while (true)
            {
                var socket = await server.AcceptSocketAsync();
                _ = Task.Run(async () =>
                {
                    var buffer = new byte[1024];
                    try
                    {
                        int read;
                        while ((read = await socket.ReceiveAsync(buffer)) > 0)
                        {
                            await socket.SendAsync(buffer.AsMemory(0, read));
                        }
                    }
                    catch (SocketException)
                    {
                    }

                    socket.Dispose();
                });
            }
        });
        await using var proxy = new FaultProxy("test", ((IPEndPoint)server.LocalEndpoint).Port);

        using (var client = await ConnectAsync(proxy.Port))
        {
            Assert.Equal("hello", await RoundTripAsync(client, "hello", TimeSpan.FromSeconds(5)));
        }

        proxy.Mode = LinkMode.Blackhole;
        using (var client = await ConnectAsync(proxy.Port))
        {
            Assert.Null(await RoundTripAsync(client, "lost", TimeSpan.FromMilliseconds(300)));
            proxy.Mode = LinkMode.Pass;

            // The connection lost bytes, so healing closes it rather than resuming mid-stream.
            Assert.Null(await RoundTripAsync(client, "x", TimeSpan.FromMilliseconds(500)));
        }

        Assert.True(proxy.BytesDropped >= 4);
        using (var client = await ConnectAsync(proxy.Port))
        {
            Assert.Equal("again", await RoundTripAsync(client, "again", TimeSpan.FromSeconds(5)));
        }

        proxy.Delay = TimeSpan.FromMilliseconds(200);
        using (var client = await ConnectAsync(proxy.Port))
        {
            var watch = System.Diagnostics.Stopwatch.StartNew();
            Assert.Equal("slow", await RoundTripAsync(client, "slow", TimeSpan.FromSeconds(5)));
            Assert.True(watch.ElapsedMilliseconds >= 350, $"round trip took {watch.ElapsedMilliseconds}ms");
        }

        proxy.Delay = TimeSpan.Zero;
        proxy.Mode = LinkMode.Refuse;
        try
        {
            using var client = await ConnectAsync(proxy.Port);
            Assert.Null(await RoundTripAsync(client, "refused", TimeSpan.FromSeconds(2)));
        }
        catch (SocketException)
        {
            // Reset during connect: refused, as intended.
        }

        server.Stop();
        _ = echo;
    }

    private static async Task<Socket> ConnectAsync(int port)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        await socket.ConnectAsync(IPAddress.Loopback, port);
        return socket;
    }

    /// <summary>The echoed text, or null when nothing (or a closed connection) came back in time.</summary>
    private static async Task<string?> RoundTripAsync(Socket socket, string text, TimeSpan timeout)
    {
        try
        {
            await socket.SendAsync(Encoding.ASCII.GetBytes(text));
            var buffer = new byte[1024];
            var received = new StringBuilder();
            using var cancel = new CancellationTokenSource(timeout);
            while (received.Length < text.Length)
            {
                int read = await socket.ReceiveAsync(buffer, SocketFlags.None, cancel.Token);
                if (read == 0)
                {
                    return null;
                }

                received.Append(Encoding.ASCII.GetString(buffer, 0, read));
            }

            return received.ToString();
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException)
        {
            return null;
        }
    }
}
