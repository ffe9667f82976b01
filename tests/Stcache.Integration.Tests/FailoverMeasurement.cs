using System.Diagnostics;
using System.Globalization;
using System.Net;
using Xunit.Abstractions;

namespace Stcache.Integration.Tests;

/// <summary>
/// Failover time, from kill -9 of the leader to the first acknowledged write, over N repetitions with default
/// settings: written to the new leader, and written through the surviving
/// follower (which forwards). Runs only when STCACHE_FAILOVER_REPS is set (it takes a while):
/// STCACHE_FAILOVER_REPS=10 dotnet test tests/Stcache.Integration.Tests --filter FailoverMeasurement --logger "console;verbosity=detailed"
/// STCACHE_FAILOVER_FLAGS adds server flags to every node (--leader-lost-ticks=0 measures without the fast path).
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
        var ports = Enumerable.Range(0, 3).Select(_ => (Http: FreePorts.Next(), Raft: FreePorts.Next())).ToArray();
        string cluster = string.Join(',', ports.Select((p, i) => $"{i + 1}/127.0.0.1:{p.Raft}"));
        var nodes = ports.Select((p, i) =>
        {
            var node = new Node($"n{i + 1}", WorkDirectory.Path, p.Http, p.Raft, n =>
                [$"--http_addr={n.Http}", $"--raft_addr={n.Raft}", $"--raft_id={i + 1}", $"--raft_cluster={cluster}", .. extraFlags]);
            Nodes.Add(node);
            node.Start();
            return node;
        }).ToArray();

        var direct = new List<double>();
        var forwarded = new List<double>();
        var gone = new List<double>();
        for (int round = 0; round < repetitions; round++)
        {
            var leader = await Api.WaitForLeaderAsync(nodes, s_wait);
            await Api.WaitUntilAsync("leader accepts writes", async () =>
                (await Api.SendAsync(HttpMethod.Get, $"http://{leader.Http}/set?key=warm&value={round}")).Status == HttpStatusCode.OK, s_wait, nodes);
            var survivors = nodes.Where(n => n != leader).ToArray();
            var stopwatch = Stopwatch.StartNew();
            await leader.KillAsync(entireProcessTree: false);

            // Until the kernel has torn the process down, its sockets stay open and nothing can notice the crash; on
            // a loaded machine that alone can take hundreds of milliseconds.
            double goneMs = stopwatch.Elapsed.TotalMilliseconds;

            // At once: one client writes to whichever survivor says it leads; one client per survivor writes to that
            // survivor whatever its role, so the one that ends up a follower measures the forwarded path.
            var toLeader = FirstWriteToLeaderAsync(survivors, stopwatch, round);
            var toEach = survivors.Select(s => FirstWriteThroughAsync(s, stopwatch, round)).ToArray();
            double leaderMs = await toLeader;
            double[] eachMs = await Task.WhenAll(toEach);
            var newLeader = await Api.WaitForLeaderAsync(survivors, s_wait);
            double forwardedMs = eachMs[Array.IndexOf(survivors, survivors.Single(s => s != newLeader))];
            direct.Add(leaderMs);
            forwarded.Add(forwardedMs);
            gone.Add(goneMs);
            output.WriteLine($"round {round + 1}: killed {leader.Name} (gone after {goneMs:F0} ms); new leader {newLeader.Name} acknowledged after {leaderMs:F0} ms, follower {survivors.Single(s => s != newLeader).Name} (forwarding) after {forwardedMs:F0} ms");
            leader.Start();
            await Api.WaitUntilAsync("restarted node caught up", async () =>
                (await Api.SendAsync(HttpMethod.Get, $"http://{leader.Http}/get?key=failover&consistency=stale")).Body == round.ToString(CultureInfo.InvariantCulture), s_wait, nodes);
        }

        output.WriteLine($"failover over {direct.Count} kills, write to the new leader:      {Summary(direct)}");
        output.WriteLine($"failover over {forwarded.Count} kills, write through a follower: {Summary(forwarded)}");
        output.WriteLine($"kill -9 until the process had exited:          {Summary(gone)}");
    }

    private static string Summary(List<double> samples)
    {
        var sorted = samples.Order().ToList();
        double median = sorted.Count % 2 == 1 ? sorted[sorted.Count / 2] : (sorted[(sorted.Count / 2) - 1] + sorted[sorted.Count / 2]) / 2;
        return $"median {median:F0} ms, max {sorted[^1]:F0} ms, min {sorted[0]:F0} ms";
    }

    /// <summary>Writes to whichever survivor reports itself leader until one acknowledges; the elapsed ms.</summary>
    private static async Task<double> FirstWriteToLeaderAsync(Node[] survivors, Stopwatch stopwatch, int round)
    {
        while (stopwatch.Elapsed < s_wait)
        {
            foreach (var survivor in survivors)
            {
                var status = await Api.StatusAsync(survivor);
                if (status?.GetProperty("role").GetString() != "leader")
                {
                    continue;
                }

                var (code, _, _) = await Api.SendAsync(HttpMethod.Get, $"http://{survivor.Http}/set?key=failover&value={round}");
                if (code == HttpStatusCode.OK)
                {
                    return stopwatch.Elapsed.TotalMilliseconds;
                }

                break;
            }

            // Nothing signals a new leader to a client: poll, as a client would.
            await Task.Delay(10);
        }

        Assert.Fail("no new leader acknowledged a write");
        return 0;
    }

    /// <summary>Writes to one survivor, whatever its role, until it acknowledges; the elapsed ms.</summary>
    private static async Task<double> FirstWriteThroughAsync(Node survivor, Stopwatch stopwatch, int round)
    {
        while (stopwatch.Elapsed < s_wait)
        {
            var (code, _, _) = await Api.SendAsync(HttpMethod.Get, $"http://{survivor.Http}/set?key=failover-{survivor.Name}&value={round}");
            if (code == HttpStatusCode.OK)
            {
                return stopwatch.Elapsed.TotalMilliseconds;
            }

            await Task.Delay(10);
        }

        Assert.Fail($"{survivor.Name} acknowledged no write");
        return 0;
    }
}
