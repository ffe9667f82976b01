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
/// key is checked alone), then runs <see cref="WingGongSearch"/> over a register model of the key. Operations with
/// unknown outcome may take effect at any point after their invocation, or never.
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

        public KeySearch(string key, List<KvOperation> operations, long budget)
        {
            _key = key;
            _budget = budget;

            // A get whose outcome is unknown has no effect on anything: drop it.
            _operations = operations.Where(o => o.IsComplete || o.Kind != KvOperationKind.Get).ToList();
        }

        public KeyCheckResult Run()
        {
            int n = _operations.Count;
            if (!_operations.Any(o => o.IsComplete))
            {
                return new KeyCheckResult(_key, LinearizabilityVerdict.Linearizable, n, 0, null);
            }

            var intervals = _operations.Select(o => new WingGongSearch.Interval(o.InvokeTime, o.CompleteTime)).ToList();
            var outcome = WingGongSearch.Run(intervals, Absent, (int state, int op, out int next) => TryStep(state, _operations[op], out next), _budget);
            string? explanation = outcome.Verdict switch
            {
                LinearizabilityVerdict.Linearizable => null,
                LinearizabilityVerdict.Unknown => "search budget exhausted",
                _ => Explain(outcome.LongestPrefix, outcome.StateAfterPrefix),
            };
            return new KeyCheckResult(_key, outcome.Verdict, n, outcome.Steps, explanation);
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

        private string Explain(IReadOnlyList<int> best, int stateAfter)
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
}
