namespace Stcache.Raft;

/// <summary>
/// The leader's ReadIndex bookkeeping (thesis §6.4). Reads wait for a heartbeat round that started after they
/// arrived; one round acknowledged by a quorum confirms every read waiting on it, so reads are batched. The same
/// rounds extend the leader's lease (§6.4.1).
/// </summary>
internal sealed class ReadTracker
{
    private readonly Queue<PendingRead> _pending = new();
    private readonly Queue<(ulong Round, long Tick)> _sentTicks = new();

    // Highest round a quorum has acknowledged.
    private ulong _confirmedRound;

    /// <summary>Set once an entry of the leader's own term is committed; before that the commit index may lag.</summary>
    public bool LeaderCommittedInTerm { get; set; }

    /// <summary>The newest round sent. Invariant: _confirmedRound &lt;= LastRound.</summary>
    public ulong LastRound { get; private set; }

    public int PendingCount => _pending.Count;

    /// <summary>Queues a read; returns true if no round is in flight, so the caller should start one.</summary>
    public bool Enqueue(ulong requestId, NodeId origin)
    {
        _pending.Enqueue(new PendingRead(requestId, origin, LastRound + 1));
        return _confirmedRound >= LastRound;
    }

    public ulong StartRound(long tick)
    {
        LastRound++;
        _sentTicks.Enqueue((LastRound, tick));
        return LastRound;
    }

    /// <summary>Tick at which <paramref name="round"/> was sent, or -1 if unknown.</summary>
    public long SentTickOf(ulong round)
    {
        foreach (var (r, tick) in _sentTicks)
        {
            if (r == round)
            {
                return tick;
            }
        }

        return -1;
    }

    /// <summary>
    /// A quorum acknowledged <paramref name="acked"/>: completes every read that waited for it at
    /// <paramref name="commit"/>. Returns true if reads still wait and no round is in flight.
    /// </summary>
    public bool Release(ulong acked, LogIndex commit, Action<ulong, NodeId, LogIndex> complete)
    {
        if (acked > _confirmedRound)
        {
            _confirmedRound = acked;
            while (_sentTicks.Count > 0 && _sentTicks.Peek().Round <= acked)
            {
                _sentTicks.Dequeue();
            }

            while (_pending.Count > 0 && _pending.Peek().RequiredRound <= acked)
            {
                var read = _pending.Dequeue();
                complete(read.RequestId, read.Origin, commit);
            }
        }

        return _pending.Count > 0 && _confirmedRound >= LastRound;
    }

    public void Reset()
    {
        _pending.Clear();
        _sentTicks.Clear();
        _confirmedRound = 0;
        LastRound = 0;
        LeaderCommittedInTerm = false;
    }

    private readonly record struct PendingRead(ulong RequestId, NodeId Origin, ulong RequiredRound);
}
