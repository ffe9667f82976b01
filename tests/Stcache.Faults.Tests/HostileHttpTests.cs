using System.Net;
using System.Net.Sockets;
using System.Text;
using Stcache.Faults.Tests.Harness;
using Xunit.Abstractions;

namespace Stcache.Faults.Tests;

/// <summary>
/// Every HTTP endpoint with missing, malformed, oversized, binary and unicode input: the answer is a 4xx (or the
/// right value), never a 5xx or a crash, and the cluster still serves writes afterwards.
/// </summary>
[Collection(HostileCollection.Name)]
public sealed class HostileHttpTests(HostileClusterFixture fixture, ITestOutputHelper output)
{
    private static readonly string s_huge = new('k', 100_000);

    public static TheoryData<string, string, string?> MalformedRequests => new()
    {
        // method, path and query, body (null = none)
        { "GET", "/v1/kv/", null },
        { "PUT", "/v1/kv/", "x" },
        { "DELETE", "/v1/kv/", null },
        { "GET", "/v1/kv/k?consistency=bogus", null },
        { "GET", "/v1/kv/k?consistency=", null },
        { "GET", "/v1/kv/" + new string('a', 5000), null },
        { "PUT", "/v1/kv/" + new string('a', 5000), "x" },
        { "PUT", "/v1/kv/k?prevVersion=abc", "x" },
        { "PUT", "/v1/kv/k?prevVersion=-1", "x" },
        { "PUT", "/v1/kv/k?prevVersion=99999999999999999999999", "x" },
        { "PUT", "/v1/kv/k?prevVersion=1&prevValue=a", "x" },
        { "DELETE", "/v1/kv/k?prevVersion=1&prevValue=a", null },
        { "DELETE", "/v1/kv/k?prevVersion=%00", null },
        { "POST", "/v1/cluster/members", null },
        { "POST", "/v1/cluster/members", "{" },
        { "POST", "/v1/cluster/members", "[1,2,3]" },
        { "POST", "/v1/cluster/members", "{\"raftAddress\":\"nonsense\"}" },
        { "POST", "/v1/cluster/members", "{\"raftAddress\":12}" },
        { "POST", "/v1/cluster/members", "{\"id\":-5,\"raftAddress\":\"127.0.0.1:1\"}" },
        { "POST", "/v1/cluster/members", "\u0000\u0001\u0002\u00ff" },
        { "DELETE", "/v1/cluster/members/abc", null },
        { "DELETE", "/v1/cluster/members/0", null },
        { "DELETE", "/v1/cluster/members/18446744073709551616", null },
        { "DELETE", "/v1/cluster/members/424242", null },
        { "POST", "/v1/cluster/transfer-leader", "{" },
        { "POST", "/v1/cluster/transfer-leader", "{\"id\":\"nobody\"}" },
        { "GET", "/set", null },
        { "GET", "/set?key=&value=x", null },
        { "GET", "/set?key=a", null },
        { "GET", "/get", null },
        { "GET", "/get?key=", null },
        { "GET", "/join", null },
        { "GET", "/join?peerAddress=", null },
        { "GET", "/join?peerAddress=not-an-address", null },
        { "PUT", "/", "{" },
        { "PUT", "/", "{\"Key\":\"\",\"Value\":\"x\"}" },
        { "PUT", "/", "{\"Key\":5}" },
        { "POST", "/", "null" },
        { "DELETE", "/mgmt/nodes/abc", null },
        { "GET", "/no/such/endpoint", null },
        { "PATCH", "/v1/kv/k", "x" },
        { "POST", "/v1/status", "x" },
    };

    [Theory(Timeout = 30_000)]
    [MemberData(nameof(MalformedRequests))]
    public async Task Malformed_requests_get_a_client_error_and_change_nothing(string method, string path, string? body)
    {
        using var request = new HttpRequestMessage(new HttpMethod(method), new Uri(fixture.Cluster.Nodes[0].BaseUri, path));
        if (body is not null)
        {
            request.Content = new ByteArrayContent(Encoding.Latin1.GetBytes(body));
        }

        using var response = await fixture.Http.SendAsync(request);
        string text = await response.Content.ReadAsStringAsync();
        output.WriteLine($"{method} {Shorten(path)} -> {(int)response.StatusCode} {Shorten(text)}");
        Assert.True((int)response.StatusCode is >= 400 and < 500, $"{method} {Shorten(path)} answered {(int)response.StatusCode}: {Shorten(text)}");
        Assert.True(response.Content.Headers.ContentLength is null or < 64 * 1024, "error bodies stay small");
    }

    [Fact(Timeout = 60_000)]
    public async Task Unicode_binary_and_odd_keys_round_trip_exactly()
    {
        var node = fixture.Cluster.Nodes[1];
        var random = new Random(7);
        byte[] binary = new byte[HostileClusterFixture.ValueBytesMax];
        random.NextBytes(binary);
        var cases = new (string Key, byte[] Value)[]
        {
            ("ключ-🔑-键", Encoding.UTF8.GetBytes("значение ✓ 值")),
            ("binary", binary),
            ("empty-value", []),
            ("with/slashes/in/it", "s"u8.ToArray()),
            ("spaces and more spaces", "p"u8.ToArray()),
            ("nul\u0000inside", "n"u8.ToArray()),
            ("emoji-only-🙂🙃", "e"u8.ToArray()),
        };
        foreach (var (key, value) in cases)
        {
            var uri = new Uri(node.BaseUri, "/v1/kv/" + Uri.EscapeDataString(key));
            using var put = await fixture.Http.PutAsync(uri, new ByteArrayContent(value));
            string answer = await put.Content.ReadAsStringAsync();
            output.WriteLine($"PUT {Uri.EscapeDataString(key)} ({value.Length} bytes) -> {(int)put.StatusCode}");
            if ((int)put.StatusCode is >= 400 and < 500)
            {
                continue; // refusing an odd key is fine; crashing or corrupting is not
            }

            Assert.True(put.StatusCode == HttpStatusCode.OK, $"PUT {key} answered {(int)put.StatusCode}: {answer}");
            foreach (var reader in fixture.Cluster.Nodes)
            {
                using var get = await fixture.Http.GetAsync(new Uri(reader.BaseUri, "/v1/kv/" + Uri.EscapeDataString(key)));
                Assert.Equal(HttpStatusCode.OK, get.StatusCode);
                Assert.Equal(value, await get.Content.ReadAsByteArrayAsync());
            }
        }

        await fixture.AssertHealthyAsync("unicode and binary keys");
    }

    /// <summary>
    /// Server bug (reported): a follower forwards a write to the leader with the decoded path re-encoded by
    /// PathString, which leaves "%41" as is, so the leader decodes it once more and stores key "aAb" instead of
    /// "a%41b". Enable when HttpApi.ForwardAsync forwards the raw request target.
    /// </summary>
    [Fact(Timeout = 60_000)]
    public async Task A_key_with_a_literal_percent_escape_written_through_a_follower_keeps_its_name()
    {
        var leader = await fixture.Cluster.WaitForLeaderAsync(TimeSpan.FromSeconds(20));
        var follower = fixture.Cluster.Nodes.First(n => n != leader);
        string key = "a%41b";
        using var put = await fixture.Http.PutAsync(new Uri(follower.BaseUri, "/v1/kv/" + Uri.EscapeDataString(key)), new StringContent("v"));
        Assert.Equal(HttpStatusCode.OK, put.StatusCode);
        using var get = await fixture.Http.GetAsync(new Uri(leader.BaseUri, "/v1/kv/" + Uri.EscapeDataString(key)));
        Assert.Equal(HttpStatusCode.OK, get.StatusCode);
        using var wrong = await fixture.Http.GetAsync(new Uri(leader.BaseUri, "/v1/kv/aAb"));
        Assert.Equal(HttpStatusCode.NotFound, wrong.StatusCode);
    }

    [Fact(Timeout = 60_000)]
    public async Task Bodies_over_the_limit_are_refused_with_413()
    {
        var node = fixture.Cluster.Nodes[2];
        var uri = new Uri(node.BaseUri, "/v1/kv/too-big");
        byte[] overLimit = new byte[HostileClusterFixture.ValueBytesMax + 1];

        using (var put = await fixture.Http.PutAsync(uri, new ByteArrayContent(overLimit)))
        {
            Assert.Equal(HttpStatusCode.RequestEntityTooLarge, put.StatusCode);
        }

        // Chunked, without a Content-Length, far beyond the server's request body limit.
        var chunked = new StreamContent(new MemoryStream(new byte[2 * 1024 * 1024]));
        using (var request = new HttpRequestMessage(HttpMethod.Put, uri) { Content = chunked })
        {
            request.Headers.TransferEncodingChunked = true;
            try
            {
                using var put = await fixture.Http.SendAsync(request);
                Assert.Equal(HttpStatusCode.RequestEntityTooLarge, put.StatusCode);
            }
            catch (HttpRequestException e)
            {
                // Closing the connection on an oversized upload is also a refusal.
                output.WriteLine("chunked upload: connection closed: " + e.Message);
            }
        }

        using (var get = await fixture.Http.GetAsync(uri))
        {
            Assert.Equal(HttpStatusCode.NotFound, get.StatusCode);
        }

        using (var seed = await fixture.Http.PutAsync(new Uri(node.BaseUri, "/"), new StringContent("{\"Key\":\"big\",\"Value\":\"" + new string('v', 3 * 1024 * 1024) + "\"}")))
        {
            Assert.True((int)seed.StatusCode is >= 400 and < 500, $"oversized seed PUT answered {(int)seed.StatusCode}");
        }

        await fixture.AssertHealthyAsync("oversized bodies");
    }

    [Fact(Timeout = 60_000)]
    public async Task Garbage_on_the_http_port_does_not_hurt_the_node()
    {
        var node = fixture.Cluster.Nodes[0];
        var random = new Random(11);
        byte[] junk = new byte[64 * 1024];
        random.NextBytes(junk);
        var payloads = new List<byte[]>
        {
            junk,
            "GARBAGE\r\n\r\n"u8.ToArray(),
            "GET / HTTP/1.1\r\nHost: x\r\n"u8.ToArray(),
            Encoding.ASCII.GetBytes("GET /v1/kv/a HTTP/1.1\r\nHost: x\r\nX-Big: " + s_huge + "\r\n\r\n"),
            Encoding.ASCII.GetBytes("PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nContent-Length: 99999999999\r\n\r\nshort"),
            Encoding.ASCII.GetBytes("PUT /v1/kv/a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nZZZ\r\n"),
            Encoding.ASCII.GetBytes("GET /v1/kv/%ff%fe HTTP/1.1\r\nHost: x\r\n\r\n"),
        };
        foreach (byte[] payload in payloads)
        {
            using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
            await socket.ConnectAsync(IPAddress.Loopback, node.HttpPort);
            try
            {
                await socket.SendAsync(payload);
                socket.Shutdown(SocketShutdown.Send);
                var buffer = new byte[4096];
                using var cancel = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                int read = await socket.ReceiveAsync(buffer, SocketFlags.None, cancel.Token);
                string answer = Encoding.ASCII.GetString(buffer, 0, read);
                output.WriteLine($"{payload.Length} bytes -> {Shorten(answer.Split('\n')[0])}");
                Assert.DoesNotContain(" 500 ", answer.Split('\n')[0], StringComparison.Ordinal);
            }
            catch (Exception e) when (e is SocketException or OperationCanceledException)
            {
                output.WriteLine($"{payload.Length} bytes -> connection closed ({e.GetType().Name})");
            }
        }

        await fixture.AssertHealthyAsync("garbage on the HTTP port");
    }

    [Fact(Timeout = 120_000)]
    public async Task After_all_malformed_requests_every_node_is_healthy()
    {
        foreach (var row in MalformedRequests)
        {
            string method = (string)row[0];
            string path = (string)row[1];
            foreach (var node in fixture.Cluster.Nodes)
            {
                using var request = new HttpRequestMessage(new HttpMethod(method), new Uri(node.BaseUri, path));
                if (row[2] is string body)
                {
                    request.Content = new StringContent(body);
                }

                using var response = await fixture.Http.SendAsync(request);
                Assert.True((int)response.StatusCode < 500, $"{method} {Shorten(path)} on {node.Name} answered {(int)response.StatusCode}");
            }
        }

        await fixture.AssertHealthyAsync("every malformed request on every node");
    }

    private static string Shorten(string text) => text.Length <= 160 ? text.ReplaceLineEndings(" ") : text[..160].ReplaceLineEndings(" ") + "...";
}
