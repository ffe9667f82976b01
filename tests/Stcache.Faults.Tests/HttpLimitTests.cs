using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using Stcache.Faults.Tests.Harness;
using Stcache.Testing;
using Xunit.Abstractions;

namespace Stcache.Faults.Tests;

/// <summary>
/// Clients that hog the HTTP port: more connections than <c>--max-connections</c>, and slow clients that trickle
/// headers or a body. Each single-node test checks the excess is refused with a clear answer, other clients are
/// served meanwhile or right after, and the node keeps every acknowledged write. Every node is killed at the end.
/// </summary>
[Collection(ProcessCollection.Name)]
public sealed class HttpLimitTests(ITestOutputHelper output) : NodeTest("stcache-limits-")
{
    private const int ConnectionsMax = 8;

    // Program.cs: RequestHeadersTimeout 10 s; MinRequestBodyDataRate 1024 B/s after a 5 s grace period. Kestrel
    // checks both once a second.
    private static readonly TimeSpan s_headersTimeout = TimeSpan.FromSeconds(10);
    private static readonly TimeSpan s_bodyGracePeriod = TimeSpan.FromSeconds(5);

    /// <summary>
    /// Kestrel's MaxConcurrentConnections does not stop the kernel accepting the TCP connection: Kestrel accepts it,
    /// logs a warning and closes it at once without a byte of HTTP. So the excess connects, then reads end-of-stream.
    /// </summary>
    [Fact(Timeout = 60_000)]
    public async Task Connections_beyond_the_limit_are_closed_and_the_node_serves_again_once_they_go()
    {
        var node = SingleNode("connections", "--max-connections=" + ConnectionsMax.ToString(CultureInfo.InvariantCulture));
        node.Start();
        await WaitReadyAsync(node);
        await PutAsync(node, "before-limit", "acknowledged");

        var held = new List<RawHttp>();
        try
        {
            // Each held connection is proven counted by a served request on it (keep-alive keeps it open). The ready
            // check's own connection may still be closing on the server, so a refusal here is retried briefly.
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
            while (held.Count < ConnectionsMax)
            {
                var connection = await RawHttp.ConnectAsync(node.HttpPort);
                await connection.TrySendAsync(RawHttp.Get("/healthz"));
                var answer = await connection.ReceiveResponseAsync(TimeSpan.FromSeconds(5));
                if (answer.StatusCode == 200)
                {
                    held.Add(connection);
                    continue;
                }

                connection.Dispose();
                Assert.True(DateTime.UtcNow < deadline, $"only {held.Count} of {ConnectionsMax} connections served:\n{node.Tail(20)}");
                await Task.Delay(100);
            }

            output.WriteLine($"{held.Count} connections held open");
            for (int i = 0; i < 4; i++)
            {
                using var excess = await RawHttp.ConnectAsync(node.HttpPort);
                await excess.TrySendAsync(RawHttp.Get("/healthz"));
                var answer = await excess.ReceiveResponseAsync(TimeSpan.FromSeconds(10));
                output.WriteLine($"excess connection {i}: closed={answer.Closed}, {answer.Text.Length} bytes");
                Assert.True(answer.Closed, "a connection over the limit was neither served nor closed within 10 s");
                Assert.True(answer.IsEmpty, "a connection over the limit got an answer: " + answer.Text);
            }

            using (var fresh = NewClient())
            {
                await Assert.ThrowsAsync<HttpRequestException>(() => fresh.GetAsync(new Uri(node.BaseUri, "/healthz")));
            }

            Assert.True(node.IsRunning, "node exited under the connection limit:\n" + node.Tail(30));
            await WaitForOutputAsync(node, "rejected because the maximum number of concurrent connections has been reached");
        }
        finally
        {
            foreach (var connection in held)
            {
                connection.Dispose();
            }
        }

        // Released: a fresh client is served again (the server notices the closes within moments).
        await WaitHealthyAsync(node);
        await PutAsync(node, "after-limit", "acknowledged");
        Assert.Equal("acknowledged", await GetAsync(node, "before-limit"));
        Assert.Equal("acknowledged", await GetAsync(node, "after-limit"));
    }

    /// <summary>
    /// A slowloris client (headers one byte per second, never finished) gets 408 at the 10 s headers timeout; a client
    /// that sends its body at 10 B/s gets 408 once the 5 s grace period is over, and nothing of it is stored; a
    /// normal client is served all along.
    /// </summary>
    [Fact(Timeout = 60_000)]
    public async Task Slow_clients_are_cut_off_while_other_clients_are_served()
    {
        var node = SingleNode("slow");
        node.Start();
        await WaitReadyAsync(node);

        using var stop = new CancellationTokenSource();
        var served = ServeNormalClientAsync(node, stop.Token);
        var slowHeaders = TrickleAsync(node, "GET /healthz HTTP/1.1\r\nHost: stcache\r\nX-Slow: ", new string('a', 60), bytesPerSecond: 1);
        var slowBody = TrickleAsync(node, "PUT /v1/kv/slow-body HTTP/1.1\r\nHost: stcache\r\nContent-Length: 100000\r\n\r\n", new string('b', 600), bytesPerSecond: 10);
        var (headersAnswer, headersElapsed, headersClosed) = await slowHeaders;
        var (bodyAnswer, bodyElapsed, bodyClosed) = await slowBody;
        await stop.CancelAsync();
        var (requests, failures, slowest) = await served;

        output.WriteLine($"slow headers: {headersElapsed.TotalSeconds:F1} s, closed={headersClosed}: {FirstLine(headersAnswer)}");
        output.WriteLine($"slow body: {bodyElapsed.TotalSeconds:F1} s, closed={bodyClosed}: {FirstLine(bodyAnswer)}");
        output.WriteLine($"normal client: {requests} requests, slowest {slowest.TotalMilliseconds:F0} ms");

        Assert.Equal(408, headersAnswer.StatusCode);
        Assert.True(headersClosed, "the slowloris connection stays open after its 408");
        // Never before the timeout; the upper bound only shows it is enforced (a loaded machine runs late).
        Assert.InRange(headersElapsed, s_headersTimeout - TimeSpan.FromSeconds(1), s_headersTimeout + TimeSpan.FromSeconds(12));

        Assert.Equal(408, bodyAnswer.StatusCode);
        Assert.True(bodyClosed, "the slow-body connection stays open after its 408");
        Assert.InRange(bodyElapsed, s_bodyGracePeriod - TimeSpan.FromSeconds(1), s_bodyGracePeriod + TimeSpan.FromSeconds(12));

        // A request held up by the slow clients would time out (10 s) and be counted as a failure.
        Assert.True(failures.Count == 0, "the normal client failed meanwhile:\n" + string.Join('\n', failures));
        Assert.True(requests >= 5, $"the normal client made only {requests} requests in {headersElapsed.TotalSeconds:F0} s");

        using (var client = NewClient())
        using (var get = await client.GetAsync(new Uri(node.BaseUri, "/v1/kv/slow-body")))
        {
            Assert.Equal(HttpStatusCode.NotFound, get.StatusCode);
        }

        // One warning line for the cut-off body, not an "unhandled exception" error with a stack trace.
        await WaitForOutputAsync(node, "HTTP PUT request from 127.0.0.1:");
        string said = node.Output();
        Assert.Contains("refused with 408", said, StringComparison.Ordinal);
        Assert.DoesNotContain("unhandled exception", said, StringComparison.OrdinalIgnoreCase);
        Assert.True(node.IsRunning, "node exited:\n" + node.Tail(30));
        await WaitHealthyAsync(node);
    }

    /// <summary>
    /// Sends <paramref name="head"/> at once, then <paramref name="trickle"/> at <paramref name="bytesPerSecond"/>
    /// (pacing, not synchronisation) until the server answers or closes; returns the answer, when it came, and whether
    /// the server then closed the connection.
    /// </summary>
    private static async Task<(RawAnswer Answer, TimeSpan Elapsed, bool Closed)> TrickleAsync(NodeProcess node, string head, string trickle, int bytesPerSecond)
    {
        using var connection = await RawHttp.ConnectAsync(node.HttpPort);
        var clock = Stopwatch.StartNew();
        Assert.True(await connection.TrySendAsync(head), "connection refused before the slow part");
        var answer = connection.ReceiveResponseAsync(TimeSpan.FromSeconds(30));
        foreach (char c in trickle)
        {
            if (await Task.WhenAny(answer, Task.Delay(TimeSpan.FromSeconds(1.0 / bytesPerSecond))) == answer
                || !await connection.TrySendAsync(c.ToString()))
            {
                break;
            }
        }

        var result = await answer;
        var elapsed = clock.Elapsed;
        bool closed = result.Closed || await connection.WaitClosedAsync(TimeSpan.FromSeconds(5));
        return (result, elapsed, closed);
    }

    private static async Task<(int Requests, List<string> Failures, TimeSpan Slowest)> ServeNormalClientAsync(NodeProcess node, CancellationToken stop)
    {
        using var client = NewClient();
        var failures = new List<string>();
        var slowest = TimeSpan.Zero;
        int requests = 0;
        while (!stop.IsCancellationRequested)
        {
            string key = "served-" + requests.ToString(CultureInfo.InvariantCulture);
            var clock = Stopwatch.StartNew();
            try
            {
                // Not cancelled by stop: a request in flight when the slow clients are done completes and is checked.
                using var put = await client.PutAsync(new Uri(node.BaseUri, "/v1/kv/" + key), new StringContent(key, Encoding.UTF8), CancellationToken.None);
                string read = await client.GetStringAsync(new Uri(node.BaseUri, "/v1/kv/" + key), CancellationToken.None);
                if (put.StatusCode != HttpStatusCode.OK || read != key)
                {
                    failures.Add($"{key}: PUT {(int)put.StatusCode}, read '{read}'");
                }
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
                failures.Add($"{key}: {e.Message}");
            }

            slowest = clock.Elapsed > slowest ? clock.Elapsed : slowest;
            requests++;
            try
            {
                await Task.Delay(100, stop);
            }
            catch (OperationCanceledException)
            {
            }
        }

        return (requests, failures, slowest);
    }

    private NodeProcess SingleNode(string name, params string[] extra)
    {
        var node = new NodeProcess(name, 1, FreePorts.Next(), FreePorts.Next(), Path.Combine(Root, name), null!);
        node.SetArguments(() =>
        [
            "--http=" + node.HttpAddress,
            "--raft=" + node.RaftAddress,
            "--node=" + node.DataDirectory,
            "--bootstrap=true",
            "--tick-ms=50",
            .. extra,
        ]);
        Nodes.Add(node);
        return node;
    }

    /// <summary>A client that closes its connection after each request, so it never holds one of the node's slots.</summary>
    private static HttpClient NewClient()
    {
        var client = new HttpClient { Timeout = TimeSpan.FromSeconds(10) };
        client.DefaultRequestHeaders.ConnectionClose = true;
        return client;
    }

    private static Task WaitReadyAsync(NodeProcess node) => PollAsync(node, "/readyz");

    private static Task WaitHealthyAsync(NodeProcess node) => PollAsync(node, "/healthz");

    private static async Task PollAsync(NodeProcess node, string path)
    {
        using var client = NewClient();
        client.Timeout = TimeSpan.FromSeconds(2);
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            Assert.True(node.IsRunning, $"{node.Name} exited:\n{node.Tail(30)}");
            try
            {
                using var response = await client.GetAsync(new Uri(node.BaseUri, path));
                if (response.IsSuccessStatusCode)
                {
                    return;
                }
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
            {
            }

            Assert.True(DateTime.UtcNow < deadline, $"{node.Name} {path} not OK within 30 s:\n{node.Tail(30)}");
            await Task.Delay(50);
        }
    }

    /// <summary>The node's log is read asynchronously from its output, so a line may arrive after the event it reports.</summary>
    private static async Task WaitForOutputAsync(NodeProcess node, string text)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(10);
        while (!node.Output().Contains(text, StringComparison.Ordinal))
        {
            Assert.True(DateTime.UtcNow < deadline, $"{node.Name} did not log '{text}' within 10 s:\n{node.Tail(30)}");
            await Task.Delay(50);
        }
    }

    private static async Task PutAsync(NodeProcess node, string key, string value)
    {
        using var client = NewClient();
        using var put = await client.PutAsync(new Uri(node.BaseUri, "/v1/kv/" + key), new StringContent(value, Encoding.UTF8));
        Assert.Equal(HttpStatusCode.OK, put.StatusCode);
    }

    private static async Task<string> GetAsync(NodeProcess node, string key)
    {
        using var client = NewClient();
        return await client.GetStringAsync(new Uri(node.BaseUri, "/v1/kv/" + key));
    }

    private static string FirstLine(RawAnswer answer) =>
        answer.IsEmpty ? "(no bytes)" : answer.Text.Split("\r\n", 2)[0];
}
