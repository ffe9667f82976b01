using System.Diagnostics;
using System.Threading.Tasks.Sources;
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

/// <summary>The WAL writer handed persist jobs back (<see cref="RaftHostWalWriter"/>): the loop collects them.</summary>
internal sealed class PersistedInput : NodeInput
{
    public static readonly PersistedInput Instance = new();
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

/// <summary>Entries one caller proposes together, in order (<see cref="ProposalBatch"/>).</summary>
internal sealed class ProposeInput(ProposalBatch batch) : NodeInput
{
    public ProposalBatch Batch { get; } = batch;
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

/// <summary>Waits until <see cref="Index"/> is applied; without one, the last index the log holds when the loop
/// takes the input.</summary>
internal sealed class AppliedWaitInput(LogIndex? index) : NodeInput
{
    public LogIndex? Index { get; } = index;

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

/// <summary>
/// The Raft loop's wake-up: one waiter (the loop), rung by whoever queues an input for it. The loop parks
/// (<see cref="Park"/>), looks at its queues once more, and either takes itself back (<see cref="TryUnpark"/>) or
/// waits (<see cref="WaitAsync"/>); a ringer that finds it parked takes it off and resumes it on the thread pool.
/// A ring while the loop is not parked costs nothing: the loop looks at its queues before it parks again. Unlike a
/// wait on each channel, a wait is never left pending on one queue while the loop serves the other, so an input
/// queued while a pass runs wakes no thread (docs/PERFORMANCE.md, "Leader one-connection writes, session 15").
/// </summary>
internal sealed class LoopBell : IValueTaskSource
{
    private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = true };

    // 1 while the loop is parked and nobody has rung since: whoever swaps it to 0 (a ringer, or the loop itself)
    // owns the wake-up.
    private int _parked;

    /// <summary>The loop is about to wait: from here a ring resumes it. The loop must then look at its queues again
    /// and either <see cref="TryUnpark"/> or await <see cref="WaitAsync"/>.</summary>
    public void Park()
    {
        _core.Reset();
        Interlocked.Exchange(ref _parked, 1); // a full fence: the loop's next look at the queues follows it
    }

    /// <summary>The loop takes itself off (it found input after parking); false: a ringer already did, and the loop
    /// must await <see cref="WaitAsync"/>, which that ring completes.</summary>
    public bool TryUnpark() => Interlocked.Exchange(ref _parked, 0) == 1;

    public ValueTask WaitAsync() => new(this, _core.Version);

    /// <summary>Resumes the loop (on the thread pool) if it is parked; otherwise nothing.</summary>
    public void Ring()
    {
        if (Volatile.Read(ref _parked) == 1 && Interlocked.Exchange(ref _parked, 0) == 1)
        {
            _core.SetResult(true);
        }
    }

    void IValueTaskSource.GetResult(short token) => _core.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _core.GetStatus(token);

    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
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

/// <summary>
/// Writes one caller proposes together (one write, or a pipeline's consecutive writes), answered together: each entry
/// has its own <see cref="ProposalSlot"/> for the driver, and the caller awaits the batch once (<see cref="WaitAsync"/>),
/// which completes when every slot is answered. No task, promise or timer per write: the deadline is kept by the
/// host's <see cref="ProposalDeadlines"/>, one timer for every pending batch, and a caller that goes away is noticed
/// through one registration on its token. The batch's task never faults: each slot holds its result or its error.
/// </summary>
internal sealed class ProposalBatch : IValueTaskSource
{
    // Set by the Raft loop on its own thread while the driver processes (RaftHost.ProcessAnswering): the batches it
    // answers meanwhile collect here, and the loop resumes them together. Per thread, so that an answer given anywhere
    // else (a deadline's timer, a caller's cancellation, a closed input queue) is never collected, and so never lost.
    [ThreadStatic]
    private static List<ProposalBatch>? s_collector;

    private ManualResetValueTaskSourceCore<bool> _core = new() { RunContinuationsAsynchronously = true };
    private int _remaining;

    public ProposalBatch(IReadOnlyList<ReadOnlyMemory<byte>> entries)
    {
        var slots = new ProposalSlot[entries.Count];
        for (int i = 0; i < slots.Length; i++)
        {
            slots[i] = new ProposalSlot(this, entries[i]);
        }

        Slots = slots;
        _remaining = slots.Length;
    }

    public ProposalSlot[] Slots { get; }

    /// <summary>When the batch times out (the host clock's timestamp).</summary>
    public long DeadlineAt { get; set; }

    // The deadline list's links (ProposalDeadlines), guarded by its lock.
    internal ProposalBatch? Previous { get; set; }

    internal ProposalBatch? Next { get; set; }

    internal bool Linked { get; set; }

    internal ProposalDeadlines? Deadlines { get; set; }

    internal CancellationTokenRegistration Cancellation { get; set; }

    // The proposing caller's side (CommandService.TryStartHere), set before the batch is awaited and read after it
    // completed, on the caller's side only: its commands, their outcomes, which commands the slots answer, how
    // many were proposed, when it started (a Stopwatch timestamp) and its token.
    internal IReadOnlyList<WriteRequest>? Commands { get; set; }

    internal WriteOutcome[]? Outcomes { get; set; }

    internal int[]? Positions { get; set; }

    internal int Proposed { get; set; }

    internal long Started { get; set; }

    internal CancellationToken CallerToken { get; set; }

    /// <summary>The list that collects the batches answered on this thread until it is set back to null (the Raft
    /// loop's, around one pass of the driver).</summary>
    internal static List<ProposalBatch>? Collector
    {
        get => s_collector;
        set => s_collector = value;
    }

    /// <summary>Completes once every slot is answered (applied, failed, or timed out). Await once.</summary>
    public ValueTask WaitAsync() => new(this, _core.Version);

    /// <summary>The deadline passed or the caller went away: every slot not answered yet fails with a timeout,
    /// "not applied" if it was never proposed (and now never will be), "outcome unknown" if it was.</summary>
    public void Expire()
    {
        foreach (var slot in Slots)
        {
            slot.Expire();
        }
    }

    /// <summary>One more slot is answered. <paramref name="inline"/>: the answer came from the deadline's timer or
    /// the caller's cancellation, not from the Raft loop, so the caller's continuation may run right here (as a
    /// cancelled wait's would); an answer from a pass of the loop is collected and resumed once the pass is over
    /// (<c>RaftHost.ProcessAnswering</c>), never inside it: on the loop's thread after it released the gate, or on
    /// the thread pool.</summary>
    internal void SlotAnswered(bool inline = false)
    {
        if (Interlocked.Decrement(ref _remaining) == 0)
        {
            Deadlines?.Remove(this);
            Cancellation.Unregister();
            if (!inline && s_collector is { } answered)
            {
                answered.Add(this); // resumed after the pass, with the others it answers
                return;
            }

            Complete(inline);
        }
    }

    /// <summary>Resumes the caller: here if <paramref name="inline"/>, else through a thread-pool work item.</summary>
    internal void Complete(bool inline)
    {
        _core.RunContinuationsAsynchronously = !inline;
        _core.SetResult(true);
    }

    void IValueTaskSource.GetResult(short token) => _core.GetResult(token);

    ValueTaskSourceStatus IValueTaskSource.GetStatus(short token) => _core.GetStatus(token);

    void IValueTaskSource.OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
        _core.OnCompleted(continuation, state, token, flags);
}

/// <summary>One entry of a <see cref="ProposalBatch"/>, as the driver tracks it: answered once, by the driver or by
/// the batch's deadline, whichever comes first; a later answer is ignored.</summary>
internal sealed class ProposalSlot(ProposalBatch batch, ReadOnlyMemory<byte> entry) : ProposalRequest
{
    internal const string NotProposedMessage = "no leader accepted the write within the request timeout; it was not applied";
    internal const string NotCommittedMessage = "the write was proposed but not committed within the request timeout; outcome unknown";

    private int _answered;

    public ReadOnlyMemory<byte> Entry { get; } = entry;

    /// <summary>When the loop took it (Stopwatch timestamp), for the commit histogram.</summary>
    public long ProposedAt { get; set; }

    /// <summary>The state machine's result, once applied.</summary>
    public ApplyResult Result { get; private set; }

    /// <summary>Why it was not applied (or may not have been), if it was not.</summary>
    public RaftHostException? Error { get; private set; }

    public override void Complete(ApplyResult result)
    {
        if (Interlocked.Exchange(ref _answered, 1) == 0)
        {
            ServerMetrics.Commit.Record(ServerMetrics.Seconds(ProposedAt));
            Result = result;
            batch.SlotAnswered();
        }
    }

    public override void Fail(RaftHostException error)
    {
        if (Interlocked.Exchange(ref _answered, 1) == 0)
        {
            Error = error;
            batch.SlotAnswered();
        }
    }

    internal void Expire()
    {
        if (Interlocked.Exchange(ref _answered, 1) == 0)
        {
            Error = TryAbandon()
                ? new RaftHostException(HostErrorKind.Timeout, NotProposedMessage)
                : new RaftHostException(HostErrorKind.Timeout, NotCommittedMessage, outcomeUnknown: true);
            batch.SlotAnswered(inline: true);
        }
    }
}

/// <summary>
/// The deadlines of every pending <see cref="ProposalBatch"/>, in one list ordered by deadline, and one timer set for
/// the earliest: when it fires, every batch whose deadline has passed expires. Batches leave the list when answered,
/// in constant time. Deadlines almost always arrive in order (one request timeout for all), so adding is constant
/// time too, and the timer is re-armed only when the list's head changes to an earlier deadline.
/// </summary>
internal sealed class ProposalDeadlines : IDisposable
{
    private readonly TimeProvider _time;
    private readonly ITimer _timer;
    private readonly Lock _lock = new();
    private ProposalBatch? _head;
    private ProposalBatch? _tail;
    private long _armedFor = long.MaxValue;
    private bool _disposed;

    public ProposalDeadlines(TimeProvider time)
    {
        _time = time;
        _timer = time.CreateTimer(static state => ((ProposalDeadlines)state!).OnTimer(), this, Timeout.InfiniteTimeSpan, Timeout.InfiniteTimeSpan);
    }

    /// <summary>Pending batches (tests).</summary>
    public int Count
    {
        get
        {
            lock (_lock)
            {
                int count = 0;
                for (var b = _head; b is not null; b = b.Next)
                {
                    count++;
                }

                return count;
            }
        }
    }

    /// <summary>Adds <paramref name="batch"/> with a deadline <paramref name="timeout"/> from now.</summary>
    public void Add(ProposalBatch batch, TimeSpan timeout)
    {
        long now = _time.GetTimestamp();
        long deadline = now + (long)(timeout.TotalSeconds * _time.TimestampFrequency);
        batch.DeadlineAt = deadline;
        batch.Deadlines = this;
        lock (_lock)
        {
            if (_disposed)
            {
                batch.Deadlines = null;
                return;
            }

            // From the tail: deadlines almost always arrive in order.
            var after = _tail;
            while (after is not null && after.DeadlineAt > deadline)
            {
                after = after.Previous;
            }

            batch.Previous = after;
            batch.Next = after is null ? _head : after.Next;
            if (batch.Next is null)
            {
                _tail = batch;
            }
            else
            {
                batch.Next.Previous = batch;
            }

            if (after is null)
            {
                _head = batch;
            }
            else
            {
                after.Next = batch;
            }

            batch.Linked = true;
            if (deadline < _armedFor)
            {
                Arm(deadline, now);
            }
        }
    }

    /// <summary>Takes an answered batch out of the list (nothing if it is not in it).</summary>
    public void Remove(ProposalBatch batch)
    {
        lock (_lock)
        {
            Unlink(batch);
        }

        // The timer stays set: when it fires for a batch already gone, it re-arms for the new head.
    }

    /// <summary>Expires every pending batch and stops the timer (the host is gone).</summary>
    public void Dispose()
    {
        List<ProposalBatch> all = [];
        lock (_lock)
        {
            _disposed = true;
            while (_head is { } batch)
            {
                Unlink(batch);
                all.Add(batch);
            }
        }

        _timer.Dispose();
        foreach (var batch in all)
        {
            batch.Expire();
        }
    }

    private void OnTimer()
    {
        List<ProposalBatch>? expired = null;
        lock (_lock)
        {
            long now = _time.GetTimestamp();
            _armedFor = long.MaxValue;
            while (_head is { } batch && batch.DeadlineAt <= now)
            {
                Unlink(batch);
                (expired ??= []).Add(batch);
            }

            if (_head is { } next && !_disposed)
            {
                Arm(next.DeadlineAt, now);
            }
        }

        if (expired is not null)
        {
            foreach (var batch in expired)
            {
                batch.Expire();
            }
        }
    }

    private void Arm(long deadline, long now)
    {
        _armedFor = deadline;
        var due = deadline <= now ? TimeSpan.Zero : _time.GetElapsedTime(now, deadline);
        _timer.Change(due, Timeout.InfiniteTimeSpan);
    }

    private void Unlink(ProposalBatch batch)
    {
        if (!batch.Linked)
        {
            return;
        }

        if (batch.Previous is null)
        {
            _head = batch.Next;
        }
        else
        {
            batch.Previous.Next = batch.Next;
        }

        if (batch.Next is null)
        {
            _tail = batch.Previous;
        }
        else
        {
            batch.Next.Previous = batch.Previous;
        }

        batch.Previous = null;
        batch.Next = null;
        batch.Linked = false;
    }
}
