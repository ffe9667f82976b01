using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;

namespace Stcache.Integration.Tests;

/// <summary>
/// Three real stcached processes started with <c>--max-memory</c> (issue 11): under allkeys-lru, filling past the
/// limit evicts (DBSIZE drops) and accounted memory stays within the limit plus one write on every node; under
/// noeviction a write over the limit gets Redis's OOM error over RESP and HTTP and changes nothing. The configured
/// setting is replicated by the leader, and a CONFIG SET is not undone by the next leader.
/// </summary>
public sealed class MemoryLimitTests : ProcessTest
{
    private const long Limit = 200 * 1024;
    private const int ValueBytes = 200;

    // KeyOverheadBytes + "key:00000" + the value: the most one of these writes adds.
    private const long OneWrite = 96 + 9 + ValueBytes;

    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(60);
    private readonly Dictionary<Node, int> _resp = [];

    [Fact]
    public async Task AllKeysLru_FillingPastTheLimit_EvictsOnEveryNode_AndAConfigSetSurvivesAFailover()
    {
        var nodes = await StartThreeAsync("--max-memory=200kb", "--eviction-policy=allkeys-lru");
        await Api.WaitUntilAsync("every node to hold the configured limit", async () =>
        {
            foreach (var node in nodes)
            {
                var info = await InfoAsync(node);
                if (info.GetValueOrDefault("maxmemory") != Limit.ToString(CultureInfo.InvariantCulture) || info.GetValueOrDefault("maxmemory_policy") != "allkeys-lru")
                {
                    return false;
                }
            }

            return true;
        }, s_wait, nodes);

        var leader = await Api.WaitForLeaderAsync(nodes, s_wait);
        const int Keys = 2000; // about three times the limit
        var replies = await PipelineAsync(leader, Enumerable.Range(0, Keys).Select(i => new[] { "SET", $"key:{i:D5}", new string('v', ValueBytes) }));
        Assert.All(replies, reply => Assert.Equal("+OK", reply));

        string applied = (await Api.StatusAsync(leader))!.Value.GetProperty("commit").ToString();
        foreach (var node in nodes)
        {
            await Api.WaitUntilAsync($"{node.Name} to apply the writes", async () =>
                (await Api.StatusAsync(node))?.GetProperty("applied").GetUInt64() >= ulong.Parse(applied, CultureInfo.InvariantCulture), s_wait, nodes);
            var info = await InfoAsync(node);
            long used = long.Parse(info["used_memory"], CultureInfo.InvariantCulture);
            Assert.True(used <= Limit + OneWrite, $"{node.Name}: used_memory {used} > limit {Limit} + one write");
            Assert.True(long.Parse(info["evicted_keys"], CultureInfo.InvariantCulture) > 0, $"{node.Name} evicted nothing");
            long keys = long.Parse((await ThroughElectionsAsync(node, "DBSIZE"))[1..], CultureInfo.InvariantCulture);
            Assert.InRange(keys, 1, Keys - 1);

            // The same figures through OpenTelemetry's Prometheus exposition, read a moment later: the leader's
            // eviction batches may land in between, so memory can only have stayed within the limit and the
            // eviction count can only have grown.
            var metrics = await MetricsAsync(node);
            Assert.Equal(Limit, metrics["stcache_memory_limit_bytes"]);
            Assert.InRange(metrics["stcache_cache_memory_used_bytes"], 1, Limit + OneWrite);
            Assert.True(metrics["stcache_cache_evictions_total"] >= long.Parse(info["evicted_keys"], CultureInfo.InvariantCulture),
                $"{node.Name}: evictions went back from INFO's {info["evicted_keys"]} to {metrics["stcache_cache_evictions_total"]}");
            Assert.True(metrics.ContainsKey("stcache_cache_expirations_total"));
        }

        // A runtime change stands until a node restarts with other flags: the next leader does not undo it.
        Assert.Equal("+OK", await ThroughElectionsAsync(leader, "CONFIG", "SET", "maxmemory-policy", "allkeys-random"));
        await leader.KillAsync();
        var survivors = nodes.Where(n => n != leader).ToArray();
        var next = await Api.WaitForLeaderAsync(survivors, s_wait);
        Assert.Equal("+OK", await ThroughElectionsAsync(next, "SET", "after", "failover"));
        foreach (var node in survivors)
        {
            Assert.Equal("allkeys-random", (await InfoAsync(node))["maxmemory_policy"]);
        }
    }

    [Fact]
    public async Task NoEviction_AWriteOverTheLimit_GetsOomOverRespAndHttp_AndChangesNothing()
    {
        var nodes = await StartThreeAsync("--max-memory=50kb", "--eviction-policy=noeviction");
        var leader = await Api.WaitForLeaderAsync(nodes, s_wait);
        await Api.WaitUntilAsync("the leader to hold the configured limit", async () =>
            (await InfoAsync(leader)).GetValueOrDefault("maxmemory") == (50 * 1024).ToString(CultureInfo.InvariantCulture), s_wait, nodes);

        var replies = await PipelineAsync(leader, Enumerable.Range(0, 400).Select(i => new[] { "SET", $"key:{i:D5}", new string('v', ValueBytes) }));
        int accepted = replies.Count(r => r == "+OK");
        Assert.InRange(accepted, 100, 399);
        Assert.All(replies.Skip(accepted), reply => Assert.Equal("-OOM command not allowed when used memory > 'maxmemory'.", reply));

        var info = await InfoAsync(leader);
        long used = long.Parse(info["used_memory"], CultureInfo.InvariantCulture);
        Assert.True(used <= (50 * 1024) + OneWrite, $"used_memory {used} exceeds the limit by more than one write");

        // Over HTTP, through a follower too: 507 with Redis's text, and nothing changed.
        var follower = nodes.First(n => n != leader);
        var (status, body, _) = await Api.SendAsync(HttpMethod.Put, $"http://{follower.Http}/v1/kv/http-key", Encoding.UTF8.GetBytes("v"));
        Assert.Equal(HttpStatusCode.InsufficientStorage, status);
        Assert.Equal("OOM command not allowed when used memory > 'maxmemory'.", System.Text.Json.JsonDocument.Parse(body).RootElement.GetProperty("error").GetString());
        (status, _, _) = await Api.SendAsync(HttpMethod.Get, $"http://{leader.Http}/v1/kv/http-key");
        Assert.Equal(HttpStatusCode.NotFound, status);
        Assert.Equal(used, long.Parse((await InfoAsync(leader))["used_memory"], CultureInfo.InvariantCulture));
        Assert.Equal(":" + accepted, await ThroughElectionsAsync(leader, "DBSIZE"));
        Assert.Equal("0", info["evicted_keys"]);

        // Deletes still work (Redis lets non-denyoom commands through), and make room again.
        Assert.Equal(":1", await ThroughElectionsAsync(leader, "DEL", "key:00000"));
        Assert.Equal("+OK", await ThroughElectionsAsync(leader, "SET", "small", "v"));
    }

    /// <summary>
    /// LFU counts reads served by a follower: its access report reaches the leader as an Access entry, so keys
    /// read only on a follower outlive an eviction that takes half of the others. (Without the report every key
    /// has the same frequency and about half of the read keys would go.)
    /// </summary>
    [Fact]
    public async Task AllKeysLfu_KeysReadOnlyOnAFollower_SurviveEviction()
    {
        var nodes = await StartThreeAsync("--max-memory=200kb", "--eviction-policy=allkeys-lfu");
        var leader = await Api.WaitForLeaderAsync(nodes, s_wait);
        await Api.WaitUntilAsync("the leader to hold the configured limit", async () =>
            (await InfoAsync(leader)).GetValueOrDefault("maxmemory_policy") == "allkeys-lfu", s_wait, nodes);

        // About 90% of the limit, then reads of the first 50 keys on a follower, three times each.
        var first = await PipelineAsync(leader, Enumerable.Range(0, 600).Select(i => new[] { "SET", $"key:{i:D5}", new string('v', ValueBytes) }));
        Assert.All(first, reply => Assert.Equal("+OK", reply));
        var follower = nodes.First(n => n != leader);
        ulong before = (await Api.StatusAsync(leader))!.Value.GetProperty("commit").GetUInt64();
        await Api.WaitUntilAsync("the follower to apply the writes", async () =>
            (await Api.StatusAsync(follower))?.GetProperty("applied").GetUInt64() >= before, s_wait, nodes);
        var reads = await PipelineAsync(follower, Enumerable.Range(0, 3).SelectMany(_ => Enumerable.Range(0, 50).Select(i => new[] { "GET", $"key:{i:D5}" })));
        Assert.All(reads, reply => Assert.Equal(new string('v', ValueBytes), reply));

        // Nothing else is proposed now (no expiries, under the limit): the next entry is the follower's report.
        await Api.WaitUntilAsync("the follower's access report to commit", async () =>
            (await Api.StatusAsync(leader))?.GetProperty("commit").GetUInt64() > before, s_wait, nodes);

        var second = await PipelineAsync(leader, Enumerable.Range(600, 600).Select(i => new[] { "SET", $"key:{i:D5}", new string('v', ValueBytes) }));
        Assert.All(second, reply => Assert.Equal("+OK", reply));
        var info = await InfoAsync(leader);
        Assert.True(long.Parse(info["evicted_keys"], CultureInfo.InvariantCulture) >= 500, "expected about half the keys evicted");
        var exists = await PipelineAsync(leader, Enumerable.Range(0, 50).Select(i => new[] { "EXISTS", $"key:{i:D5}" }));
        Assert.Equal(50, exists.Count(reply => reply == ":1"));
    }

    [Theory]
    [InlineData("--max-memory=lots", "--max-memory: 'lots' is not a size")]
    [InlineData("--eviction-policy=lru", "--eviction-policy: 'lru' is not a policy")]
    public async Task ABadValue_StopsTheStartWithOneLine(string flag, string message)
    {
        var node = StartNode("bad", "--bootstrap", flag);
        await node.WaitForExitAsync(s_wait);
        Assert.Equal(2, node.ExitCode);
        var lines = node.Output.Split('\n', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        Assert.Contains(lines, line => line.Contains(message, StringComparison.Ordinal));
        Assert.DoesNotContain(lines, line => line.StartsWith("at ", StringComparison.Ordinal)); // no stack trace
    }

    private async Task<Node[]> StartThreeAsync(params string[] extra)
    {
        var n1 = StartNode("n1", ["--bootstrap", .. extra]);
        await Api.WaitForLeaderAsync([n1], s_wait);
        var n2 = StartNode("n2", ["--join=" + n1.Http, .. extra]);
        var n3 = StartNode("n3", ["--join=" + n1.Http, .. extra]);
        Node[] nodes = [n1, n2, n3];
        await Api.WaitUntilAsync("three voters", async () =>
            (await Api.StatusAsync(n1))?.GetProperty("voters").GetArrayLength() == 3, s_wait, nodes);
        await Api.WaitForLeaderAsync(nodes, s_wait);
        return nodes;
    }

    private Node StartNode(string name, params string[] extra)
    {
        int resp = FreePorts.Next();
        var node = new Node(name, WorkDirectory.Path, FreePorts.Next(), FreePorts.Next(),
            n => ["--http=" + n.Http, "--raft=" + n.Raft, "--resp=" + FreePorts.Address(resp), "--data-dir=" + Path.Combine(WorkDirectory.Path, name), .. extra]);
        _resp[node] = resp;
        Nodes.Add(node);
        node.Start();
        return node;
    }

    private static async Task<Dictionary<string, long>> MetricsAsync(Node node)
    {
        string text = await Api.GetStringAsync($"http://{node.Http}/metrics");
        var values = new Dictionary<string, long>();
        foreach (string line in text.Split('\n'))
        {
            if (line.StartsWith("stcache_", StringComparison.Ordinal) && line.Split(' ') is { Length: >= 2 } parts)
            {
                string name = parts[0].Split('{')[0];
                if (double.TryParse(parts[1], NumberStyles.Float, CultureInfo.InvariantCulture, out double value))
                {
                    values.TryAdd(name, (long)value);
                }
            }
        }

        return values;
    }

    private async Task<Dictionary<string, string>> InfoAsync(Node node)
    {
        string text = (await PipelineAsync(node, [["INFO"]]))[0];
        return text.Split("\r\n").Select(line => line.Split(':', 2)).Where(pair => pair.Length == 2)
            .GroupBy(pair => pair[0]).ToDictionary(g => g.Key, g => g.First()[1]);
    }

    /// <summary>Sends the commands in one pipeline over RESP and reads one reply each: a simple string, error or
    /// integer as its line ("+OK", "-OOM ...", ":3"), a bulk string as its text.</summary>
    /// <summary>
    /// One command, sent again for up to 15 s while it is answered CLUSTERDOWN or TRYAGAIN: errors that say it had no
    /// effect (an election moved the leader, which a loaded machine can cause at any time, and a read could not be
    /// confirmed or a write was not applied). Returns the first other reply.
    /// </summary>
    private async Task<string> ThroughElectionsAsync(Node node, params string[] command)
    {
        string reply = string.Empty;
        await Api.WaitUntilAsync($"{string.Join(' ', command)} on {node.Name} answered (not CLUSTERDOWN or TRYAGAIN)", async () =>
        {
            reply = (await PipelineAsync(node, [command]))[0];
            return !reply.StartsWith("-CLUSTERDOWN", StringComparison.Ordinal) && !reply.StartsWith("-TRYAGAIN", StringComparison.Ordinal);
        }, TimeSpan.FromSeconds(15), [.. _resp.Keys]);
        return reply;
    }

    private async Task<List<string>> PipelineAsync(Node node, IEnumerable<string[]> commands)
    {
        using var client = new TcpClient();
        await client.ConnectAsync(IPAddress.Loopback, _resp[node]);
        var stream = client.GetStream();
        var request = new StringBuilder();
        int count = 0;
        foreach (var command in commands)
        {
            request.Append(CultureInfo.InvariantCulture, $"*{command.Length}\r\n");
            foreach (string arg in command)
            {
                request.Append(CultureInfo.InvariantCulture, $"${Encoding.UTF8.GetByteCount(arg)}\r\n{arg}\r\n");
            }

            count++;
        }

        await stream.WriteAsync(Encoding.UTF8.GetBytes(request.ToString()));
        using var reader = new StreamReader(stream, Encoding.UTF8);
        var replies = new List<string>(count);
        using var timeout = new CancellationTokenSource(s_wait);
        for (int i = 0; i < count; i++)
        {
            string line = await reader.ReadLineAsync(timeout.Token) ?? throw new IOException("connection closed");
            if (line.StartsWith('$') && line != "$-1")
            {
                int length = int.Parse(line.AsSpan(1), CultureInfo.InvariantCulture);
                var buffer = new char[length];
                int read = 0;
                while (read < length)
                {
                    int n = await reader.ReadAsync(buffer.AsMemory(read, length - read), timeout.Token);
                    read += n > 0 ? n : throw new IOException("connection closed");
                }

                await reader.ReadLineAsync(timeout.Token);
                line = new string(buffer);
            }

            replies.Add(line);
        }

        return replies;
    }
}
