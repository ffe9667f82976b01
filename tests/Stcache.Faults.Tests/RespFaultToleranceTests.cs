using Stcache.Faults.Tests.Harness;
using Stcache.Faults.Tests.Workload;
using Xunit.Abstractions;

namespace Stcache.Faults.Tests;

/// <summary>
/// The black-box fault run with Redis-protocol clients: the same cluster, faults and checker idea as
/// <see cref="FaultToleranceTests"/>, with GET, SET, SET … GET, DEL, INCR and MULTI/EXEC. FAULTS_SEED replays a
/// schedule; FAULTS_RESP_CI_SECONDS sets the fault phase's length.
/// </summary>
[Collection(ProcessCollection.Name)]
public sealed class RespFaultToleranceTests(ITestOutputHelper output)
{
    [Fact(Timeout = 150_000)]
    public async Task Redis_clients_see_linearizable_histories_and_lose_no_acknowledged_incr_under_faults()
    {
        int seed = int.TryParse(Environment.GetEnvironmentVariable("FAULTS_SEED"), out int s) ? s : Environment.TickCount & 0x7fffffff;
        double seconds = double.TryParse(Environment.GetEnvironmentVariable("FAULTS_RESP_CI_SECONDS"), System.Globalization.NumberStyles.Float, System.Globalization.CultureInfo.InvariantCulture, out double value) ? value : 40;
        var options = new FaultRunOptions
        {
            Cluster = new ClusterOptions { Voters = 3, Spares = 1 },
            Workload = new WorkloadOptions { Clients = 8, Keys = 3 },
            Duration = TimeSpan.FromSeconds(seconds),
            Seed = seed,
        };
        Console.WriteLine($"RESP fault run seed {seed} (replay with FAULTS_SEED={seed})");
        var result = await RespFaultRun.RunAsync(options, Log);
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
}
