using Stcache.LoadGen;

namespace Stcache.LoadGen.Tests;

public sealed class LatencyHistogramTests
{
    private static readonly double[] s_percentiles = [0, 1, 10, 25, 50, 75, 90, 95, 99, 99.9, 99.99, 100];

    // The reference: the smallest value such that at least p% of the sorted values are <= it.
    private static long Reference(long[] sorted, double percentile)
    {
        long rank = Math.Max(1, (long)Math.Ceiling(percentile / 100.0 * sorted.Length));
        return sorted[rank - 1];
    }

    private static void AssertMatchesReference(LatencyHistogram histogram, long[] values)
    {
        var sorted = values.Order().ToArray();
        Assert.Equal(sorted.Length, histogram.TotalCount);
        Assert.Equal(sorted[0], histogram.Min);
        Assert.Equal(sorted[^1], histogram.Max);
        Assert.Equal(sorted.Average(v => (double)v), histogram.Mean, 6);
        foreach (double p in s_percentiles)
        {
            long expected = Reference(sorted, p);
            long actual = histogram.ValueAtPercentile(p);

            // Never below the true value, and above it by at most one bucket width (relative 2^-SubBucketBits).
            Assert.True(actual >= expected, $"p{p}: {actual} < reference {expected}");
            long tolerance = expected >> LatencyHistogram.SubBucketBits;
            Assert.True(actual - expected <= tolerance, $"p{p}: {actual} exceeds reference {expected} by more than {tolerance}");
        }
    }

    [Theory]
    [InlineData(1, 1)]
    [InlineData(2, 10)]
    [InlineData(3, 1_000)]
    [InlineData(4, 100_000)]
    public void Percentiles_match_sorted_reference_for_log_normal_latencies(int seed, int count)
    {
        var random = new Random(seed);
        var values = new long[count];
        var histogram = new LatencyHistogram();
        for (int i = 0; i < count; i++)
        {
            // Latencies from ~10 µs to ~10 s in nanoseconds, heavy-tailed like real ones.
            double normal = Math.Sqrt(-2 * Math.Log(1 - random.NextDouble())) * Math.Cos(2 * Math.PI * random.NextDouble());
            values[i] = (long)Math.Exp(13.8 + (2.0 * normal));
            histogram.Record(values[i]);
        }

        AssertMatchesReference(histogram, values);
    }

    [Fact]
    public void Small_values_are_exact()
    {
        var histogram = new LatencyHistogram();
        long[] values = [0, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 127];
        foreach (long v in values)
        {
            histogram.Record(v);
        }

        var sorted = values.Order().ToArray();
        foreach (double p in s_percentiles)
        {
            Assert.Equal(Reference(sorted, p), histogram.ValueAtPercentile(p));
        }
    }

    [Fact]
    public void Merged_histograms_equal_one_histogram_of_all_values()
    {
        var random = new Random(7);
        var parts = Enumerable.Range(0, 4).Select(_ => new LatencyHistogram()).ToArray();
        var whole = new LatencyHistogram();
        var values = new long[20_000];
        for (int i = 0; i < values.Length; i++)
        {
            values[i] = random.NextInt64(1, 50_000_000);
            parts[i % parts.Length].Record(values[i]);
            whole.Record(values[i]);
        }

        var merged = new LatencyHistogram();
        foreach (var part in parts)
        {
            merged.Add(part);
        }

        foreach (double p in s_percentiles)
        {
            Assert.Equal(whole.ValueAtPercentile(p), merged.ValueAtPercentile(p));
        }

        AssertMatchesReference(merged, values);
    }

    [Fact]
    public void Bucket_bounds_contain_their_values_across_the_range()
    {
        var random = new Random(11);
        for (int i = 0; i < 100_000; i++)
        {
            long value = random.NextInt64(0, long.MaxValue >> random.Next(0, 62));
            int index = LatencyHistogram.IndexOf(value);
            Assert.InRange(value, LatencyHistogram.LowestEquivalentValue(index), LatencyHistogram.HighestEquivalentValue(index));
        }

        Assert.InRange(LatencyHistogram.IndexOf(long.MaxValue), 0, int.MaxValue);
    }

    [Fact]
    public void Empty_histogram_reports_zeros()
    {
        var histogram = new LatencyHistogram();
        Assert.Equal(0, histogram.ValueAtPercentile(99));
        Assert.Equal(0, histogram.Min);
        Assert.Equal(0, histogram.Max);
    }

    [Fact]
    public void Negative_values_are_recorded_as_zero()
    {
        var histogram = new LatencyHistogram();
        histogram.Record(-5);
        Assert.Equal(0, histogram.Max);
        Assert.Equal(1, histogram.TotalCount);
    }
}
