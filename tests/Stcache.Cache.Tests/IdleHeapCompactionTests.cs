using Stcache.Cache;

namespace Stcache.Cache.Tests;

public sealed class IdleHeapCompactionTests
{
    private const long MiB = 1L << 20;

    private sealed class Clock(IdleHeapCompaction policy)
    {
        public long Allocated { get; set; }

        public long Committed { get; set; } = 100 * MiB;

        public long Live { get; set; } = 90 * MiB;

        public int FullCollections { get; set; }

        public TimeSpan Time { get; private set; }

        public HeapSample Sample => new(Time, Allocated, Committed, Live, FullCollections);

        public HeapAction Check(long allocated = 0)
        {
            Time += policy.Settings.CheckInterval;
            Allocated += allocated;
            return policy.Next(Sample);
        }
    }

    private static (IdleHeapCompaction Policy, Clock Clock) Start()
    {
        var policy = new IdleHeapCompaction(new IdleHeapCompaction.Options());
        var clock = new Clock(policy);
        Assert.Equal(HeapAction.None, clock.Check());
        return (policy, clock);
    }

    [Fact]
    public void A_node_that_grew_then_turned_idle_measures_then_compacts_once()
    {
        var (policy, clock) = Start();

        // A load: allocations in every check, committed memory grows by 200 MiB, of which 130 are live.
        for (int i = 0; i < 10; i++)
        {
            clock.Committed += 20 * MiB;
            clock.Live += 13 * MiB;
            Assert.Equal(HeapAction.None, clock.Check(allocated: 100 * MiB));
        }

        // Idle: the first quiet check is not enough, the second asks for a measuring collection.
        Assert.Equal(HeapAction.None, clock.Check(allocated: MiB));
        Assert.Equal(HeapAction.Measure, clock.Check(allocated: MiB));

        // Until that collection is seen, nothing more.
        Assert.Equal(HeapAction.None, clock.Check());
        clock.FullCollections++;
        Assert.Equal(HeapAction.Compact, clock.Check());

        clock.FullCollections++;
        clock.Committed = clock.Live + (8 * MiB);
        policy.Compacted(clock.Sample);
        for (int i = 0; i < 200; i++)
        {
            Assert.Equal(HeapAction.None, clock.Check());
        }
    }

    [Fact]
    public void Nothing_happens_while_the_node_allocates_or_without_a_growth()
    {
        var (_, clock) = Start();
        for (int i = 0; i < 50; i++)
        {
            Assert.Equal(HeapAction.None, clock.Check());
        }

        clock.Committed += 300 * MiB;
        for (int i = 0; i < 50; i++)
        {
            Assert.Equal(HeapAction.None, clock.Check(allocated: 50 * MiB));
        }
    }

    [Fact]
    public void A_growth_that_is_live_becomes_the_baseline_without_a_compaction()
    {
        var (_, clock) = Start();
        clock.Committed += 200 * MiB;
        clock.Live += 195 * MiB;
        Assert.Equal(HeapAction.None, clock.Check());
        Assert.Equal(HeapAction.Measure, clock.Check());
        clock.FullCollections++;
        Assert.Equal(HeapAction.None, clock.Check());
        for (int i = 0; i < 50; i++)
        {
            Assert.Equal(HeapAction.None, clock.Check());
        }

        // A further growth is measured again.
        clock.Committed += 100 * MiB;
        Assert.Equal(HeapAction.Measure, clock.Check());
    }

    [Fact]
    public void Compactions_are_spaced_by_the_minimum_interval()
    {
        var (policy, clock) = Start();
        clock.Committed += 200 * MiB;
        clock.Check();
        Assert.Equal(HeapAction.Measure, clock.Check());
        clock.FullCollections++;
        Assert.Equal(HeapAction.Compact, clock.Check());
        clock.FullCollections++;
        clock.Committed = 100 * MiB;
        policy.Compacted(clock.Sample);

        // Another growth right after: not before five minutes have passed since the compaction.
        clock.Committed += 200 * MiB;
        var compactedAt = clock.Time;
        HeapAction action;
        do
        {
            action = clock.Check();
        }
        while (action == HeapAction.None && clock.Time - compactedAt < TimeSpan.FromMinutes(10));

        Assert.Equal(HeapAction.Measure, action);
        Assert.True(clock.Time - compactedAt >= policy.Settings.MinimumSpacing);
    }
}
