using System.Text;
using Stcache.Cache;

namespace Stcache.Cache.Tests;

public sealed class AccessRecorderTests
{
    private static byte[] Key(int i) => Encoding.UTF8.GetBytes("k" + i);

    [Fact]
    public void Counts_each_key_up_to_the_cap_and_starts_afresh_after_a_drain()
    {
        var recorder = new AccessRecorder();
        for (int i = 0; i < AccessRecorder.CountMax + 3; i++)
        {
            recorder.Record(Key(1));
        }

        recorder.Record(Key(2));
        var report = recorder.Drain();
        Assert.Equal(AccessRecorder.CountMax, report.Count(k => k.SequenceEqual(Key(1))));
        Assert.Single(report, k => k.SequenceEqual(Key(2)));
        Assert.Empty(recorder.Drain());
    }

    [Fact]
    public void Once_full_every_sixteenth_new_key_replaces_a_recorded_one()
    {
        var recorder = new AccessRecorder();
        for (int i = 0; i < AccessRecorder.CapacityKeys; i++)
        {
            recorder.Record(Key(i));
        }

        int extra = AccessRecorder.SampleEvery * 100;
        for (int i = 0; i < extra; i++)
        {
            recorder.Record(Key(AccessRecorder.CapacityKeys + i));
        }

        var keys = recorder.Drain().Select(Encoding.UTF8.GetString).ToHashSet();
        Assert.Equal(AccessRecorder.CapacityKeys, keys.Count);
        var sampled = Enumerable.Range(0, extra).Where(i => (i + 1) % AccessRecorder.SampleEvery == 0)
            .Select(i => "k" + (AccessRecorder.CapacityKeys + i));
        Assert.All(sampled, key => Assert.Contains(key, keys));
        Assert.Equal(AccessRecorder.CapacityKeys - 100, Enumerable.Range(0, AccessRecorder.CapacityKeys).Count(i => keys.Contains("k" + i)));

        // The next report starts empty and fills again from its own reads.
        recorder.Record(Key(7));
        Assert.Single(recorder.Drain());
    }
}
