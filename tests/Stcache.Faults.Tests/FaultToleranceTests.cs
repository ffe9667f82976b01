using Stcache.Faults.Tests.Harness;
using Stcache.Faults.Tests.Workload;
using Xunit.Abstractions;

namespace Stcache.Faults.Tests;

/// <summary>
/// Black-box fault tests on real stcached clusters. The short runs are part of the default test run; the soak runs
/// when FAULTS_SOAK_MINUTES is set (see docs/FAULTS.md). FAULTS_SEED replays a schedule.
/// </summary>
[Collection(ProcessCollection.Name)]
public sealed class FaultToleranceTests(ITestOutputHelper output)
{
    [Fact(Timeout = 180_000)]
    public async Task Three_nodes_stay_linearizable_under_crashes_pauses_partitions_and_membership_changes()
    {
        var options = new FaultRunOptions
        {
            Cluster = new ClusterOptions { Voters = 3, Spares = 1 },
            Duration = TimeSpan.FromSeconds(Seconds("FAULTS_CI_SECONDS", 60)),
            Seed = Seed(),
        };
        await RunAndAssertAsync(options);
    }

    [SoakFact(Timeout = int.MaxValue)]
    public async Task Soak_three_nodes()
    {
        double minutes = SoakFactAttribute.SoakMinutes!.Value;
        await RunAndAssertAsync(new FaultRunOptions
        {
            Cluster = new ClusterOptions { Voters = 3, Spares = 1 },
            Duration = TimeSpan.FromMinutes(minutes / 2),
            Seed = Seed(),
        });
    }

    [SoakFact(Timeout = int.MaxValue)]
    public async Task Soak_five_nodes()
    {
        double minutes = SoakFactAttribute.SoakMinutes!.Value;
        await RunAndAssertAsync(new FaultRunOptions
        {
            Cluster = new ClusterOptions { Voters = 5, Spares = 1 },
            Workload = new WorkloadOptions { Clients = 12 },
            Duration = TimeSpan.FromMinutes(minutes / 2),
            Seed = Seed(),
        });
    }

    private async Task RunAndAssertAsync(FaultRunOptions options)
    {
        var result = await FaultRun.RunAsync(options, Log);
        Console.WriteLine(result.Report);
        Assert.True(result.Passed, result.Report);
        Assert.True(result.Operations > 100, "too few operations to mean anything");
        Assert.True(result.Faults >= 3, "too few faults injected");
    }

    private void Log(string line)
    {
        try
        {
            output.WriteLine(line);
        }
        catch (InvalidOperationException)
        {
            // The test already ended (a late log line from a background task).
        }
    }

    private static int Seed() =>
        int.TryParse(Environment.GetEnvironmentVariable("FAULTS_SEED"), out int seed) ? seed : Environment.TickCount & 0x7fffffff;

    private static double Seconds(string variable, double fallback) =>
        double.TryParse(Environment.GetEnvironmentVariable(variable), System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double value) ? value : fallback;
}
