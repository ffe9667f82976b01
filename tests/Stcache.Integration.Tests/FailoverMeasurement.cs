using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using Xunit.Abstractions;

namespace Stcache.Integration.Tests;

/// <summary>
/// Failover time, from kill -9 of the leader to the first acknowledged write, over N repetitions with default
/// settings: written to the new leader over HTTP, written over HTTP through the surviving follower (which
/// forwards), and written over RESP (SET on a connection opened before the kill) through the surviving follower.
/// After each round the survivors' log lines of the failover (connection lost, elections, the new roles) are
/// printed with their offset from the kill. Runs only when STCACHE_FAILOVER_REPS is set (it takes a while):
/// STCACHE_FAILOVER_REPS=10 dotnet test tests/Stcache.Integration.Tests --filter FailoverMeasurement --logger "console;verbosity=detailed"
/// STCACHE_FAILOVER_FLAGS adds server flags to every node (--leader-lost-ticks=0 measures without the fast path).
/// STCACHE_FAILOVER_SETTLE_MS waits that long after the first leader is elected before the first kill.
/// STCACHE_FAILOVER_LOGS names a directory to write every node's whole output to at the end.
/// </summary>
public sealed class FailoverMeasurement(ITestOutputHelper output) : ProcessTest
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(30);


    [EnvironmentFact("STCACHE_FAILOVER_REPS")]
    public async Task MeasureFailover()
    {
        if (!int.TryParse(Environment.GetEnvironmentVariable("STCACHE_FAILOVER_REPS"), CultureInfo.InvariantCulture, out int repetitions))
        {
            throw new InvalidOperationException("STCACHE_FAILOVER_REPS must be an integer");
        }

        // Extra server flags for every node, to compare settings (e.g. STCACHE_FAILOVER_FLAGS=--leader-lost-ticks=0).
        string[] extraFlags = (Environment.GetEnvironmentVariable("STCACHE_FAILOVER_FLAGS") ?? string.Empty)
            .Split(' ', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        var ports = Enumerable.Range(0, 3).Select(_ => (Http: FreePorts.Next(), Raft: FreePorts.Next(), Resp: FreePorts.Next())).ToArray();
        string cluster = string.Join(',', ports.Select((p, i) => $"{i + 1}/127.0.0.1:{p.Raft}"));
        var nodes = ports.Select((p, i) =>
        {
            var node = new Node($"n{i + 1}", WorkDirectory.Path, p.Http, p.Raft, n =>
                [$"--http_addr={n.Http}", $"--raft_addr={n.Raft}", $"--raft_id={i + 1}", $"--raft_cluster={cluster}", $"--resp=127.0.0.1:{p.Resp}", .. extraFlags]);
            Nodes.Add(node);
            node.Start();
            return node;
        }).ToArray();

        if (int.TryParse(Environment.GetEnvironmentVariable("STCACHE_FAILOVER_SETTLE_MS"), CultureInfo.InvariantCulture, out int settleMs))
        {
            await Api.WaitForLeaderAsync(nodes, s_wait);
            await Task.Delay(settleMs);
        }

        var direct = new List<double>();
        var forwarded = new List<double>();
        var gone = new List<double>();
        var resp = new List<double>();
        for (int round = 0; round < repetitions; round++)
        {
            var leader = await Api.WaitForLeaderAsync(nodes, s_wait);
            await Api.WaitUntilAsync("leader accepts writes", async () =>
                (await Api.SendAsync(HttpMethod.Get, $"http://{leader.Http}/set?key=warm&value={round}")).Status == HttpStatusCode.OK, s_wait, nodes);
            var survivors = nodes.Where(n => n != leader).ToArray();

            // A RESP client keeps a connection to each survivor, opened (and used once) before the kill.
            var respClients = new List<RespConnection>();
            for (int i = 0; i < survivors.Length; i++)
            {
                var client = await RespConnection.ConnectAsync(ports[Array.IndexOf(nodes, survivors[i])].Resp);
                Assert.Equal("+OK", await client.SetAsync($"resp-{survivors[i].Name}", "warm"));
                respClients.Add(client);
            }

            // The survivors' JIT and GC counters (the runtime's System.Runtime meter on /metrics) before the kill.
            var before = new List<RuntimeCounters>();
            foreach (var survivor in survivors)
            {
                before.Add(await RuntimeCounters.ReadAsync(survivor));
            }

            var killedAt = DateTime.Now;
            var stopwatch = Stopwatch.StartNew();
            await leader.KillAsync(entireProcessTree: false);

            // Until the kernel has torn the process down, its sockets stay open and nothing can notice the crash; on
            // a loaded machine that alone can take hundreds of milliseconds.
            double goneMs = stopwatch.Elapsed.TotalMilliseconds;

            // At once: one client writes to whichever survivor says it leads; one client per survivor writes to that
            // survivor whatever its role, so the one that ends up a follower measures the forwarded path.
            var toLeader = FirstWriteToLeaderAsync(survivors, stopwatch, round);
            var attempts = survivors.Select(_ => new List<string>()).ToArray();
            var toEach = survivors.Select((s, i) => FirstWriteThroughAsync(s, stopwatch, round, attempts[i])).ToArray();
            var overResp = respClients.Select((c, i) => FirstRespSetAsync(c, survivors[i], ports[Array.IndexOf(nodes, survivors[i])].Resp, stopwatch, round)).ToArray();
            var (leaderMs, sawLeaderMs) = await toLeader;
            double[] eachMs = await Task.WhenAll(toEach);
            double[] respMs = await Task.WhenAll(overResp);
            foreach (var client in respClients)
            {
                await client.DisposeAsync();
            }

            var newLeader = await Api.WaitForLeaderAsync(survivors, s_wait);
            int followerAt = Array.IndexOf(survivors, survivors.Single(s => s != newLeader));
            double forwardedMs = eachMs[followerAt];
            direct.Add(leaderMs);
            forwarded.Add(forwardedMs);
            resp.Add(respMs[followerAt]);
            gone.Add(goneMs);
            output.WriteLine($"round {round + 1}: killed {leader.Name} (gone after {goneMs:F0} ms); new leader {newLeader.Name} seen by the client after {sawLeaderMs:F0} ms, acknowledged after {leaderMs:F0} ms, " +
                $"follower {survivors[followerAt].Name} (forwarding) after {forwardedMs:F0} ms, RESP SET through it after {respMs[followerAt]:F0} ms");
            output.WriteLine($"    HTTP writes through {survivors[followerAt].Name}: {string.Join("; ", attempts[followerAt])}");
            for (int i = 0; i < survivors.Length; i++)
            {
                var after = await RuntimeCounters.ReadAsync(survivors[i]);
                output.WriteLine($"    {survivors[i].Name} during the failover: {after.JitMethods - before[i].JitMethods:F0} methods JIT-compiled in " +
                    $"{(after.JitSeconds - before[i].JitSeconds) * 1000:F0} ms, {after.GcCollections - before[i].GcCollections:F0} GCs pausing {(after.GcPauseSeconds - before[i].GcPauseSeconds) * 1000:F0} ms");
            }

            foreach (var survivor in survivors)
            {
                foreach (string line in FailoverLog(survivor, killedAt))
                {
                    output.WriteLine($"    {survivor.Name} {line}");
                }
            }
            leader.Start();
            await Api.WaitUntilAsync("restarted node caught up", async () =>
                (await Api.SendAsync(HttpMethod.Get, $"http://{leader.Http}/get?key=failover&consistency=stale")).Body == round.ToString(CultureInfo.InvariantCulture), s_wait, nodes);
        }

        output.WriteLine($"failover over {direct.Count} kills, write to the new leader:      {Summary(direct)}");
        output.WriteLine($"failover over {forwarded.Count} kills, write through a follower: {Summary(forwarded)}");
        output.WriteLine($"failover over {resp.Count} kills, RESP SET through a follower: {Summary(resp)}");
        output.WriteLine($"kill -9 until the process had exited:          {Summary(gone)}");

        // The nodes' whole output, for a closer look (with DOTNET_JitStdOutFile unset and DOTNET_JitDisasmSummary=1
        // it lists every method the JIT compiled, between the timestamped log lines).
        if (Environment.GetEnvironmentVariable("STCACHE_FAILOVER_LOGS") is { Length: > 0 } logs)
        {
            Directory.CreateDirectory(logs);
            foreach (var node in nodes)
            {
                await File.WriteAllTextAsync(Path.Combine(logs, node.Name + ".log"), node.Output);
            }
        }
    }

    /// <summary>The node's log lines about the failover, from just before the kill, as "+offset ms message".</summary>
    private static IEnumerable<string> FailoverLog(Node node, DateTime killedAt)
    {
        string[] wanted = ["lost", "election", "became", "Connected to", "Accepted peer", "Failover trace", "answered before"];
        foreach (string line in node.Output.Split('\n'))
        {
            // SimpleConsole lines begin with the local time "yyyy-MM-ddTHH:mm:ss.fff ".
            if (line.Length < 24 || !DateTime.TryParseExact(line.AsSpan(0, 23), "yyyy-MM-ddTHH:mm:ss.fff", CultureInfo.InvariantCulture, DateTimeStyles.AssumeLocal, out var at))
            {
                continue;
            }

            double offset = (at - killedAt).TotalMilliseconds;
            if (offset >= -50 && offset < 5_000 && wanted.Any(w => line.Contains(w, StringComparison.Ordinal)))
            {
                // The message without the exception's stack trace.
                string message = line[24..].Trim();
                int trace = message.IndexOf("    at ", StringComparison.Ordinal);
                yield return $"{offset,6:+0;-0} ms {(trace > 0 ? message[..trace] : message)}";
            }
        }
    }

    /// <summary>SET over RESP to a survivor, whatever its role, until it answers +OK; the elapsed ms. The connection
    /// was opened before the kill; a node closes its ordinary RESP connections when it learns of a new leader (as
    /// Redis Sentinel does after a failover), and the client then reconnects at once, as Redis clients do.</summary>
    private static async Task<double> FirstRespSetAsync(RespConnection first, Node survivor, int port, Stopwatch stopwatch, int round)
    {
        var client = first;
        try
        {
            while (stopwatch.Elapsed < s_wait)
            {
                string reply;
                try
                {
                    reply = await client.SetAsync($"resp-{survivor.Name}", round.ToString(CultureInfo.InvariantCulture));
                }
                catch (IOException)
                {
                    await client.DisposeAsync();
                    client = await RespConnection.ConnectAsync(port);
                    continue;
                }

                if (reply == "+OK")
                {
                    return stopwatch.Elapsed.TotalMilliseconds;
                }

                await Task.Delay(10);
            }
        }
        finally
        {
            if (client != first)
            {
                await client.DisposeAsync();
            }
        }

        Assert.Fail($"{survivor.Name} acknowledged no SET over RESP");
        return 0;
    }

    /// <summary>The runtime's JIT and GC totals from a node's Prometheus endpoint (the System.Runtime meter).</summary>
    private readonly record struct RuntimeCounters(double JitMethods, double JitSeconds, double GcCollections, double GcPauseSeconds)
    {
        public static async Task<RuntimeCounters> ReadAsync(Node node)
        {
            var (code, body, _) = await Api.SendAsync(HttpMethod.Get, $"http://{node.Http}/metrics");
            if (code != HttpStatusCode.OK)
            {
                return default;
            }

            double Sum(string prefix) => body.Split('\n')
                .Where(l => l.StartsWith(prefix, StringComparison.Ordinal))
                .Sum(l => double.TryParse(l[(l.LastIndexOf(' ') + 1)..], NumberStyles.Float, CultureInfo.InvariantCulture, out double v) ? v : 0);

            return new RuntimeCounters(Sum("dotnet_jit_compiled_methods"), Sum("dotnet_jit_compilation_time"), Sum("dotnet_gc_collections"), Sum("dotnet_gc_pause_time"));
        }
    }

    /// <summary>One RESP connection: SET key value, the reply's first line.</summary>
    private sealed class RespConnection : IAsyncDisposable
    {
        private readonly TcpClient _tcp;
        private readonly NetworkStream _stream;
        private readonly StreamReader _reader;

        private RespConnection(TcpClient tcp)
        {
            _tcp = tcp;
            _stream = tcp.GetStream();
            _reader = new StreamReader(_stream, Encoding.UTF8);
        }

        public static async Task<RespConnection> ConnectAsync(int port)
        {
            var tcp = new TcpClient { NoDelay = true };
            await tcp.ConnectAsync(IPAddress.Loopback, port);
            return new RespConnection(tcp);
        }

        public async Task<string> SetAsync(string key, string value)
        {
            string command = $"*3\r\n$3\r\nSET\r\n${Encoding.UTF8.GetByteCount(key)}\r\n{key}\r\n${Encoding.UTF8.GetByteCount(value)}\r\n{value}\r\n";
            await _stream.WriteAsync(Encoding.UTF8.GetBytes(command));
            return await _reader.ReadLineAsync() ?? throw new IOException("RESP connection closed");
        }

        public async ValueTask DisposeAsync()
        {
            _reader.Dispose();
            await _stream.DisposeAsync();
            _tcp.Dispose();
        }
    }

    private static string Summary(List<double> samples)
    {
        var sorted = samples.Order().ToList();
        double median = sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[(sorted.Count / 2) - 1] + sorted[sorted.Count / 2]) / 2;
        return $"median {median:F0} ms, max {sorted[^1]:F0} ms, min {sorted[0]:F0} ms";
    }

    /// <summary>Writes to whichever survivor reports itself leader until one acknowledges; the elapsed ms.</summary>
    private static async Task<(double Acknowledged, double SawLeader)> FirstWriteToLeaderAsync(Node[] survivors, Stopwatch stopwatch, int round)
    {
        double sawLeader = -1;
        while (stopwatch.Elapsed < s_wait)
        {
            foreach (var survivor in survivors)
            {
                var status = await Api.StatusAsync(survivor);
                if (status?.GetProperty("role").GetString() != "leader")
                {
                    continue;
                }

                if (sawLeader < 0)
                {
                    sawLeader = stopwatch.Elapsed.TotalMilliseconds;
                }

                var (code, _, _) = await Api.SendAsync(HttpMethod.Get, $"http://{survivor.Http}/set?key=failover&value={round}");
                if (code == HttpStatusCode.OK)
                {
                    return (stopwatch.Elapsed.TotalMilliseconds, sawLeader);
                }

                break;
            }

            // Nothing signals a new leader to a client: poll, as a client would.
            await Task.Delay(10);
        }

        Assert.Fail("no new leader acknowledged a write");
        return (0, 0);
    }

    /// <summary>Writes to one survivor, whatever its role, until it acknowledges; the elapsed ms. Each attempt is
    /// noted as "sent-answered ms status".</summary>
    private static async Task<double> FirstWriteThroughAsync(Node survivor, Stopwatch stopwatch, int round, List<string> attempts)
    {
        while (stopwatch.Elapsed < s_wait)
        {
            double sent = stopwatch.Elapsed.TotalMilliseconds;
            var (code, body, _) = await Api.SendAsync(HttpMethod.Get, $"http://{survivor.Http}/set?key=failover-{survivor.Name}&value={round}");
            double answered = stopwatch.Elapsed.TotalMilliseconds;
            attempts.Add(code == HttpStatusCode.OK
                ? $"{sent:F0}-{answered:F0} ms {(int)code}"
                : $"{sent:F0}-{answered:F0} ms {(int)code} {body.Trim()[..Math.Min(body.Trim().Length, 90)]}");
            if (code == HttpStatusCode.OK)
            {
                return answered;
            }

            await Task.Delay(10);
        }

        Assert.Fail($"{survivor.Name} acknowledged no write");
        return 0;
    }
}
