using System.Diagnostics;
using Stcache.Cache;
using Stcache.Node;
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

/// <summary>A write waiting to be proposed, then committed and applied; completes a task.</summary>
internal sealed class ProposalWaiter : ProposalRequest
{
    public TaskCompletionSource<ApplyResult> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    /// <summary>When the loop took it (Stopwatch timestamp), for the commit histogram.</summary>
    public long ProposedAt { get; set; }

    public override void Complete(ApplyResult result)
    {
        ServerMetrics.Commit.Record(ServerMetrics.Seconds(ProposedAt));
        Completion.TrySetResult(result);
    }

    public override void Fail(RaftHostException error) => Completion.TrySetException(error);
}

/// <summary>A driver request that completes a task.</summary>
internal class TaskRequest<T> : NodeRequest<T>
{
    public TaskCompletionSource<T> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

    public override void Complete(T result) => Completion.TrySetResult(result);

    public override void Fail(RaftHostException error) => Completion.TrySetException(error);
}

/// <summary>A read barrier; records the barrier histogram when answered.</summary>
internal sealed class ReadRequest : TaskRequest<ReadPoint>
{
    /// <summary>When the loop started the read (Stopwatch timestamp).</summary>
    public long StartedAt { get; set; }

    public override void Complete(ReadPoint result)
    {
        ServerMetrics.ReadBarrier.Record(ServerMetrics.Seconds(StartedAt));
        base.Complete(result);
    }
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

    public ReadRequest Request { get; } = new();
}

internal sealed class AppliedWaitInput(LogIndex index) : NodeInput
{
    public LogIndex Index { get; } = index;

    public TaskRequest<LogIndex> Request { get; } = new();
}

internal sealed class TransferInput(NodeId target) : NodeInput
{
    public NodeId Target { get; } = target;

    public TaskCompletionSource<ProposeStatus> Completion { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);
}

internal sealed class SnapshotRequestInput : NodeInput
{
    public TaskRequest<SnapshotMetadata> Request { get; } = new();
}

/// <summary>Wakes the loop (a snapshot finished writing off the loop); carries nothing.</summary>
internal sealed class WakeInput : NodeInput
{
    public static readonly WakeInput Instance = new();
}

internal sealed class UnreachableInput(NodeId peer) : NodeInput
{
    public NodeId Peer { get; } = peer;
}

internal sealed class ConnectionLostInput(NodeId peer) : NodeInput
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
