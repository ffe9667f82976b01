using System.Globalization;
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

    /// <summary>How long the final reads after healing may take in all. A read that gets an error saying nothing
    /// about the data (no leader yet, 503, a timeout) is asked again until then; only an answer with a wrong or
    /// missing value is a loss.</summary>
    public TimeSpan FinalReadTimeout { get; init; } = TimeSpan.FromSeconds(30);
}

public sealed record FaultRunResult(bool Passed, string Report, int Operations, int Faults);

/// <summary>
/// The black-box run: a real cluster, concurrent clients, faults on a schedule; then heal, final reads, and the
/// three verdicts: histories linearizable per key, acknowledged writes present, replicas identical.
/// </summary>
public static class FaultRun
{
    public static Task<FaultRunResult> RunAsync(FaultRunOptions options, Action<string> log) =>
        FaultRunner.RunAsync(options, "fault run", log,
            members => new KvWorkload(options.Workload with { Seed = options.Seed }, members),
            async (workload, members, note) =>
            {
                bool passed = await CheckFinalStateAsync(workload, members, new FinalReads(options.FinalReadTimeout), note);
                var summary = HistoryCheck.Check(workload.Operations);
                note(summary.Report.TrimEnd());
                return (passed && summary.Result.IsLinearizable, summary.Total);
            });

    /// <summary>Final reads (recorded into the history), acknowledged write-once keys, identical replicas.</summary>
    private static async Task<bool> CheckFinalStateAsync(KvWorkload workload, IReadOnlyList<NodeProcess> members, FinalReads reads, Action<string> note)
    {
        bool passed = true;
        var used = workload.KeysUsed.ToList();
        int unanswered = 0;
        void Unanswered(string what, RecordedOp last)
        {
            Interlocked.Increment(ref unanswered);
            note($"UNANSWERED {what} after {reads.Describe()}: last attempt {KvWorkload.Describe(last)}");
        }

        // Linearizable final reads of the keys of the last epochs, through every member, go into the history.
        var recent = used.Where(k => EpochOf(k) >= workload.Epoch - 1).ToList();
        await ForEachAsync(recent.SelectMany(k => members.Select(m => (Key: k, Member: m))), async item =>
        {
            var read = await reads.UntilAnsweredAsync(() => workload.ReadAsync(0, item.Member, item.Key));
            if (read.Outcome != OpOutcome.Ok)
            {
                Unanswered($"final read of {item.Key} via {item.Member.Name}", read);
            }
        });

        int lost = 0;
        var durable = workload.DurableAcknowledged.ToList();
        await ForEachAsync(durable.Select((pair, i) => (pair.Key, pair.Value, Member: members[i % members.Count])), async item =>
        {
            // An error (no leader yet after the heal, 503, a timeout) says nothing about the data: asked again.
            var read = await reads.UntilAnsweredAsync(() => workload.ReadAsync(0, item.Member, item.Key));
            if (read.Outcome != OpOutcome.Ok)
            {
                Unanswered($"read of acknowledged {item.Key}={item.Value} via {item.Member.Name}", read);
            }
            else if (read.Result != item.Value)
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
                var read = await reads.UntilAnsweredAsync(() => workload.ReadAsync(0, member, key, "stale"));
                if (read.Outcome != OpOutcome.Ok)
                {
                    Unanswered($"stale read of {key} via {member.Name}", read);
                }

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
        note(string.Create(CultureInfo.InvariantCulture, $"final reads: {reads.Retried} asked again after an error, {unanswered} never answered"));
        passed &= unanswered == 0;
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
