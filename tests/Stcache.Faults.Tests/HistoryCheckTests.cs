using Stcache.Faults.Tests.Workload;
using Stcache.Testing;

namespace Stcache.Faults.Tests;

/// <summary>The recorded-operation to history conversion: outcomes map onto the checker's model as intended.</summary>
public sealed class HistoryCheckTests
{
    [Fact]
    public void An_acknowledged_write_that_a_later_read_misses_is_not_linearizable()
    {
        var ops = new[]
        {
            Op(1, KvOperationKind.Set, "a", "v1", null, 0, 10, OpOutcome.Ok),
            Op(2, KvOperationKind.Get, "a", null, null, 20, 30, OpOutcome.Ok, result: null),
        };
        Assert.Equal(LinearizabilityVerdict.NotLinearizable, HistoryCheck.Check(ops).Result.Verdict);
    }

    [Fact]
    public void An_unknown_write_may_or_may_not_have_happened()
    {
        var seen = new[]
        {
            Op(1, KvOperationKind.Set, "a", "v1", null, 0, 10, OpOutcome.Unknown),
            Op(2, KvOperationKind.Get, "a", null, null, 20, 30, OpOutcome.Ok, result: "v1"),
        };
        var missed = new[]
        {
            Op(1, KvOperationKind.Set, "a", "v1", null, 0, 10, OpOutcome.Unknown),
            Op(2, KvOperationKind.Get, "a", null, null, 20, 30, OpOutcome.Ok, result: null),
        };
        Assert.True(HistoryCheck.Check(seen).Result.IsLinearizable);
        Assert.True(HistoryCheck.Check(missed).Result.IsLinearizable);
    }

    [Fact]
    public void A_failed_write_never_happened()
    {
        var ops = new[]
        {
            Op(1, KvOperationKind.Set, "a", "v1", null, 0, 10, OpOutcome.Fail),
            Op(2, KvOperationKind.Get, "a", null, null, 20, 30, OpOutcome.Ok, result: "v1"),
        };
        Assert.Equal(LinearizabilityVerdict.NotLinearizable, HistoryCheck.Check(ops).Result.Verdict);
    }

    [Fact]
    public void Compare_and_set_and_delete_follow_the_model()
    {
        var ops = new[]
        {
            Op(1, KvOperationKind.Set, "a", "v1", null, 0, 10, OpOutcome.Ok),
            Op(2, KvOperationKind.CompareAndSet, "a", "v2", "v1", 20, 30, OpOutcome.Ok, succeeded: true),
            Op(3, KvOperationKind.CompareAndSet, "a", "v3", "v1", 40, 50, OpOutcome.Ok, succeeded: false),
            Op(1, KvOperationKind.Get, "a", null, null, 60, 70, OpOutcome.Ok, result: "v2"),
            Op(2, KvOperationKind.Delete, "a", null, null, 80, 90, OpOutcome.Ok),
            Op(3, KvOperationKind.Get, "a", null, null, 100, 110, OpOutcome.Ok, result: null),
        };
        Assert.True(HistoryCheck.Check(ops).Result.IsLinearizable);

        var wrong = ops.Select(o => o.Kind == KvOperationKind.CompareAndSet && o.Value == "v3" ? o with { Succeeded = true } : o).ToArray();
        Assert.Equal(LinearizabilityVerdict.NotLinearizable, HistoryCheck.Check(wrong).Result.Verdict);
    }

    private static RecordedOp Op(int client, KvOperationKind kind, string key, string? value, string? expected, long invoke, long complete, OpOutcome outcome, string? result = null, bool succeeded = true) =>
        new(client, kind, key, value, expected, "n1", invoke, complete, outcome, result, kind == KvOperationKind.CompareAndSet ? succeeded : true, "test");
}
