using Stcache.Testing;

namespace Stcache.Simulation.Checker;

public sealed class LinearizabilityCheckerTests
{
    [Fact]
    public void SequentialHistoryIsLinearizable()
    {
        var h = new KvHistory();
        var s = h.InvokeSet(1, "k", "a", 0);
        KvHistory.CompleteWrite(s, 1);
        var g = h.InvokeGet(1, "k", 2);
        KvHistory.CompleteGet(g, "a", 3);
        var d = h.InvokeDelete(1, "k", 4);
        KvHistory.CompleteWrite(d, 5);
        var g2 = h.InvokeGet(2, "k", 6);
        KvHistory.CompleteGet(g2, null, 7);
        Assert.True(LinearizabilityChecker.Check(h).IsLinearizable);
    }

    [Fact]
    public void StaleReadAfterAcknowledgedWriteIsNotLinearizable()
    {
        var h = new KvHistory();
        var s1 = h.InvokeSet(1, "k", "a", 0);
        KvHistory.CompleteWrite(s1, 1);
        var s2 = h.InvokeSet(1, "k", "b", 2);
        KvHistory.CompleteWrite(s2, 3);
        var g = h.InvokeGet(2, "k", 4);
        KvHistory.CompleteGet(g, "a", 5);
        var result = LinearizabilityChecker.Check(h);
        Assert.Equal(LinearizabilityVerdict.NotLinearizable, result.Verdict);
        string text = result.Describe();
        Assert.Contains("get(k) -> 'a'", text, StringComparison.Ordinal);
    }

    [Fact]
    public void ConcurrentReadMaySeeEitherValue()
    {
        var h = new KvHistory();
        var s1 = h.InvokeSet(1, "k", "a", 0);
        KvHistory.CompleteWrite(s1, 1);
        var s2 = h.InvokeSet(1, "k", "b", 2);
        var g1 = h.InvokeGet(2, "k", 3);
        KvHistory.CompleteGet(g1, "b", 4);
        var g2 = h.InvokeGet(3, "k", 5);
        KvHistory.CompleteGet(g2, "b", 6);
        KvHistory.CompleteWrite(s2, 10);
        Assert.True(LinearizabilityChecker.Check(h).IsLinearizable);
    }

    [Fact]
    public void ReadsMustNotGoBackInTime()
    {
        // Two sequential reads concurrent with one write: new value then old value is a violation.
        var h = new KvHistory();
        var s1 = h.InvokeSet(1, "k", "a", 0);
        KvHistory.CompleteWrite(s1, 1);
        var s2 = h.InvokeSet(1, "k", "b", 2);
        var g1 = h.InvokeGet(2, "k", 3);
        KvHistory.CompleteGet(g1, "b", 4);
        var g2 = h.InvokeGet(3, "k", 5);
        KvHistory.CompleteGet(g2, "a", 6);
        KvHistory.CompleteWrite(s2, 10);
        Assert.Equal(LinearizabilityVerdict.NotLinearizable, LinearizabilityChecker.Check(h).Verdict);
    }

    [Fact]
    public void UnknownWriteMayTakeEffectLate()
    {
        var h = new KvHistory();
        h.InvokeSet(1, "k", "a", 0); // never completes
        var g1 = h.InvokeGet(2, "k", 5);
        KvHistory.CompleteGet(g1, null, 6);
        var g2 = h.InvokeGet(2, "k", 100);
        KvHistory.CompleteGet(g2, "a", 101);
        Assert.True(LinearizabilityChecker.Check(h).IsLinearizable);
    }

    [Fact]
    public void UnknownWriteMayNeverTakeEffect()
    {
        var h = new KvHistory();
        h.InvokeSet(1, "k", "a", 0);
        var g1 = h.InvokeGet(2, "k", 100);
        KvHistory.CompleteGet(g1, null, 101);
        Assert.True(LinearizabilityChecker.Check(h).IsLinearizable);
    }

    [Fact]
    public void UnknownWriteCannotTakeEffectBeforeItsInvocation()
    {
        var h = new KvHistory();
        var g1 = h.InvokeGet(2, "k", 0);
        KvHistory.CompleteGet(g1, "a", 1);
        h.InvokeSet(1, "k", "a", 5);
        Assert.Equal(LinearizabilityVerdict.NotLinearizable, LinearizabilityChecker.Check(h).Verdict);
    }

    [Fact]
    public void CompareAndSetSemantics()
    {
        var h = new KvHistory();
        var c1 = h.InvokeCompareAndSet(1, "k", null, "a", 0);
        KvHistory.CompleteCompareAndSet(c1, true, 1);
        var c2 = h.InvokeCompareAndSet(2, "k", null, "b", 2);
        KvHistory.CompleteCompareAndSet(c2, false, 3);
        var c3 = h.InvokeCompareAndSet(2, "k", "a", "c", 4);
        KvHistory.CompleteCompareAndSet(c3, true, 5);
        Assert.True(LinearizabilityChecker.Check(h).IsLinearizable);

        var bad = new KvHistory();
        var b1 = bad.InvokeCompareAndSet(1, "k", null, "a", 0);
        KvHistory.CompleteCompareAndSet(b1, true, 1);
        var b2 = bad.InvokeCompareAndSet(2, "k", null, "b", 2);
        KvHistory.CompleteCompareAndSet(b2, true, 3);
        Assert.Equal(LinearizabilityVerdict.NotLinearizable, LinearizabilityChecker.Check(bad).Verdict);
    }

    [Fact]
    public void KeysAreCheckedIndependently()
    {
        var h = new KvHistory();
        var a = h.InvokeSet(1, "x", "1", 0);
        KvHistory.CompleteWrite(a, 1);
        var b = h.InvokeGet(1, "y", 2);
        KvHistory.CompleteGet(b, null, 3);
        var c = h.InvokeGet(1, "y", 4);
        KvHistory.CompleteGet(c, "1", 5);
        var result = LinearizabilityChecker.Check(h);
        Assert.Equal(LinearizabilityVerdict.NotLinearizable, result.Verdict);
        Assert.Equal(LinearizabilityVerdict.Linearizable, result.Keys.Single(k => k.Key == "x").Verdict);
        Assert.Equal(LinearizabilityVerdict.NotLinearizable, result.Keys.Single(k => k.Key == "y").Verdict);
    }

    [Fact]
    public void TinyBudgetReportsUnknownNotFailure()
    {
        var h = new KvHistory();
        for (int i = 0; i < 20; i++)
        {
            h.InvokeSet(i, "k", i.ToString(System.Globalization.CultureInfo.InvariantCulture), 0);
        }

        var g = h.InvokeGet(99, "k", 1);
        KvHistory.CompleteGet(g, "nope", 2);
        var result = LinearizabilityChecker.Check(h, stepBudgetPerKey: 5);
        Assert.Equal(LinearizabilityVerdict.Unknown, result.Verdict);
    }

    [Fact]
    public void ManyConcurrentWritesAreCheckedQuickly()
    {
        // 12 overlapping writes followed by a read of one of them: the memoization keeps this small.
        var h = new KvHistory();
        var writes = new List<KvOperation>();
        for (int i = 0; i < 12; i++)
        {
            writes.Add(h.InvokeSet(i, "k", i.ToString(System.Globalization.CultureInfo.InvariantCulture), i));
        }

        foreach (var w in writes)
        {
            KvHistory.CompleteWrite(w, 1000 + w.Id);
        }

        var g = h.InvokeGet(500, "k", 5000);
        KvHistory.CompleteGet(g, "7", 5001);
        var result = LinearizabilityChecker.Check(h);
        Assert.True(result.IsLinearizable, result.Describe());
    }

    [Fact]
    public void RandomHistoriesAgreeWithBruteForce()
    {
        var random = new SplitMix(20261122);
        int checkedNonTrivial = 0;
        for (int round = 0; round < 3000; round++)
        {
            var h = RandomHistory(random, operationCount: 1 + (int)random.Next(6));
            bool expected = BruteForce.IsLinearizable(h.Operations);
            var actual = LinearizabilityChecker.Check(h);
            Assert.True(expected == actual.IsLinearizable, $"round {round}: brute force says {expected}, checker {actual.Verdict}\n{string.Join('\n', h.Operations)}");
            checkedNonTrivial += expected ? 0 : 1;
        }

        Assert.True(checkedNonTrivial > 100, "the random generator should produce non-linearizable histories too");
    }

    private static KvHistory RandomHistory(SplitMix random, int operationCount)
    {
        var h = new KvHistory();
        string[] values = ["a", "b", "c"];
        var events = new List<(long Time, KvOperation Op, bool Unknown)>();
        for (int i = 0; i < operationCount; i++)
        {
            long start = (long)random.Next(10);
            long end = start + (long)random.Next(6);
            bool unknown = random.Next(6) == 0;
            int kind = (int)random.Next(4);
            string? Pick() => random.Next(4) == 0 ? null : values[random.Next(3)];
            KvOperation op = kind switch
            {
                0 => h.InvokeGet(i, "k", start),
                1 => h.InvokeSet(i, "k", values[random.Next(3)], start),
                2 => h.InvokeDelete(i, "k", start),
                _ => h.InvokeCompareAndSet(i, "k", Pick(), values[random.Next(3)], start),
            };
            if (!unknown)
            {
                switch (op.Kind)
                {
                    case KvOperationKind.Get:
                        KvHistory.CompleteGet(op, Pick(), end);
                        break;
                    case KvOperationKind.CompareAndSet:
                        KvHistory.CompleteCompareAndSet(op, random.Next(2) == 0, end);
                        break;
                    default:
                        KvHistory.CompleteWrite(op, end);
                        break;
                }
            }
        }

        return h;
    }

    /// <summary>Reference: tries every order of every subset that contains all completed operations.</summary>
    private static class BruteForce
    {
        public static bool IsLinearizable(IReadOnlyList<KvOperation> ops)
        {
            var used = new bool[ops.Count];
            return Search(ops, used, null, 0);
        }

        private static bool Search(IReadOnlyList<KvOperation> ops, bool[] used, string? state, int placed)
        {
            bool allCompletedPlaced = true;
            for (int i = 0; i < ops.Count; i++)
            {
                if (!used[i] && ops[i].IsComplete)
                {
                    allCompletedPlaced = false;
                }
            }

            if (allCompletedPlaced)
            {
                return true;
            }

            for (int i = 0; i < ops.Count; i++)
            {
                if (used[i])
                {
                    continue;
                }

                // i may go next only if no unplaced completed op finished strictly before i was invoked.
                bool allowed = true;
                for (int j = 0; j < ops.Count; j++)
                {
                    if (j != i && !used[j] && ops[j].CompleteTime is { } end && end < ops[i].InvokeTime)
                    {
                        allowed = false;
                    }
                }

                if (!allowed || !Step(ops[i], state, out string? next))
                {
                    continue;
                }

                used[i] = true;
                bool found = Search(ops, used, next, placed + 1);
                used[i] = false;
                if (found)
                {
                    return true;
                }
            }

            return false;
        }

        private static bool Step(KvOperation op, string? state, out string? next)
        {
            next = state;
            switch (op.Kind)
            {
                case KvOperationKind.Get:
                    return !op.IsComplete || op.Result == state;
                case KvOperationKind.Set:
                    next = op.Value;
                    return true;
                case KvOperationKind.Delete:
                    next = null;
                    return true;
                default:
                    bool matches = op.Expected == state;
                    if (!op.IsComplete)
                    {
                        next = matches ? op.Value : state;
                        return true;
                    }

                    if (op.Succeeded)
                    {
                        next = op.Value;
                        return matches;
                    }

                    return !matches;
            }
        }
    }
}
