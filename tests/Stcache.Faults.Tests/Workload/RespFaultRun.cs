using System.Diagnostics;
using System.Globalization;
using System.Text;
using Stcache.Faults.Tests.Harness;
using Stcache.Testing;

namespace Stcache.Faults.Tests.Workload;

/// <summary>
/// The black-box run of <see cref="FaultRun"/> with Redis-protocol clients: the same cluster, nemesis and faults,
/// then heal, final reads of the last groups through every member, and two verdicts: every group's history is
/// linearizable under <see cref="RespModel"/>, and the counter lost no acknowledged INCR.
/// </summary>
public static class RespFaultRun
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
            $"RESP fault run: {options.Cluster.Voters} voters (+{options.Cluster.Spares} spare), {options.Workload.Clients} clients, {options.Workload.Keys} groups of 2 keys, {options.Duration.TotalSeconds}s, seed {options.Seed}"));
        var random = new Random(options.Seed);
        var started = Stopwatch.StartNew();
        await using var cluster = await StcacheCluster.StartAsync(options.Cluster with { Resp = true }, log, TimeSpan.FromSeconds(30));
        Note(string.Create(CultureInfo.InvariantCulture, $"cluster up in {started.Elapsed.TotalSeconds:F1}s: {string.Join(", ", cluster.Founders)}"));
        RespWorkload? workload = null;
        var nemesis = new Nemesis(cluster, random, log, () => workload!.NextEpoch());
        workload = new RespWorkload(options.Workload with { Seed = options.Seed }, () => nemesis.Members);
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

            var final = new List<RespRecordedOp>();
            foreach (string group in workload.GroupsUsed.Where(g => RespWorkload.EpochOf(g) >= workload.Epoch - 1))
            {
                foreach (var member in members)
                {
                    final.Add(await workload.ReadGroupAsync(member, group));
                }
            }

            bool passed = await CheckCounterAsync(workload, members, Note);
            var all = workload.Operations.Concat(final).ToList();
            passed &= CheckHistories(all, Note);
            Note(string.Create(CultureInfo.InvariantCulture, $"faults injected: {nemesis.Injected.Count}"));
            foreach (string fault in nemesis.Injected)
            {
                Note("  " + fault);
            }

            Note(string.Create(CultureInfo.InvariantCulture, $"VERDICT: {(passed ? "PASS" : "FAIL")} ({all.Count} ops, {nemesis.Injected.Count} faults, {started.Elapsed.TotalSeconds:F0}s, seed {options.Seed})"));
            if (!passed)
            {
                Note(NodeProcess.Describe(cluster.Nodes.Where(n => n.Starts > 0), 30));
            }

            return new FaultRunResult(passed, report.ToString(), all.Count, nemesis.Injected.Count);
        }
        catch (Exception e) when (e is TimeoutException or InvalidOperationException)
        {
            Note("faults injected so far: " + string.Join("; ", nemesis.Injected));
            Note("run aborted: " + e.Message);
            Note(NodeProcess.Describe(cluster.Nodes.Where(n => n.Starts > 0), 80));
            return new FaultRunResult(false, report.ToString(), workload.Operations.Count, nemesis.Injected.Count);
        }
    }

    /// <summary>Linearizability of every group's history; the report lists each failing group's operations.</summary>
    public static bool CheckHistories(IReadOnlyCollection<RespRecordedOp> all, Action<string> note)
    {
        var results = RespModel.Check(all);
        note(string.Create(CultureInfo.InvariantCulture,
            $"operations: {all.Count} (ok {all.Count(o => o.Outcome == OpOutcome.Ok)}, failed {all.Count(o => o.Outcome == OpOutcome.Fail)}, unknown {all.Count(o => o.Outcome == OpOutcome.Unknown)})"));
        foreach (var kind in Enum.GetValues<RespStepKind>())
        {
            var single = all.Where(o => !o.Transaction && o.Steps[0].Kind == kind).ToList();
            note(string.Create(CultureInfo.InvariantCulture, $"  {kind}: {single.Count} sent, {single.Count(o => o.Outcome == OpOutcome.Ok)} ok"));
        }

        var transactions = all.Where(o => o.Transaction).ToList();
        note(string.Create(CultureInfo.InvariantCulture, $"  MULTI/EXEC: {transactions.Count} sent, {transactions.Count(o => o.Outcome == OpOutcome.Ok)} ok, {transactions.Count(o => o.Outcome == OpOutcome.Unknown)} unknown"));
        if (results.Count > 0)
        {
            note(string.Create(CultureInfo.InvariantCulture, $"  groups: {results.Count}, ops per group max {results.Max(r => r.Operations)}, search steps max {results.Max(r => r.Steps)}"));
        }

        var bad = results.Where(r => r.Verdict != LinearizabilityVerdict.Linearizable).ToList();
        note("linearizability: " + (bad.Count == 0 ? "Linearizable" : string.Join(", ", bad.Select(b => b.Group + " " + b.Verdict))));
        foreach (var group in bad)
        {
            note($"group {group.Group}: {group.Verdict} after {group.Steps} steps over {group.Operations} operations");
            if (group.Explanation is not null)
            {
                note(group.Explanation);
            }

            note("operations on " + group.Group + " (failed ones are left out of the check but listed):");
            foreach (var op in all.Where(o => o.Group == group.Group).OrderBy(o => o.InvokeTime).Take(300))
            {
                note("    " + op);
            }
        }

        return bad.Count == 0;
    }

    /// <summary>
    /// No acknowledged INCR lost, none applied twice: the final counter is at least the number of acknowledged
    /// INCRs and at most that plus the unknown ones; acknowledged INCRs answered distinct values, none above it.
    /// </summary>
    private static async Task<bool> CheckCounterAsync(RespWorkload workload, IReadOnlyList<NodeProcess> members, Action<string> note)
    {
        var acknowledged = workload.CounterAcknowledged.ToList();
        int unknown = workload.CounterUnknown;
        long? final = null;
        var deadline = Stopwatch.StartNew();
        for (int attempt = 0; final is null && deadline.Elapsed < TimeSpan.FromSeconds(15); attempt++)
        {
            var reply = await workload.ReadCounterAsync(members[attempt % members.Count]);
            if (reply is { Type: '$' } value)
            {
                final = long.Parse(value.Text!, CultureInfo.InvariantCulture);
            }
            else if (reply is { Type: '_' })
            {
                final = 0;
            }
        }

        if (final is null)
        {
            note("counter: no member answered a GET of " + RespWorkload.CounterKey);
            return false;
        }

        int distinct = acknowledged.Distinct().Count();
        long highest = acknowledged.Count == 0 ? 0 : acknowledged.Max();
        bool passed = final >= acknowledged.Count && final <= acknowledged.Count + unknown && distinct == acknowledged.Count && highest <= final && !acknowledged.Contains(-1);
        note(string.Create(CultureInfo.InvariantCulture,
            $"counter {RespWorkload.CounterKey}: final {final}, acknowledged INCRs {acknowledged.Count} ({distinct} distinct replies, highest {highest}), unknown {unknown}: {(passed ? "no acknowledged INCR lost" : "LOST OR DUPLICATED INCRs")}"));
        return passed;
    }
}
