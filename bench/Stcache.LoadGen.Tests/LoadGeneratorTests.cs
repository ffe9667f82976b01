using System.Net;
using System.Net.Sockets;
using System.Text;
using Stcache.LoadGen;

namespace Stcache.LoadGen.Tests;

/// <summary>Runs the generator against a tiny in-process HTTP/1.1 responder on an ephemeral loopback port.</summary>
public sealed class LoadGeneratorTests
{
    [Fact]
    public async Task Closed_loop_run_counts_successes_and_errors_by_kind()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        using var stop = new CancellationTokenSource();
        var server = ServeAsync(listener, stop.Token);
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;

        var options = new LoadOptions
        {
            Targets = [new Uri($"http://127.0.0.1:{port}")],
            Connections = 4,
            Duration = TimeSpan.FromSeconds(1),
            Warmup = TimeSpan.FromMilliseconds(200),
            KeyCount = 10,
            ReadRatio = 0.5,
        };

        // A first, discarded run compiles the HTTP stack: on a loaded machine the first request alone can take
        // longer than a short measured window.
        using (var first = new LoadGenerator(options with { Duration = TimeSpan.FromSeconds(1), Warmup = TimeSpan.Zero }))
        {
            await first.RunAsync();
        }

        using var generator = new LoadGenerator(options);
        var report = await generator.RunAsync();
        await stop.CancelAsync();
        listener.Stop();

        Assert.True(report.Succeeded > 0, report.ToTable());
        Assert.True(report.Reads.Count > 0, report.ToTable());

        // The responder answers 503 to every key ending in 7: about a tenth of operations.
        Assert.True(report.Errors[ErrorKind.Status5xx] > 0);
        Assert.Equal(0, report.Errors[ErrorKind.Connection]);
        Assert.InRange(report.Measured.TotalMilliseconds, 900, 1_300);
        Assert.Contains("\"opsPerSecond\"", report.ToJson(), StringComparison.Ordinal);
        Assert.Contains("throughput", report.ToTable(), StringComparison.Ordinal);
        _ = server;
    }

    [Fact]
    public async Task Refused_connections_are_connection_errors_and_the_run_still_ends()
    {
        using var listener = new TcpListener(IPAddress.Loopback, 0);
        listener.Start();
        var port = ((IPEndPoint)listener.LocalEndpoint).Port;
        listener.Stop(); // Nobody listens on this port now.

        using var generator = new LoadGenerator(new LoadOptions
        {
            Targets = [new Uri($"http://127.0.0.1:{port}")],
            Connections = 2,
            Duration = TimeSpan.FromMilliseconds(300),
            Warmup = TimeSpan.Zero,
        });
        var report = await generator.RunAsync();
        Assert.Equal(0, report.Succeeded);
        Assert.True(report.Errors[ErrorKind.Connection] > 0);
    }

    private static async Task ServeAsync(TcpListener listener, CancellationToken cancellationToken)
    {
        var connections = new List<Task>();
        try
        {
            while (!cancellationToken.IsCancellationRequested)
            {
                var client = await listener.AcceptTcpClientAsync(cancellationToken);
                connections.Add(HandleAsync(client, cancellationToken));
            }
        }
        catch (OperationCanceledException)
        {
        }
        catch (SocketException)
        {
        }
    }

    private static async Task HandleAsync(TcpClient client, CancellationToken cancellationToken)
    {
        using (client)
        {
            var stream = client.GetStream();
            var buffer = new byte[64 * 1024];
            var pending = new StringBuilder();
            try
            {
                while (!cancellationToken.IsCancellationRequested)
                {
                    int read = await stream.ReadAsync(buffer, cancellationToken);
                    if (read == 0)
                    {
                        return;
                    }

                    pending.Append(Encoding.ASCII.GetString(buffer, 0, read));
                    while (TryTakeRequest(pending, out string requestLine))
                    {
                        bool fail = requestLine.Split(' ')[1].Split('?')[0].EndsWith('7');
                        string response = fail
                            ? "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"
                            : "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";
                        await stream.WriteAsync(Encoding.ASCII.GetBytes(response), cancellationToken);
                    }
                }
            }
            catch (Exception exception) when (exception is IOException or OperationCanceledException or SocketException)
            {
            }
        }
    }

    // Takes one complete request (headers plus Content-Length body) off the front of the buffer.
    private static bool TryTakeRequest(StringBuilder pending, out string requestLine)
    {
        requestLine = string.Empty;
        string text = pending.ToString();
        int headerEnd = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        if (headerEnd < 0)
        {
            return false;
        }

        int length = 0;
        foreach (string line in text[..headerEnd].Split("\r\n"))
        {
            if (line.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase))
            {
                length = int.Parse(line["Content-Length:".Length..].Trim(), System.Globalization.CultureInfo.InvariantCulture);
            }
        }

        int total = headerEnd + 4 + length;
        if (text.Length < total)
        {
            return false;
        }

        requestLine = text[..text.IndexOf("\r\n", StringComparison.Ordinal)];
        pending.Remove(0, total);
        return true;
    }
}
