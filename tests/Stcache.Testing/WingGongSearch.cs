namespace Stcache.Testing;

/// <summary>
/// The search behind the linearizability checkers: Wing and Gong's backtracking over the history's calls, with
/// Lowe's memoization of (linearized set, model state), as in Porcupine. It knows nothing of the model: states are
/// small integers the caller interns, and <see cref="Step"/> says whether an operation may take effect in a state
/// and what state follows. An operation whose outcome is unknown completes at +infinity: it may take effect at any
/// point after its invocation, or never (placed last, it is unobservable).
/// </summary>
public static class WingGongSearch
{
    /// <summary>Whether <paramref name="operation"/> may take effect in <paramref name="state"/>, and the state after it.</summary>
    public delegate bool Step(int state, int operation, out int next);

    /// <summary>One operation's interval; <see cref="Complete"/> is null when its outcome is unknown.</summary>
    public readonly record struct Interval(long Invoke, long? Complete);

    /// <summary>The verdict, the steps taken, and the longest linearizable prefix found (for the explanation).</summary>
    public sealed record Outcome(LinearizabilityVerdict Verdict, long Steps, IReadOnlyList<int> LongestPrefix, int StateAfterPrefix);

    public static Outcome Run(IReadOnlyList<Interval> operations, int initialState, Step step, long budget)
    {
        var events = new EventList(operations);
        int n = operations.Count;
        int remainingComplete = operations.Count(o => o.Complete is not null);
        var linearized = new ulong[(n + 63) / 64];
        ulong hash = 0;
        int state = initialState;
        var cache = new HashSet<CacheKey>();
        var calls = new Stack<(int Node, int StateBefore)>();
        IReadOnlyList<int> best = [];
        int bestStateAfter = initialState;
        long steps = 0;

        int entry = events.First;
        while (remainingComplete > 0)
        {
            if (++steps > budget)
            {
                return new Outcome(LinearizabilityVerdict.Unknown, steps, best, bestStateAfter);
            }

            if (entry < 0)
            {
                // Only reachable if every remaining event is a call, which cannot happen while a completed operation
                // is still unlinearized (its return is in the list).
                throw new InvalidOperationException("event list ended while completed operations remain");
            }

            int op = events.Operation(entry);
            if (events.IsCall(entry))
            {
                if (step(state, op, out int newState))
                {
                    linearized[op >> 6] |= 1UL << (op & 63);
                    ulong newHash = hash ^ events.Zobrist(op);
                    if (!cache.Contains(new CacheKey(newHash, newState, linearized)))
                    {
                        cache.Add(new CacheKey(newHash, newState, (ulong[])linearized.Clone()));
                        calls.Push((entry, state));
                        state = newState;
                        hash = newHash;
                        events.Lift(entry);
                        if (operations[op].Complete is not null)
                        {
                            remainingComplete--;
                        }

                        if (calls.Count > best.Count)
                        {
                            best = calls.Select(c => events.Operation(c.Node)).Reverse().ToList();
                            bestStateAfter = state;
                        }

                        entry = events.First;
                        continue;
                    }

                    linearized[op >> 6] &= ~(1UL << (op & 63));
                }

                entry = events.Next(entry);
            }
            else
            {
                // A return whose operation is not linearized yet: every order tried so far fails; backtrack.
                if (calls.Count == 0)
                {
                    return new Outcome(LinearizabilityVerdict.NotLinearizable, steps, best, bestStateAfter);
                }

                var (callNode, stateBefore) = calls.Pop();
                int undone = events.Operation(callNode);
                linearized[undone >> 6] &= ~(1UL << (undone & 63));
                hash ^= events.Zobrist(undone);
                state = stateBefore;
                events.Unlift(callNode);
                if (operations[undone].Complete is not null)
                {
                    remainingComplete++;
                }

                entry = events.Next(callNode);
            }
        }

        return new Outcome(LinearizabilityVerdict.Linearizable, steps, best, bestStateAfter);
    }

    /// <summary>
    /// The history as a doubly linked list of call and return events in time order (node i &lt; 2n is an event,
    /// node 2n the head sentinel), from which a linearized operation's two events are lifted and put back.
    /// </summary>
    private sealed class EventList
    {
        private readonly int[] _next;
        private readonly int[] _previous;
        private readonly int[] _operationOfNode;
        private readonly bool[] _isCall;
        private readonly int[] _returnNodeOfOperation;
        private readonly ulong[] _zobrist;
        private readonly int _head;

        public EventList(IReadOnlyList<Interval> operations)
        {
            int n = operations.Count;
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
                events.Add((operations[i].Invoke, true, i));
                events.Add((operations[i].Complete ?? long.MaxValue, false, i));
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

            // SplitMix64: a fixed, well-spread key per operation for the hash of the linearized set.
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

        public int First => _next[_head];

        public int Next(int node) => _next[node];

        public int Operation(int node) => _operationOfNode[node];

        public bool IsCall(int node) => _isCall[node];

        public ulong Zobrist(int operation) => _zobrist[operation];

        public void Lift(int callNode)
        {
            Unlink(callNode);
            Unlink(_returnNodeOfOperation[_operationOfNode[callNode]]);
        }

        public void Unlift(int callNode)
        {
            Relink(_returnNodeOfOperation[_operationOfNode[callNode]]);
            Relink(callNode);
        }

        private void Unlink(int node)
        {
            _next[_previous[node]] = _next[node];
            if (_next[node] >= 0)
            {
                _previous[_next[node]] = _previous[node];
            }
        }

        private void Relink(int node)
        {
            if (_next[node] >= 0)
            {
                _previous[_next[node]] = node;
            }

            _next[_previous[node]] = node;
        }
    }

    private readonly struct CacheKey(ulong hash, int state, ulong[] linearized) : IEquatable<CacheKey>
    {
        private readonly ulong _hash = hash;
        private readonly int _state = state;
        private readonly ulong[] _linearized = linearized;

        public bool Equals(CacheKey other) =>
            _hash == other._hash && _state == other._state && _linearized.AsSpan().SequenceEqual(other._linearized);

        public override bool Equals(object? obj) => obj is CacheKey other && Equals(other);

        public override int GetHashCode() => HashCode.Combine(_hash, _state);
    }
}
