namespace Stcache.Cache;

/// <summary>Redis's <c>maxmemory-policy</c> values. Numbers are part of the log and snapshot formats.</summary>
public enum EvictionPolicy : byte
{
    NoEviction = 0,
    AllKeysLru = 1,
    AllKeysLfu = 2,
    AllKeysRandom = 3,
    VolatileLru = 4,
    VolatileLfu = 5,
    VolatileRandom = 6,
    VolatileTtl = 7,
}

public static class EvictionPolicies
{
    private static readonly (string Name, EvictionPolicy Policy)[] s_names =
    [
        ("noeviction", EvictionPolicy.NoEviction),
        ("allkeys-lru", EvictionPolicy.AllKeysLru),
        ("allkeys-lfu", EvictionPolicy.AllKeysLfu),
        ("allkeys-random", EvictionPolicy.AllKeysRandom),
        ("volatile-lru", EvictionPolicy.VolatileLru),
        ("volatile-lfu", EvictionPolicy.VolatileLfu),
        ("volatile-random", EvictionPolicy.VolatileRandom),
        ("volatile-ttl", EvictionPolicy.VolatileTtl),
    ];

    /// <summary>Parses Redis's policy name (case-insensitive).</summary>
    public static bool TryParse(string name, out EvictionPolicy policy)
    {
        foreach (var (text, value) in s_names)
        {
            if (string.Equals(text, name, StringComparison.OrdinalIgnoreCase))
            {
                policy = value;
                return true;
            }
        }

        policy = EvictionPolicy.NoEviction;
        return false;
    }

    public static string Name(this EvictionPolicy policy) => s_names.First(pair => pair.Policy == policy).Name;

    public static bool IsVolatileOnly(this EvictionPolicy policy) => policy >= EvictionPolicy.VolatileLru;

    public static bool UsesLfu(this EvictionPolicy policy) => policy is EvictionPolicy.AllKeysLfu or EvictionPolicy.VolatileLfu;
}
