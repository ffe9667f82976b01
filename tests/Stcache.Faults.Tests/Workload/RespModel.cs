using System.Diagnostics;
using System.Globalization;
using System.Text;
using Stcache.Testing;

namespace Stcache.Faults.Tests.Workload;

public enum RespStepKind
{
    Get,
    Set,

    /// <summary><c>SET key value GET</c>: sets and answers the old value.</summary>
    SetGet,
    Del,
    Incr,
}

/// <summary>One command on one key of a group: <see cref="Slot"/> 0 or 1 picks the group's key.</summary>
public sealed record RespStep(RespStepKind Kind, int Slot, long Value = 0)
{
    public bool IsWrite => Kind != RespStepKind.Get;

    public override string ToString() => Kind switch
    {
        RespStepKind.Set => $"SET {"ab"[Slot]} {Value}",
        RespStepKind.SetGet => $"SET {"ab"[Slot]} {Value} GET",
        _ => $"{Kind.ToString().ToUpperInvariant()} {"ab"[Slot]}",
    };
}

/// <summary>
/// One RESP operation as sent and answered: a single command, or a MULTI/EXEC transaction of several, on the two
/// keys of one group. <see cref="Replies"/> has one reply per step when the outcome is <see cref="OpOutcome.Ok"/>.
/// </summary>
public sealed record RespRecordedOp(
    int Client,
    string Group,
    IReadOnlyList<RespStep> Steps,
    bool Transaction,
    string Node,
    long InvokeTime,
    long CompleteTime,
    OpOutcome Outcome,
    IReadOnlyList<RespReply>? Replies,
    string Detail)
{
    public bool IsReadOnly => Steps.All(s => !s.IsWrite);

    public override string ToString()
    {
        double invokeMs = InvokeTime * 1000.0 / Stopwatch.Frequency;
        double durationMs = (CompleteTime - InvokeTime) * 1000.0 / Stopwatch.Frequency;
        string body = Transaction ? "MULTI " + string.Join("; ", Steps) + " EXEC" : Steps[0].ToString();
        string replies = Replies is null ? "-" : string.Join(", ", Replies);
        return string.Create(CultureInfo.InvariantCulture,
            $"c{Client} {Group}: {body} via {Node} -> {Outcome} {replies} [{Detail}] at {invokeMs:F1}ms for {durationMs:F1}ms");
    }
}

/// <summary>
/// The sequential model of a group of two keys holding integers (or nothing), and a linearizability check of RESP
/// histories against it with <see cref="WingGongSearch"/>, over a group's pair of values so that a MULTI/EXEC
/// touching both keys must be atomic.
/// Operations with an unknown outcome may take effect at any time after their invocation, or never; their replies
/// are not checked. Operations that certainly failed, and reads without an answer, are left out.
/// </summary>
public static class RespModel
{
    public const long DefaultStepBudget = 2_000_000;

    public sealed record GroupResult(string Group, LinearizabilityVerdict Verdict, int Operations, long Steps, string? Explanation);

    /// <summary>Applies one step to a state; answers the reply Redis would give.</summary>
    public static RespReply Apply(ref (long? A, long? B) state, RespStep step)
    {
        long? current = step.Slot == 0 ? state.A : state.B;
        long? next = current;
        RespReply reply;
        switch (step.Kind)
        {
            case RespStepKind.Get:
                reply = RespReply.Bulk(current?.ToString(CultureInfo.InvariantCulture));
                break;
            case RespStepKind.Set:
                next = step.Value;
                reply = RespReply.Ok;
                break;
            case RespStepKind.SetGet:
                next = step.Value;
                reply = RespReply.Bulk(current?.ToString(CultureInfo.InvariantCulture));
                break;
            case RespStepKind.Del:
                next = null;
                reply = RespReply.Integer(current is null ? 0 : 1);
                break;
            default:
                next = (current ?? 0) + 1;
                reply = RespReply.Integer(next.Value);
                break;
        }

        state = step.Slot == 0 ? (next, state.B) : (state.A, next);
        return reply;
    }

    public static List<GroupResult> Check(IEnumerable<RespRecordedOp> recorded, long budget = DefaultStepBudget)
    {
        var relevant = recorded.Where(o => o.Outcome == OpOutcome.Ok || (o.Outcome == OpOutcome.Unknown && !o.IsReadOnly));
        return relevant.GroupBy(o => o.Group, StringComparer.Ordinal)
            .OrderBy(g => g.Key, StringComparer.Ordinal)
            .Select(g => new GroupSearch(g.Key, [.. g.OrderBy(o => o.InvokeTime)], budget).Run())
            .ToList();
    }

    private sealed class GroupSearch(string group, List<RespRecordedOp> ops, long budget)
    {
        private readonly Dictionary<(long?, long?), int> _stateIds = new() { [(null, null)] = 0 };
        private readonly List<(long? A, long? B)> _states = [(null, null)];

        private bool IsComplete(int op) => ops[op].Outcome == OpOutcome.Ok;

        private int StateId((long?, long?) state)
        {
            if (!_stateIds.TryGetValue(state, out int id))
            {
                id = _states.Count;
                _states.Add(state);
                _stateIds.Add(state, id);
            }

            return id;
        }

        private bool TryStep(int stateId, int op, out int next)
        {
            var state = _states[stateId];
            var recorded = ops[op];
            for (int i = 0; i < recorded.Steps.Count; i++)
            {
                var expected = Apply(ref state, recorded.Steps[i]);
                if (IsComplete(op) && !expected.Same(recorded.Replies![i]))
                {
                    next = stateId;
                    return false;
                }
            }

            next = StateId(state);
            return true;
        }

        public GroupResult Run()
        {
            var intervals = Enumerable.Range(0, ops.Count)
                .Select(i => new WingGongSearch.Interval(ops[i].InvokeTime, IsComplete(i) ? ops[i].CompleteTime : null))
                .ToList();
            var outcome = WingGongSearch.Run(intervals, initialState: 0, TryStep, budget);
            string? explanation = outcome.Verdict switch
            {
                LinearizabilityVerdict.Linearizable => null,
                LinearizabilityVerdict.Unknown => "search budget exhausted",
                _ => Explain(outcome.LongestPrefix, outcome.StateAfterPrefix),
            };
            return new GroupResult(group, outcome.Verdict, ops.Count, outcome.Steps, explanation);
        }

        private string Explain(IReadOnlyList<int> best, int stateAfter)
        {
            var text = new StringBuilder();
            text.Append(CultureInfo.InvariantCulture, $"  longest linearizable prefix: {best.Count} of {ops.Count} operations");
            foreach (int op in best.Skip(Math.Max(0, best.Count - 8)))
            {
                text.AppendLine().Append("    ").Append(ops[op]);
            }

            var (a, b) = _states[stateAfter];
            text.AppendLine().Append(CultureInfo.InvariantCulture, $"  state after that prefix: a={a?.ToString(CultureInfo.InvariantCulture) ?? "absent"} b={b?.ToString(CultureInfo.InvariantCulture) ?? "absent"}");
            var done = new HashSet<int>(best);
            var blocking = Enumerable.Range(0, ops.Count).Where(i => !done.Contains(i) && IsComplete(i)).OrderBy(i => ops[i].CompleteTime).FirstOrDefault(-1);
            if (blocking >= 0)
            {
                long deadline = ops[blocking].CompleteTime;
                text.AppendLine().Append("  no order of these concurrent operations explains the replies:");
                foreach (int i in Enumerable.Range(0, ops.Count).Where(i => !done.Contains(i) && ops[i].InvokeTime <= deadline).Take(12))
                {
                    text.AppendLine().Append("    ").Append(ops[i]);
                }
            }

            return text.ToString();
        }
    }
}
