using System.Diagnostics;
using System.Globalization;
using System.Text;
using Stcache.Faults.Tests.Harness;

namespace Stcache.Faults.Tests.Workload;

/// <summary>What the fault runner drives: concurrent clients that a nemesis moves to fresh keys at each fault.</summary>
public interface IFaultWorkload
{
    int OperationCount { get; }

    Task RunAsync(CancellationToken stop);

    void NextEpoch();
}

/// <summary>
/// The skeleton every black-box run shares: start a real cluster, run the workload while the nemesis injects faults
/// on its schedule, heal, wait for the members to converge, then the workload's own checks; the report lists the
/// faults and ends with one verdict line. A run that cannot heal or converge is a failure with every node's log tail.
/// </summary>
public static class FaultRunner
{
    /// <summary>The checks after healing: whether they passed, and how many operations they judged.</summary>
    public delegate Task<(bool Passed, int Operations)> Checks<in TWorkload>(TWorkload workload, IReadOnlyList<NodeProcess> members, Action<string> note);

    public static async Task<FaultRunResult> RunAsync<TWorkload>(
        FaultRunOptions options,
        string title,
        Action<string> log,
        Func<Func<IReadOnlyList<NodeProcess>>, TWorkload> createWorkload,
        Checks<TWorkload> check)
        where TWorkload : IFaultWorkload
    {
        var report = new StringBuilder();
        void Note(string line)
        {
            lock (report)
            {
                report.AppendLine(line);
                log(line);
            }
        }

        Note(string.Create(CultureInfo.InvariantCulture,
            $"{title}: {options.Cluster.Voters} voters (+{options.Cluster.Spares} spare), {options.Workload.Clients} clients, {options.Workload.Keys} keys, {options.Duration.TotalSeconds}s, seed {options.Seed}, election timeout {options.Cluster.ElectionTimeout.TotalMilliseconds}ms"));
        var random = new Random(options.Seed);
        var started = Stopwatch.StartNew();
        await using var cluster = await StcacheCluster.StartAsync(options.Cluster, log, TimeSpan.FromSeconds(30));
        Note(string.Create(CultureInfo.InvariantCulture, $"cluster up in {started.Elapsed.TotalSeconds:F1}s: {string.Join(", ", cluster.Founders)}"));
        IFaultWorkload? current = null;
        var nemesis = new Nemesis(cluster, random, log, () => current!.NextEpoch());
        var workload = createWorkload(() => nemesis.Members);
        current = workload;
        using var disposeWorkload = workload as IDisposable;
        try
        {
            using var stop = new CancellationTokenSource();
            var load = workload.RunAsync(stop.Token);
            try
            {
                await nemesis.RunAsync(options.Faults, options.Duration, options.Hold, options.Quiet);
            }
            finally
            {
                await stop.CancelAsync();
                await load;
            }

            await nemesis.HealAsync();
            var members = nemesis.Members;
            var statuses = await cluster.WaitForConvergenceAsync(members, TimeSpan.FromSeconds(30));
            Note(string.Create(CultureInfo.InvariantCulture, $"healed and converged: commit {statuses[0].Commit} on {string.Join(", ", members.Select(m => m.MemberName))}"));

            var (passed, operations) = await check(workload, members, Note);
            Note(string.Create(CultureInfo.InvariantCulture, $"faults injected: {nemesis.Injected.Count}"));
            foreach (string fault in nemesis.Injected)
            {
                Note("  " + fault);
            }

            Note(string.Create(CultureInfo.InvariantCulture, $"VERDICT: {(passed ? "PASS" : "FAIL")} ({operations} ops, {nemesis.Injected.Count} faults, {started.Elapsed.TotalSeconds:F0}s, seed {options.Seed})"));
            if (!passed)
            {
                Note(NodeProcess.Describe(cluster.Nodes.Where(n => n.Starts > 0), 30));
            }

            return new FaultRunResult(passed, report.ToString(), operations, nemesis.Injected.Count);
        }
        catch (Exception e) when (e is TimeoutException or InvalidOperationException)
        {
            Note("faults injected so far: " + string.Join("; ", nemesis.Injected));
            Note("run aborted: " + e.Message);
            Note(NodeProcess.Describe(cluster.Nodes.Where(n => n.Starts > 0), 80));
            return new FaultRunResult(false, report.ToString(), workload.OperationCount, nemesis.Injected.Count);
        }
    }
}
