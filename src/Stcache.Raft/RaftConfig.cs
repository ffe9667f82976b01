namespace Stcache.Raft;

/// <summary>Immutable configuration of one Raft node. Validated once by <see cref="Validate"/>.</summary>
public sealed record RaftConfig
{
    public required NodeId Id { get; init; }

    /// <summary>Ticks a follower waits without hearing a leader before it campaigns. The actual timeout is
    /// randomized in [ElectionTimeoutTicks, 2 * ElectionTimeoutTicks).</summary>
    public int ElectionTimeoutTicks { get; init; } = 10;

    public int HeartbeatIntervalTicks { get; init; } = 1;

    /// <summary>Seed for the election-timeout randomization. The core has no other randomness.</summary>
    public ulong RandomSeed { get; init; } = 1;

    public bool PreVote { get; init; } = true;

    public bool CheckQuorum { get; init; } = true;

    /// <summary>
    /// Upper bound of the delay, in ticks, after which a follower campaigns once the host reported its leader's
    /// connection lost (<see cref="RaftNode.ReportConnectionLost"/>) and it has not heard from the leader since.
    /// The delay is drawn uniformly from [1, LeaderLostDelayTicksMax], so that two followers rarely collide. 0
    /// turns the fast path off (every failover then waits for the election timeout). Needs PreVote and
    /// CheckQuorum, which keep a live leader from being deposed by it.
    /// </summary>
    public int LeaderLostDelayTicksMax { get; init; } = 3;

    /// <summary>Ticks subtracted from the lease to cover clock drift between nodes; lease reads need it.</summary>
    public int LeaseDriftMarginTicks { get; init; } = 2;

    /// <summary>Upper bound of entry bytes in one Append message (one entry may exceed it alone).</summary>
    public long AppendBytesMax { get; init; } = 1 << 20;

    /// <summary>Append messages in flight to one follower in Replicate state.</summary>
    public int InflightMessagesMax { get; init; } = 256;

    /// <summary>Entry bytes proposed but not committed beyond which the leader refuses proposals (0 = no limit).</summary>
    public long UncommittedBytesMax { get; init; } = 64L << 20;

    /// <summary>Committed entry bytes handed to the host in one Ready.</summary>
    public long CommittedBytesPerReadyMax { get; init; } = 16L << 20;

    /// <summary>Pending ReadIndex requests beyond which new ones are refused.</summary>
    public int PendingReadsMax { get; init; } = 100_000;

    /// <summary>
    /// Persistence pipelined with the loop (etcd raft's asynchronous storage writes). The host calls
    /// <see cref="RaftNode.Advance"/> once it has handed the Ready's hard state, entries and messages after persist
    /// to a writer, not once they are durable, and reports the sync with <see cref="RaftNode.ReportPersisted"/>.
    /// Each Ready's entries are a copy the host may keep; they are handed out once. The leader's own copy counts
    /// toward the commit quorum, and committed entries are handed out to apply, only once persisted. Off: the host
    /// persists each Ready before Advance.
    /// </summary>
    public bool AsyncStorageWrites { get; init; }

    public void Validate()
    {
        if (Id.IsNone)
        {
            throw new ArgumentException("node id must be non-zero", nameof(Id));
        }

        if (HeartbeatIntervalTicks <= 0)
        {
            throw new ArgumentException("heartbeat interval must be positive", nameof(HeartbeatIntervalTicks));
        }

        if (ElectionTimeoutTicks <= HeartbeatIntervalTicks)
        {
            throw new ArgumentException("election timeout must exceed the heartbeat interval", nameof(ElectionTimeoutTicks));
        }

        if (LeaseDriftMarginTicks < 0 || LeaseDriftMarginTicks >= ElectionTimeoutTicks)
        {
            throw new ArgumentException("lease drift margin must be in [0, election timeout)", nameof(LeaseDriftMarginTicks));
        }

        if (LeaderLostDelayTicksMax < 0 || LeaderLostDelayTicksMax >= ElectionTimeoutTicks)
        {
            throw new ArgumentException("leader-lost delay must be in [0, election timeout)", nameof(LeaderLostDelayTicksMax));
        }

        if (AppendBytesMax <= 0 || InflightMessagesMax <= 0 || CommittedBytesPerReadyMax <= 0 || PendingReadsMax <= 0)
        {
            throw new ArgumentException("limits must be positive");
        }
    }
}
