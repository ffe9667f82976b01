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

    // The recorded keys by slot (the order they were first recorded), to pick a victim without walking the dictionary.
    private readonly List<byte[]> _slots = new(CapacityKeys);
    private long _overflow;

    /// <summary>Records one read of a key.</summary>
    public void Record(byte[] key)
    {
        lock (_lock)
        {
            ref int count = ref System.Runtime.InteropServices.CollectionsMarshal.GetValueRefOrNullRef(_counts, key);
            if (!System.Runtime.CompilerServices.Unsafe.IsNullRef(ref count))
            {
                count = Math.Min(CountMax, count + 1);
            }
            else if (_counts.Count < CapacityKeys)
            {
                _counts[key] = 1;
                _slots.Add(key);
            }
            else if (++_overflow % SampleEvery == 0)
            {
                // Replace a deterministic victim, so a long tail of keys still gets some representation.
                int slot = (int)(_overflow / SampleEvery % CapacityKeys);
                _counts.Remove(_slots[slot]);
                _counts[key] = 1;
                _slots[slot] = key;
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
            _slots.Clear();
            _overflow = 0;
        }

        return taken.SelectMany(pair => Enumerable.Repeat(pair.Key, pair.Value)).ToArray();
    }
}
