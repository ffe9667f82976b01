using System.Diagnostics;
using Stcache.Cache;
using Stcache.Raft;

namespace Stcache.Server;

/// <summary>The peer network as the host sees it: send, plus the address book of peers.</summary>
public interface IPeerNetwork : IMessageSink
{
    /// <summary>
    /// Streams a snapshot to <see cref="Message.To"/> off the caller's thread: <paramref name="header"/> is the
    /// core's snapshot message, <paramref name="stored"/> the snapshot as the store keeps it (see
    /// <see cref="ISnapshotStore.OpenStored"/>), now owned by the network. Never blocks; the outcome is reported
    /// once, through <see cref="RaftHost.ReportSnapshot"/>.
    /// </summary>
    void SendSnapshot(Message header, Stream stored);

    /// <summary>True while a snapshot to <paramref name="peer"/> is queued or being streamed (its outcome not yet reported).</summary>
    bool IsSendingSnapshot(NodeId peer) => false;

    void SetPeer(NodeId id, string address);

    void RemovePeer(NodeId id);
}

/// <summary>A network with no peers (single node, tests). Messages are dropped.</summary>
public sealed class NullPeerNetwork : IPeerNetwork
{
    public void Send(Message message)
    {
    }

    public void SendSnapshot(Message header, Stream stored) => stored.Dispose();

    public void SetPeer(NodeId id, string address)
    {
    }

    public void RemovePeer(NodeId id)
    {
    }
}

/// <summary>Settings of one <see cref="RaftHost"/>; validated by <see cref="Validate"/> at start.</summary>
public sealed record RaftHostOptions
{
    public required RaftConfig Raft { get; init; }

    public required MemberInfo Self { get; init; }

    public TimeSpan TickInterval { get; init; } = TimeSpan.FromMilliseconds(100);

    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>A snapshot is taken when both this much time passed and <see cref="SnapshotThreshold"/> entries were
    /// applied since the previous one (hashicorp/raft's SnapshotInterval and SnapshotThreshold).</summary>
    public TimeSpan SnapshotInterval { get; init; } = TimeSpan.FromSeconds(30);

    public ulong SnapshotThreshold { get; init; } = 8192;

    public ulong SnapshotTrailingEntries { get; init; } = 1024;

    public int InputQueueCapacity { get; init; } = 16_384;

    /// <summary>Inputs handled before the core is asked for a Ready; they then share one fsync (group commit).</summary>
    public int InputBatchMax { get; init; } = 4096;

    /// <summary>A learner this close to the commit index (in entries) is promoted to voter.</summary>
    public int LearnerTrailingEntriesMax { get; init; } = 256;

    public void Validate()
    {
        Raft.Validate();
        if (Self.Id != Raft.Id.Value)
        {
            throw new ArgumentException("self member id differs from the raft id");
        }

        if (TickInterval <= TimeSpan.Zero || RequestTimeout <= TimeSpan.Zero || SnapshotInterval < TimeSpan.Zero)
        {
            throw new ArgumentException("tick interval and request timeout must be positive");
        }

        if (SnapshotThreshold == 0 || InputQueueCapacity <= 0 || InputBatchMax <= 0 || LearnerTrailingEntriesMax < 0)
        {
            throw new ArgumentException("snapshot threshold and queue sizes must be positive");
        }
    }
}

public enum HostErrorKind
{
    /// <summary>This node is not the leader; <see cref="RaftHostException.Leader"/> names the one it knows.</summary>
    NotLeader,

    /// <summary>No leader is known (election in progress or no quorum).</summary>
    NoLeader,

    /// <summary>The request did not finish within the request timeout.</summary>
    Timeout,

    /// <summary>The proposal's log position was taken by another leader's entry: it was not applied.</summary>
    Lost,

    Overloaded,

    /// <summary>Another membership change is still in progress, or the change is invalid.</summary>
    ConfChangeRejected,

    TransferInProgress,

    ShuttingDown,
}

/// <summary>A request the host could not complete. <see cref="OutcomeUnknown"/> is true when a write may or may
/// not have been applied (it was proposed); otherwise it certainly was not.</summary>
public sealed class RaftHostException : Exception
{
    public RaftHostException(HostErrorKind kind, string message, bool outcomeUnknown = false, NodeId leader = default)
        : base(message)
    {
        Kind = kind;
        OutcomeUnknown = outcomeUnknown;
        Leader = leader;
    }

    public HostErrorKind Kind { get; }

    public bool OutcomeUnknown { get; }

    public NodeId Leader { get; }
}

/// <summary>Raised when the leader, role or term changes (the seeds' NotifyCh).</summary>
public readonly record struct LeadershipChange(NodeId Self, NodeId Leader, RaftRole Role, Term Term)
{
    public bool IsLeader => Role == RaftRole.Leader;
}

/// <summary>A point-in-time view of the node, published by the host loop.</summary>
public sealed record HostStatus(
    NodeId Id,
    string Name,
    string Role,
    Term Term,
    NodeId Leader,
    LogIndex Commit,
    LogIndex Applied,
    LogIndex LastIndex,
    LogIndex SnapshotIndex,
    ConfState ConfState,
    IReadOnlyList<ProgressStatus> Progress)
{
    public bool IsLeader => Role == "leader";

    /// <summary>Raft ticks delivered since start: the node's logical clock (heartbeats, elections, leases).</summary>
    public long Ticks { get; init; }
}

internal abstract class NodeInput
{
    /// <summary>When the input was queued (Stopwatch timestamp), for the queue-wait histogram.</summary>
    public long QueuedAt { get; } = Stopwatch.GetTimestamp();
}

internal sealed class TickInput : NodeInput
{
    public static readonly TickInput Instance = new();
}

internal sealed class PeerMessageInput(Message message) : NodeInput
{
    public Message Message { get; } = message;
}

/// <summary>A write waiting to be proposed, then committed and applied.</summary>
internal sealed class ProposalWaiter
{
    private const int Pending = 0;
    private const int Proposed = 1;
    private const int Abandoned = 2;
    private int _state;

    public TaskCompletionSource<ApplyResult> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public Term Term { get; set; }

    public LogIndex Index { get; set; }

    /// <summary>When the loop proposed it (Stopwatch timestamp).</summary>
    public long ProposedAt { get; set; }

    /// <summary>Called by the loop right before proposing; false if the caller already gave up.</summary>
    public bool TryMarkProposed() => Interlocked.CompareExchange(ref _state, Proposed, Pending) == Pending;

    /// <summary>Called by a caller that gives up; true means the write was never proposed and never will be.</summary>
    public bool TryAbandon() => Interlocked.CompareExchange(ref _state, Abandoned, Pending) == Pending;
}

internal sealed class ProposeInput(ReadOnlyMemory<byte> command, ProposalWaiter waiter) : NodeInput
{
    public ReadOnlyMemory<byte> Command { get; } = command;

    public ProposalWaiter Waiter { get; } = waiter;
}

internal sealed class ConfChangeInput(ConfChange change, ProposalWaiter waiter) : NodeInput
{
    public ConfChange Change { get; } = change;

    public ProposalWaiter Waiter { get; } = waiter;
}

internal sealed class ReadInput(bool lease) : NodeInput
{
    public bool Lease { get; } = lease;

    /// <summary>When the loop started the read (Stopwatch timestamp).</summary>
    public long StartedAt { get; set; }

    public TaskCompletionSource<LogIndex> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
}

internal sealed class AppliedWaitInput(LogIndex index) : NodeInput
{
    public LogIndex Index { get; } = index;

    public TaskCompletionSource<LogIndex> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
}

internal sealed class TransferInput(NodeId target) : NodeInput
{
    public NodeId Target { get; } = target;

    public TaskCompletionSource<ProposeStatus> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
}

internal sealed class SnapshotRequestInput : NodeInput
{
    public TaskCompletionSource<SnapshotMetadata> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
}

internal sealed class SnapshotSavedInput(SnapshotMetadata metadata, Exception? error) : NodeInput
{
    public SnapshotMetadata Metadata { get; } = metadata;

    public Exception? Error { get; } = error;
}

internal sealed class UnreachableInput(NodeId peer) : NodeInput
{
    public NodeId Peer { get; } = peer;
}

internal sealed class NotAMemberInput(NodeId peer, LogIndex asOf) : NodeInput
{
    public NodeId Peer { get; } = peer;

    public LogIndex AsOf { get; } = asOf;
}

internal sealed class SnapshotStatusInput(NodeId peer, bool succeeded) : NodeInput
{
    public NodeId Peer { get; } = peer;

    public bool Succeeded { get; } = succeeded;
}
