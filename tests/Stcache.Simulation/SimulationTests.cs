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
/// <item>SIM_SEED: replay exactly one seed with a full event trace (ReplaySeed).</item>
/// <item>SIM_PARALLEL: worker count (default: processor count).</item>
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
        int workers = EnvironmentInt("SIM_PARALLEL") ?? Environment.ProcessorCount;
        var failures = new ConcurrentBag<SimulationResult>();
        long events = 0;
        long unknownLinearizability = 0;
        var clock = Stopwatch.StartNew();
        Parallel.For(start, start + count, new ParallelOptions { MaxDegreeOfParallelism = workers }, seed =>
        {
            var result = Simulator.Run(seed);
            Interlocked.Add(ref events, result.Events);
            if (result.Linearizability == Testing.LinearizabilityVerdict.Unknown)
            {
                Interlocked.Increment(ref unknownLinearizability);
            }

            if (!result.Passed)
            {
                failures.Add(result);
            }
        });

        _output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"{count} seeds from {start}: {failures.Count} failed, {events} events, {unknownLinearizability} undecided histories, {clock.Elapsed.TotalSeconds:F1}s"));
        var sorted = failures.OrderBy(f => f.Seed).ToList();
        foreach (var failure in sorted.Take(20))
        {
            _output.WriteLine(failure.ToString());
        }

        Assert.True(sorted.Count == 0,
            $"{sorted.Count} of {count} seeds failed; first: {(sorted.Count > 0 ? sorted[0].ToString() : string.Empty)}");
    }

    [Fact]
    public void ReplaySeed()
    {
        if (EnvironmentInt("SIM_SEED") is not { } seed)
        {
            _output.WriteLine("set SIM_SEED to replay one seed");
            return;
        }

        var lines = new List<string>();
        var result = Simulator.Run(seed, lines.Add);
        string? path = Environment.GetEnvironmentVariable("SIM_TRACE_FILE");
        if (path is not null)
        {
            File.WriteAllLines(path, lines);
        }

        foreach (var line in lines.TakeLast(path is null ? 3000 : 50))
        {
            _output.WriteLine(line);
        }

        _output.WriteLine(result.ToString());
        Assert.True(result.Passed, result.ToString());
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

    private static int? EnvironmentInt(string name) =>
        int.TryParse(Environment.GetEnvironmentVariable(name), NumberStyles.Integer, CultureInfo.InvariantCulture, out int value) ? value : null;
}
