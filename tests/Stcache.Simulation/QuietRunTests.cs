using System.Collections.Concurrent;
using System.Globalization;
using Stcache.Simulation.Sim;
using Xunit.Abstractions;

namespace Stcache.Simulation;

/// <summary>
/// Runs with no fault at all, where nothing may ever depose the leader: no crash, partition, pause, clock stall or
/// step, disk fault, transfer or membership change; production's defaults (pre-vote, check-quorum, a 10-tick
/// election timeout); steady client load from two to four clients; message delays of 1-35 ms with some long delays
/// (reordering), a few drops and duplicates; clock drift within the lease margin. Once the first leader is elected
/// no node may reach a later term and no other node may lead (<see cref="SimulationOptions.ExpectStableLeader"/>),
/// so the fast failover path (connection lost) and anything else cannot cause a spurious election. Environment:
/// QUIET_SEEDS (default 300) and QUIET_START (default 0); QUIET_PREVOTE=0 or QUIET_CHECKQUORUM=0 turn those off
/// (for the README's ablations); QUIET_SEED replays one seed with its trace (written to SIM_TRACE_FILE if set):
/// QUIET_SEED=12 dotnet test tests/Stcache.Simulation -c Release --filter FullyQualifiedName~QuietRunTests.ReplayQuietSeed
/// </summary>
public sealed class QuietRunTests(ITestOutputHelper output)
{
    /// <summary>The options of quiet seed <paramref name="seed"/>: the random run's draw, with every fault off.</summary>
    internal static SimulationOptions Options(int seed)
    {
        var drawn = SimulationOptions.FromSeed(seed);
        var random = new SplitMix(((ulong)seed * 0x9E3779B97F4A7C15UL) + 1);
        return drawn with
        {
            PreVote = SimulationTests.EnvironmentInt("QUIET_PREVOTE") != 0,
            CheckQuorum = SimulationTests.EnvironmentInt("QUIET_CHECKQUORUM") != 0,
            FaultIntervalMs = 0,
            CrashWeight = 0,
            PartitionWeight = 0,
            MembershipWeight = 0,
            TransferWeight = 0,
            PauseWeight = 0,
            DiskFaultWeight = 0,
            ClockFaultWeight = 0,
            WipeWeight = 0,
            BitFlipPerMillion = 0,
            LeaderChurnPerMillion = 0, // knocks leaders out: a fault
            Figure8 = false, // partitions around leaders: a fault
            FsyncLatencyMsMax = 0, // a sync that outlasts the election timeout stalls the leader like a pause
            ClientCount = random.Between(2, 4),
            ClockDriftPerMillion = random.Between(0, 50_000),
            Network = drawn.Network with
            {
                DropPerMillion = Math.Min(drawn.Network.DropPerMillion, 20_000),
                UnreachableReportPerMillion = 0,
            },
            ExpectStableLeader = true,
        };
    }

    [Fact]
    public void QuietSeeds()
    {
        int count = SimulationTests.EnvironmentInt("QUIET_SEEDS") ?? 300;
        int start = SimulationTests.EnvironmentInt("QUIET_START") ?? 0;
        int workers = SimulationTests.EnvironmentInt("SIM_PARALLEL") ?? Environment.ProcessorCount;
        var failures = new ConcurrentBag<SimulationResult>();
        var stats = new SimulationStats();
        Parallel.For(start, start + count, new ParallelOptions { MaxDegreeOfParallelism = workers }, seed =>
        {
            var result = new Simulator(Options(seed)).Run();
            lock (stats)
            {
                stats.Add(result.Stats);
            }

            if (!result.Passed)
            {
                failures.Add(result);
            }
        });

        var sorted = failures.OrderBy(f => f.Seed).ToList();
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"{count} quiet seeds from {start}: {sorted.Count} failed"));
        output.WriteLine(stats.ToString());
        foreach (var failure in sorted.Take(20))
        {
            output.WriteLine(failure.ToString().Replace("SimulationTests.ReplaySeed", "QuietRunTests.ReplayQuietSeed", StringComparison.Ordinal)
                .Replace("SIM_SEED=", "QUIET_SEED=", StringComparison.Ordinal));
        }

        // A quiet run elects exactly one leader: anything else would have failed the run.
        Assert.True(sorted.Count == 0, $"{sorted.Count} of {count} quiet seeds failed; first: {(sorted.Count > 0 ? sorted[0].ToString() : string.Empty)}");
        Assert.Equal(count, stats.LeaderTerms);
        Assert.Equal(0, stats.Crashes + stats.Partitions + stats.Pauses + stats.Transfers + stats.ConnectionLostReports);
        Assert.True(stats.WritesAcknowledged > count * 10, $"only {stats.WritesAcknowledged} writes acknowledged: the load was not steady");
    }

    [EnvironmentFact("QUIET_SEED")]
    public void ReplayQuietSeed()
    {
        int seed = SimulationTests.EnvironmentInt("QUIET_SEED") ?? throw new InvalidOperationException("QUIET_SEED must be an integer");
        string? path = Environment.GetEnvironmentVariable("SIM_TRACE_FILE");
        using var file = path is null ? null : new StreamWriter(path) { AutoFlush = true };
        var lines = new List<string>();
        var result = new Simulator(Options(seed), line =>
        {
            lines.Add(line);
            file?.WriteLine(line);
        }).Run();
        foreach (var line in lines.TakeLast(path is null ? 3000 : 50))
        {
            output.WriteLine(line);
        }

        output.WriteLine(result.ToString());
        Assert.True(result.Passed, result.ToString());
    }
}
