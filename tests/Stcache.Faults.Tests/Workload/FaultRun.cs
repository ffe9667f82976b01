using System.Diagnostics;
using System.Globalization;
using System.Text;
using Stcache.Faults.Tests.Harness;
using Stcache.Testing;

namespace Stcache.Faults.Tests.Workload;

public sealed record FaultRunOptions
{
    public ClusterOptions Cluster { get; init; } = new();

    public WorkloadOptions Workload { get; init; } = new();

    public IReadOnlyList<FaultKind> Faults { get; init; } = Enum.GetValues<FaultKind>();

    public TimeSpan Duration { get; init; } = TimeSpan.FromSeconds(60);

    public TimeSpan Hold { get; init; } = TimeSpan.FromSeconds(2);

    public TimeSpan Quiet { get; init; } = TimeSpan.FromSeconds(1);

    public int Seed { get; init; } = Environment.TickCount & 0x7fffffff;
}

public sealed record FaultRunResult(bool Passed, string Report, int Operations, int Faults);

/// <summary>
/// The black-box run: a real cluster, concurrent clients, faults on a schedule; then heal, final reads, and the
/// three verdicts: histories linearizable per key, acknowledged writes present, replicas identical.
/// </summary>
public static class FaultRun
{
    public static async Task<FaultRunResult> RunAsync(FaultRunOptions options, Action<string> log)
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
            $"fault run: {options.Cluster.Voters} voters (+{options.Cluster.Spares} spare), {options.Workload.Clients} clients, {options.Workload.Keys} keys, {options.Duration.TotalSeconds}s, seed {options.Seed}, election timeout {options.Cluster.ElectionTimeout.TotalMilliseconds}ms"));
        var random = new Random(options.Seed);
        var started = Stopwatch.StartNew();
        await using var cluster = await StcacheCluster.StartAsync(options.Cluster, log, TimeSpan.FromSeconds(30));
        Note(string.Create(CultureInfo.InvariantCulture, $"cluster up in {started.Elapsed.TotalSeconds:F1}s: {string.Join(", ", cluster.Founders)}"));
        KvWorkload? workload = null;
        var nemesis = new Nemesis(cluster, random, log, () => workload!.NextEpoch());
        workload = new KvWorkload(options.Workload with { Seed = options.Seed }, () => nemesis.Members);
        using var disposeWorkload = workload;
        bool passed = true;
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

            passed &= await CheckFinalStateAsync(workload, members, Note);
            var summary = HistoryCheck.Check(workload.Operations);
            Note(summary.Report.TrimEnd());
            passed &= summary.Result.IsLinearizable;
            Note(string.Create(CultureInfo.InvariantCulture, $"faults injected: {nemesis.Injected.Count}"));
            foreach (string fault in nemesis.Injected)
            {
                Note("  " + fault);
            }

            Note(string.Create(CultureInfo.InvariantCulture, $"VERDICT: {(passed ? "PASS" : "FAIL")} ({summary.Total} ops, {nemesis.Injected.Count} faults, {started.Elapsed.TotalSeconds:F0}s, seed {options.Seed})"));
            if (!passed)
            {
                Note(NodeProcess.Describe(cluster.Nodes.Where(n => n.Starts > 0), 30));
            }

            return new FaultRunResult(passed, report.ToString(), summary.Total, nemesis.Injected.Count);
        }
        catch (Exception e) when (e is TimeoutException or InvalidOperationException)
        {
            Note("faults injected so far: " + string.Join("; ", nemesis.Injected));
            Note("run aborted: " + e.Message);
            Note(NodeProcess.Describe(cluster.Nodes.Where(n => n.Starts > 0), 80));
            return new FaultRunResult(false, report.ToString(), workload.Operations.Count, nemesis.Injected.Count);
        }
    }

    /// <summary>Final reads (recorded into the history), acknowledged write-once keys, identical replicas.</summary>
    private static async Task<bool> CheckFinalStateAsync(KvWorkload workload, IReadOnlyList<NodeProcess> members, Action<string> note)
    {
        bool passed = true;
        var used = workload.KeysUsed.ToList();

        // Linearizable final reads of the keys of the last epochs, through every member, go into the history.
        var recent = used.Where(k => EpochOf(k) >= workload.Epoch - 1).ToList();
        await ForEachAsync(recent.SelectMany(k => members.Select(m => (Key: k, Member: m))), item => workload.ReadAsync(0, item.Member, item.Key));

        int lost = 0;
        var durable = workload.DurableAcknowledged.ToList();
        await ForEachAsync(durable.Select((pair, i) => (pair.Key, pair.Value, Member: members[i % members.Count])), async item =>
        {
            var read = await workload.ReadAsync(0, item.Member, item.Key);
            if (read.Outcome != OpOutcome.Ok || read.Result != item.Value)
            {
                Interlocked.Increment(ref lost);
                note($"LOST acknowledged write: {item.Key}={item.Value}, read {KvWorkload.Describe(read)}");
            }
        });
        note(string.Create(CultureInfo.InvariantCulture, $"acknowledged write-once keys: {durable.Count}, lost {lost}"));
        passed &= lost == 0;

        // Every replica's own state (stale reads answer from local state) must be the same, for every key used.
        int diverged = 0;
        var keys = used.Concat(durable.Select(d => d.Key)).ToList();
        await ForEachAsync(keys, async key =>
        {
            var values = new List<string>();
            foreach (var member in members)
            {
                var read = await workload.ReadAsync(0, member, key, "stale");
                values.Add(read.Outcome == OpOutcome.Ok ? read.Result ?? "<absent>" : "<error " + read.Detail + ">");
            }

            if (values.Distinct().Count() != 1)
            {
                Interlocked.Increment(ref diverged);
                note($"DIVERGED {key}: " + string.Join(" | ", members.Zip(values, (m, v) => m.MemberName + "=" + v)));
            }
        });
        note(string.Create(CultureInfo.InvariantCulture, $"replica convergence: {keys.Count} keys on {members.Count} members, {diverged} differ"));
        passed &= diverged == 0;
        return passed;
    }

    private static int EpochOf(string key)
    {
        int dash = key.IndexOf('-', StringComparison.Ordinal);
        return int.Parse(key.AsSpan(KvWorkload.KeyPrefix.Length, dash - KvWorkload.KeyPrefix.Length), CultureInfo.InvariantCulture);
    }

    private static Task ForEachAsync<T>(IEnumerable<T> items, Func<T, Task> body) =>
        Parallel.ForEachAsync(items, new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (item, _) => await body(item));
}
