using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using Stcache.Simulation.Sim;
using Xunit.Abstractions;

namespace Stcache.Simulation;

/// <summary>
/// Randomized whole-cluster runs. Environment:
/// <list type="bullet">
/// <item>SIM_SEEDS (default 1000) and SIM_START (default 0): the seeds [SIM_START, SIM_START + SIM_SEEDS).</item>
/// <item>SIM_SEED_LIST: instead, the seeds listed (comma- or line-separated), or in the file it names (a soak's
/// failures, rerun after a fix).</item>
/// <item>SIM_SEED: replay exactly one seed with a full event trace (ReplaySeed).</item>
/// <item>SIM_PARALLEL: worker count (default: processor count).</item>
/// <item>SIM_WAL_PIPELINE=0 or 1: every seed persists synchronously on the loop, or through the pipelined writer
/// (default: drawn per seed).</item>
/// <item>SIM_RESETS=0: do not model connection resets (crashes and refused dials reported as connection lost), to
/// compare with the runs before that model.</item>
/// </list>
/// </summary>
public sealed class SimulationTests
{
    private readonly ITestOutputHelper _output;

    public SimulationTests(ITestOutputHelper output)
    {
        _output = output;
    }

    [Fact]
    public void RandomSeeds()
    {
        int count = EnvironmentInt("SIM_SEEDS") ?? 1000;
        int start = EnvironmentInt("SIM_START") ?? 0;
        int[] seeds = SeedList() ?? [.. Enumerable.Range(start, count)];
        count = seeds.Length;
        int workers = EnvironmentInt("SIM_PARALLEL") ?? Environment.ProcessorCount;
        var failures = new ConcurrentBag<SimulationResult>();
        long events = 0;
        long unknownLinearizability = 0;
        var stats = new SimulationStats();
        var clock = Stopwatch.StartNew();
        Parallel.ForEach(seeds, new ParallelOptions { MaxDegreeOfParallelism = workers }, seed =>
        {
            var result = new Simulator(Options(seed)).Run();
            Interlocked.Add(ref events, result.Events);
            if (result.Linearizability == Testing.LinearizabilityVerdict.Unknown)
            {
                Interlocked.Increment(ref unknownLinearizability);
            }

            lock (stats)
            {
                stats.Add(result.Stats);
            }

            if (!result.Passed)
            {
                failures.Add(result);
            }
        });

        _output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{count} seeds from {seeds.FirstOrDefault()}: {failures.Count} failed, {events} events, {unknownLinearizability} undecided histories, {clock.Elapsed.TotalSeconds:F1}s"));
        _output.WriteLine(stats.ToString());
        var sorted = failures.OrderBy(f => f.Seed).ToList();
        foreach (var failure in sorted.Take(200))
        {
            _output.WriteLine(failure.ToString());
        }

        Assert.True(sorted.Count == 0,
            $"{sorted.Count} of {count} seeds failed; first: {(sorted.Count > 0 ? sorted[0].ToString() : string.Empty)}");

        // The crash path is exercised: crashed leaders are replaced through the connection-lost path (faster than
        // any election timer), not only by the timeout.
        if (count >= 200)
        {
            Assert.True(stats.FastFailovers > 0 && stats.ConnectionLostReports > 0,
                $"no crashed leader was replaced by the fast path ({stats.LeaderCrashes} leader crashes, {stats.ConnectionLostReports} connection-lost reports)");
        }
    }

    [EnvironmentFact("SIM_SEED")]
    public void ReplaySeed()
    {
        int seed = EnvironmentInt("SIM_SEED") ?? throw new InvalidOperationException("SIM_SEED must be an integer");

        var lines = new List<string>();
        string? path = Environment.GetEnvironmentVariable("SIM_TRACE_FILE");

        // The trace file is written as the run goes, so a run that hangs still shows where.
        using var file = path is null ? null : new StreamWriter(path) { AutoFlush = true };
        var result = new Simulator(Options(seed), line =>
        {
            lines.Add(line);
            file?.WriteLine(line);
        }).Run();

        foreach (var line in lines.TakeLast(path is null ? 3000 : 50))
        {
            _output.WriteLine(line);
        }

        _output.WriteLine(result.ToString());
        Assert.True(result.Passed, result.ToString());
    }

    /// <summary>The checkers must catch a disk that loses what it acknowledged; otherwise green runs mean nothing.
    /// (Bugs in the node itself are proven by the mutation table in the README.)</summary>
    [Theory]
    [InlineData(InjectedBug.LyingFsync)]
    public void InjectedDiskBugsAreCaught(InjectedBug bug)
    {
        for (int seed = 0; seed < 2000; seed++)
        {
            var drawn = SimulationOptions.FromSeed(seed);
            var options = drawn with
            {
                Bug = bug,
                FaultIntervalMs = drawn.FaultIntervalMs == 0 ? 100 : Math.Min(drawn.FaultIntervalMs, 150),
                CrashWeight = drawn.CrashWeight + 3,
            };
            var result = new Simulator(options).Run();
            if (!result.Passed)
            {
                _output.WriteLine($"{bug} caught by seed {seed}: {result.Failure}");
                return;
            }
        }

        Assert.Fail($"{bug} was not caught by 2000 seeds");
    }

    [Fact]
    public void SameSeedSameRun()
    {
        var first = new List<string>();
        var second = new List<string>();
        var a = Simulator.Run(7, first.Add);
        var b = Simulator.Run(7, second.Add);
        Assert.Equal(a.Events, b.Events);
        Assert.Equal(first, second);
    }

    private static int[]? SeedList()
    {
        string? list = Environment.GetEnvironmentVariable("SIM_SEED_LIST");
        if (string.IsNullOrWhiteSpace(list))
        {
            return null;
        }

        if (File.Exists(list))
        {
            list = File.ReadAllText(list);
        }

        return [.. list.Split([',', '\n', '\r', ' '], StringSplitOptions.RemoveEmptyEntries)
            .Select(text => int.Parse(text, NumberStyles.Integer, CultureInfo.InvariantCulture))];
    }

    private static SimulationOptions Options(int seed)
    {
        var drawn = SimulationOptions.FromSeed(seed);
        return drawn with
        {
            ConnectionResets = EnvironmentInt("SIM_RESETS") != 0,
            WalPipeline = EnvironmentInt("SIM_WAL_PIPELINE") is { } pipeline ? pipeline != 0 : drawn.WalPipeline,
        };
    }

    internal static int? EnvironmentInt(string name) =>
        int.TryParse(Environment.GetEnvironmentVariable(name), NumberStyles.Integer, CultureInfo.InvariantCulture, out int value) ? value : null;
}

/// <summary>A fact that runs only when an environment variable is set, and is reported skipped otherwise.</summary>
public sealed class EnvironmentFactAttribute : FactAttribute
{
    public EnvironmentFactAttribute(string variable)
    {
        if (string.IsNullOrEmpty(Environment.GetEnvironmentVariable(variable)))
        {
            Skip = $"set {variable} to run this test";
        }
    }
}
