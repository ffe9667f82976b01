using Stcache.Cache;
using Stcache.Node;

namespace Stcache.Simulation.Scenarios;

/// <summary>
/// The time a read is served at (docs/CACHE.md): the leader's when it confirmed the read index, sent back with the
/// index; never the serving node's own clock. A follower whose clock is a minute behind or ahead answers exactly as
/// the leader does.
/// </summary>
public sealed class ReadTimeScenarioTests
{
    [Fact]
    public void FollowersWithSkewedClocksServeReadsAtTheLeadersTime()
    {
        var c = new ScenarioCluster(3);
        c.Elect(1);
        c[2].Clock.OffsetMs = -60_000;
        c[3].Clock.OffsetMs = 60_000;

        long stamped = LeaderTime(c);
        var set = CommandParser.Parse(stamped, "SET", "k", "v", "PX", "1000");
        Assert.Equal(Raft.ProposeStatus.Accepted, c[1].ProposeEntry(set.Write!.Encode(stamped), _ => { }, out _));
        c.Stabilize();
        long expiresAt = stamped + 1_000;

        // Before the expiry by the leader's clock: every node serves at the leader's time and sees the key, the
        // one whose own clock is a minute past the expiry included.
        foreach (int id in new[] { 1, 2, 3 })
        {
            var point = ReadPointAt(c, id);
            Assert.Equal(LeaderTime(c), point.TimeUnixMs);
            Assert.True(c[id].Cache!.TryGet("k", out var entry, point.TimeUnixMs), $"node {id} must see the key before its expiry");
            Assert.Equal(expiresAt, entry.ExpiresAtUnixMs);
        }

        // The leader's clock passes the expiry: every node, the one whose clock is a minute behind included, no
        // longer sees the key. A lease read is served at the leader's time too.
        c[1].Clock.OffsetMs += 1_500;
        foreach (int id in new[] { 1, 2, 3 })
        {
            foreach (bool lease in new[] { false, true })
            {
                var point = ReadPointAt(c, id, lease);
                Assert.Equal(LeaderTime(c), point.TimeUnixMs);
                Assert.False(c[id].Cache!.TryGet("k", out _, point.TimeUnixMs), $"node {id} (lease={lease}) served the key after its expiry");
            }
        }
    }

    [Fact]
    public void AReadTimeIsNeverBehindTheLogTimeTheNodeApplied()
    {
        var c = new ScenarioCluster(3);
        c.Elect(1);

        // A previous leader stamped entries a minute ahead of this leader's clock: reads are served at that log
        // time until the leader's clock catches up, so nothing once expired comes back.
        long ahead = LeaderTime(c) + 60_000;
        var set = CommandParser.Parse(ahead, "SET", "k", "v", "PX", "1000");
        c[1].ProposeEntry(set.Write!.Encode(ahead), _ => { }, out _);
        c.Stabilize();
        foreach (int id in new[] { 1, 2, 3 })
        {
            Assert.Equal(ahead, ReadPointAt(c, id).TimeUnixMs);
        }
    }

    private static long LeaderTime(ScenarioCluster c) =>
        Math.Max(c[1].Clock.GetUtcNow().ToUnixTimeMilliseconds(), c[1].Cache!.LastLogTimeUnixMs);

    private static ReadPoint ReadPointAt(ScenarioCluster c, int id, bool lease = false)
    {
        ReadPoint? answer = null;
        bool called = false;
        Assert.True(c[id].ReadPoint(lease, point =>
        {
            called = true;
            answer = point;
        }));
        c.Stabilize();
        Assert.True(called, $"node {id}'s read was not answered");
        var point = Assert.NotNull(answer);

        // Served as the server serves it: never behind the node's applied log time.
        return point with { TimeUnixMs = Math.Max(point.TimeUnixMs, c[id].Cache!.LastLogTimeUnixMs) };
    }
}
