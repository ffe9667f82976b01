namespace Stcache.Raft;

internal enum ProgressState : byte
{
    /// <summary>Leader does not know the follower's last matching index; sends one append per heartbeat.</summary>
    Probe,

    /// <summary>Follower is known to match; appends are pipelined optimistically within the inflight window.</summary>
    Replicate,

    /// <summary>Follower needs a snapshot; nothing else is sent until the host reports the outcome.</summary>
    Snapshot,
}

/// <summary>
/// The leader's view of one follower (thesis §3.5, and etcd's progress tracker design): owns its state
/// transitions so the leader's code only reports events.
/// </summary>
internal sealed class Progress
{
    public Progress(LogIndex next, int inflightMessagesMax, bool isLearner)
    {
        Next = next;
        Inflights = new Inflights(inflightMessagesMax);
        IsLearner = isLearner;
    }

    /// <summary>Highest index known to be replicated on the follower. Invariant: Match &lt; Next.</summary>
    public LogIndex Match { get; private set; }

    public LogIndex Next { get; private set; }

    public ProgressState State { get; private set; } = ProgressState.Probe;

    /// <summary>Index of the snapshot being sent, while in Snapshot state.</summary>
    public LogIndex PendingSnapshot { get; private set; }

    /// <summary>Heard from since the last check-quorum round.</summary>
    public bool RecentActive { get; set; }

    /// <summary>In Probe state: an append is outstanding, wait for a response or the next heartbeat.</summary>
    public bool ProbeSent { get; set; }

    public bool IsLearner { get; set; }

    /// <summary>The highest commit index an append to this follower carried (the leader's deferred commit
    /// broadcast skips a follower that already has it).</summary>
    public LogIndex SentCommit { get; set; }

    public Inflights Inflights { get; }

    /// <summary>Check-quorum rounds this follower has spent in Snapshot state without an answer.</summary>
    public int SnapshotStaleRounds { get; set; }

    /// <summary>Highest heartbeat round this follower acknowledged (read confirmation, leases).</summary>
    public ulong AckedRound { get; set; }

    public bool IsPaused => State switch
    {
        ProgressState.Probe => ProbeSent,
        ProgressState.Replicate => Inflights.IsFull,
        _ => true,
    };

    public void BecomeProbe()
    {
        if (State == ProgressState.Snapshot)
        {
            var pending = PendingSnapshot;
            Reset(ProgressState.Probe);
            Next = LogIndex.Max(Match.Next, pending.Next);
        }
        else
        {
            Reset(ProgressState.Probe);
            Next = Match.Next;
        }
    }

    public void BecomeReplicate()
    {
        Reset(ProgressState.Replicate);
        Next = Match.Next;
    }

    public void BecomeSnapshot(LogIndex snapshotIndex)
    {
        Reset(ProgressState.Snapshot);
        PendingSnapshot = snapshotIndex;
    }

    /// <summary>Records that an append with <paramref name="count"/> entries ending at <paramref name="last"/> left.</summary>
    public void SentEntries(int count, LogIndex last, long bytes)
    {
        switch (State)
        {
            case ProgressState.Replicate:
                if (count > 0)
                {
                    Next = last.Next;
                    Inflights.Add(last);
                }

                break;
            case ProgressState.Probe:
                ProbeSent = true;
                break;
            default:
                throw new InvariantViolationException("sending entries to a follower in snapshot state");
        }
    }

    /// <summary>The follower acknowledged <paramref name="index"/>; returns false for a stale acknowledgement.</summary>
    public bool MaybeUpdate(LogIndex index)
    {
        bool updated = false;
        if (Match < index)
        {
            Match = index;
            updated = true;
            ProbeSent = false;
        }

        Next = LogIndex.Max(Next, index.Next);
        return updated;
    }

    /// <summary>
    /// The follower rejected the append after <paramref name="rejected"/>; <paramref name="hint"/> is the highest
    /// index that may match. Returns false if the rejection is stale.
    /// </summary>
    public bool MaybeDecreaseTo(LogIndex rejected, LogIndex hint)
    {
        if (State == ProgressState.Replicate)
        {
            if (rejected <= Match)
            {
                return false;
            }

            Next = Match.Next;
            return true;
        }

        if (Next.Previous != rejected)
        {
            return false;
        }

        if (hint < Match)
        {
            // The follower's log ends below what it acknowledged: it lost its log (wiped and added back under its
            // old id, while an acknowledgement from its earlier life arrived late). Probing above the old match
            // would never reach what it has; start again from its hint.
            Match = hint;
        }

        Next = LogIndex.Max(LogIndex.Min(rejected, hint.Next), Match.Next);
        ProbeSent = false;
        return true;
    }

    private void Reset(ProgressState state)
    {
        State = state;
        SnapshotStaleRounds = 0;
        ProbeSent = false;
        PendingSnapshot = LogIndex.Zero;
        Inflights.Reset();
    }

    public override string ToString() => $"{State} match={Match} next={Next}";
}

/// <summary>A bounded ring of in-flight appends (last index and bytes of each), freed as acks arrive.</summary>
internal sealed class Inflights
{
    private readonly LogIndex[] _last;
    private int _start;

    public Inflights(int capacity) => _last = new LogIndex[capacity];

    public int Count { get; private set; }

    public bool IsFull => Count == _last.Length;

    public void Add(LogIndex last)
    {
        Invariant.Check(!IsFull, "inflight window overflow");
        _last[(_start + Count) % _last.Length] = last;
        Count++;
    }

    /// <summary>Frees every in-flight append that ends at or before <paramref name="index"/>.</summary>
    public void FreeUpTo(LogIndex index)
    {
        while (Count > 0 && _last[_start] <= index)
        {
            _start = (_start + 1) % _last.Length;
            Count--;
        }
    }

    /// <summary>Frees the oldest in-flight append. A heartbeat response proves the follower is reachable, so a
    /// full window whose appends were lost must not stall replication forever (etcd-io/raft does the same).</summary>
    public void FreeFirstOne()
    {
        if (Count > 0)
        {
            _start = (_start + 1) % _last.Length;
            Count--;
        }
    }

    public void Reset()
    {
        Count = 0;
        _start = 0;
    }
}
