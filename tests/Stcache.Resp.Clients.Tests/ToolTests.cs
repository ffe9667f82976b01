using System.Globalization;
using Stcache.Integration.Tests;
using Xunit.Abstractions;

namespace Stcache.Resp.Clients.Tests;

using Node = Stcache.Integration.Tests.Node;

/// <summary>One 3-node cluster shared by the tool tests, none of which stops a node.</summary>
public sealed class ToolCluster : RespClusterTest, IAsyncLifetime
{
    public Node[] Members { get; private set; } = [];

    public Node Leader { get; private set; } = null!;

    public new async Task InitializeAsync()
    {
        Members = StartCluster("tools");
        Leader = await WaitForClusterAsync(Members);
    }

    public int Port(Node node) => RespPorts[node];
}

/// <summary>redis-cli, redis-benchmark and redis-py (Debian's packages), unchanged, against the cluster.</summary>
public sealed class ToolTests(ToolCluster cluster, ITestOutputHelper output) : IClassFixture<ToolCluster>
{
    private static Task<(int Code, string Output)> RunAsync(string program, params string[] arguments) =>
        RespClusterTest.RunAsync(program, arguments);

    private static Task<(int Code, string Output)> RunWithInputAsync(string program, string input, params string[] arguments) =>
        RespClusterTest.RunAsync(program, arguments, input);

    private Node Follower => cluster.Members.First(n => n != cluster.Leader);

    private string P(Node node) => cluster.Port(node).ToString(CultureInfo.InvariantCulture);

    [Fact]
    public async Task RedisCliScriptedThroughAFollowerAndTheLeader()
    {
        var (code, text) = await RunAsync("redis-cli", "-p", P(Follower), "SET", "cli:k", "hello world");
        Assert.Equal((0, "OK\n"), (code, text));
        (code, text) = await RunAsync("redis-cli", "-p", P(cluster.Leader), "GET", "cli:k");
        Assert.Equal("hello world\n", text);
        (code, text) = await RunAsync("redis-cli", "-p", P(Follower), "INCRBY", "cli:n", "41");
        Assert.Equal("41\n", text);
        (code, text) = await RunAsync("redis-cli", "-p", P(Follower), "ROLE");
        Assert.StartsWith($"slave\n127.0.0.1\n{P(cluster.Leader)}\nconnected\n", text, StringComparison.Ordinal);
        (code, text) = await RunAsync("redis-cli", "-p", P(Follower), "INFO", "replication");
        Assert.Contains("role:slave", text, StringComparison.Ordinal);
        Assert.Contains($"master_port:{P(cluster.Leader)}", text, StringComparison.Ordinal);

        // Piped stdin: redis-cli runs its interactive loop (COMMAND DOCS first), one command per line.
        (code, text) = await RunWithInputAsync("redis-cli", "SET cli:piped 1\nINCR cli:piped\nGET cli:piped\nEXISTS cli:piped cli:none\n", "-p", P(Follower));
        output.WriteLine(text);
        Assert.Equal(0, code);
        Assert.Equal("OK\n2\n2\n1\n", text.Replace("(integer) ", string.Empty, StringComparison.Ordinal).Replace("\"", string.Empty, StringComparison.Ordinal));

        (code, text) = await RunAsync("redis-cli", "-3", "-p", P(Follower), "HELLO", "3");
        Assert.Contains("proto", text, StringComparison.Ordinal);
    }

    [Fact]
    public async Task RedisBenchmarkRunsWithoutAnErrorReply()
    {
        foreach (var node in new[] { cluster.Leader, Follower })
        {
            var (code, text) = await RunAsync("redis-benchmark", "-p", P(node), "-t", "ping,set,get,incr,mset", "-n", "500", "-c", "10", "-q");
            output.WriteLine(text.Replace("\r", "\n", StringComparison.Ordinal));
            Assert.True(code == 0, text);
            Assert.DoesNotContain("Error", text, StringComparison.OrdinalIgnoreCase);
            foreach (string test in new[] { "PING_INLINE", "PING_MBULK", "SET", "GET", "INCR", "MSET (10 keys)" })
            {
                Assert.Contains(test + ":", text, StringComparison.Ordinal);
            }
        }
    }

    [Fact]
    public async Task PythonRedisClient()
    {
        string script = $$"""
            import redis
            r = redis.Redis(host="127.0.0.1", port={{P(Follower)}})
            assert r.ping()
            assert r.set("py:k", b"\x00\xffbytes")
            assert r.get("py:k") == b"\x00\xffbytes"
            assert r.incr("py:n") == 1
            assert r.incrby("py:n", 9) == 10
            assert r.mset({"py:a": "1", "py:b": "2"})
            assert r.mget("py:a", "py:b", "py:none") == [b"1", b"2", None]
            assert r.delete("py:a", "py:b", "py:none") == 2
            assert r.set("py:nx", "1", nx=True) is True
            assert r.set("py:nx", "2", nx=True) is None
            assert r.setex("py:ttl", 100, "x")
            assert 0 < r.ttl("py:ttl") <= 100
            p = r.pipeline(transaction=True)
            p.set("py:tx", 1).incr("py:tx").get("py:tx")
            assert p.execute() == [True, 2, b"2"]
            info = r.info("replication")
            assert info["role"] == "slave", info
            assert info["master_port"] == {{P(cluster.Leader)}}, info
            print("ok")
            """;
        var (code, text) = await RunWithInputAsync("/usr/bin/python3", script, "-");
        Assert.True(code == 0 && text.Trim() == "ok", text);
    }
}
