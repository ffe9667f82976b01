using Stcache.Node;
using Stcache.Raft;

namespace Stcache.Integration.Tests;

/// <summary>The pipelined writer's group commit: consecutive persist jobs merged into what one log save writes.</summary>
public sealed class PersistJobTests
{
    private static Entry E(ulong index, ulong term) => new(new Term(term), new LogIndex(index), EntryType.Normal, new byte[] { (byte)index });

    private static PersistJob Job(HardState? hard, params Entry[] entries) => new(hard, entries, []);

    [Fact]
    public void Consecutive_jobs_append_and_the_newest_hard_state_wins()
    {
        var first = new HardState(new Term(2), new NodeId(1), new LogIndex(3));
        var second = new HardState(new Term(2), new NodeId(1), new LogIndex(5));
        var (hard, entries) = PersistJob.Coalesce([Job(first, E(4, 2), E(5, 2)), Job(null, E(6, 2)), Job(second), Job(null, E(7, 2))]);
        Assert.Equal(second, hard);
        Assert.Equal([4UL, 5, 6, 7], entries.Select(e => e.Index.Value));
    }

    [Fact]
    public void A_later_job_replaces_the_earlier_entries_from_its_first_index()
    {
        var (_, entries) = PersistJob.Coalesce([Job(null, E(4, 2), E(5, 2), E(6, 2)), Job(null, E(5, 3), E(6, 3), E(7, 3))]);
        Assert.Equal([(4UL, 2UL), (5, 3), (6, 3), (7, 3)], entries.Select(e => (e.Index.Value, e.Term.Value)));

        // Starting before every merged entry, it replaces them all (the save then replaces the log from there).
        (_, entries) = PersistJob.Coalesce([Job(null, E(6, 2), E(7, 2)), Job(null, E(5, 3))]);
        Assert.Equal([(5UL, 3UL)], entries.Select(e => (e.Index.Value, e.Term.Value)));
    }

    [Fact]
    public void A_gap_between_jobs_is_a_bug_and_throws()
    {
        Assert.Throws<InvalidOperationException>(() => PersistJob.Coalesce([Job(null, E(4, 2)), Job(null, E(6, 2))]));
    }
}
