using Microsoft.Extensions.Logging.Abstractions;
using Stcache.Raft;
using Stcache.Simulation.Sim;
using Stcache.Storage;

namespace Stcache.Simulation.Checker;

/// <summary>
/// The leader-completeness check of <see cref="SafetyOracle"/>, on the shape of sim seed 62729: node 1 wins term 4
/// holding 3/8 but not 3/9 (only the cut-off leader of term 3 has it); its disk then refuses every batch and it is
/// paused, so its log (with its no-op 4/9) becomes durable, and is checked, only after the leader of term 5 committed
/// 3/9 under its own 5/10. Raft does not require node 1 to hold an entry committed in a later term than its own.
/// </summary>
public sealed class SafetyOracleTests
{
    private static readonly NodeId s_n1 = new(1);
    private static readonly NodeId s_n3 = new(3);

    [Fact]
    public void LeaderNeedNotHoldAnOlderTermEntryCommittedInALaterTerm()
    {
        var oracle = new SafetyOracle();
        var disk = NodeOneDisk(oracle);
        ApplyPrefix(oracle);

        // The leader of term 5 (node 3) commits 3/9 by committing 5/10 over it, and applies both at term 5.
        oracle.ObserveApplied(s_n3, T(5), E(3, 9), time: 1123);
        oracle.ObserveApplied(s_n3, T(5), E(5, 10), time: 1123);

        oracle.CheckLeaderCompleteness(s_n1, T(4), disk);
    }

    [Fact]
    public void LeaderMustHoldAnEntryCommittedBeforeItsTerm()
    {
        var oracle = new SafetyOracle();
        var disk = NodeOneDisk(oracle);
        ApplyPrefix(oracle);

        // Had 3/9 been committed in term 3 (applied by a node still in term 3), a leader of term 4 missing it is a
        // violation, even though that node applied it after the election.
        oracle.ObserveApplied(s_n3, T(3), E(3, 9), time: 320);

        var failure = Assert.Throws<SimulationFailureException>(() => oracle.CheckLeaderCompleteness(s_n1, T(4), disk));
        Assert.Contains("node 1 became leader of term 4 but holds term 4 at index 9, where term 3 is committed", failure.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void TheLowestTermAnyNodeAppliedAnEntryInBoundsItsCommitTerm()
    {
        var oracle = new SafetyOracle();
        var disk = NodeOneDisk(oracle);
        ApplyPrefix(oracle);

        // One node applied 3/9 at term 5, another at term 3: it was committed in term 3 at the latest.
        oracle.ObserveApplied(s_n3, T(5), E(3, 9), time: 1123);
        oracle.ObserveApplied(new NodeId(2), T(3), E(3, 9), time: 1124);

        Assert.Throws<SimulationFailureException>(() => oracle.CheckLeaderCompleteness(s_n1, T(4), disk));
    }

    // Node 1's durable log: 2/1..2/7 (term 2), 3/8, and its own no-op 4/9 as the leader of term 4.
    private static DurableLog NodeOneDisk(SafetyOracle oracle)
    {
        var log = new DurableLog(s_n1, oracle);
        var wal = WriteAheadLog.Open(new SimFileSystem(new SplitMix(62729)), "/wal", new WalOptions { PrepareSegmentsAhead = false }, NullLogger.Instance);
        log.Attach(wal);
        log.Load();
        List<Entry> entries = [.. Enumerable.Range(1, 7).Select(i => E(2, (ulong)i)), E(3, 8), E(4, 9)];
        log.Save(new HardState(T(4), s_n1, new LogIndex(8)), entries);
        return log;
    }

    // Indices 1..8 committed in their own terms (2/1..2/7 in term 2, 3/8 in term 3), as in the seed.
    private static void ApplyPrefix(SafetyOracle oracle)
    {
        for (ulong i = 1; i <= 7; i++)
        {
            oracle.ObserveApplied(s_n3, T(2), E(2, i), time: 100);
        }

        oracle.ObserveApplied(s_n3, T(3), E(3, 8), time: 298);
    }

    private static Term T(ulong term) => new(term);

    private static Entry E(ulong term, ulong index) => new(T(term), new LogIndex(index), EntryType.Normal, new byte[] { (byte)term, (byte)index });
}
