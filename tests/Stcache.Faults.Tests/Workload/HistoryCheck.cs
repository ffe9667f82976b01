using System.Text;
using Stcache.Testing;

namespace Stcache.Faults.Tests.Workload;

/// <summary>Turns recorded operations into a <see cref="KvHistory"/> and checks it for linearizability, per key.</summary>
public static class HistoryCheck
{
    public sealed record Summary(int Total, int Ok, int Failed, int Unknown, LinearizabilityResult Result, string Report);

    public static Summary Check(IEnumerable<RecordedOp> recorded, long stepBudgetPerKey = LinearizabilityChecker.DefaultStepBudgetPerKey)
    {
        var all = recorded.ToList();

        // Operations certainly not applied and reads without an answer have no effect: leave them out.
        var relevant = all.Where(o => o.Outcome == OpOutcome.Ok || (o.Outcome == OpOutcome.Unknown && o.Kind != KvOperationKind.Get))
            .OrderBy(o => o.InvokeTime)
            .ToList();
        var history = new KvHistory();
        var byOperation = new Dictionary<KvOperation, RecordedOp>();
        var pending = new List<(KvOperation Operation, RecordedOp Recorded)>();
        foreach (var op in relevant)
        {
            var operation = op.Kind switch
            {
                KvOperationKind.Get => history.InvokeGet(op.Client, op.Key, op.InvokeTime),
                KvOperationKind.Set => history.InvokeSet(op.Client, op.Key, op.Value!, op.InvokeTime),
                KvOperationKind.Delete => history.InvokeDelete(op.Client, op.Key, op.InvokeTime),
                _ => history.InvokeCompareAndSet(op.Client, op.Key, op.Expected, op.Value!, op.InvokeTime),
            };
            byOperation[operation] = op;
            pending.Add((operation, op));
        }

        foreach (var (operation, op) in pending)
        {
            if (op.Outcome != OpOutcome.Ok)
            {
                continue;
            }

            switch (op.Kind)
            {
                case KvOperationKind.Get:
                    KvHistory.CompleteGet(operation, op.Result, op.CompleteTime);
                    break;
                case KvOperationKind.CompareAndSet:
                    KvHistory.CompleteCompareAndSet(operation, op.Succeeded, op.CompleteTime);
                    break;
                default:
                    KvHistory.CompleteWrite(operation, op.CompleteTime);
                    break;
            }
        }

        var result = LinearizabilityChecker.Check(history, stepBudgetPerKey);
        var report = new StringBuilder();
        report.AppendLine(System.Globalization.CultureInfo.InvariantCulture,
            $"operations: {all.Count} (ok {all.Count(o => o.Outcome == OpOutcome.Ok)}, failed {all.Count(o => o.Outcome == OpOutcome.Fail)}, unknown {all.Count(o => o.Outcome == OpOutcome.Unknown)}); checked {relevant.Count}");
        foreach (var kind in Enum.GetValues<KvOperationKind>())
        {
            report.AppendLine(System.Globalization.CultureInfo.InvariantCulture,
                $"  {kind}: {all.Count(o => o.Kind == kind)} sent, {all.Count(o => o.Kind == kind && o.Outcome == OpOutcome.Ok)} ok");
        }

        var shared = result.Keys.Where(k => !k.Key.StartsWith(KvWorkload.DurableKeyPrefix, StringComparison.Ordinal)).ToList();
        if (shared.Count > 0)
        {
            report.AppendLine(System.Globalization.CultureInfo.InvariantCulture,
                $"  shared keys: {shared.Count}, ops per key max {shared.Max(k => k.OperationCount)}, search steps max {shared.Max(k => k.Steps)}");
        }

        report.AppendLine(System.Globalization.CultureInfo.InvariantCulture,
            $"  write-once keys: {result.Keys.Count(k => k.Key.StartsWith(KvWorkload.DurableKeyPrefix, StringComparison.Ordinal))}");
        report.AppendLine("linearizability: " + result.Verdict);
        if (!result.IsLinearizable)
        {
            report.AppendLine(result.Describe());
            foreach (var bad in result.Keys.Where(k => k.Verdict != LinearizabilityVerdict.Linearizable))
            {
                // Failed operations too: one wrongly reported as failed (yet applied) explains many a "stale" read.
                report.AppendLine("operations on " + bad.Key + " (failed ones are left out of the check but listed):");
                foreach (var op in all.Where(o => o.Key == bad.Key).OrderBy(o => o.InvokeTime).Take(400))
                {
                    report.Append("    ").AppendLine(KvWorkload.Describe(op));
                }
            }
        }

        return new Summary(all.Count, all.Count(o => o.Outcome == OpOutcome.Ok), all.Count(o => o.Outcome == OpOutcome.Fail),
            all.Count(o => o.Outcome == OpOutcome.Unknown), result, report.ToString());
    }
}
