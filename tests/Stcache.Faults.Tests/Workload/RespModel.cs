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
/// histories against it: the Wing–Gong search with memoized (linearized set, state), as in Stcache.Testing's
/// key-value checker, but over a group's pair of values so that a MULTI/EXEC touching both keys must be atomic.
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

    private sealed class GroupSearch
    {
        private readonly string _group;
        private readonly long _budget;
        private readonly List<RespRecordedOp> _ops;
        private readonly Dictionary<(long?, long?), int> _stateIds = [];
        private readonly List<(long? A, long? B)> _states = [];
        private readonly int[] _next;
        private readonly int[] _previous;
        private readonly int[] _opOfNode;
        private readonly bool[] _isCall;
        private readonly int[] _returnNode;
        private readonly ulong[] _zobrist;
        private readonly int _head;

        public GroupSearch(string group, List<RespRecordedOp> ops, long budget)
        {
            _group = group;
            _ops = ops;
            _budget = budget;
            int n = ops.Count;
            _next = new int[(2 * n) + 1];
            _previous = new int[(2 * n) + 1];
            _opOfNode = new int[2 * n];
            _isCall = new bool[2 * n];
            _returnNode = new int[n];
            _zobrist = new ulong[n];
            _head = 2 * n;
            var events = new List<(long Time, bool IsCall, int Op)>(2 * n);
            for (int i = 0; i < n; i++)
            {
                events.Add((ops[i].InvokeTime, true, i));
                events.Add((IsComplete(i) ? ops[i].CompleteTime : long.MaxValue, false, i));
            }

            events.Sort((a, b) => a.Time != b.Time ? a.Time.CompareTo(b.Time) : a.IsCall != b.IsCall ? (a.IsCall ? -1 : 1) : a.Op.CompareTo(b.Op));
            int previous = _head;
            for (int node = 0; node < events.Count; node++)
            {
                _opOfNode[node] = events[node].Op;
                _isCall[node] = events[node].IsCall;
                if (!events[node].IsCall)
                {
                    _returnNode[events[node].Op] = node;
                }

                _next[previous] = node;
                _previous[node] = previous;
                previous = node;
            }

            _next[previous] = -1;
            var random = new Random(n);
            for (int i = 0; i < n; i++)
            {
                _zobrist[i] = (ulong)random.NextInt64() ^ ((ulong)random.NextInt64() << 1);
            }

            StateId((null, null));
        }

        private bool IsComplete(int op) => _ops[op].Outcome == OpOutcome.Ok;

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
            var recorded = _ops[op];
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
            int n = _ops.Count;
            int remaining = Enumerable.Range(0, n).Count(IsComplete);
            var linearized = new ulong[(n + 63) / 64];
            ulong hash = 0;
            int state = 0;
            var cache = new HashSet<(ulong Hash, int State, string Set)>();
            var calls = new Stack<(int Node, int StateBefore)>();
            var best = new List<int>();
            int bestState = 0;
            long steps = 0;
            int entry = _next[_head];
            while (remaining > 0)
            {
                if (++steps > _budget)
                {
                    return new GroupResult(_group, LinearizabilityVerdict.Unknown, n, steps, "search budget exhausted");
                }

                if (_isCall[entry])
                {
                    int op = _opOfNode[entry];
                    if (TryStep(state, op, out int newState))
                    {
                        linearized[op >> 6] |= 1UL << (op & 63);
                        ulong newHash = hash ^ _zobrist[op];
                        if (cache.Add((newHash, newState, Convert.ToBase64String(System.Runtime.InteropServices.MemoryMarshal.AsBytes(linearized.AsSpan())))))
                        {
                            calls.Push((entry, state));
                            state = newState;
                            hash = newHash;
                            Lift(entry);
                            if (IsComplete(op))
                            {
                                remaining--;
                            }

                            if (calls.Count > best.Count)
                            {
                                best = calls.Select(c => _opOfNode[c.Node]).Reverse().ToList();
                                bestState = state;
                            }

                            entry = _next[_head];
                            continue;
                        }

                        linearized[op >> 6] &= ~(1UL << (op & 63));
                    }

                    entry = _next[entry];
                }
                else
                {
                    if (calls.Count == 0)
                    {
                        return new GroupResult(_group, LinearizabilityVerdict.NotLinearizable, n, steps, Explain(best, bestState));
                    }

                    var (callNode, before) = calls.Pop();
                    int op = _opOfNode[callNode];
                    linearized[op >> 6] &= ~(1UL << (op & 63));
                    hash ^= _zobrist[op];
                    state = before;
                    Unlift(callNode);
                    if (IsComplete(op))
                    {
                        remaining++;
                    }

                    entry = _next[callNode];
                }
            }

            return new GroupResult(_group, LinearizabilityVerdict.Linearizable, n, steps, null);
        }

        private void Lift(int callNode)
        {
            _next[_previous[callNode]] = _next[callNode];
            if (_next[callNode] >= 0)
            {
                _previous[_next[callNode]] = _previous[callNode];
            }

            int returnNode = _returnNode[_opOfNode[callNode]];
            _next[_previous[returnNode]] = _next[returnNode];
            if (_next[returnNode] >= 0)
            {
                _previous[_next[returnNode]] = _previous[returnNode];
            }
        }

        private void Unlift(int callNode)
        {
            int returnNode = _returnNode[_opOfNode[callNode]];
            if (_next[returnNode] >= 0)
            {
                _previous[_next[returnNode]] = returnNode;
            }

            _next[_previous[returnNode]] = returnNode;
            if (_next[callNode] >= 0)
            {
                _previous[_next[callNode]] = callNode;
            }

            _next[_previous[callNode]] = callNode;
        }

        private string Explain(List<int> best, int stateAfter)
        {
            var text = new StringBuilder();
            text.Append(CultureInfo.InvariantCulture, $"  longest linearizable prefix: {best.Count} of {_ops.Count} operations");
            foreach (int op in best.Skip(Math.Max(0, best.Count - 8)))
            {
                text.AppendLine().Append("    ").Append(_ops[op]);
            }

            var (a, b) = _states[stateAfter];
            text.AppendLine().Append(CultureInfo.InvariantCulture, $"  state after that prefix: a={a?.ToString(CultureInfo.InvariantCulture) ?? "absent"} b={b?.ToString(CultureInfo.InvariantCulture) ?? "absent"}");
            var done = new HashSet<int>(best);
            var blocking = Enumerable.Range(0, _ops.Count).Where(i => !done.Contains(i) && IsComplete(i)).OrderBy(i => _ops[i].CompleteTime).FirstOrDefault(-1);
            if (blocking >= 0)
            {
                long deadline = _ops[blocking].CompleteTime;
                text.AppendLine().Append("  no order of these concurrent operations explains the replies:");
                foreach (int i in Enumerable.Range(0, _ops.Count).Where(i => !done.Contains(i) && _ops[i].InvokeTime <= deadline).Take(12))
                {
                    text.AppendLine().Append("    ").Append(_ops[i]);
                }
            }

            return text.ToString();
        }
    }
}
