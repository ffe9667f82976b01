namespace Stcache.Raft;

/// <summary>
/// The Raft consensus core: a deterministic state machine with no IO, clocks, threads or hidden randomness.
/// Drive it with <see cref="Tick"/>, <see cref="Step"/> and the request methods; collect work with
/// <see cref="GetReady"/>, handle it (see <see cref="Ready"/>), then call <see cref="Advance"/>. Not thread-safe.
/// </summary>
public sealed partial class RaftNode
{
    public RaftNode(RaftConfig config, PersistentState state)
    {
        config.Validate();
        throw new NotImplementedException();
    }

    public NodeId Id => throw new NotImplementedException();
    public RaftRole Role => throw new NotImplementedException();
    public Term Term => throw new NotImplementedException();
    public NodeId Leader => throw new NotImplementedException();
    public LogIndex CommitIndex => throw new NotImplementedException();
    public ConfState ConfState => throw new NotImplementedException();

    /// <summary>Advances logical time by one tick (elections, heartbeats, check-quorum, lease expiry).</summary>
    public void Tick() => throw new NotImplementedException();

    /// <summary>Handles a message from a peer. Never throws on stale or nonsensical input; such messages are dropped.</summary>
    public void Step(Message message) => throw new NotImplementedException();

    public ProposeResult Propose(ReadOnlyMemory<byte> command) => throw new NotImplementedException();

    public ProposeResult Propose(IReadOnlyList<ReadOnlyMemory<byte>> commands) => throw new NotImplementedException();

    public ProposeResult ProposeConfChange(ConfChange change) => throw new NotImplementedException();

    /// <summary>Requests a linearizable read (ReadIndex, thesis §6.4); the answer comes as a <see cref="ReadState"/>.
    /// With <paramref name="lease"/> a leader holding a valid lease answers without a heartbeat round.</summary>
    public ReadStatus ReadIndex(ulong requestId, bool lease = false) => throw new NotImplementedException();

    /// <summary>Starts moving leadership to <paramref name="target"/> (thesis §3.10). Only on the leader.</summary>
    public ProposeStatus TransferLeadership(NodeId target) => throw new NotImplementedException();

    /// <summary>Starts an election now (tests, tools).</summary>
    public void Campaign() => throw new NotImplementedException();

    public void ReportUnreachable(NodeId peer) => throw new NotImplementedException();

    public void ReportSnapshot(NodeId peer, bool succeeded) => throw new NotImplementedException();

    /// <summary>Tells the core that the host saved a snapshot; entries up to its index may be dropped, keeping
    /// <paramref name="trailingEntries"/> so a slightly slow follower needs no snapshot.</summary>
    public void SnapshotTaken(SnapshotMetadata metadata, ulong trailingEntries) => throw new NotImplementedException();

    public bool HasReady() => throw new NotImplementedException();

    public Ready GetReady() => throw new NotImplementedException();

    public void Advance(Ready ready) => throw new NotImplementedException();

    public RaftStatus GetStatus() => throw new NotImplementedException();

    /// <summary>Checks the expensive invariants; the simulator calls it after every step.</summary>
    public void AssertInvariants() => throw new NotImplementedException();
}
