using System.Diagnostics;
using System.Globalization;
using System.Net;
using Xunit.Abstractions;

namespace Stcache.Integration.Tests;

/// <summary>
/// Failover time, from kill -9 of the leader to the first acknowledged write on a new leader, over N repetitions
/// with default settings. Runs only when STCACHE_FAILOVER_REPS is set (it takes a while):
/// STCACHE_FAILOVER_REPS=10 dotnet test tests/Stcache.Integration.Tests --filter FailoverMeasurement --logger "console;verbosity=detailed"
/// </summary>
public sealed class FailoverMeasurement(ITestOutputHelper output) : ProcessTest
{
    private static readonly TimeSpan s_wait = TimeSpan.FromSeconds(30);


    [Fact]
    public async Task MeasureFailover()
    {
        if (!int.TryParse(Environment.GetEnvironmentVariable("STCACHE_FAILOVER_REPS"), CultureInfo.InvariantCulture, out int repetitions))
        {
            return;
        }

        var ports = Enumerable.Range(0, 3).Select(_ => (Http: FreePorts.Next(), Raft: FreePorts.Next())).ToArray();
        string cluster = string.Join(',', ports.Select((p, i) => $"{i + 1}/127.0.0.1:{p.Raft}"));
        var nodes = ports.Select((p, i) =>
        {
            var node = new Node($"n{i + 1}", WorkDirectory.Path, p.Http, p.Raft, n =>
                [$"--http_addr={n.Http}", $"--raft_addr={n.Raft}", $"--raft_id={i + 1}", $"--raft_cluster={cluster}"]);
            Nodes.Add(node);
            node.Start();
            return node;
        }).ToArray();

        var samples = new List<double>();
        for (int round = 0; round < repetitions; round++)
        {
            var leader = await Api.WaitForLeaderAsync(nodes, s_wait);
            await Api.WaitUntilAsync("leader accepts writes", async () =>
                (await Api.SendAsync(HttpMethod.Get, $"http://{leader.Http}/set?key=warm&value={round}")).Status == HttpStatusCode.OK, s_wait, nodes);
            var survivors = nodes.Where(n => n != leader).ToArray();
            var stopwatch = Stopwatch.StartNew();
            await leader.KillAsync();
            bool acknowledged = false;
            while (!acknowledged && stopwatch.Elapsed < s_wait)
            {
                foreach (var survivor in survivors)
                {
                    var status = await Api.StatusAsync(survivor);
                    if (status?.GetProperty("role").GetString() != "leader")
                    {
                        continue;
                    }

                    var (code, _, _) = await Api.SendAsync(HttpMethod.Get, $"http://{survivor.Http}/set?key=failover&value={round}");
                    acknowledged = code == HttpStatusCode.OK;
                    break;
                }

                if (!acknowledged)
                {
                    await Task.Delay(10);
                }
            }

            Assert.True(acknowledged, "no new leader acknowledged a write");
            samples.Add(stopwatch.Elapsed.TotalMilliseconds);
            output.WriteLine($"round {round + 1}: {stopwatch.Elapsed.TotalMilliseconds:F0} ms");
            leader.Start();
            await Api.WaitUntilAsync("restarted node caught up", async () =>
                (await Api.SendAsync(HttpMethod.Get, $"http://{leader.Http}/get?key=failover&consistency=stale")).Body == round.ToString(CultureInfo.InvariantCulture), s_wait, nodes);
        }

        samples.Sort();
        double median = samples.Count % 2 == 1 ? samples[samples.Count / 2] : (samples[(samples.Count / 2) - 1] + samples[samples.Count / 2]) / 2;
        output.WriteLine($"failover over {samples.Count} runs: median {median:F0} ms, max {samples[^1]:F0} ms");
    }
}
