using System.Globalization;
using System.Text;

namespace Stcache.Testing;

public enum LinearizabilityVerdict : byte
{
    Linearizable = 1,

    /// <summary>The search budget ran out before a linearization was found or ruled out.</summary>
    Unknown = 2,

    NotLinearizable = 3,
}

public sealed record KeyCheckResult(string Key, LinearizabilityVerdict Verdict, int OperationCount, long Steps, string? Explanation);

public sealed record LinearizabilityResult(LinearizabilityVerdict Verdict, IReadOnlyList<KeyCheckResult> Keys)
{
    public bool IsLinearizable => Verdict == LinearizabilityVerdict.Linearizable;

    /// <summary>Explanations of every key that is not linearizable (or could not be decided).</summary>
    public string Describe()
    {
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"verdict: {Verdict} ({Keys.Count} keys)");
        foreach (var key in Keys)
        {
            if (key.Verdict != LinearizabilityVerdict.Linearizable)
            {
                text.AppendLine();
                text.Append(CultureInfo.InvariantCulture, $"key '{key.Key}': {key.Verdict} after {key.Steps} steps over {key.OperationCount} operations");
                if (key.Explanation is not null)
                {
                    text.AppendLine();
                    text.Append(key.Explanation);
                }
            }
        }

        return text.ToString();
    }
}

/// <summary>
/// Checks key-value histories for linearizability: partitions by key (linearizability is compositional, so each
/// key is checked alone), then runs the Wing–Gong search with Lowe's memoization of (linearized set, model state),
/// as in Porcupine. Operations with unknown outcome complete at +infinity: they may take effect at any point after
/// their invocation, or never (placed last, they are unobservable).
/// </summary>
public static class LinearizabilityChecker
{
    public const long DefaultStepBudgetPerKey = 2_000_000;

    public static LinearizabilityResult Check(KvHistory history, long stepBudgetPerKey = DefaultStepBudgetPerKey) =>
        Check(history.Operations, stepBudgetPerKey);

    public static LinearizabilityResult Check(IEnumerable<KvOperation> operations, long stepBudgetPerKey = DefaultStepBudgetPerKey)
    {
        var results = new List<KeyCheckResult>();
        foreach (var group in operations.GroupBy(o => o.Key, StringComparer.Ordinal).OrderBy(g => g.Key, StringComparer.Ordinal))
        {
            results.Add(new KeySearch(group.Key, group.ToList(), stepBudgetPerKey).Run());
        }

        var verdict = LinearizabilityVerdict.Linearizable;
        foreach (var result in results)
        {
            if (result.Verdict > verdict)
            {
                verdict = result.Verdict;
            }
        }

        return new LinearizabilityResult(verdict, results);
    }

    private sealed class KeySearch
    {
        private const int Absent = 0;

        private readonly string _key;
        private readonly long _budget;
        private readonly List<KvOperation> _operations;
        private readonly Dictionary<string, int> _valueIds = new(StringComparer.Ordinal);
        private readonly List<string> _values = ["<absent>"];

        // Event list: node i < 2n is an event; node 2n is the head sentinel.
        private readonly int[] _next;
        private readonly int[] _previous;
        private readonly int[] _operationOfNode;
        private readonly bool[] _isCall;
        private readonly int[] _returnNodeOfOperation;
        private readonly ulong[] _zobrist;
        private readonly int _head;

        public KeySearch(string key, List<KvOperation> operations, long budget)
        {
            _key = key;
            _budget = budget;

            // A get whose outcome is unknown has no effect on anything: drop it.
            _operations = operations.Where(o => o.IsComplete || o.Kind != KvOperationKind.Get).ToList();
            int n = _operations.Count;
            _next = new int[(2 * n) + 1];
            _previous = new int[(2 * n) + 1];
            _operationOfNode = new int[2 * n];
            _isCall = new bool[2 * n];
            _returnNodeOfOperation = new int[n];
            _zobrist = new ulong[n];
            _head = 2 * n;

            var events = new List<(long Time, bool IsCall, int Operation)>(2 * n);
            for (int i = 0; i < n; i++)
            {
                events.Add((_operations[i].InvokeTime, true, i));
                events.Add((_operations[i].CompleteTime ?? long.MaxValue, false, i));
            }

            // Calls before returns at the same instant: operations that touch in time count as concurrent.
            events.Sort((a, b) =>
            {
                int byTime = a.Time.CompareTo(b.Time);
                if (byTime != 0)
                {
                    return byTime;
                }

                if (a.IsCall != b.IsCall)
                {
                    return a.IsCall ? -1 : 1;
                }

                return a.Operation.CompareTo(b.Operation);
            });

            int previousNode = _head;
            for (int node = 0; node < events.Count; node++)
            {
                _operationOfNode[node] = events[node].Operation;
                _isCall[node] = events[node].IsCall;
                if (!events[node].IsCall)
                {
                    _returnNodeOfOperation[events[node].Operation] = node;
                }

                _next[previousNode] = node;
                _previous[node] = previousNode;
                previousNode = node;
            }

            _next[previousNode] = -1;
            ulong seed = 0x9E3779B97F4A7C15UL ^ (ulong)n;
            for (int i = 0; i < n; i++)
            {
                seed += 0x9E3779B97F4A7C15UL;
                ulong z = seed;
                z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
                z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
                _zobrist[i] = z ^ (z >> 31);
            }
        }

        public KeyCheckResult Run()
        {
            int n = _operations.Count;
            int remainingComplete = _operations.Count(o => o.IsComplete);
            if (remainingComplete == 0)
            {
                return new KeyCheckResult(_key, LinearizabilityVerdict.Linearizable, n, 0, null);
            }

            var linearized = new ulong[(n + 63) / 64];
            ulong hash = 0;
            int state = Absent;
            var cache = new HashSet<CacheKey>();
            var calls = new Stack<(int Node, int StateBefore)>();
            var best = new List<int>();
            int bestStateAfter = Absent;
            long steps = 0;

            int entry = _next[_head];
            while (remainingComplete > 0)
            {
                if (++steps > _budget)
                {
                    return new KeyCheckResult(_key, LinearizabilityVerdict.Unknown, n, steps, "search budget exhausted");
                }

                if (entry < 0)
                {
                    // Only reachable if every remaining event is a call, which cannot happen while a completed
                    // operation is still unlinearized (its return is in the list).
                    throw new InvalidOperationException("event list ended while completed operations remain");
                }

                if (_isCall[entry])
                {
                    int op = _operationOfNode[entry];
                    if (TryStep(state, _operations[op], out int newState))
                    {
                        linearized[op >> 6] |= 1UL << (op & 63);
                        ulong newHash = hash ^ _zobrist[op];
                        var probe = new CacheKey(newHash, newState, linearized);
                        if (!cache.Contains(probe))
                        {
                            cache.Add(new CacheKey(newHash, newState, (ulong[])linearized.Clone()));
                            calls.Push((entry, state));
                            state = newState;
                            hash = newHash;
                            Lift(entry);
                            if (_operations[op].IsComplete)
                            {
                                remainingComplete--;
                            }

                            if (calls.Count > best.Count)
                            {
                                best = calls.Select(c => _operationOfNode[c.Node]).Reverse().ToList();
                                bestStateAfter = state;
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
                    // A return whose operation is not linearized yet: every order tried so far fails; backtrack.
                    if (calls.Count == 0)
                    {
                        return new KeyCheckResult(_key, LinearizabilityVerdict.NotLinearizable, n, steps, Explain(best, bestStateAfter));
                    }

                    var (callNode, stateBefore) = calls.Pop();
                    int op = _operationOfNode[callNode];
                    linearized[op >> 6] &= ~(1UL << (op & 63));
                    hash ^= _zobrist[op];
                    state = stateBefore;
                    Unlift(callNode);
                    if (_operations[op].IsComplete)
                    {
                        remainingComplete++;
                    }

                    entry = _next[callNode];
                }
            }

            return new KeyCheckResult(_key, LinearizabilityVerdict.Linearizable, n, steps, null);
        }

        private void Lift(int callNode)
        {
            _next[_previous[callNode]] = _next[callNode];
            if (_next[callNode] >= 0)
            {
                _previous[_next[callNode]] = _previous[callNode];
            }

            int returnNode = _returnNodeOfOperation[_operationOfNode[callNode]];
            _next[_previous[returnNode]] = _next[returnNode];
            if (_next[returnNode] >= 0)
            {
                _previous[_next[returnNode]] = _previous[returnNode];
            }
        }

        private void Unlift(int callNode)
        {
            int returnNode = _returnNodeOfOperation[_operationOfNode[callNode]];
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

        private int ValueId(string? value)
        {
            if (value is null)
            {
                return Absent;
            }

            if (!_valueIds.TryGetValue(value, out int id))
            {
                id = _values.Count;
                _values.Add(value);
                _valueIds.Add(value, id);
            }

            return id;
        }

        private bool TryStep(int state, KvOperation op, out int newState)
        {
            newState = state;
            switch (op.Kind)
            {
                case KvOperationKind.Get:
                    return state == ValueId(op.Result);
                case KvOperationKind.Set:
                    newState = ValueId(op.Value);
                    return true;
                case KvOperationKind.Delete:
                    newState = Absent;
                    return true;
                case KvOperationKind.CompareAndSet:
                    bool matches = state == ValueId(op.Expected);
                    if (!op.IsComplete)
                    {
                        newState = matches ? ValueId(op.Value) : state;
                        return true;
                    }

                    if (op.Succeeded)
                    {
                        newState = ValueId(op.Value);
                        return matches;
                    }

                    return !matches;
                default:
                    return false;
            }
        }

        private string Explain(List<int> best, int stateAfter)
        {
            var text = new StringBuilder();
            var done = new HashSet<int>(best);
            text.Append(CultureInfo.InvariantCulture, $"  longest linearizable prefix: {best.Count} of {_operations.Count} operations");
            int shownFrom = Math.Max(0, best.Count - 8);
            if (shownFrom > 0)
            {
                text.AppendLine();
                text.Append(CultureInfo.InvariantCulture, $"    ... {shownFrom} earlier operations");
            }

            for (int i = shownFrom; i < best.Count; i++)
            {
                text.AppendLine();
                text.Append(CultureInfo.InvariantCulture, $"    {_operations[best[i]]}");
            }

            text.AppendLine();
            text.Append(CultureInfo.InvariantCulture, $"  value after that prefix: {(stateAfter == Absent ? "absent" : $"'{_values[stateAfter]}'")}");

            // The operation that must come next (earliest completion) and the others that could have come first.
            var remaining = Enumerable.Range(0, _operations.Count).Where(i => !done.Contains(i)).ToList();
            var blocking = remaining.Where(i => _operations[i].IsComplete).OrderBy(i => _operations[i].CompleteTime).FirstOrDefault(-1);
            if (blocking >= 0)
            {
                long deadline = _operations[blocking].CompleteTime!.Value;
                text.AppendLine();
                text.Append(CultureInfo.InvariantCulture, $"  no order of these concurrent operations explains the results (must linearize before t={deadline}):");
                foreach (int i in remaining.Where(i => _operations[i].InvokeTime <= deadline).Take(12))
                {
                    text.AppendLine();
                    text.Append(CultureInfo.InvariantCulture, $"    {_operations[i]}");
                }
            }

            return text.ToString();
        }
    }

    private readonly struct CacheKey : IEquatable<CacheKey>
    {
        private readonly ulong _hash;
        private readonly int _state;
        private readonly ulong[] _linearized;

        public CacheKey(ulong hash, int state, ulong[] linearized)
        {
            _hash = hash;
            _state = state;
            _linearized = linearized;
        }

        public bool Equals(CacheKey other) =>
            _hash == other._hash && _state == other._state && _linearized.AsSpan().SequenceEqual(other._linearized);

        public override bool Equals(object? obj) => obj is CacheKey other && Equals(other);

        public override int GetHashCode() => HashCode.Combine(_hash, _state);
    }
}
