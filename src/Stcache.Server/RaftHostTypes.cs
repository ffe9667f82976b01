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

/// <summary>A read barrier; records the barrier histogram when answered. Answered once: by the driver (on the loop),
/// or by its own deadline (<see cref="StartDeadline"/>), whichever comes first; <see cref="Finished"/> runs then.</summary>
internal sealed class ReadRequest : TaskRequest<ReadPoint>
{
    private ITimer? _deadline;
    private int _answered;

    /// <summary>When the loop started the read (Stopwatch timestamp).</summary>
    public long StartedAt { get; set; }

    /// <summary>Runs once the read is answered (on the loop, or on the deadline's timer thread). Must not block.</summary>
    public Action? Finished { get; init; }

    /// <summary>Fails the read with a timeout error once <paramref name="limit"/> has passed, unless it was answered.</summary>
    public void StartDeadline(TimeSpan limit, TimeProvider time) =>
        _deadline = time.CreateTimer(static state =>
            ((ReadRequest)state!).Fail(new RaftHostException(HostErrorKind.Timeout, RaftHost.ReadTimeoutMessage)),
            this, limit, Timeout.InfiniteTimeSpan);

    public override void Complete(ReadPoint result)
    {
        if (Interlocked.Exchange(ref _answered, 1) == 0)
        {
            ServerMetrics.ReadBarrier.Record(ServerMetrics.Seconds(StartedAt));
            base.Complete(result);
            Answered();
        }
    }

    public override void Fail(RaftHostException error)
    {
        if (Interlocked.Exchange(ref _answered, 1) == 0)
        {
            base.Fail(error);
            Answered();
        }
    }

    private void Answered()
    {
        _deadline?.Dispose();
        Finished?.Invoke();
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

internal sealed class ReadInput(bool lease, ReadRequest? request = null) : NodeInput
{
    public bool Lease { get; } = lease;

    /// <summary>Run on the loop as it takes the read, before the driver sees it (closes a batch of reads).</summary>
    public Action? Taken { get; init; }

    public ReadRequest Request { get; } = request ?? new();
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
