namespace Stcache.Cache;

/// <summary>
/// Collects the keys this node's reads touched, for the access reports that keep LRU and LFU data identical on
/// every replica (docs/CACHE.md, "Access reports"). Node-local and never replicated itself: the node driver drains
/// it periodically and the leader proposes the keys as one <see cref="WriteCommand.Access"/> entry. Bounded: at most
/// <see cref="CapacityKeys"/> distinct keys per report, each counted up to <see cref="CountMax"/> times; once full,
/// only every <see cref="SampleEvery"/>-th further read is kept, replacing an earlier key (a cheap sample).
/// </summary>
public sealed class AccessRecorder
{
    public const int CapacityKeys = 4096;
    public const int CountMax = 8;
    public const int SampleEvery = 16;

    private readonly Lock _lock = new();
    private Dictionary<byte[], int> _counts = new(ByteStringComparer.Instance);
    private long _overflow;

    /// <summary>Records one read of a key.</summary>
    public void Record(byte[] key)
    {
        lock (_lock)
        {
            if (_counts.TryGetValue(key, out int count))
            {
                _counts[key] = Math.Min(CountMax, count + 1);
            }
            else if (_counts.Count < CapacityKeys)
            {
                _counts[key] = 1;
            }
            else if (++_overflow % SampleEvery == 0)
            {
                // Replace a deterministic victim, so a long tail of keys still gets some representation.
                var victim = _counts.Keys.ElementAt((int)(_overflow / SampleEvery % CapacityKeys));
                _counts.Remove(victim);
                _counts[key] = 1;
            }
        }
    }

    /// <summary>Takes the recorded reads (each key repeated by its count) and starts a new report.</summary>
    public IReadOnlyList<byte[]> Drain()
    {
        Dictionary<byte[], int> taken;
        lock (_lock)
        {
            taken = _counts;
            _counts = new Dictionary<byte[], int>(ByteStringComparer.Instance);
            _overflow = 0;
        }

        return taken.SelectMany(pair => Enumerable.Repeat(pair.Key, pair.Value)).ToArray();
    }
}
