using System.Numerics;

namespace Stcache.LoadGen;

/// <summary>
/// An HDR-style histogram of non-negative values (nanoseconds here) with log-linear buckets: values below
/// 2^<see cref="SubBucketBits"/> are counted exactly; above that, every power-of-two range is cut into
/// 2^<see cref="SubBucketBits"/> equal buckets, so a recorded value is known to within a relative error of
/// 2^-SubBucketBits (under 0.8% with 7 bits). Recording is one array increment and never allocates.
/// Not thread-safe: give each worker its own histogram and <see cref="Add"/> them at the end.
/// </summary>
public sealed class LatencyHistogram
{
    public const int SubBucketBits = 7;

    private const int SubBucketCount = 1 << SubBucketBits;

    // Buckets for values up to 2^62: one exact range, then (62 - SubBucketBits + 1) halved ranges.
    private const int BucketCount = SubBucketCount * (64 - SubBucketBits);

    private readonly long[] _counts = new long[BucketCount];

    // Invariant: _totalCount == sum of _counts; _min <= _max when _totalCount > 0.
    private long _totalCount;
    private long _min = long.MaxValue;
    private long _max;
    private double _sum;

    public long TotalCount => _totalCount;

    public long Min => _totalCount == 0 ? 0 : _min;

    public long Max => _max;

    public double Mean => _totalCount == 0 ? 0 : _sum / _totalCount;

    public void Record(long value)
    {
        if (value < 0)
        {
            value = 0;
        }

        _counts[IndexOf(value)]++;
        _totalCount++;
        _sum += value;
        if (value < _min)
        {
            _min = value;
        }

        if (value > _max)
        {
            _max = value;
        }
    }

    /// <summary>Adds every count of <paramref name="other"/> to this histogram.</summary>
    public void Add(LatencyHistogram other)
    {
        ArgumentNullException.ThrowIfNull(other);
        for (int i = 0; i < BucketCount; i++)
        {
            _counts[i] += other._counts[i];
        }

        _totalCount += other._totalCount;
        _sum += other._sum;
        if (other._totalCount > 0)
        {
            _min = Math.Min(_min, other._min);
            _max = Math.Max(_max, other._max);
        }
    }

    public void Reset()
    {
        Array.Clear(_counts);
        _totalCount = 0;
        _sum = 0;
        _min = long.MaxValue;
        _max = 0;
    }

    /// <summary>
    /// The value at <paramref name="percentile"/> (0..100): the smallest recorded value v such that at least
    /// percentile% of the values are &lt;= v, reported as the highest value of its bucket (clamped to the
    /// observed maximum), like HdrHistogram's getValueAtPercentile.
    /// </summary>
    public long ValueAtPercentile(double percentile)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(percentile, 0.0);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(percentile, 100.0);
        if (_totalCount == 0)
        {
            return 0;
        }

        long rank = Math.Max(1, (long)Math.Ceiling(percentile / 100.0 * _totalCount));
        long seen = 0;
        for (int i = 0; i < BucketCount; i++)
        {
            seen += _counts[i];
            if (seen >= rank)
            {
                return Math.Clamp(HighestEquivalentValue(i), Min, _max);
            }
        }

        return _max;
    }

    internal static int IndexOf(long value)
    {
        if (value < SubBucketCount)
        {
            return (int)value;
        }

        int highestBit = 63 - BitOperations.LeadingZeroCount((ulong)value);
        int shift = highestBit - SubBucketBits;
        long mantissa = value >> shift; // in [SubBucketCount, 2 * SubBucketCount)
        return ((shift + 1) * SubBucketCount) + (int)(mantissa - SubBucketCount);
    }

    internal static long LowestEquivalentValue(int index)
    {
        if (index < SubBucketCount)
        {
            return index;
        }

        int shift = (index / SubBucketCount) - 1;
        long mantissa = (index % SubBucketCount) + SubBucketCount;
        return mantissa << shift;
    }

    internal static long HighestEquivalentValue(int index)
    {
        if (index < SubBucketCount)
        {
            return index;
        }

        int shift = (index / SubBucketCount) - 1;
        return LowestEquivalentValue(index) + (1L << shift) - 1;
    }
}
