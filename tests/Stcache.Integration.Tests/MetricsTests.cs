using System.Globalization;
using System.Net;
using System.Text;

namespace Stcache.Integration.Tests;

/// <summary>GET /metrics: the stage histograms of the write and read paths, in Prometheus text format.</summary>
public sealed class MetricsTests : ProcessTest
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Writes_and_reads_show_up_in_the_stage_histograms()
    {
        var node = new Node("n1", WorkDirectory.Path, FreePorts.Next(), FreePorts.Next(),
            n => ["--http=" + n.Http, "--raft=" + n.Raft, "--node=" + Path.Combine(WorkDirectory.Path, "n1"), "--bootstrap=true"]);
        Nodes.Add(node);
        node.Start();
        await Api.WaitForLeaderAsync([node], s_wait);

        const int writes = 5;
        for (int i = 0; i < writes; i++)
        {
            var (status, _, _) = await Api.SendAsync(HttpMethod.Put, $"http://{node.Http}/v1/kv/m{i}", Encoding.UTF8.GetBytes("v"));
            Assert.Equal(HttpStatusCode.OK, status);
        }

        Assert.Equal("v", await Api.GetStringAsync($"http://{node.Http}/v1/kv/m0"));

        string text = await Api.GetStringAsync($"http://{node.Http}/metrics");
        Assert.Equal(1, Value(text, "stcache_is_leader"));

        // The WAL histogram times the saves that write: one per write here (a single voter's entries), not the
        // commit-only save that follows each (it writes nothing; counted, it made two per write).
        double savesBefore = Value(text, "stcache_wal_save_seconds_count");
        const int more = 20;
        for (int i = 0; i < more; i++)
        {
            var (status, _, _) = await Api.SendAsync(HttpMethod.Put, $"http://{node.Http}/v1/kv/s{i}", Encoding.UTF8.GetBytes("v"));
            Assert.Equal(HttpStatusCode.OK, status);
        }

        text = await Api.GetStringAsync($"http://{node.Http}/metrics");
        double saves = Value(text, "stcache_wal_save_seconds_count") - savesBefore;
        Assert.True(saves >= more && saves < more * 3 / 2, $"{saves} WAL saves timed for {more} writes");
        Assert.True(Value(text, "stcache_proposal_commit_seconds_count") >= writes, text);
        Assert.True(Value(text, "stcache_wal_save_seconds_count") >= writes, text);
        Assert.True(Value(text, "stcache_read_barrier_seconds_count") >= 1, text);
        Assert.True(Value(text, "stcache_http_request_seconds_count{method=\"PUT\"}") >= writes, text);
        Assert.True(Value(text, "stcache_host_input_wait_seconds_count{kind=\"propose\"}") >= writes, text);

        // Buckets are cumulative and end in +Inf, which equals the count.
        Assert.Equal(Value(text, "stcache_proposal_commit_seconds_count"), Value(text, "stcache_proposal_commit_seconds_bucket{le=\"+Inf\"}"));
    }

    /// <summary>
    /// A snapshot used to restart the tick epoch without the tick count, which stopped the node's Raft clock for as
    /// long as the node had run: no heartbeats, elections or lease expiry (failovers of 20-30 s under load).
    /// </summary>
    [Fact]
    public async Task The_raft_clock_keeps_running_after_a_snapshot()
    {
        var node = new Node("n1", WorkDirectory.Path, FreePorts.Next(), FreePorts.Next(),
            n => ["--http=" + n.Http, "--raft=" + n.Raft, "--node=" + Path.Combine(WorkDirectory.Path, "n1"), "--bootstrap=true", "--tick-ms=50"]);
        Nodes.Add(node);
        node.Start();
        await Api.WaitForLeaderAsync([node], s_wait);
        var (status, _, _) = await Api.SendAsync(HttpMethod.Put, $"http://{node.Http}/v1/kv/k", Encoding.UTF8.GetBytes("v"));
        Assert.Equal(HttpStatusCode.OK, status);

        // Let the clock run for 3 s (60 ticks), so a clock frozen by the snapshot would stay frozen for 3 s.
        await Api.WaitUntilAsync("60 ticks", async () => await TicksAsync(node) >= 60, s_wait, node);
        (status, _, _) = await Api.SendAsync(HttpMethod.Post, $"http://{node.Http}/v1/snapshot");
        Assert.Equal(HttpStatusCode.OK, status);
        double atSnapshot = await TicksAsync(node);

        // 1.5 s is 30 ticks; ask for 10 of them.
        await Api.WaitUntilAsync("ticks after the snapshot", async () => await TicksAsync(node) >= atSnapshot + 10, TimeSpan.FromSeconds(1.5), node);
        Assert.Equal(0, Value(await Api.GetStringAsync($"http://{node.Http}/metrics"), "stcache_raft_inputs_dropped_total"));
    }

    private static async Task<double> TicksAsync(Node node) =>
        Value(await Api.GetStringAsync($"http://{node.Http}/metrics"), "stcache_raft_ticks_total");

    private static double Value(string text, string series)
    {
        foreach (string exposed in text.Split('\n'))
        {
            // OpenTelemetry's exporter labels every series with its meter; the series names and labels are ours.
            string line = exposed.Replace("otel_scope_name=\"Stcache.Server\",", string.Empty, StringComparison.Ordinal)
                .Replace("{otel_scope_name=\"Stcache.Server\"}", string.Empty, StringComparison.Ordinal);
            if (line.StartsWith(series + " ", StringComparison.Ordinal))
            {
                return double.Parse(line[(series.Length + 1)..], CultureInfo.InvariantCulture);
            }
        }

        throw new Xunit.Sdk.XunitException($"no series {series} in:\n{text}");
    }
}
