using System.Globalization;
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
    public static Task<FaultRunResult> RunAsync(FaultRunOptions options, Action<string> log) =>
        FaultRunner.RunAsync(options with { Cluster = options.Cluster with { Resp = true } }, "RESP fault run (keys are groups of 2)", log,
            members => new RespWorkload(options.Workload with { Seed = options.Seed }, members),
            async (workload, members, note) =>
            {
                // A final read that got an error (no leader yet after the heal) says nothing about the data: it is
                // asked again; every attempt goes into the history (failed ones are left out of the check).
                var reads = new FinalReads(options.FinalReadTimeout);
                var final = new List<RespRecordedOp>();
                int unanswered = 0;
                foreach (string group in workload.GroupsUsed.Where(g => RespWorkload.EpochOf(g) >= workload.Epoch - 1))
                {
                    foreach (var member in members)
                    {
                        var read = await reads.UntilAnsweredAsync(
                            async () =>
                            {
                                var attempt = await workload.ReadGroupAsync(member, group);
                                final.Add(attempt);
                                return attempt;
                            },
                            attempt => attempt.Outcome == OpOutcome.Ok);
                        if (read.Outcome != OpOutcome.Ok)
                        {
                            unanswered++;
                            note($"UNANSWERED final read of group {group} via {member.Name} after {reads.Describe()}: last attempt {read}");
                        }
                    }
                }

                bool passed = await CheckCounterAsync(workload, members, reads, note);
                var all = workload.Operations.Concat(final).ToList();
                passed &= CheckHistories(all, note);
                note(string.Create(CultureInfo.InvariantCulture, $"final reads: {reads.Retried} asked again after an error, {unanswered} never answered"));
                return (passed && unanswered == 0, all.Count);
            });

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
    private static async Task<bool> CheckCounterAsync(RespWorkload workload, IReadOnlyList<NodeProcess> members, FinalReads reads, Action<string> note)
    {
        var acknowledged = workload.CounterAcknowledged.ToList();
        int unknown = workload.CounterUnknown;

        // Each attempt through the next member; an error or no answer says nothing about the counter: asked again.
        int attempt = 0;
        var reply = await reads.UntilAnsweredAsync(() => workload.ReadCounterAsync(members[attempt++ % members.Count]), r => r is { Type: '$' or '_' });
        long? final = reply switch
        {
            { Type: '$' } value => long.Parse(value.Text!, CultureInfo.InvariantCulture),
            { Type: '_' } => 0,
            _ => null,
        };
        if (final is null)
        {
            note($"counter: no member answered a GET of {RespWorkload.CounterKey} in {attempt} attempts, {reads.Describe()}");
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
