namespace Stcache.Simulation;

/// <summary>SplitMix64 (Steele, Lea, Flood). Small, fast, and fully determined by its seed.</summary>
public sealed class SplitMix
{
    private ulong _state;

    public SplitMix(ulong seed)
    {
        _state = seed;
    }

    public ulong NextUInt64()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    /// <summary>Uniform in [0, bound); bound must be positive.</summary>
    public ulong Next(ulong bound)
    {
        ArgumentOutOfRangeException.ThrowIfZero(bound);

        // Lemire's multiply-shift; the tiny bias is irrelevant for simulation.
        return (ulong)(((UInt128)NextUInt64() * bound) >> 64);
    }

    public int Next(int bound) => (int)Next((ulong)bound);

    /// <summary>Inclusive range.</summary>
    public int Between(int low, int high) => low + Next(high - low + 1);

    /// <summary>True with probability numerator / denominator.</summary>
    public bool Chance(int numerator, int denominator) => Next(denominator) < numerator;

    /// <summary>True with probability <paramref name="perMillion"/> / 1,000,000.</summary>
    public bool ChancePerMillion(int perMillion) => Next(1_000_000) < perMillion;

    public T Pick<T>(IReadOnlyList<T> items) => items[Next(items.Count)];

    /// <summary>A generator for a sub-component, independent of later draws from this one.</summary>
    public SplitMix Fork() => new(NextUInt64());
}
