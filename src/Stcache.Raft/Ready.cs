namespace Stcache.Raft;

/// <summary>
/// A batch of work the core hands to its host. The host must handle it in this order, then call
/// <see cref="RaftNode.Advance"/>:
/// <list type="number">
/// <item><see cref="Messages"/> may be sent at once, in parallel with persisting (thesis §10.2.1).</item>
/// <item><see cref="Snapshot"/>, if any, is saved durably and restored into the state machine.</item>
/// <item><see cref="HardState"/> and <see cref="Entries"/> are made durable with one sync. An entry whose index is
/// already in the log replaces it and every entry after it.</item>
/// <item><see cref="MessagesAfterPersist"/> (votes, append acknowledgements) are sent only after that sync.</item>
/// <item><see cref="CommittedEntries"/> are applied in order (they may be applied off the host's loop, in order).</item>
/// <item><see cref="ReadStates"/> are served once the state machine has applied up to their index.</item>
/// </list>
/// The lists of entries are views of the node's log, valid until <see cref="RaftNode.Advance"/>: a host that
/// keeps entries longer (say, to apply them on another thread) copies them. Between GetReady and Advance the node
/// takes no input (Step, Tick, proposals throw InvalidOperationException).
/// <para>
/// With <see cref="RaftConfig.AsyncStorageWrites"/> the persist steps (3 and 4) are handed to a writer instead:
/// the host queues <see cref="HardState"/>, <see cref="Entries"/> (then a copy the writer may keep) and
/// <see cref="MessagesAfterPersist"/> as one job, calls Advance without waiting, and the node takes input and hands
/// out the next Ready while the writer works. Each unstable entry is handed out once. The writer saves jobs in order
/// (a later job's entries replace an earlier one's from their first index), sends a job's messages only after the
/// sync that covers it, and the host reports it with <see cref="RaftNode.ReportPersisted"/>. Until then the
/// leader's own copy does not count toward the commit quorum, and <see cref="CommittedEntries"/> stop at the last
/// locally persisted index. A Ready with a <see cref="Snapshot"/> is handled synchronously once the writer is idle.
/// </para>
/// </summary>
public sealed class Ready
{
    internal Ready()
    {
    }

    /// <summary>Non-null when the role, leader or term changed since the previous Ready.</summary>
    public SoftState? SoftState { get; internal set; }

    /// <summary>Non-null when the hard state changed and must be persisted.</summary>
    public HardState? HardState { get; internal set; }

    public IReadOnlyList<Entry> Entries { get; internal set; } = [];

    /// <summary>A snapshot received from the leader, to be persisted and installed before the entries.</summary>
    public Snapshot? Snapshot { get; internal set; }

    public IReadOnlyList<Message> Messages { get; internal set; } = [];

    public IReadOnlyList<Message> MessagesAfterPersist { get; internal set; } = [];

    public IReadOnlyList<Entry> CommittedEntries { get; internal set; } = [];

    public IReadOnlyList<ReadState> ReadStates { get; internal set; } = [];
}

/// <summary>What a node finds on stable storage when it starts.</summary>
public sealed record PersistentState(HardState HardState, SnapshotMetadata Snapshot, IReadOnlyList<Entry> Entries)
{
    public static readonly PersistentState Empty = new(Raft.HardState.Empty, SnapshotMetadata.Empty, []);

    /// <summary>
    /// The state a brand-new cluster's founding members start from: one committed AddVoter entry per member at
    /// term 1, so a node that joins later learns the founders by replaying the log. Every founder of a statically
    /// configured cluster must bootstrap with the same list in the same order.
    /// </summary>
    public static PersistentState Bootstrap(IReadOnlyList<ConfChange> founders)
    {
        ArgumentOutOfRangeException.ThrowIfZero(founders.Count);
        var term = new Term(1);
        var entries = new Entry[founders.Count];
        for (int i = 0; i < founders.Count; i++)
        {
            if (founders[i].Type != ConfChangeType.AddVoter)
            {
                throw new ArgumentException("founders must be voters", nameof(founders));
            }

            entries[i] = new Entry(term, new LogIndex((ulong)i + 1), EntryType.ConfChange, founders[i].Encode());
        }

        return new PersistentState(new HardState(term, NodeId.None, new LogIndex((ulong)entries.Length)), SnapshotMetadata.Empty, entries);
    }
}

public enum ProposeStatus : byte
{
    Accepted = 1,
    NotLeader = 2,
    /// <summary>Leadership is being transferred; retry on the new leader.</summary>
    TransferInProgress = 3,
    /// <summary>Too many uncommitted bytes; back off.</summary>
    Overloaded = 4,
    /// <summary>Another membership change is not yet applied, or the leader has not committed in its term.</summary>
    ConfChangeInProgress = 5,
    /// <summary>The change makes no sense for the current configuration (e.g. remove the last voter).</summary>
    InvalidConfChange = 6,
    /// <summary>The node is not a member or the target is unknown.</summary>
    Rejected = 7,
}

/// <summary>Outcome of a proposal. When accepted, the entries occupy [FirstIndex, LastIndex] at Term; the host
/// learns the outcome when an entry with that index is applied: same term means committed, other term means lost.</summary>
public readonly record struct ProposeResult(ProposeStatus Status, Term Term, LogIndex FirstIndex, LogIndex LastIndex, NodeId Leader)
{
    public bool IsAccepted => Status == ProposeStatus.Accepted;
}

public enum ReadStatus : byte
{
    Accepted = 1,
    /// <summary>No leader is known; the read cannot be confirmed.</summary>
    NoLeader = 2,
    Overloaded = 3,
}

public readonly record struct ProgressStatus(NodeId Id, bool IsLearner, LogIndex Match, LogIndex Next, string State, bool RecentActive);

/// <summary>A point-in-time view of a node for status pages and tests.</summary>
public sealed record RaftStatus(
    NodeId Id,
    RaftRole Role,
    Term Term,
    NodeId Vote,
    NodeId Leader,
    LogIndex Commit,
    LogIndex Applied,
    LogIndex FirstIndex,
    LogIndex LastIndex,
    ConfState ConfState,
    NodeId TransferTarget,
    IReadOnlyList<ProgressStatus> Progress);
