using System.Diagnostics;
using System.Runtime.ExceptionServices;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Stcache.Cache;
using Stcache.Node;
using Stcache.Raft;

namespace Stcache.Server;

/// <summary>
/// <para>
/// The async shell around one <see cref="NodeDriver"/>: a single loop reads two bounded channels of inputs, Raft
/// traffic (ticks, peer messages, transport reports) before client inputs (proposals, reads, membership changes), so
/// an overload of clients delays them (back-pressure) and never crowds out heartbeats and votes. It hands every queued input to the driver before asking it to
/// process (so a burst of proposals shares one fsync), and performs the driver's effects: messages to the network,
/// snapshots written and streamed off the loop, waits for a refusing disk. Every decision is the driver's; this class
/// owns only the channel, the timer and the tasks callers await. Every public method is thread-safe; all driver,
/// core and storage calls happen in a pass, and one pass runs at a time: whoever runs one holds the pass gate.
/// </para>
/// <para>
/// Who runs a pass (<see cref="RaftHostOptions.InlinePeerPasses"/>, "flat combining"): the loop, a thread-pool task
/// rung by whoever queues an input while no pass runs (<see cref="LoopBell"/>), and a thread that delivers a peer
/// message (<see cref="Deliver"/>, the peer link's receive thread) while the gate is free: that thread then runs the
/// pass itself, with whatever is queued before its message, and saves the loop's wake-up. Which
/// messages may be handled so: see <see cref="MayPassInline"/> (on an idle host, all of them). A pass that leaves the driver waiting (a storage retry, a snapshot save, a drain of the log writer)
/// is handed over to the loop there: a receive thread never blocks on a wait.
/// </para>
/// </summary>
public sealed class RaftHost : IAsyncDisposable
{
    private static readonly KeyValuePair<string, object?> s_peerTag = new("kind", "peer");
    private static readonly KeyValuePair<string, object?> s_proposeTag = new("kind", "propose");
    private static readonly KeyValuePair<string, object?> s_readTag = new("kind", "read");

    private readonly RaftHostOptions _options;
    private readonly ISnapshotStore _snapshotStore;
    private readonly IPeerNetwork _network;
    private readonly CacheStateMachine _cache;
    private readonly MemberBook _members;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly Channel<NodeInput> _inputs;
    private readonly Channel<NodeInput> _raftInputs;
    private long _peerInputsDropped;
    private long _lastDropLogged;

    // The pass gate: 1 while a pass runs (the loop's, or an inline one on a delivering thread). The loop, finding it
    // held, parks its wait here, and delivering threads then leave the gate to it (they queue instead), so the loop
    // is never starved; the loop holds it for good once it ends, so no pass runs after stop.
    private int _gate;
    private TaskCompletionSource? _loopWantsGate;
    private volatile bool _started;

    // The managed thread id of the thread inside the driver's Process (0 outside it): a read round handed over there
    // (StartReadRound, from the answer to the last round) starts in the same pass.
    private int _processingThread;
    private bool _roundStartedInPass; // guarded by the pass gate

    // Pass-owned: set while a pass runs on a delivering thread; the one batch a pass answered, resumed
    // on the thread that ran it once the gate is released (see ProcessAnswering).
    private bool _passOnDeliveringThread;
    private ProposalBatch? _answerAfterPass;

    // Loop-owned (only the loop's passes add to it, only the loop takes from it): the batches the loop's passes
    // answered, resumed by the loop once it has released the gate (ResumeOnLoop).
    private readonly List<ProposalBatch> _loopAnswers = [];

    // RaftHostOptions.ResumeOnLoop, as the environment switch leaves it.
    private readonly bool _resumeOnLoop;

    // A pass on a delivering thread failed: the loop rethrows it as its own failure.
    private volatile ExceptionDispatchInfo? _inlineFailure;

    // The loop's wake-up, rung by whoever queues an input while no pass runs (see WakeLoop).
    private readonly LoopBell _bell = new();
    private readonly CancellationTokenSource _stopping = new();

    // _stopping's token, taken at construction: the source's Token throws once DisposeAsync disposed it, and a
    // request that arrives after that must hear "shutting down" (a cancelled token), not ObjectDisposedException.
    private readonly CancellationToken _stoppingToken;
    private readonly NodeDriver _driver;
    private readonly ProposalDeadlines _deadlines;

    // --wal-pipeline true: the thread that persists the Readies the loop hands out (null: the loop saves).
    private readonly RaftHostWalWriter? _walWriter;

    // Pass-owned state below: touched only by whoever holds the pass gate (and the constructor before the start).
    private readonly List<ReadOnlyMemory<byte>> _queuedCommands = [];
    private readonly List<ProposalRequest> _queuedWaiters = [];
    private readonly List<ProposalBatch> _answered = [];
    private long _tickEpoch;
    private Task? _snapshotTask;
    private Task? _loop;
    private Task? _ticker;

    public RaftHost(
        RaftHostOptions options,
        IRaftLogStore logStore,
        ISnapshotStore snapshotStore,
        IPeerNetwork network,
        CacheStateMachine cache,
        MemberBook members,
        ILogger<RaftHost> logger,
        TimeProvider? time = null)
    {
        options.Validate();
        _options = options;
        _snapshotStore = snapshotStore;
        _network = network;
        _cache = cache;
        _members = members;
        _logger = logger;
        _time = time ?? TimeProvider.System;
        _stoppingToken = _stopping.Token;
        _inputs = Channel.CreateBounded<NodeInput>(new BoundedChannelOptions(options.InputQueueCapacity)
        {
            // Read by whoever runs a pass: the loop, or a delivering thread.
            SingleReader = false,
            FullMode = BoundedChannelFullMode.Wait,
        });
        if (options.Raft.AsyncStorageWrites)
        {
            // The writer's saves and the loop's snapshot calls reach the store from two threads.
            logStore = new SerializedLogStore(logStore);
            _walWriter = new RaftHostWalWriter(options.Raft.Id, logStore, network,
                () => TryQueueRaft(PersistedInput.Instance), logger, _time);
        }

#pragma warning disable CA5394 // read ids only need to differ between incarnations, not be secret
        _driver = new NodeDriver(options, logStore, snapshotStore, new Effects(this), cache, members, logger, _time,
            readIdSeed: (ulong)Random.Shared.NextInt64());
#pragma warning restore CA5394
        _deadlines = new ProposalDeadlines(_time);
        _resumeOnLoop = options.ResumeOnLoop && Environment.GetEnvironmentVariable(ResumeOnLoopSwitch) != "0";
        _raftInputs = Channel.CreateBounded<NodeInput>(new BoundedChannelOptions(options.PeerInputQueueCapacity)
        {
            // Read by whoever runs a pass: the loop, or a delivering thread.
            SingleReader = false,
            FullMode = BoundedChannelFullMode.Wait,
        });
    }

    public NodeId Id => _options.Raft.Id;

    public MemberBook Members => _members;

    public CacheStateMachine Cache => _cache;

    public TimeSpan RequestTimeout => _options.RequestTimeout;

    /// <summary>The latest status published by the loop (refreshed after every batch, and before the answers to a batch
    /// of applied entries are given, so a caller that heard its answer reads a status that shows its entry).</summary>
    public HostStatus Status => _driver.Status;

    /// <summary>Raised on the loop when leader, role or term changes. Handlers must not block.</summary>
    public event Action<LeadershipChange>? LeadershipChanged;

    /// <summary>Raised once when this node applies its own removal from the cluster.</summary>
    public event Action? RemovedFromCluster;

    /// <summary>Raised on the loop with a follower's access report for the leader (docs/CACHE.md). Must not block.</summary>
    public event Action<NodeId, IReadOnlyList<byte[]>>? AccessReported;

    /// <summary>True once this node has applied its own removal, or learned of it from a peer.</summary>
    public bool WasRemoved => _driver.WasRemoved;

    /// <summary>Completes when the loop stops; faults if it stopped because storage failed.</summary>
    public Task Completion => _loop ?? Task.CompletedTask;

    /// <summary>True while the write-ahead log refuses writes; /readyz reports the node not ready.</summary>
    public bool StorageFailing => _driver.StorageFailing || (_walWriter?.Failing ?? false);

    /// <summary>The shortest election timeout: a follower that hears nothing from its leader for this long campaigns.</summary>
    public TimeSpan ElectionTimeout => _options.TickInterval * _options.Raft.ElectionTimeoutTicks;

    public void Start()
    {
        if (_loop is not null)
        {
            throw new InvalidOperationException("already started");
        }

        foreach (var member in _members.All)
        {
            if (member.Id != Id.Value && member.RaftAddress.Length > 0)
            {
                _network.SetPeer(new NodeId(member.Id), CommandLine.NormalizeAddress(member.RaftAddress));
            }
        }

        _members.Changed += OnMemberChanged;
        _members.Removed += OnMemberRemoved;
        _tickEpoch = _time.GetTimestamp();
        _loop = Task.Run(RunLoopAsync);
        _ticker = Task.Run(RunTickerAsync);
        _started = true;
    }

    /// <summary>The environment variable that turns <see cref="RaftHostOptions.InlinePeerPasses"/> off when "0",
    /// <see cref="RaftHostOptions.InlinePeerAppends"/> on when "appends", and both it and
    /// <see cref="RaftHostOptions.InlinePeerPassesOnLeader"/> on when "all" (for measuring each way with one
    /// build).</summary>
    public const string InlinePassesSwitch = "STCACHE_INLINE_PEER_PASSES";

    /// <summary>The environment variable that turns <see cref="RaftHostOptions.ResumeOnDeliveringThread"/> off when
    /// "0" (for measuring each way with one build).</summary>
    public const string ResumeOnDeliveringThreadSwitch = "STCACHE_RESUME_ON_RECEIVE";

    /// <summary>The environment variable that turns <see cref="RaftHostOptions.ResumeOnLoop"/> off when "0" (for
    /// measuring each way with one build).</summary>
    public const string ResumeOnLoopSwitch = "STCACHE_RESUME_ON_LOOP";

    /// <summary>Called in a pass with each peer message just before the driver steps it: for tests that check where
    /// and in which order messages are handled.</summary>
    internal Action<Message>? PeerMessageStepping { get; set; }

    /// <summary>Called in a pass with each proposal batch as the pass takes it: for tests that check which thread
    /// proposes.</summary>
    internal Action<ProposalBatch>? ProposalTaking { get; set; }

    /// <summary>True while a pass runs (someone holds the pass gate), for tests.</summary>
    internal bool PassRunning => Volatile.Read(ref _gate) != 0;

    /// <summary>Called each time a pass releases the gate: for tests that wait for the host to be idle.</summary>
    internal Action? PassEnded { get; set; }

    /// <summary>
    /// Hands a message from a peer to the core: with <see cref="RaftHostOptions.InlinePeerPasses"/> and no pass
    /// running, in a pass on this thread (which may save to the log: the caller must be a thread that may wait on
    /// the disk, as a peer link's receive thread may), else through the Raft input queue. Never waits for another
    /// thread; drops invalid messages, and when the Raft input queue is full (<see cref="PeerInputsDropped"/>,
    /// logged at most once a second). One sender's messages must come from one thread at a time, in order: they are
    /// stepped in that order.
    /// </summary>
    public void Deliver(Message message) => Deliver(message, moreReceived: false);

    /// <summary>
    /// As <see cref="Deliver(Message)"/>; <paramref name="moreReceived"/>: the delivering thread has already received
    /// another message behind this one and delivers it next (the transport's <c>PeerTransport.MoreReceived</c>), so
    /// this one is not handled alone on that account (<see cref="RaftHostOptions.InlinePeerPassesWhenIdle"/>).
    /// </summary>
    public void Deliver(Message message, bool moreReceived)
    {
        string? problem = message.Validate();
        if (problem is not null || message.To != Id)
        {
            Log.DroppedMessage(_logger, message.From, problem ?? "addressed to another node");
            return;
        }

        if (!(MayPassInline(message, moreReceived) && TryPassInline(message)))
        {
            EnqueueRaftInput(new PeerMessageInput(message), "peer message");
        }
    }

    /// <summary>Whether the options let <paramref name="message"/> be handled on its delivering thread: on a follower
    /// unless <see cref="RaftHostOptions.InlinePeerPassesOnLeader"/>, and an append with entries only with
    /// <see cref="RaftHostOptions.InlinePeerAppends"/>; and any message, with
    /// <see cref="RaftHostOptions.InlinePeerPassesWhenIdle"/>, while the host is idle: no pass runs (checked again
    /// when the gate is taken), nothing is queued for it, and the sender's next message is not already here. That
    /// is the one-connection write's case, where queueing only costs the loop's wake-up; under load the queues are
    /// rarely empty, and such messages still go to the loop, which takes them in batches.</summary>
    private bool MayPassInline(Message message, bool moreReceived)
    {
        if (!_options.InlinePeerPasses)
        {
            return false;
        }

        if ((_options.InlinePeerPassesOnLeader || !_driver.Status.IsLeader)
            && (_options.InlinePeerAppends || message.Type != MessageType.Append || message.Entries.Length == 0))
        {
            return true;
        }

        return _options.InlinePeerPassesWhenIdle && !moreReceived && Volatile.Read(ref _gate) == 0
            && !_raftInputs.Reader.TryPeek(out _) && !_inputs.Reader.TryPeek(out _);
    }

    public void ReportUnreachable(NodeId peer) => EnqueueRaftInput(new UnreachableInput(peer), "unreachable report");

    /// <summary>The transport saw the peer's connection reset, closed or refused (not a timeout): see
    /// <c>RaftNode.ReportConnectionLost</c>.</summary>
    public void ReportConnectionLost(NodeId peer) => EnqueueRaftInput(new ConnectionLostInput(peer), "connection-lost report");

    public void ReportSnapshot(NodeId peer, bool succeeded) => EnqueueRaftInput(new SnapshotStatusInput(peer, succeeded), "snapshot report");

    /// <summary>Proposal batches whose callers still wait (each under its deadline), for tests.</summary>
    internal int PendingProposalBatches => _deadlines.Count;

    /// <summary>Peer messages and transport reports dropped because the Raft input queue was full.</summary>
    public long PeerInputsDropped => Interlocked.Read(ref _peerInputsDropped);

    private void EnqueueRaftInput(NodeInput input, string kind)
    {
        if (TryQueueRaft(input) || _stopping.IsCancellationRequested)
        {
            return;
        }

        long total = Interlocked.Increment(ref _peerInputsDropped);
        long now = Stopwatch.GetTimestamp();
        long last = Interlocked.Read(ref _lastDropLogged);
        if ((last == 0 || Stopwatch.GetElapsedTime(last, now) >= TimeSpan.FromSeconds(1))
            && Interlocked.CompareExchange(ref _lastDropLogged, now, last) == last)
        {
            Log.PeerInputDropped(_logger, _options.PeerInputQueueCapacity, kind, total);
        }
    }

    /// <summary>
    /// For the peer handshake: null when <paramref name="peer"/> is in this node's configuration, or when this node
    /// knows no configuration yet; else the applied index that configuration is as of. Read from the published
    /// status, so the configuration and the index always belong together.
    /// </summary>
    public LogIndex? NotAMemberAsOf(NodeId peer)
    {
        var status = _driver.Status;
        var conf = status.ConfState;
        return conf.IsMember(peer) || (conf.Voters.Count == 0 && conf.Learners.Count == 0) ? null : status.Applied;
    }

    /// <summary>A peer's configuration as of its applied index <paramref name="asOf"/> does not list this node.</summary>
    public void ReportNotAMember(NodeId peer, LogIndex asOf) => EnqueueRaftInput(new NotAMemberInput(peer, asOf), "not-a-member report");

    /// <summary>Proposes a cache command and waits until it is committed and applied (or fails).</summary>
    /// <exception cref="RaftHostException">Not leader, no leader, timeout, lost; see <see cref="RaftHostException.OutcomeUnknown"/>.</exception>
    public Task<ApplyResult> ProposeAsync(CacheCommand command, CancellationToken cancellationToken = default) =>
        ProposeAsync(command.Encode(), cancellationToken);

    /// <summary>Proposes an encoded cache entry (a <see cref="WriteCommand"/> stamped with the leader's log time).</summary>
    public async Task<ApplyResult> ProposeAsync(ReadOnlyMemory<byte> entry, CancellationToken cancellationToken = default)
    {
        var batch = StartProposals([entry], _options.RequestTimeout, cancellationToken);
        await batch.WaitAsync().ConfigureAwait(false);
        var slot = batch.Slots[0];
        return slot.Error is { } error ? throw error : slot.Result;
    }

    /// <summary>
    /// Proposes encoded cache entries in this order (they enter the log together, in one batch if the loop takes them
    /// at once) and returns their batch, whose <see cref="ProposalBatch.WaitAsync"/> completes once every entry is
    /// applied or has failed: each slot then holds its result or its error (a <see cref="HostErrorKind.Timeout"/>
    /// after <paramref name="timeout"/> on this host's clock, or once <paramref name="cancellationToken"/> fires,
    /// "not applied" if the entry was never proposed and otherwise "outcome unknown"). Never throws.
    /// </summary>
    internal ProposalBatch StartProposals(IReadOnlyList<ReadOnlyMemory<byte>> entries, TimeSpan timeout, CancellationToken cancellationToken)
    {
        var batch = new ProposalBatch(entries);
        if (batch.Slots.Length == 0)
        {
            return batch;
        }

        _deadlines.Add(batch, timeout);
        if (cancellationToken.CanBeCanceled)
        {
            batch.Cancellation = cancellationToken.UnsafeRegister(static state => ((ProposalBatch)state!).Expire(), batch);
        }

        var input = new ProposeInput(batch);
        if (!TryQueueClient(input))
        {
            _ = WriteProposalsAsync(input, timeout, cancellationToken);
        }

        return batch;
    }

    /// <summary>The input queue was full (or closed): waits for room, within the batch's deadline.</summary>
    private async Task WriteProposalsAsync(ProposeInput input, TimeSpan timeout, CancellationToken cancellationToken)
    {
        try
        {
            using var deadline = new CancellationTokenSource(timeout, _time);
            using var stopping = CancellationTokenSource.CreateLinkedTokenSource(_stoppingToken, deadline.Token, cancellationToken);
            await QueueClientAsync(input, stopping.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!_stopping.IsCancellationRequested)
        {
            input.Batch.Expire();
        }
        catch (Exception e) when (e is ChannelClosedException or OperationCanceledException)
        {
            // Closed, or stopping: the write never reached the loop.
            foreach (var slot in input.Batch.Slots)
            {
                slot.Fail(new RaftHostException(HostErrorKind.ShuttingDown, "node is shutting down; the write was not applied"));
            }
        }
    }

    /// <summary>Proposes a membership change and waits until it is applied.</summary>
    public async Task ChangeMembershipAsync(ConfChange change, CancellationToken cancellationToken = default)
    {
        var waiter = new ProposalWaiter();
        await WaitForWriteAsync(new ConfChangeInput(change, waiter), waiter, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Waits until a read at this moment is linearizable on this node (ReadIndex, thesis §6.4): the read index is
    /// confirmed by the leader and this node has applied up to it. With <paramref name="lease"/> the leader may
    /// skip the heartbeat round while its lease holds. The answer carries the time the read is served at: the
    /// leader's when it confirmed the index (docs/CACHE.md).
    /// </summary>
    public Task<ReadPoint> ReadBarrierAsync(bool lease, CancellationToken cancellationToken = default)
    {
        var input = new ReadInput(lease);
        return AwaitInputAsync(input, input.Request.Completion.Task, _options.RequestTimeout, ReadTimeoutMessage, cancellationToken);
    }

    /// <summary>
    /// Hands one read round for a batch of reads (see <see cref="ReadBatcher"/>) to the loop: the same barrier as
    /// <see cref="ReadBarrierAsync"/>, answered through <paramref name="request"/> (whose deadline the caller has
    /// started). <paramref name="taken"/> runs on the loop just before the round is handed to the driver: a read that
    /// joined the batch before then arrived before the confirmation round that serves it started. Never blocks.
    /// </summary>
    internal void StartReadRound(bool lease, ReadRequest request, Action taken)
    {
        // Handed over inside this host's pass, by the answer to the last round (the batcher hands the next batch
        // over as the last is answered): the round starts in the same pass, whose Process then sends its heartbeat,
        // instead of going through the input queue to a pass of its own. Only between Readys (the driver takes no
        // input while one is handled), once per pass (a lone voter answers a round in the Ready that follows, and
        // reads arriving all the while must not keep one Process going), and not for lease reads, which the loop
        // takes after the due ticks (a lease must not outlive the ticks that expire it).
        if (!lease && Volatile.Read(ref _processingThread) == Environment.CurrentManagedThreadId && _driver.TakesInput
            && !_roundStartedInPass)
        {
            _roundStartedInPass = true;
            StartRead(lease, request, taken);
            return;
        }

        var input = new ReadInput(lease, request) { Taken = taken };
        if (!TryQueueClient(input))
        {
            _ = WriteReadInputAsync(input);
        }
    }

    /// <summary>A new read request for <see cref="StartReadRound"/>, its deadline (the request timeout) running.</summary>
    internal ReadRequest NewReadRequest(Action finished)
    {
        var request = new ReadRequest { Finished = finished };
        request.StartDeadline(_options.RequestTimeout, _time);
        return request;
    }

    /// <summary>The input queue was full (or closed): waits for room, within the read's deadline.</summary>
    private async Task WriteReadInputAsync(ReadInput input)
    {
        try
        {
            using var deadline = new CancellationTokenSource(_options.RequestTimeout, _time);
            using var stopping = CancellationTokenSource.CreateLinkedTokenSource(_stoppingToken, deadline.Token);
            await QueueClientAsync(input, stopping.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!_stopping.IsCancellationRequested)
        {
            input.Request.Fail(new RaftHostException(HostErrorKind.Timeout, ReadTimeoutMessage));
        }
        catch (Exception e) when (e is ChannelClosedException or OperationCanceledException)
        {
            input.Request.Fail(new RaftHostException(HostErrorKind.ShuttingDown, "node is shutting down"));
        }
    }

    internal const string ReadTimeoutMessage = "read could not be confirmed by a leader within the request timeout (no leader or no quorum)";

    /// <summary>
    /// Completes once this node has applied <paramref name="index"/> (at once if it already has), and its
    /// <see cref="Status"/> shows it; throws a <see cref="HostErrorKind.Timeout"/> error after <paramref name="timeout"/>.
    /// </summary>
    public Task<LogIndex> WaitForAppliedAsync(LogIndex index, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        if (index <= _driver.Status.Applied)
        {
            return Task.FromResult(index);
        }

        var input = new AppliedWaitInput(index);
        return AwaitInputAsync(input, input.Request.Completion.Task, timeout,
            $"this node had not applied index {index} after {timeout.TotalMilliseconds:0} ms (cut off from the leader?)", cancellationToken);
    }

    /// <summary>
    /// Completes once this node has applied every entry its log holds when the loop takes this wait, and its
    /// <see cref="Status"/> shows them: what a membership change refused as <see cref="HostErrorKind.ConfChangeInProgress"/>
    /// waits for before it is tried again (the change in flight is in the log by then, and so is a new leader's first
    /// entry). Throws a <see cref="HostErrorKind.Timeout"/> error after <paramref name="timeout"/>.
    /// </summary>
    public Task<LogIndex> WaitForLogAppliedAsync(TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        var input = new AppliedWaitInput(null);
        return AwaitInputAsync(input, input.Request.Completion.Task, timeout,
            $"this node had not applied its log after {timeout.TotalMilliseconds:0} ms (cut off from the leader?)", cancellationToken);
    }

    public async Task<ProposeStatus> TransferLeadershipAsync(NodeId target, CancellationToken cancellationToken = default)
    {
        var input = new TransferInput(target);
        await WriteInputAsync(input, cancellationToken).ConfigureAwait(false);
        return await input.Completion.Task.WaitAsync(_options.RequestTimeout, _time, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Takes a snapshot now (if anything was applied since the last one) and returns its metadata.</summary>
    public async Task<SnapshotMetadata> SnapshotAsync(CancellationToken cancellationToken = default)
    {
        var input = new SnapshotRequestInput();
        await WriteInputAsync(input, cancellationToken).ConfigureAwait(false);
        return await input.Request.Completion.Task.WaitAsync(TimeSpan.FromMinutes(5), _time, cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        if (_stopping.IsCancellationRequested)
        {
            return;
        }

        await _stopping.CancelAsync().ConfigureAwait(false);
        _inputs.Writer.TryComplete();
        _raftInputs.Writer.TryComplete();
        _bell.Ring(); // the loop sees both queues closed once it has drained them
        try
        {
            if (_ticker is not null)
            {
                await _ticker.ConfigureAwait(false);
            }

            if (_loop is not null)
            {
                await _loop.ConfigureAwait(false);
            }
        }
        catch (Exception e) when (e is not OutOfMemoryException)
        {
            Log.LoopFailed(_logger, e);
        }

        if (_snapshotTask is not null)
        {
            await _snapshotTask.ConfigureAwait(false);
        }

        _walWriter?.Dispose();
        _deadlines.Dispose(); // answers any write the loop never saw
        _stopping.Dispose();
    }

    private async Task<T> AwaitInputAsync<T>(NodeInput input, Task<T> completion, TimeSpan limit, string timeoutMessage, CancellationToken cancellationToken)
    {
        using var deadline = new CancellationTokenSource(limit, _time);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stoppingToken, deadline.Token);
        try
        {
            await QueueClientAsync(input, timeout.Token).ConfigureAwait(false);
            return await completion.WaitAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            // The node stopping cancels the wait before its loop answers it: that is the stop, not a timeout.
            throw _stopping.IsCancellationRequested
                ? new RaftHostException(HostErrorKind.ShuttingDown, "node is shutting down")
                : new RaftHostException(HostErrorKind.Timeout, timeoutMessage);
        }
        catch (ChannelClosedException)
        {
            throw new RaftHostException(HostErrorKind.ShuttingDown, "node is shutting down");
        }
    }

    private async Task<ApplyResult> WaitForWriteAsync(NodeInput input, ProposalWaiter waiter, CancellationToken cancellationToken)
    {
        using var deadline = new CancellationTokenSource(_options.RequestTimeout, _time);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stoppingToken, deadline.Token);
        try
        {
            await QueueClientAsync(input, timeout.Token).ConfigureAwait(false);
            return await waiter.Completion.Task.WaitAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or ChannelClosedException)
        {
            bool stopping = _stopping.IsCancellationRequested;
            if (waiter.TryAbandon())
            {
                throw stopping
                    ? new RaftHostException(HostErrorKind.ShuttingDown, "node is shutting down; the change was not applied")
                    : new RaftHostException(HostErrorKind.Timeout, ProposalSlot.NotProposedMessage);
            }

            throw stopping
                ? new RaftHostException(HostErrorKind.ShuttingDown, "node is shutting down; outcome unknown", outcomeUnknown: true)
                : new RaftHostException(HostErrorKind.Timeout, ProposalSlot.NotCommittedMessage, outcomeUnknown: true);
        }
    }

    private async Task WriteInputAsync(NodeInput input, CancellationToken cancellationToken)
    {
        try
        {
            await QueueClientAsync(input, cancellationToken).ConfigureAwait(false);
        }
        catch (ChannelClosedException)
        {
            throw new RaftHostException(HostErrorKind.ShuttingDown, "node is shutting down");
        }
    }

    private async Task RunTickerAsync()
    {
        using var timer = new PeriodicTimer(_options.TickInterval, _time);
        try
        {
            while (await timer.WaitForNextTickAsync(_stoppingToken).ConfigureAwait(false))
            {
                // A tick lost to a full queue costs nothing: the loop counts ticks by the clock (DueTicks).
                TryQueueRaft(TickInput.Instance);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>
    /// Ticks by the monotonic clock, not by timer callbacks: after a pause (a long GC, SIGSTOP, a stalled VM) every
    /// missed tick is due at once. The driver delivers a few late ticks as they are, and collapses a stall's burst to
    /// one tick, telling the core how many it skipped (NodeDriver.Tick; docs/RAFT.md, "Ticks after a stall").
    /// </summary>
    private long DueTicks() => (long)(_time.GetElapsedTime(_tickEpoch) / _options.TickInterval);

    private async Task RunLoopAsync()
    {
        bool holding = false;
        try
        {
            while (await WaitForInputAsync().ConfigureAwait(false))
            {
                await EnterGateAsync().ConfigureAwait(false);
                holding = true;
                _inlineFailure?.Throw();

                // A pass on a delivering thread left the driver waiting and handed the wait over (its wake-up input
                // is queued): finish the Ready before the driver takes input again.
                if (_driver.Waiting != DriverWait.None && !await ProcessAsync().ConfigureAwait(false))
                {
                    break;
                }

                // Woken for inputs an inline pass has taken since: nothing to do.
                if (HasQueuedInput())
                {
                    TakeInputs(null);
                    if (!await ProcessAsync().ConfigureAwait(false))
                    {
                        break;
                    }
                }

                holding = false;
                ExitGate();

                // The batches this pass answered (ResumeOnLoop): their callers' continuations (a front end's replies)
                // run here, after the gate is released, instead of on a pool worker woken for them; inputs queued
                // meanwhile wait for the next pass, which takes them together with what the replies bring.
                ResumeLoopAnswers(inline: true);
            }
        }
        catch (Exception e)
        {
            if (!holding)
            {
                await EnterGateAsync().ConfigureAwait(false);
            }

            ResumeLoopAnswers(inline: false);

            Log.LoopFailed(_logger, e);
            FailAll(new RaftHostException(HostErrorKind.ShuttingDown, "node stopped: " + e.Message, outcomeUnknown: true));
            throw;
        }

        // The gate stays held from here on: no pass after stop.
        if (!holding)
        {
            await EnterGateAsync().ConfigureAwait(false);
        }

        ResumeLoopAnswers(inline: false);

        FailAll(new RaftHostException(HostErrorKind.ShuttingDown, "node is shutting down; outcome unknown", outcomeUnknown: true));
    }

    /// <summary>
    /// One pass's inputs, under the gate: due ticks and what the log writer and the snapshot writer finished, then
    /// Raft traffic, then clients, each at most a batch so neither starves the other, proposals held back to be
    /// proposed together. <paramref name="delivered"/> (an inline pass's own message) is stepped after the Raft queue
    /// is drained, or queued behind it if the queue holds more than a batch: a sender's messages stay in order.
    /// </summary>
    private void TakeInputs(Message? delivered)
    {
        _driver.Tick(DueTicks());
        CollectSavedSnapshot();
        CollectPersisted();

        var raftReader = _raftInputs.Reader;
        int handled = 0;
        while (handled < _options.InputBatchMax && raftReader.TryRead(out var input))
        {
            Handle(input);
            handled++;
        }

        if (delivered is not null)
        {
            if (handled < _options.InputBatchMax)
            {
                StepPeer(delivered);
            }
            else
            {
                EnqueueRaftInput(new PeerMessageInput(delivered), "peer message");
            }
        }

        var clientReader = _inputs.Reader;
        handled = 0;
        while (handled < _options.InputBatchMax && clientReader.TryRead(out var input))
        {
            if (input is ProposeInput propose)
            {
                QueueProposal(propose);
            }
            else
            {
                ProposeQueued();
                Handle(input);
            }

            handled++;
        }

        ProposeQueued();
    }

    /// <summary>
    /// Runs passes on this (delivering) thread if no pass is running and the loop is not waiting for the gate:
    /// <paramref name="message"/> is stepped in the first. If inputs were queued meanwhile, one more pass takes them
    /// here; what is queued after that is left to the loop, which is rung for it. A pass that leaves the driver
    /// waiting wakes the loop to do the wait. False: nothing was done, queue the message.
    /// </summary>
    private bool TryPassInline(Message message)
    {
        if (!_started || _stopping.IsCancellationRequested || Volatile.Read(ref _loopWantsGate) is not null
            || Interlocked.CompareExchange(ref _gate, 1, 0) != 0)
        {
            return false;
        }

        ProposalBatch? answered = null;
        try
        {
            if (_inlineFailure is not null || _driver.Waiting != DriverWait.None)
            {
                return false; // the loop was woken for what it must do first; the message queues behind it
            }

            _passOnDeliveringThread = true;
            Message? delivered = message;
            for (int pass = 0; pass <= InlineFollowUpPassesMax; pass++)
            {
                TakeInputs(delivered);
                delivered = null;
                ProcessAnswering();
                if (_driver.Waiting != DriverWait.None)
                {
                    TryQueueRaft(WakeInput.Instance); // if full, the loop wakes for what fills it
                    break;
                }

                if (_stopping.IsCancellationRequested || Volatile.Read(ref _loopWantsGate) is not null || !HasQueuedInput())
                {
                    break;
                }
            }
        }
        catch (Exception e)
        {
            // The loop's failure, as if its own pass had thrown: it logs it, fails what waits and stops.
            _inlineFailure = ExceptionDispatchInfo.Capture(e);
            TryQueueRaft(WakeInput.Instance);
        }
        finally
        {
            _passOnDeliveringThread = false;
            answered = _answerAfterPass;
            _answerAfterPass = null;
            ExitGate();

            // Inputs queued while this thread held the gate rang no one (WakeLoop): the loop takes them.
            if (HasQueuedInput())
            {
                _bell.Ring();
            }
        }

        // Outside the gate: the caller's continuation (a front end's reply) runs here, and passes go on meanwhile.
        answered?.Complete(inline: true);
        return true;
    }

    /// <summary>Passes a thread other than the loop runs after its own, for what was queued meanwhile.</summary>
    private const int InlineFollowUpPassesMax = 1;

    private bool HasQueuedInput() => _raftInputs.Reader.TryPeek(out _) || _inputs.Reader.TryPeek(out _);

    /// <summary>Queues a Raft input for the loop and rings it (<see cref="WakeLoop"/>); false when the queue is full or closed.</summary>
    private bool TryQueueRaft(NodeInput input)
    {
        if (!_raftInputs.Writer.TryWrite(input))
        {
            return false;
        }

        WakeLoop();
        return true;
    }

    /// <summary>Queues a client input for the loop and rings it (<see cref="WakeLoop"/>); false when the queue is full or closed.</summary>
    private bool TryQueueClient(NodeInput input)
    {
        if (!_inputs.Writer.TryWrite(input))
        {
            return false;
        }

        WakeLoop();
        return true;
    }

    /// <summary>Queues a client input, waiting for room, and rings the loop.</summary>
    private async ValueTask QueueClientAsync(NodeInput input, CancellationToken cancellationToken)
    {
        await _inputs.Writer.WriteAsync(input, cancellationToken).ConfigureAwait(false);
        WakeLoop();
    }

    /// <summary>
    /// An input was just queued: rings the loop, unless a pass runs. Whoever holds the gate looks at the queues after
    /// releasing it (the loop before it parks, a thread's inline pass in <see cref="TryPassInline"/>), so an input
    /// queued meanwhile wakes nobody and is taken by the next pass. The fences order this thread's write before its
    /// look at the gate, and the holder's release before its look at the queues: one of the two sees the other.
    /// </summary>
    private void WakeLoop()
    {
        Interlocked.MemoryBarrier();
        if (Volatile.Read(ref _gate) == 0)
        {
            _bell.Ring();
        }
    }

    /// <summary>Resumes the batches the loop's passes answered: here (the loop, outside the gate), or from the thread
    /// pool when the loop is about to wait (they are not held through a wait) or stops.</summary>
    private void ResumeLoopAnswers(bool inline)
    {
        if (_loopAnswers.Count == 0)
        {
            return;
        }

        if (inline)
        {
            foreach (var batch in _loopAnswers)
            {
                batch.Complete(inline: true);
            }
        }
        else
        {
            ResumeOnPool(_loopAnswers);
        }

        _loopAnswers.Clear();
    }

    /// <summary>Resumes answered batches off this thread: a lone one through its own work item, several together
    /// from one.</summary>
    private static void ResumeOnPool(List<ProposalBatch> answered)
    {
        if (answered.Count == 1)
        {
            answered[0].Complete(inline: false);
        }
        else if (answered.Count > 1)
        {
            ThreadPool.UnsafeQueueUserWorkItem(static batches =>
            {
                foreach (var batch in batches)
                {
                    batch.Complete(inline: true);
                }
            }, answered.ToArray(), preferLocal: false);
        }
    }

    /// <summary>Takes the pass gate for the loop, waiting (asynchronously) for a pass on a delivering thread to end;
    /// while the loop waits, delivering threads queue instead of taking the gate.</summary>
    private async ValueTask EnterGateAsync()
    {
        while (Interlocked.CompareExchange(ref _gate, 1, 0) != 0)
        {
            var wants = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            Volatile.Write(ref _loopWantsGate, wants);
            if (Interlocked.CompareExchange(ref _gate, 1, 0) == 0)
            {
                break; // released in between: its holder may have missed the request
            }

            await wants.Task.ConfigureAwait(false);
        }

        Volatile.Write(ref _loopWantsGate, null);
    }

    private void ExitGate()
    {
        Volatile.Write(ref _gate, 0);
        Interlocked.Exchange(ref _loopWantsGate, null)?.TrySetResult();
        PassEnded?.Invoke();
    }

    /// <summary>Lets the driver process, performing the waits it asks for; false when stopping cut a wait short.</summary>
    private async Task<bool> ProcessAsync()
    {
        while (true)
        {
            ProcessAnswering();
            if (_driver.Waiting != DriverWait.None)
            {
                ResumeLoopAnswers(inline: false); // not held through a wait
            }

            switch (_driver.Waiting)
            {
                case DriverWait.None:
                    return true;
                case DriverWait.StorageRetry:
                    try
                    {
                        await Task.Delay(_driver.StorageRetryDelay, _time, _stoppingToken).ConfigureAwait(false);
                    }
                    catch (OperationCanceledException)
                    {
                        return false;
                    }

                    _driver.RetryStorage();
                    break;
                case DriverWait.SnapshotSave:
                    await _snapshotTask!.ConfigureAwait(false);
                    CollectSavedSnapshot();
                    break;
                case DriverWait.PersistDrain:
                    CollectPersisted();
                    if (_driver.Waiting == DriverWait.PersistDrain)
                    {
                        try
                        {
                            await _walWriter!.WaitForCompletedAsync(_stoppingToken).ConfigureAwait(false);
                        }
                        catch (OperationCanceledException)
                        {
                            return false;
                        }
                    }

                    break;
            }
        }
    }

    /// <summary>
    /// Lets the driver process once. The write batches it answers are resumed after the pass by the thread that ran
    /// it: all of them on the loop (<see cref="RaftHostOptions.ResumeOnLoop"/>), a lone one on a delivering thread
    /// (<see cref="RaftHostOptions.ResumeOnDeliveringThread"/>); otherwise together, from one thread-pool work item.
    /// </summary>
    private void ProcessAnswering()
    {
        // A pass may run inside another host's (an in-process network delivers in its sender's pass): keep its list.
        var outer = ProposalBatch.Collector;
        ProposalBatch.Collector = _answered;
        _roundStartedInPass = false;
        Volatile.Write(ref _processingThread, Environment.CurrentManagedThreadId);
        try
        {
            _driver.Process();
        }
        finally
        {
            Volatile.Write(ref _processingThread, 0);
            ProposalBatch.Collector = outer;
            if (!_passOnDeliveringThread && _resumeOnLoop)
            {
                // The loop's pass: its callers are resumed by the loop after the pass, instead of waking a pool
                // worker for them.
                _loopAnswers.AddRange(_answered);
            }
            else if (_answered.Count == 1 && _answerAfterPass is null && _passOnDeliveringThread && _options.ResumeOnDeliveringThread)
            {
                // A pass on a receive thread that answered one batch (a lone write's acknowledgement): its caller is
                // resumed on this thread after the pass, instead of waking a pool worker for it.
                _answerAfterPass = _answered[0];
            }
            else
            {
                ResumeOnPool(_answered);
            }

            _answered.Clear();
        }
    }

    /// <summary>Hands the driver the persist jobs the writer finished (in order).</summary>
    private void CollectPersisted()
    {
        if (_walWriter is null)
        {
            return;
        }

        while (_walWriter.TryTakeCompleted(out var job))
        {
            _driver.Persisted(job);
        }
    }

    /// <remarks>Decided by the job alone: the save's task queues the wake after <see cref="SnapshotJob.Run"/> returns
    /// but before the task itself completes, so a loop that looked at the task could take that wake, see the task
    /// still running and collect nothing; with no later input (a recovery's host takes no ticks) the snapshot's
    /// requester waited for good.</remarks>
    private void CollectSavedSnapshot()
    {
        if (_snapshotTask is not null && _driver.OutstandingSnapshot is { Done: true } job)
        {
            _snapshotTask = null;
            _driver.SnapshotSaved(job);
        }
    }

    /// <summary>
    /// Waits until either channel holds an input (true), or both are closed and drained (false). Parks on the bell,
    /// looks once more, and sleeps only if nothing came in between: a writer that queued after that look rings it.
    /// </summary>
    private async ValueTask<bool> WaitForInputAsync()
    {
        while (true)
        {
            if (HasQueuedInput())
            {
                return true;
            }

            if (InputsClosed())
            {
                return false;
            }

            _bell.Park();
            if ((HasQueuedInput() || InputsClosed()) && _bell.TryUnpark())
            {
                continue;
            }

            await _bell.WaitAsync().ConfigureAwait(false);
        }
    }

    private bool InputsClosed() => _raftInputs.Reader.Completion.IsCompleted && _inputs.Reader.Completion.IsCompleted;

    /// <summary>Holds a proposal back until the next input of another kind, or the end of the drained batch, so
    /// that consecutive proposals reach the core as one batch (<see cref="ProposeQueued"/>).</summary>
    private void QueueProposal(ProposeInput propose)
    {
        ServerMetrics.InputWait.Record(ServerMetrics.Seconds(propose.QueuedAt), s_proposeTag);
        ProposalTaking?.Invoke(propose.Batch);
        long now = Stopwatch.GetTimestamp();
        foreach (var slot in propose.Batch.Slots)
        {
            slot.ProposedAt = now;
            _queuedCommands.Add(slot.Entry);
            _queuedWaiters.Add(slot);
        }
    }

    /// <summary>Proposes the held-back proposals together: one append, one Append message per follower.</summary>
    private void ProposeQueued()
    {
        if (_queuedCommands.Count == 0)
        {
            return;
        }

        _driver.Propose(_queuedCommands, _queuedWaiters);
        _queuedCommands.Clear();
        _queuedWaiters.Clear(); // if Propose threw, FailAll answers them
    }

    private void Handle(NodeInput input)
    {
        switch (input)
        {
            case TickInput:
                _driver.Tick(DueTicks());
                break;
            case PersistedInput:
                CollectPersisted();
                break;
            case PeerMessageInput peer:
                ServerMetrics.InputWait.Record(ServerMetrics.Seconds(peer.QueuedAt), s_peerTag);
                StepPeer(peer.Message);
                break;
            case ProposeInput propose:
                QueueProposal(propose);
                ProposeQueued();
                break;
            case ConfChangeInput change:
                _driver.ChangeMembership(change.Change, change.Waiter);
                break;
            case ReadInput read:
                ServerMetrics.InputWait.Record(ServerMetrics.Seconds(read.QueuedAt), s_readTag);
                StartRead(read.Lease, read.Request, read.Taken);
                break;
            case TransferInput transfer:
                transfer.Completion.TrySetResult(_driver.TransferLeadership(transfer.Target));
                break;
            case SnapshotRequestInput request:
                _driver.RequestSnapshot(request.Request);
                break;
            case WakeInput:
                CollectSavedSnapshot();
                break;
            case UnreachableInput unreachable:
                _driver.ReportUnreachable(unreachable.Peer);
                break;
            case ConnectionLostInput lost:
                _driver.ReportConnectionLost(lost.Peer);
                break;
            case SnapshotStatusInput status:
                _driver.ReportSnapshot(status.Peer, status.Succeeded);
                break;
            case AppliedWaitInput wait:
                // The core's log as it is now (read, not fed): the status may not show this pass's appends yet.
                _driver.WaitForApplied(wait.Index ?? _driver.Core.LastIndex, wait.Request);
                break;
            case NotAMemberInput told:
                _driver.ReportNotAMember(told.Peer, told.AsOf);
                break;
        }
    }

    /// <summary>Closes the read's batch (<paramref name="taken"/>), then asks the driver for its round: every read of
    /// the batch arrived before the round started.</summary>
    private void StartRead(bool lease, ReadRequest request, Action? taken)
    {
        request.StartedAt = Stopwatch.GetTimestamp();
        taken?.Invoke();
        _driver.ReadBarrier(lease, request);
    }

    private void StepPeer(Message message)
    {
        PeerMessageStepping?.Invoke(message);
        _driver.Step(message);
    }

    /// <summary>Writes a snapshot the driver captured, off the loop, then wakes the loop to hand it back.</summary>
    private void StartSnapshotSave(SnapshotJob job)
    {
        _snapshotTask = Task.Run(() =>
        {
            job.Run();
            TryQueueRaft(WakeInput.Instance); // if the queue is full, the loop wakes for what fills it
        });
    }

    /// <summary>
    /// Sends the snapshot the core wants sent: opens the stored file (reading nothing) and hands it to the network,
    /// which streams it to the peer off the loop in chunks and reports the outcome through <see cref="ReportSnapshot"/>.
    /// The node never holds a whole snapshot in memory to send it.
    /// </summary>
    private void StartSnapshotSend(Message message)
    {
        var wanted = message.Snapshot!.Metadata;
        if (_network.IsSendingSnapshot(message.To))
        {
            // The core retries a snapshot it has no outcome for after a few election timeouts; a large one can
            // still be streaming then. Its outcome, reported when it ends, settles the retry as well.
            Log.SnapshotStillSending(_logger, message.To, wanted.Index);
            return;
        }

        Stream? stored;
        try
        {
            stored = _snapshotStore.OpenStored(wanted);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            stored = null;
        }

        if (stored is null)
        {
            Log.SnapshotMissing(_logger, message.To, wanted.Index, wanted.Term);
            EnqueueRaftInput(new SnapshotStatusInput(message.To, false), "snapshot report");
            return;
        }

        Log.SendingSnapshot(_logger, message.To, wanted.Index, stored.Length);
        _network.SendSnapshot(message, stored);
    }

    private void RaiseLeadershipChanged(LeadershipChange change)
    {
        var handler = LeadershipChanged;
        if (handler is null)
        {
            return;
        }

        try
        {
            handler(change);
        }
        catch (Exception e)
        {
            Log.HandlerFailed(_logger, e);
        }
    }

    private void OnMemberChanged(MemberInfo info)
    {
        if (info.Id != Id.Value && info.RaftAddress.Length > 0)
        {
            _network.SetPeer(new NodeId(info.Id), CommandLine.NormalizeAddress(info.RaftAddress));
        }
    }

    private void OnMemberRemoved(NodeId id)
    {
        if (id != Id)
        {
            _network.RemovePeer(id);
        }
    }

    private void FailAll(RaftHostException error)
    {
        _driver.FailAll(error);
        foreach (var waiter in _queuedWaiters)
        {
            waiter.Fail(error);
        }

        _queuedCommands.Clear();
        _queuedWaiters.Clear();
        while (_inputs.Reader.TryRead(out var input))
        {
            switch (input)
            {
                case ProposeInput p:
                    foreach (var slot in p.Batch.Slots)
                    {
                        slot.Fail(error);
                    }

                    break;
                case ConfChangeInput c:
                    c.Waiter.Fail(error);
                    break;
                case ReadInput r:
                    r.Request.Fail(error);
                    break;
                case AppliedWaitInput w:
                    w.Request.Fail(error);
                    break;
                case TransferInput t:
                    t.Completion.TrySetException(error);
                    break;
                case SnapshotRequestInput s:
                    s.Request.Fail(error);
                    break;
            }
        }
    }

    /// <summary>The driver's effects, performed by the shell.</summary>
    private sealed class Effects(RaftHost host) : INodeEffects
    {
        public void Send(Message message) => host._network.Send(message);

        public void SendSnapshot(Message message) => host.StartSnapshotSend(message);

        public void SaveSnapshot(SnapshotJob job) => host.StartSnapshotSave(job);

        public void LeadershipChanged(LeadershipChange change) => host.RaiseLeadershipChanged(change);

        public void Removed() => host.RemovedFromCluster?.Invoke();

        public void AccessReport(NodeId leader, IReadOnlyList<byte[]> keys) => host.AccessReported?.Invoke(leader, keys);

        public void WalSaved(TimeSpan elapsed) => ServerMetrics.WalSave.Record(elapsed.TotalSeconds);

        public void Persist(PersistJob job) => host._walWriter!.Enqueue(job);

        public void ReadyHandled(TimeSpan elapsed) => ServerMetrics.Ready.Record(elapsed.TotalSeconds);
    }
}
