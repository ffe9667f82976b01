using System.Net;
using System.Text;
using System.Text.Json;

namespace Stcache.Integration.Tests;

/// <summary>
/// What a <c>/v1/kv</c> answer carries (docs/API.md), whatever serves it: status, body, length, content type, the
/// version and outcome headers, the query parameters' checks, and one <c>stcache.http.request</c> per request. The
/// handlers are plain request delegates (no minimal-API binding), so these pin what binding used to give.
/// </summary>
public sealed class KvAnswerTests : ProcessTest
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Reads_and_writes_answer_with_their_headers_bodies_and_errors()
    {
        var node = new Node("n1", WorkDirectory.Path, FreePorts.Next(), FreePorts.Next(),
            n => ["--http=" + n.Http, "--raft=" + n.Raft, "--node=" + Path.Combine(WorkDirectory.Path, "n1"), "--bootstrap=true"]);
        Nodes.Add(node);
        node.Start();
        await Api.WaitForLeaderAsync([node], s_wait);
        string kv = $"http://{node.Http}/v1/kv/";

        var (status, body, response) = await Api.SendThroughElectionsAsync(HttpMethod.Put, kv + "dir/a%2541b", Encoding.UTF8.GetBytes("hello"));
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal("application/json; charset=utf-8", response.Content.Headers.ContentType?.ToString());
        using (var view = JsonDocument.Parse(body))
        {
            Assert.Equal("dir/a%41b", view.RootElement.GetProperty("key").GetString());
            Assert.True(view.RootElement.GetProperty("succeeded").GetBoolean());
            Assert.False(view.RootElement.GetProperty("previousExisted").GetBoolean());
            Assert.Equal(Version(response), view.RootElement.GetProperty("version").GetUInt64());
        }

        // The write view is written by hand: byte for byte what the serializer gives, escaping included.
        (status, body, response) = await Api.SendThroughElectionsAsync(HttpMethod.Put, kv + "q%22%3C%C3%A9%3E%5C", Encoding.UTF8.GetBytes("x"));
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Equal(
            JsonSerializer.Serialize(new Stcache.Server.KvWriteView("q\"<é>\\", true, Version(response), false), Stcache.Server.ApiJson.Default.KvWriteView),
            body);
        Assert.Equal(Encoding.UTF8.GetByteCount(body), response.Content.Headers.ContentLength);

        (status, body, response) = await Api.SendThroughElectionsAsync(HttpMethod.Get, kv + "dir/a%2541b");
        Assert.Equal(HttpStatusCode.OK, status);
        ulong version = Version(response);
        int gets = 0;
        foreach (string query in new[] { string.Empty, "?consistency=stale", "?consistency=linearizable", "?consistency=lease", "?Consistency=stale" })
        {
            (status, body, response) = await Api.SendThroughElectionsAsync(HttpMethod.Get, kv + "dir/a%2541b" + query);
            gets++;
            Assert.True(status == HttpStatusCode.OK, $"GET {query}: {(int)status} {body}");
            Assert.Equal("hello", body);
            Assert.Equal(5, response.Content.Headers.ContentLength);
            Assert.Equal("application/octet-stream", response.Content.Headers.ContentType?.ToString());
            Assert.Equal(version, Version(response));
            Assert.False(response.Headers.Contains("X-Stcache-Expires-At"));
        }

        // A TTL shows as the stamped expiry, in the future.
        (status, _, _) = await Api.SendAsync(HttpMethod.Put, kv + "t?ttl=600", Encoding.UTF8.GetBytes("v"));
        Assert.Equal(HttpStatusCode.OK, status);
        (status, _, response) = await Api.SendAsync(HttpMethod.Get, kv + "t?consistency=stale");
        gets++;
        Assert.Equal(HttpStatusCode.OK, status);
        long expiresAt = long.Parse(response.Headers.GetValues("X-Stcache-Expires-At").Single(), System.Globalization.CultureInfo.InvariantCulture);
        Assert.InRange(expiresAt - DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), 500_000, 700_000);

        // Errors: JSON with a newline, the outcome in the body and the header.
        foreach (var (query, expected, outcome) in new[]
        {
            ("missing?consistency=stale", HttpStatusCode.NotFound, "none"),
            ("missing", HttpStatusCode.NotFound, "none"),
            ("k?consistency=bogus", HttpStatusCode.BadRequest, "none"),
            ("k?consistency=", HttpStatusCode.BadRequest, "none"),
            ("?consistency=stale", HttpStatusCode.BadRequest, "none"),
            (new string('a', 4097) + "?consistency=stale", HttpStatusCode.RequestEntityTooLarge, "none"),
        })
        {
            (status, body, response) = await Api.SendAsync(HttpMethod.Get, kv + query);
            gets++;
            Assert.True(status == expected, $"GET {query}: {(int)status} {body}");
            Assert.True(body.EndsWith("}\n", StringComparison.Ordinal), $"GET {query}: {(int)status} body '{body}'");
            Assert.Equal(outcome, response.Headers.GetValues("X-Stcache-Outcome").Single());
            Assert.Equal(Encoding.UTF8.GetByteCount(body), response.Content.Headers.ContentLength);
            using var error = JsonDocument.Parse(body);
            Assert.Equal(outcome, error.RootElement.GetProperty("outcome").GetString());
        }

        foreach (string query in new[] { "?prevVersion=abc", "?prevVersion=-1", "?ttl=soon", "?ttl=0", "?prevVersion=1&prevValue=a" })
        {
            (status, body, _) = await Api.SendAsync(HttpMethod.Put, kv + "k" + query, Encoding.UTF8.GetBytes("x"));
            Assert.True(status == HttpStatusCode.BadRequest, $"PUT {query}: {(int)status} {body}");
            Assert.Contains("\"outcome\":\"not-applied\"", body, StringComparison.Ordinal);
        }

        // Compare-and-set: a mismatch is 412 with the current version; an empty prevValue compares with the empty value.
        (status, body, response) = await Api.SendAsync(HttpMethod.Put, kv + $"dir/a%2541b?prevVersion={version + 100}", Encoding.UTF8.GetBytes("no"));
        Assert.Equal(HttpStatusCode.PreconditionFailed, status);
        Assert.Equal(version, Version(response));
        Assert.Contains("\"succeeded\":false", body, StringComparison.Ordinal);
        (status, _, _) = await Api.SendAsync(HttpMethod.Put, kv + "dir/a%2541b?prevValue=", Encoding.UTF8.GetBytes("no"));
        Assert.Equal(HttpStatusCode.PreconditionFailed, status);
        (status, _, _) = await Api.SendAsync(HttpMethod.Put, kv + $"dir/a%2541b?prevVersion={version}", Encoding.UTF8.GetBytes("yes"));
        Assert.Equal(HttpStatusCode.OK, status);
        (status, body, _) = await Api.SendAsync(HttpMethod.Delete, kv + "dir/a%2541b?prevValue=yes");
        Assert.Equal(HttpStatusCode.OK, status);
        Assert.Contains("\"previousExisted\":true", body, StringComparison.Ordinal);
        (status, _, _) = await Api.SendAsync(new HttpMethod("PATCH"), kv + "k", Encoding.UTF8.GetBytes("x"));
        Assert.Equal(HttpStatusCode.MethodNotAllowed, status);

        string metrics = await Api.GetStringAsync($"http://{node.Http}/metrics");
        string line = metrics.Split('\n').Single(l => l.StartsWith("stcache_http_request_seconds_count{", StringComparison.Ordinal) && l.Contains("method=\"GET\"", StringComparison.Ordinal));
        Assert.True(double.Parse(line.Split(' ')[1], System.Globalization.CultureInfo.InvariantCulture) >= gets, line);
    }

    private static ulong Version(HttpResponseMessage response) =>
        ulong.Parse(response.Headers.GetValues("X-Stcache-Version").Single(), System.Globalization.CultureInfo.InvariantCulture);
}
