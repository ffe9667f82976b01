using System.Net;
using System.Net.Sockets;
using System.Text;
using Stcache.Server;

namespace Stcache.Integration.Tests;

/// <summary>
/// A follower forwards writes to the leader. If the leader dies after reading a forwarded write, the follower must
/// answer "outcome unknown", never "not applied": the leader may already have replicated it. HttpClient resends a
/// body-less request on a new connection in exactly this case (dotnet/runtime#86714), and the resend's "connection
/// refused" looked like a write that was never sent. That made a DELETE reported as not applied take effect, which
/// the fault runs saw as stale reads (bug 6 in docs/FAULTS.md).
/// </summary>
public sealed class ForwardingTests
{
    public static TheoryData<string, byte[]?> Writes => new()
    {
        { "DELETE", null },
        { "PUT", null }, // a seed-style write with its value in the query string
        { "PUT", "value"u8.ToArray() },
        { "POST", "{}"u8.ToArray() },
    };

    [Theory(Timeout = 30_000)]
    [MemberData(nameof(Writes))]
    public async Task A_forwarded_write_read_by_a_leader_that_then_dies_is_not_reported_as_never_sent(string method, byte[]? body)
    {
        using var leader = new DyingLeader();
        using var client = new HttpClient(new SocketsHttpHandler()) { Timeout = TimeSpan.FromSeconds(10) };
        var target = new Uri($"http://127.0.0.1:{leader.Port}/v1/kv/k");

        // The first write answers normally and leaves a pooled connection behind, as between a follower and a
        // healthy leader.
        using (var first = HttpApi.ForwardRequest(method, target, body, "text/plain"))
        using (var answer = await client.SendAsync(first))
        {
            Assert.Equal(HttpStatusCode.OK, answer.StatusCode);
        }

        // The leader reads the second write, then is killed: its connection closes and its port refuses.
        using var second = HttpApi.ForwardRequest(method, target, body, "text/plain");
        var error = await Assert.ThrowsAsync<HttpRequestException>(() => client.SendAsync(second));
        await leader.Finished;
        Assert.Equal(2, leader.RequestsRead);
        Assert.NotEqual(HttpRequestError.ConnectionError, error.HttpRequestError);
    }

    /// <summary>Answers one request on one connection, reads the next, then closes it and stops listening.</summary>
    private sealed class DyingLeader : IDisposable
    {
        private readonly TcpListener _listener = new(IPAddress.Loopback, 0);
        private int _requestsRead;

        public DyingLeader()
        {
            _listener.Start();
            Port = ((IPEndPoint)_listener.LocalEndpoint).Port;
            Finished = Task.Run(ServeAsync);
        }

        public int Port { get; }

        public int RequestsRead => Volatile.Read(ref _requestsRead);

        public Task Finished { get; }

        public void Dispose() => _listener.Stop();

        private async Task ServeAsync()
        {
            using var socket = await _listener.AcceptSocketAsync();
            var pending = new List<byte>();
            await ReadRequestAsync(socket, pending);
            await socket.SendAsync("HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"u8.ToArray());
            await ReadRequestAsync(socket, pending);
            _listener.Stop();
            socket.Shutdown(SocketShutdown.Both);
        }

        private async Task ReadRequestAsync(Socket socket, List<byte> pending)
        {
            var buffer = new byte[4096];
            while (true)
            {
                string text = Encoding.ASCII.GetString(pending.ToArray());
                int end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
                if (end >= 0)
                {
                    int length = ContentLength(text[..end]);
                    if (pending.Count >= end + 4 + length)
                    {
                        pending.RemoveRange(0, end + 4 + length);
                        Interlocked.Increment(ref _requestsRead);
                        return;
                    }
                }

                int read = await socket.ReceiveAsync(buffer);
                if (read == 0)
                {
                    throw new IOException("client closed the connection before a whole request");
                }

                pending.AddRange(buffer.AsSpan(0, read));
            }
        }

        private static int ContentLength(string headers)
        {
            foreach (string line in headers.Split("\r\n"))
            {
                if (line.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase))
                {
                    return int.Parse(line["Content-Length:".Length..].Trim(), System.Globalization.CultureInfo.InvariantCulture);
                }
            }

            return 0;
        }
    }
}
