using Stcache.Faults.Tests.Workload;
using Stcache.Testing;

namespace Stcache.Faults.Tests;

/// <summary>The RESP model and its check: INCR, SET … GET, DEL and MULTI/EXEC, with unknown outcomes.</summary>
public sealed class RespHistoryCheckTests
{
    [Fact]
    public void Incr_counts_from_absent_and_a_lost_increment_is_caught()
    {
        var ok = new[]
        {
            Op(1, [Step(RespStepKind.Incr, 0)], 0, 10, [RespReply.Integer(1)]),
            Op(2, [Step(RespStepKind.Incr, 0)], 20, 30, [RespReply.Integer(2)]),
            Op(1, [Step(RespStepKind.Get, 0)], 40, 50, [RespReply.Bulk("2")]),
        };
        Assert.True(Linearizable(ok));

        var lost = ok.Select(o => o.InvokeTime == 40 ? o with { Replies = [RespReply.Bulk("1")] } : o).ToArray();
        Assert.False(Linearizable(lost));
    }

    [Fact]
    public void An_unknown_incr_may_have_happened_or_not_but_only_once()
    {
        var unknown = Op(1, [Step(RespStepKind.Incr, 0)], 0, 10, null, OpOutcome.Unknown);
        Assert.True(Linearizable([unknown, Op(2, [Step(RespStepKind.Get, 0)], 20, 30, [RespReply.Bulk("1")])]));
        Assert.True(Linearizable([unknown, Op(2, [Step(RespStepKind.Get, 0)], 20, 30, [RespReply.Nil])]));
        Assert.False(Linearizable([unknown, Op(2, [Step(RespStepKind.Get, 0)], 20, 30, [RespReply.Bulk("2")])]));
    }

    [Fact]
    public void Set_get_answers_the_old_value_and_del_counts()
    {
        var ops = new[]
        {
            Op(1, [Step(RespStepKind.Set, 0, 5)], 0, 10, [RespReply.Ok]),
            Op(2, [Step(RespStepKind.SetGet, 0, 7)], 20, 30, [RespReply.Bulk("5")]),
            Op(1, [Step(RespStepKind.Del, 0)], 40, 50, [RespReply.Integer(1)]),
            Op(2, [Step(RespStepKind.Del, 0)], 60, 70, [RespReply.Integer(0)]),
        };
        Assert.True(Linearizable(ops));
        Assert.False(Linearizable(ops.Select(o => o.InvokeTime == 60 ? o with { Replies = [RespReply.Integer(1)] } : o)));
    }

    [Fact]
    public void A_transaction_is_atomic_across_both_keys_of_its_group()
    {
        // MULTI SET a 1; SET b 1 EXEC, concurrent with MULTI GET a; GET b EXEC: seeing one write without the other
        // is not explained by any order.
        var write = Op(1, [Step(RespStepKind.Set, 0, 1), Step(RespStepKind.Set, 1, 1)], 0, 100, [RespReply.Ok, RespReply.Ok], transaction: true);
        var torn = Op(2, [Step(RespStepKind.Get, 0), Step(RespStepKind.Get, 1)], 10, 90, [RespReply.Bulk("1"), RespReply.Nil], transaction: true);
        var whole = torn with { Replies = [RespReply.Bulk("1"), RespReply.Bulk("1")] };
        Assert.True(Linearizable([write, whole]));
        Assert.False(Linearizable([write, torn]));
    }

    [Fact]
    public void A_failed_write_never_happened()
    {
        var ops = new[]
        {
            Op(1, [Step(RespStepKind.Set, 1, 9)], 0, 10, null, OpOutcome.Fail),
            Op(2, [Step(RespStepKind.Get, 1)], 20, 30, [RespReply.Bulk("9")]),
        };
        Assert.False(Linearizable(ops));
    }

    private static bool Linearizable(IEnumerable<RespRecordedOp> ops) =>
        RespModel.Check(ops.ToList()).All(r => r.Verdict == LinearizabilityVerdict.Linearizable);

    private static RespStep Step(RespStepKind kind, int slot, long value = 0) => new(kind, slot, value);

    private static RespRecordedOp Op(int client, RespStep[] steps, long invoke, long complete, RespReply[]? replies, OpOutcome outcome = OpOutcome.Ok, bool transaction = false) =>
        new(client, "g", steps, transaction || steps.Length > 1, "n1", invoke, complete, outcome, replies, "test");
}
