using Stcache.Cache;
using Stcache.Raft;

namespace Stcache.Node;

/// <summary>
/// The leader's cache decisions, proposed through the log so every replica applies the same (docs/CACHE.md):
/// <list type="bullet">
/// <item>expiry: the keys reads found expired (lazy) and Redis's active expire cycle (sampling keys that have an
/// expiry), deleted by <see cref="WriteCommand.ExpireKeys"/> batches;</item>
/// <item>eviction ahead of need: when used memory is over the limit under an evicting policy,
/// <see cref="WriteCommand.Evict"/> batches chosen by <see cref="CacheStateMachine.ChooseEvictionVictims"/>;</item>
/// <item>access reports: the reads this node served, as one <see cref="WriteCommand.Access"/> entry per interval
/// (a follower hands its report to the host, which sends it to the leader);</item>
/// <item>the configured memory setting (<see cref="RaftHostOptions.ConfiguredMemory"/>) as a
/// <see cref="WriteCommand.MemoryPolicy"/> entry, until the state has held it once.</item>
/// </list>
/// Deterministic: time only from the injected clock, randomness from seeds derived from the node id, tick and
/// applied index. At most one batch of each kind is in flight, at most
/// <see cref="RaftHostOptions.HousekeepingBatchesPerTick"/> expiry batches are proposed per tick, and a follower
/// proposes nothing. Called by the driver on its thread, only between Readies.
/// </summary>
internal sealed class CacheHousekeeper
{
    private readonly RaftHostOptions _options;
    private readonly CacheStateMachine _cache;
    private readonly TimeProvider _time;

    private InFlight _expire;
    private InFlight _evict;
    private InFlight _access;
    private InFlight _policy;
    private long _tick = -1;
    private int _expireBatchesThisTick;
    private bool _expireMore;
    private long _lastAccessReportTick;
    private bool _configuredHeld;

    public CacheHousekeeper(RaftHostOptions options, CacheStateMachine cache, TimeProvider time)
    {
        _options = options;
        _cache = cache;
        _time = time;
        NoteApplied();
    }

    /// <summary>Expiry batches this node proposed as leader (for tests and metrics).</summary>
    public long ExpireBatchesProposed { get; private set; }

    public long EvictBatchesProposed { get; private set; }

    public long AccessReportsProposed { get; private set; }

    /// <summary>Access reports this node handed to the host as a follower.</summary>
    public long AccessReportsSent { get; private set; }

    public long PolicyProposals { get; private set; }

    /// <summary>After each applied entry (and at start): notes whether the state holds the configured setting.</summary>
    public void NoteApplied()
    {
        if (!_configuredHeld && _options.ConfiguredMemory is { } configured
            && _cache.MaxMemoryBytes == configured.MaxBytes && _cache.Policy == configured.Policy)
        {
            _configuredHeld = true;
        }
    }

    /// <summary>One round of decisions. Returns true when it proposed something (the core has a Ready).</summary>
    public bool Run(RaftNode node, long ticks, INodeEffects effects)
    {
        bool newTick = ticks != _tick;
        if (newTick)
        {
            _tick = ticks;
            _expireBatchesThisTick = 0;
        }

        bool reportDue = ticks - _lastAccessReportTick >= _options.AccessReportIntervalTicks;
        if (node.Role != RaftRole.Leader)
        {
            // Nothing is proposed here: the leader decides. What this node saw is dropped or reported.
            _expire = _evict = _access = _policy = default;
            _expireMore = false;
            if (newTick)
            {
                _ = _cache.DrainLazyExpired();
            }

            if (reportDue)
            {
                _lastAccessReportTick = ticks;
                var keys = TakeAccessReport();
                if (keys.Count > 0 && !node.Leader.IsNone)
                {
                    AccessReportsSent++;
                    effects.AccessReport(node.Leader, keys);
                }
            }

            return false;
        }

        var applied = _cache.AppliedIndex;
        _expire = _expire.Landed(node.Term, applied);
        _evict = _evict.Landed(node.Term, applied);
        _access = _access.Landed(node.Term, applied);
        _policy = _policy.Landed(node.Term, applied);

        bool proposed = ProposeConfiguredMemory(node);
        if (_expire.IsNone && (newTick || _expireMore) && _expireBatchesThisTick < _options.HousekeepingBatchesPerTick)
        {
            proposed |= ProposeExpiry(node, ticks);
        }

        if (_evict.IsNone && newTick)
        {
            proposed |= ProposeEviction(node, ticks);
        }

        if (reportDue && _access.IsNone)
        {
            _lastAccessReportTick = ticks;
            var keys = TakeAccessReport();
            if (keys.Count > 0)
            {
                _access = Propose(node, WriteCommand.Access(keys));
                AccessReportsProposed += _access.IsNone ? 0 : 1;
                proposed |= !_access.IsNone;
            }
        }

        return proposed;
    }

    private long LogTime() => Math.Max(_time.GetUtcNow().ToUnixTimeMilliseconds(), _cache.LastLogTimeUnixMs);

    private ulong Seed(long ticks, ulong salt) =>
        ByteStringComparer.Mix((_options.Raft.Id.Value * 0x9E3779B97F4A7C15UL) ^ ((ulong)ticks << 20) ^ _cache.AppliedIndex.Value ^ salt);

    private bool ProposeConfiguredMemory(RaftNode node)
    {
        if (_configuredHeld || _options.ConfiguredMemory is not { } configured || !_policy.IsNone)
        {
            return false;
        }

        _policy = Propose(node, WriteCommand.MemoryPolicy(configured.MaxBytes, configured.Policy));
        PolicyProposals += _policy.IsNone ? 0 : 1;
        return !_policy.IsNone;
    }

    /// <summary>Redis's active expire cycle, one batch: the keys reads found expired first, then a sample of keys
    /// with an expiry. Another batch follows in the same tick (once this one is applied) while the sample found
    /// more than a tenth expired, up to the per-tick budget.</summary>
    private bool ProposeExpiry(RaftNode node, long ticks)
    {
        long now = LogTime();
        int max = _options.ExpireBatchKeysMax;
        var keys = new HashSet<byte[]>(ByteStringComparer.Instance);
        foreach (var key in _cache.DrainLazyExpired())
        {
            if (keys.Count < max)
            {
                keys.Add(key);
            }
        }

        var sampled = _cache.SampleExpiredKeys(now, Seed(ticks, (ulong)_expireBatchesThisTick), max);
        _expireMore = sampled.Count * 10 > max;
        foreach (var key in sampled)
        {
            if (keys.Count >= max)
            {
                break;
            }

            keys.Add(key);
        }

        if (keys.Count == 0)
        {
            return false;
        }

        _expire = Propose(node, WriteCommand.ExpireKeys(now, keys));
        if (_expire.IsNone)
        {
            _expireMore = false;
            return false;
        }

        _expireBatchesThisTick++;
        ExpireBatchesProposed++;
        return true;
    }

    /// <summary>Over the limit under an evicting policy: evict down to a little under it (1/64 of the limit), so
    /// writes do not each pay for an eviction at apply.</summary>
    private bool ProposeEviction(RaftNode node, long ticks)
    {
        long limit = _cache.MaxMemoryBytes;
        if (limit == 0 || _cache.Policy == EvictionPolicy.NoEviction || _cache.UsedMemoryBytes <= limit)
        {
            return false;
        }

        var victims = _cache.ChooseEvictionVictims(limit - (limit / 64), Seed(ticks, 0xE1C7UL), _options.EvictBatchKeysMax);
        if (victims.Count == 0)
        {
            return false;
        }

        _evict = Propose(node, WriteCommand.Evict(victims));
        EvictBatchesProposed += _evict.IsNone ? 0 : 1;
        return !_evict.IsNone;
    }

    /// <summary>The reads recorded since the last report, or nothing when no policy uses them (no limit, or a
    /// policy without LRU/LFU). Bounded by the recorder.</summary>
    private IReadOnlyList<byte[]> TakeAccessReport()
    {
        var keys = _cache.AccessRecorder.Drain();
        return _cache.TracksAccess ? keys : [];
    }

    private InFlight Propose(RaftNode node, WriteCommand command)
    {
        var result = node.Propose(command.Encode(LogTime()));
        return result.IsAccepted ? new InFlight(result.Term, result.LastIndex) : default;
    }

    /// <summary>A proposal of this leader's, until it is applied (or the term moves on: then it is forgotten).</summary>
    private readonly record struct InFlight(Term Term, LogIndex Index)
    {
        public bool IsNone => Index == LogIndex.Zero;

        public InFlight Landed(Term term, LogIndex applied) => IsNone || Term != term || applied >= Index ? default : this;
    }
}
