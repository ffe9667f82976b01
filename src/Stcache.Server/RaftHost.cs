using System.Diagnostics;
using System.Threading.Channels;
using Microsoft.Extensions.Logging;
using Stcache.Cache;
using Stcache.Raft;

namespace Stcache.Server;

/// <summary>
/// Drives one Raft node: a single loop reads a bounded channel of inputs (ticks, peer messages, proposals, reads,
/// membership changes), drains every queued input before asking the core for a <see cref="Ready"/> (so a burst of
/// proposals shares one fsync), then handles the Ready in the order <see cref="Ready"/> prescribes: send, persist,
/// send after persist, apply to the cache, complete waiters, serve reads, <see cref="RaftNode.Advance"/>.
/// Every public method is thread-safe; all core and storage calls happen on the loop.
/// </summary>
public sealed class RaftHost : IAsyncDisposable
{
    private readonly RaftHostOptions _options;
    private readonly IRaftLogStore _logStore;
    private readonly ISnapshotStore _snapshotStore;
    private readonly IPeerNetwork _network;
    private readonly CacheStateMachine _cache;
    private readonly MemberBook _members;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly Channel<NodeInput> _inputs;
    private readonly CancellationTokenSource _stopping = new();
    private readonly PersistentState _initialState;

    // Loop-owned state below: touched only by the loop task (and the constructor before it starts).
    private static readonly KeyValuePair<string, object?> s_peerTag = new("kind", "peer");
    private static readonly KeyValuePair<string, object?> s_proposeTag = new("kind", "propose");
    private static readonly KeyValuePair<string, object?> s_readTag = new("kind", "read");

    private readonly Dictionary<LogIndex, ProposalWaiter> _waiters = [];
    private readonly Dictionary<ulong, ReadInput> _pendingReads = [];
    private readonly List<(LogIndex Index, ReadInput Read)> _readsWaitingForApply = [];
    private readonly List<AppliedWaitInput> _appliedWaits = [];
    private readonly List<TaskCompletionSource<SnapshotMetadata>> _snapshotRequests = [];
    private RaftNode? _node;
    private ConfState _confState = ConfState.Empty;
    private Term _appliedTerm;
    private SoftState _softState;
    // Read request ids start at a random point in every process: a leader's answer to a read this node's previous
    // incarnation asked for (before a kill -9) can still arrive, and must not complete a new read with an older
    // read index.
    private ulong _nextReadId = (ulong)Random.Shared.NextInt64();
    private SnapshotMetadata _lastSnapshot = SnapshotMetadata.Empty;
    private long _lastSnapshotTimestamp;
    private Task? _snapshotTask;
    private bool _announceAddress;

    private long _tickEpoch;
    private long _ticksDone;
    private volatile bool _storageFailing;
    private long _lastPromotionTick = -1;

    // Leader: per learner, the commit index its current catch-up round must reach and the tick the round began.
    private readonly Dictionary<NodeId, (LogIndex Target, long StartTick)> _catchUpRounds = [];
    private Task? _loop;
    private Task? _ticker;
    private volatile HostStatus _status;
    private int _removed;

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
        _logStore = logStore;
        _snapshotStore = snapshotStore;
        _network = network;
        _cache = cache;
        _members = members;
        _logger = logger;
        _time = time ?? TimeProvider.System;
        _inputs = Channel.CreateBounded<NodeInput>(new BoundedChannelOptions(options.InputQueueCapacity)
        {
            SingleReader = true,
            FullMode = BoundedChannelFullMode.Wait,
        });
        _initialState = Recover();
        _status = new HostStatus(Id, options.Self.Name, "follower", _initialState.HardState.Term, NodeId.None,
            _initialState.HardState.Commit, _cache.AppliedIndex, LogIndex.Zero, _lastSnapshot.Index, _confState, []);
    }

    public NodeId Id => _options.Raft.Id;

    public MemberBook Members => _members;

    public CacheStateMachine Cache => _cache;

    public TimeSpan RequestTimeout => _options.RequestTimeout;

    /// <summary>The latest status published by the loop (refreshed after every batch).</summary>
    public HostStatus Status => _status;

    /// <summary>Raised on the loop when leader, role or term changes. Handlers must not block.</summary>
    public event Action<LeadershipChange>? LeadershipChanged;

    /// <summary>Raised on a transport thread for a <see cref="RaftChannelJoin"/> message. Handlers must not block.</summary>
    public event Action<Message>? JoinMessageReceived;

    /// <summary>Raised once when this node applies its own removal from the cluster.</summary>
    public event Action? RemovedFromCluster;

    /// <summary>True once this node has applied its own removal, or learned of it from a peer.</summary>
    public bool WasRemoved => Volatile.Read(ref _removed) != 0;

    /// <summary>Completes when the loop stops; faults if it stopped because storage failed.</summary>
    public Task Completion => _loop ?? Task.CompletedTask;

    public void Start()
    {
        if (_loop is not null)
        {
            throw new InvalidOperationException("already started");
        }

        _node = new RaftNode(_options.Raft, _initialState);
        foreach (var member in _members.All)
        {
            if (member.Id != Id.Value && member.RaftAddress.Length > 0)
            {
                _network.SetPeer(new NodeId(member.Id), CommandLine.NormalizeAddress(member.RaftAddress));
            }
        }

        _members.Changed += OnMemberChanged;
        _members.Removed += OnMemberRemoved;
        _lastSnapshotTimestamp = _time.GetTimestamp();
        _tickEpoch = _lastSnapshotTimestamp;
        Log.HostStarted(_logger, Id, _initialState.HardState.Term, _initialState.HardState.Commit, _lastSnapshot.Index, _initialState.Entries.Count);
        _loop = Task.Run(RunLoopAsync);
        _ticker = Task.Run(RunTickerAsync);
    }

    /// <summary>Hands a message from a peer to the core. Never blocks; drops invalid messages and drops when full.</summary>
    public void Deliver(Message message)
    {
        if (RaftChannelJoin.IsJoinMessage(message))
        {
            if (message.To == Id && !message.From.IsNone)
            {
                JoinMessageReceived?.Invoke(message);
            }

            return;
        }

        string? problem = message.Validate();
        if (problem is not null || message.To != Id)
        {
            Log.DroppedMessage(_logger, message.From, problem ?? "addressed to another node");
            return;
        }

        _inputs.Writer.TryWrite(new PeerMessageInput(message));
    }

    public void ReportUnreachable(NodeId peer) => _inputs.Writer.TryWrite(new UnreachableInput(peer));

    public void ReportSnapshot(NodeId peer, bool succeeded) => _inputs.Writer.TryWrite(new SnapshotStatusInput(peer, succeeded));

    /// <summary>
    /// For the peer handshake: null when <paramref name="peer"/> is in this node's configuration, or when this node
    /// knows no configuration yet; else the applied index that configuration is as of. Read from the published
    /// status, so the configuration and the index always belong together.
    /// </summary>
    public LogIndex? NotAMemberAsOf(NodeId peer)
    {
        var status = _status;
        var conf = status.ConfState;
        return conf.IsMember(peer) || (conf.Voters.Count == 0 && conf.Learners.Count == 0) ? null : status.Applied;
    }

    /// <summary>A peer's configuration as of its applied index <paramref name="asOf"/> does not list this node.</summary>
    public void ReportNotAMember(NodeId peer, LogIndex asOf) => _inputs.Writer.TryWrite(new NotAMemberInput(peer, asOf));

    /// <summary>Proposes a cache command and waits until it is committed and applied (or fails).</summary>
    /// <exception cref="RaftHostException">Not leader, no leader, timeout, lost; see <see cref="RaftHostException.OutcomeUnknown"/>.</exception>
    public Task<ApplyResult> ProposeAsync(CacheCommand command, CancellationToken cancellationToken = default) =>
        ProposeAsync(new ProposeInput(command.Encode(), new ProposalWaiter()), cancellationToken);

    /// <summary>Proposes a membership change and waits until it is applied.</summary>
    public async Task ChangeMembershipAsync(ConfChange change, CancellationToken cancellationToken = default)
    {
        var waiter = new ProposalWaiter();
        await WaitForWriteAsync(new ConfChangeInput(change, waiter), waiter, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>
    /// Waits until a read at this moment is linearizable on this node (ReadIndex, thesis §6.4): the read index is
    /// confirmed by the leader and this node has applied up to it. With <paramref name="lease"/> the leader may
    /// skip the heartbeat round while its lease holds.
    /// </summary>
    public Task<LogIndex> ReadBarrierAsync(bool lease, CancellationToken cancellationToken = default)
    {
        var input = new ReadInput(lease);
        return AwaitInputAsync(input, input.Completion.Task, _options.RequestTimeout,
            "read could not be confirmed by a leader within the request timeout (no leader or no quorum)", cancellationToken);
    }

    /// <summary>The shortest election timeout: a follower that hears nothing from its leader for this long campaigns.</summary>
    public TimeSpan ElectionTimeout => _options.TickInterval * _options.Raft.ElectionTimeoutTicks;

    /// <summary>
    /// Completes once this node has applied <paramref name="index"/> (at once if it already has); throws a
    /// <see cref="HostErrorKind.Timeout"/> error after <paramref name="timeout"/>.
    /// </summary>
    public Task<LogIndex> WaitForAppliedAsync(LogIndex index, TimeSpan timeout, CancellationToken cancellationToken = default)
    {
        if (index <= _cache.AppliedIndex)
        {
            return Task.FromResult(index);
        }

        var input = new AppliedWaitInput(index);
        return AwaitInputAsync(input, input.Completion.Task, timeout,
            $"this node had not applied index {index} after {timeout.TotalMilliseconds:0} ms (cut off from the leader?)", cancellationToken);
    }

    private async Task<LogIndex> AwaitInputAsync(NodeInput input, Task<LogIndex> completion, TimeSpan limit, string timeoutMessage, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stopping.Token);
        timeout.CancelAfter(limit);
        try
        {
            await _inputs.Writer.WriteAsync(input, timeout.Token).ConfigureAwait(false);
            return await completion.WaitAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
        {
            throw new RaftHostException(HostErrorKind.Timeout, timeoutMessage);
        }
        catch (ChannelClosedException)
        {
            throw new RaftHostException(HostErrorKind.ShuttingDown, "node is shutting down");
        }
    }

    public async Task<ProposeStatus> TransferLeadershipAsync(NodeId target, CancellationToken cancellationToken = default)
    {
        var input = new TransferInput(target);
        await WriteInputAsync(input, cancellationToken).ConfigureAwait(false);
        return await input.Completion.Task.WaitAsync(_options.RequestTimeout, cancellationToken).ConfigureAwait(false);
    }

    /// <summary>Takes a snapshot now (if anything was applied since the last one) and returns its metadata.</summary>
    public async Task<SnapshotMetadata> SnapshotAsync(CancellationToken cancellationToken = default)
    {
        var input = new SnapshotRequestInput();
        await WriteInputAsync(input, cancellationToken).ConfigureAwait(false);
        return await input.Completion.Task.WaitAsync(TimeSpan.FromMinutes(5), cancellationToken).ConfigureAwait(false);
    }

    public async ValueTask DisposeAsync()
    {
        if (_stopping.IsCancellationRequested)
        {
            return;
        }

        await _stopping.CancelAsync().ConfigureAwait(false);
        _inputs.Writer.TryComplete();
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

        _stopping.Dispose();
    }

    private async Task<ApplyResult> ProposeAsync(ProposeInput input, CancellationToken cancellationToken) =>
        await WaitForWriteAsync(input, input.Waiter, cancellationToken).ConfigureAwait(false);

    private async Task<ApplyResult> WaitForWriteAsync(NodeInput input, ProposalWaiter waiter, CancellationToken cancellationToken)
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, _stopping.Token);
        timeout.CancelAfter(_options.RequestTimeout);
        try
        {
            await _inputs.Writer.WriteAsync(input, timeout.Token).ConfigureAwait(false);
            return await waiter.Completion.Task.WaitAsync(timeout.Token).ConfigureAwait(false);
        }
        catch (Exception e) when (e is OperationCanceledException or ChannelClosedException)
        {
            if (waiter.TryAbandon())
            {
                throw new RaftHostException(HostErrorKind.Timeout, "no leader accepted the write within the request timeout; it was not applied");
            }

            throw new RaftHostException(HostErrorKind.Timeout, "the write was proposed but not committed within the request timeout; outcome unknown", outcomeUnknown: true);
        }
    }

    private async Task WriteInputAsync(NodeInput input, CancellationToken cancellationToken)
    {
        try
        {
            await _inputs.Writer.WriteAsync(input, cancellationToken).ConfigureAwait(false);
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
            while (await timer.WaitForNextTickAsync(_stopping.Token).ConfigureAwait(false))
            {
                _inputs.Writer.TryWrite(TickInput.Instance);
            }
        }
        catch (OperationCanceledException)
        {
        }
    }

    /// <summary>
    /// Ticks by the monotonic clock, not by timer callbacks: after a pause (a long GC, SIGSTOP, a stalled VM) every
    /// missed tick is delivered before any queued input is handled, so a paused leader sees its lease and its
    /// check-quorum window expire before it serves another read.
    /// </summary>
    private void CatchUpTicks(RaftNode node)
    {
        long due = (long)(_time.GetElapsedTime(_tickEpoch) / _options.TickInterval);
        while (_ticksDone < due)
        {
            node.Tick();
            _ticksDone++;
        }
    }

    /// <summary>
    /// On the leader: a learner that has caught up is proposed as a voter. Joins add learners, so a new member starts
    /// counting towards the quorum only once it can vote usefully (thesis §4.2.1). Caught up means it trails the
    /// commit index by at most <see cref="RaftHostOptions.LearnerTrailingEntriesMax"/> entries, or, when writes
    /// outrun that, that it finished a catch-up round (reached the commit index of the round's start) within one
    /// election timeout: the thesis' rounds. Under steady writes the commit index never stands still, so "holds
    /// everything committed" alone kept new members learners for good (soak runs aborted on joins). A change refused
    /// because another is in flight is simply tried again after a later batch.
    /// </summary>
    private void PromoteCaughtUpLearners(RaftNode node)
    {
        if (node.Role != RaftRole.Leader || node.ConfState.Learners.Count == 0 || _ticksDone == _lastPromotionTick)
        {
            if (node.Role != RaftRole.Leader)
            {
                _catchUpRounds.Clear();
            }

            return;
        }

        _lastPromotionTick = _ticksDone;
        var status = node.GetStatus();
        foreach (var progress in status.Progress)
        {
            if (!progress.IsLearner || progress.Match == LogIndex.Zero || !CaughtUp(progress.Id, progress.Match, status.Commit))
            {
                continue;
            }

            var info = _members.Find(progress.Id);
            var context = info?.ToContext() ?? ReadOnlyMemory<byte>.Empty;
            var result = node.ProposeConfChange(new ConfChange(ConfChangeType.AddVoter, progress.Id, context));
            if (result.IsAccepted)
            {
                _catchUpRounds.Remove(progress.Id);
                Log.PromotingLearner(_logger, progress.Id, progress.Match);
            }

            return; // One change at a time.
        }
    }

    private bool CaughtUp(NodeId learner, LogIndex match, LogIndex commit)
    {
        // Within a few hundred entries of the commit index is caught up enough (Consul's autopilot uses a trailing
        // limit too): a voter that lags that little costs at most a moment of catch-up if it is needed for a
        // quorum right away. Safety never depends on it.
        if (match >= commit || commit.Value - match.Value <= (ulong)_options.LearnerTrailingEntriesMax)
        {
            return true;
        }

        if (_catchUpRounds.TryGetValue(learner, out var round) && match >= round.Target)
        {
            if (_ticksDone - round.StartTick <= _options.Raft.ElectionTimeoutTicks)
            {
                return true;
            }

            round = default; // too slow: start a new round from here
        }

        if (round == default)
        {
            _catchUpRounds[learner] = (commit, _ticksDone);
        }

        return false;
    }

    /// <summary>
    /// Persists one batch, retrying with back-off while the disk refuses it (full, or failing). Nothing of the
    /// batch is acknowledged meanwhile: its votes and append acknowledgements wait, clients' requests time out
    /// with "outcome unknown", peers see a silent node and elect around it if it led. When space returns, the same
    /// batch is written (the WAL cleared what the failed attempt left) and the node carries on.
    /// </summary>
    private async Task SaveDurablyAsync(HardState? hardState, IReadOnlyList<Entry> entries)
    {
        var delay = TimeSpan.FromMilliseconds(50);
        while (true)
        {
            try
            {
                long started = Stopwatch.GetTimestamp();
                _logStore.Save(hardState, entries);
                ServerMetrics.WalSave.Record(ServerMetrics.Seconds(started));
                if (_storageFailing)
                {
                    _storageFailing = false;
                    Log.StorageRecovered(_logger);
                }

                return;
            }
            catch (IOException e) when (!_stopping.IsCancellationRequested)
            {
                _storageFailing = true;
                Log.StorageSaveFailed(_logger, e.Message, delay);
                await Task.Delay(delay, _stopping.Token).ConfigureAwait(false);
                delay = TimeSpan.FromTicks(Math.Min(delay.Ticks * 2, TimeSpan.FromSeconds(5).Ticks));
            }
        }
    }

    /// <summary>True while the write-ahead log refuses writes; /readyz reports the node not ready.</summary>
    public bool StorageFailing => _storageFailing;

    private async Task RunLoopAsync()
    {
        var node = _node!;
        var reader = _inputs.Reader;
        try
        {
            while (await reader.WaitToReadAsync().ConfigureAwait(false))
            {
                CatchUpTicks(node);
                int handled = 0;
                while (handled < _options.InputBatchMax && reader.TryRead(out var input))
                {
                    Handle(node, input);
                    handled++;
                }

                while (node.HasReady())
                {
                    var ready = node.GetReady();
                    long started = Stopwatch.GetTimestamp();
                    await HandleReadyAsync(node, ready).ConfigureAwait(false);
                    ServerMetrics.Ready.Record(ServerMetrics.Seconds(started));
                    node.Advance(ready);
                    if (_announceAddress)
                    {
                        _announceAddress = false;
                        node.Propose(HostCommand.EncodeMemberAddress(_options.Self));
                    }
                }

                PromoteCaughtUpLearners(node);
                PublishStatus(node);
                if (Volatile.Read(ref _removed) == 1)
                {
                    _removed = 2;
                    RemovedFromCluster?.Invoke();
                }
            }
        }
        catch (Exception e)
        {
            Log.LoopFailed(_logger, e);
            FailAll(new RaftHostException(HostErrorKind.ShuttingDown, "node stopped: " + e.Message, outcomeUnknown: true));
            throw;
        }

        FailAll(new RaftHostException(HostErrorKind.ShuttingDown, "node is shutting down; outcome unknown", outcomeUnknown: true));
    }

    private void Handle(RaftNode node, NodeInput input)
    {
        switch (input)
        {
            case TickInput:
                CatchUpTicks(node);
                MaybeSnapshot(force: false);
                break;
            case PeerMessageInput peer:
                ServerMetrics.InputWait.Record(ServerMetrics.Seconds(peer.QueuedAt), s_peerTag);
                node.Step(peer.Message);
                break;
            case ProposeInput propose:
                ServerMetrics.InputWait.Record(ServerMetrics.Seconds(propose.QueuedAt), s_proposeTag);
                if (propose.Waiter.TryMarkProposed())
                {
                    propose.Waiter.ProposedAt = Stopwatch.GetTimestamp();
                    Track(propose.Waiter, node.Propose(propose.Command));
                }

                break;
            case ConfChangeInput change:
                if (change.Waiter.TryMarkProposed())
                {
                    Track(change.Waiter, node.ProposeConfChange(change.Change));
                }

                break;
            case ReadInput read:
                ServerMetrics.InputWait.Record(ServerMetrics.Seconds(read.QueuedAt), s_readTag);
                StartRead(node, read);
                break;
            case TransferInput transfer:
                transfer.Completion.TrySetResult(node.TransferLeadership(transfer.Target));
                break;
            case SnapshotRequestInput request:
                _snapshotRequests.Add(request.Completion);
                MaybeSnapshot(force: true);
                break;
            case SnapshotSavedInput saved:
                OnSnapshotSaved(node, saved);
                break;
            case UnreachableInput unreachable:
                node.ReportUnreachable(unreachable.Peer);
                break;
            case SnapshotStatusInput status:
                node.ReportSnapshot(status.Peer, status.Succeeded);
                break;
            case AppliedWaitInput wait:
                if (wait.Index <= _cache.AppliedIndex)
                {
                    wait.Completion.TrySetResult(wait.Index);
                }
                else
                {
                    _appliedWaits.Add(wait);
                }

                break;
            case NotAMemberInput told:
                OnToldNotAMember(told);
                break;
        }
    }

    private void Track(ProposalWaiter waiter, ProposeResult result)
    {
        if (result.IsAccepted)
        {
            waiter.Term = result.Term;
            waiter.Index = result.LastIndex;
            _waiters[result.LastIndex] = waiter;
            return;
        }

        waiter.Completion.TrySetException(result.Status switch
        {
            ProposeStatus.NotLeader when result.Leader.IsNone =>
                new RaftHostException(HostErrorKind.NoLeader, "no leader is known (election in progress or no quorum); not applied"),
            ProposeStatus.NotLeader =>
                new RaftHostException(HostErrorKind.NotLeader, $"not the leader; the leader is node {result.Leader}", leader: result.Leader),
            ProposeStatus.TransferInProgress =>
                new RaftHostException(HostErrorKind.TransferInProgress, "leadership transfer in progress; not applied, retry", leader: result.Leader),
            ProposeStatus.Overloaded =>
                new RaftHostException(HostErrorKind.Overloaded, "too many uncommitted writes; not applied, retry later"),
            ProposeStatus.ConfChangeInProgress =>
                new RaftHostException(HostErrorKind.ConfChangeRejected, "another membership change is in progress (or the new leader has not committed yet); retry"),
            _ => new RaftHostException(HostErrorKind.ConfChangeRejected, $"change rejected: {result.Status}"),
        });
    }

    private void StartRead(RaftNode node, ReadInput read)
    {
        ulong id = ++_nextReadId;
        read.StartedAt = Stopwatch.GetTimestamp();
        var status = node.ReadIndex(id, read.Lease);
        switch (status)
        {
            case ReadStatus.Accepted:
                _pendingReads[id] = read;
                break;
            case ReadStatus.NoLeader:
                read.Completion.TrySetException(new RaftHostException(HostErrorKind.NoLeader, "no leader is known (election in progress or no quorum)"));
                break;
            default:
                read.Completion.TrySetException(new RaftHostException(HostErrorKind.Overloaded, "too many pending reads; retry later"));
                break;
        }
    }

    private async Task HandleReadyAsync(RaftNode node, Ready ready)
    {
        if (ready.SoftState is { } soft)
        {
            OnSoftState(soft);
        }

        SendAll(ready.Messages);

        if (ready.Snapshot is { } snapshot && !snapshot.IsEmpty)
        {
            await InstallSnapshotAsync(snapshot).ConfigureAwait(false);
        }

        if (ready.HardState is not null || ready.Entries.Count > 0)
        {
            await SaveDurablyAsync(ready.HardState, ready.Entries).ConfigureAwait(false);
        }

        SendAll(ready.MessagesAfterPersist);

        foreach (var entry in ready.CommittedEntries)
        {
            ApplyEntry(entry);
        }

        foreach (var state in ready.ReadStates)
        {
            if (_pendingReads.Remove(state.RequestId, out var read))
            {
                if (state.Index <= _cache.AppliedIndex)
                {
                    CompleteRead(read, state.Index);
                }
                else
                {
                    _readsWaitingForApply.Add((state.Index, read));
                }
            }
        }

        CompleteReadsUpTo(_cache.AppliedIndex);
    }

    private void OnSoftState(SoftState soft)
    {
        var previous = _softState;
        _softState = soft;
        if (soft.Role == RaftRole.Leader && previous.Role != RaftRole.Leader)
        {
            Log.BecameLeader(_logger, Id, soft.Term, _node!.LastIndex, _node.CommitIndex);
            var self = _members.Find(Id);
            if (self is null || self.HttpAddress != _options.Self.HttpAddress || self.RaftAddress != _options.Self.RaftAddress)
            {
                // Tell every replica where this leader answers HTTP (static clusters start without it). Proposed
                // after Advance: the core takes no input while a Ready is being handled.
                _announceAddress = true;
            }
        }
        else if (soft.Role == RaftRole.Follower && (previous.Role != RaftRole.Follower || previous.Leader != soft.Leader))
        {
            Log.BecameFollower(_logger, Id, soft.Term, soft.Leader, _node!.LastIndex, _node.CommitIndex);
        }
        else if (soft.Role is RaftRole.Candidate or RaftRole.PreCandidate && previous.Role != soft.Role)
        {
            Log.BecameCandidate(_logger, Id, soft.Term, soft.Role, _node!.LastIndex, _node.CommitIndex);
        }

        if (previous.Leader != soft.Leader)
        {
            // Reads in flight were asked of the old leader; it may never answer them.
            foreach (var read in _pendingReads.Values)
            {
                read.Completion.TrySetException(new RaftHostException(HostErrorKind.NoLeader, "leader changed while confirming the read; retry"));
            }

            _pendingReads.Clear();
        }

        var handler = LeadershipChanged;
        if (handler is not null)
        {
            try
            {
                handler(new LeadershipChange(Id, soft.Leader, soft.Role, soft.Term));
            }
            catch (Exception e)
            {
                Log.HandlerFailed(_logger, e);
            }
        }
    }

    private void SendAll(IReadOnlyList<Message> messages)
    {
        foreach (var message in messages)
        {
            if (message.Type == MessageType.Snapshot)
            {
                SendStoredSnapshot(message);
                continue;
            }

            _network.Send(message);
        }
    }

    // ---- Snapshot transfer. Sending is an effect: open the stored file (reads nothing) and hand it to the network,
    // which streams it off the loop and reports the outcome through ReportSnapshot. Installing restores the cache
    // by streaming the received file; neither side ever holds a whole snapshot in memory.

    private void SendStoredSnapshot(Message message)
    {
        var wanted = message.Snapshot!.Metadata;
        if (_network.IsSendingSnapshot(message.To))
        {
            // The core retries a snapshot it has no outcome for after a few election timeouts; a large one can
            // still be streaming then. Its outcome, reported when it ends, settles the retry as well.
            Log.SnapshotStillSending(_logger, message.To, wanted.Index);
            return;
        }

        Stream? stored = _snapshotStore.OpenStored(wanted);
        if (stored is null)
        {
            Log.SnapshotMissing(_logger, message.To, wanted.Index);
            _inputs.Writer.TryWrite(new SnapshotStatusInput(message.To, false));
            return;
        }

        Log.SendingSnapshot(_logger, message.To, wanted.Index, stored.Length);
        _network.SendSnapshot(message, stored);
    }

    private async Task InstallSnapshotAsync(Snapshot snapshot)
    {
        if (_snapshotTask is not null)
        {
            await _snapshotTask.ConfigureAwait(false);
        }

        // A snapshot without data was streamed into the store by the transport, verified, and waits there.
        SnapshotReader reader;
        if (snapshot.Data.IsEmpty)
        {
            reader = _snapshotStore.InstallReceived(snapshot.Metadata);
        }
        else
        {
            _snapshotStore.Save(snapshot);
            var data = System.Runtime.InteropServices.MemoryMarshal.TryGetArray(snapshot.Data, out ArraySegment<byte> segment)
                ? new MemoryStream(segment.Array!, segment.Offset, segment.Count, writable: false)
                : new MemoryStream(snapshot.Data.ToArray(), writable: false);
            reader = new SnapshotReader(snapshot.Metadata, data);
        }

        using (reader)
        {
            _logStore.ApplySnapshot(snapshot.Metadata);
            RestoreFrom(snapshot.Metadata, reader.Data);
        }

        FailWaitersUpTo(snapshot.Metadata.Index);
        _lastSnapshot = snapshot.Metadata;
        Log.SnapshotInstalled(_logger, snapshot.Metadata.Index, snapshot.Metadata.Term, _cache.Count);
    }

    private void RestoreFrom(SnapshotMetadata metadata, Stream data)
    {
        var members = SnapshotFormat.ReadHeader(data);
        _cache.Restore(data);
        if (_cache.AppliedIndex != metadata.Index)
        {
            throw new InvalidDataException($"snapshot data is at index {_cache.AppliedIndex} but its metadata says {metadata.Index}");
        }

        _members.MergeAll(members);
        _confState = metadata.ConfState;
        _appliedTerm = metadata.Term;
    }

    // ---- End of snapshot transfer.

    private void ApplyEntry(Entry entry)
    {
        if (entry.Index <= _cache.AppliedIndex)
        {
            return;
        }

        var result = new ApplyResult(ApplyStatus.Ok, entry.Index.Value, false);
        if (entry.Type == EntryType.ConfChange)
        {
            ApplyConfChange(entry);
            _cache.MarkApplied(entry.Index);
        }
        else if (entry.Data.IsEmpty)
        {
            _cache.MarkApplied(entry.Index);
        }
        else if (HostCommand.IsHostCommand(entry.Data.Span))
        {
            if (HostCommand.DecodeMemberAddress(entry.Data.Span) is { } info && _confState.IsMember(new NodeId(info.Id)))
            {
                _members.Merge(info);
            }

            _cache.MarkApplied(entry.Index);
        }
        else
        {
            result = _cache.Apply(entry.Index, entry.Data);
        }

        _appliedTerm = entry.Term;
        if (_waiters.Remove(entry.Index, out var waiter))
        {
            if (waiter.Term == entry.Term)
            {
                ServerMetrics.Commit.Record(ServerMetrics.Seconds(waiter.ProposedAt));
                waiter.Completion.TrySetResult(result);
            }
            else
            {
                waiter.Completion.TrySetException(new RaftHostException(HostErrorKind.Lost,
                    "leadership changed before the write committed; it was not applied, retry", outcomeUnknown: false));
            }
        }
    }

    private void ApplyConfChange(Entry entry)
    {
        if (!ConfChange.TryDecode(entry.Data.Span, out var change))
        {
            Log.BadConfChange(_logger, entry.Index);
            return;
        }

        _confState = _confState.Apply(change!);
        var id = change!.NodeId;
        if (change.Type == ConfChangeType.RemoveNode)
        {
            _members.Remove(id);
            Log.MemberRemoved(_logger, id, entry.Index);
            if (id == Id)
            {
                Interlocked.CompareExchange(ref _removed, 1, 0);
            }

            return;
        }

        var info = MemberInfo.FromContext(change.Context.Span) ?? new MemberInfo(id.Value, id.ToString(), string.Empty, string.Empty);
        _members.Merge(info with { Id = id.Value });
        Log.MemberAdded(_logger, id, change.Type, info.RaftAddress, info.HttpAddress, entry.Index);
    }

    private void CompleteReadsUpTo(LogIndex applied)
    {
        if (_appliedWaits.Count > 0)
        {
            _appliedWaits.RemoveAll(wait =>
            {
                if (wait.Index > applied)
                {
                    return false;
                }

                wait.Completion.TrySetResult(wait.Index);
                return true;
            });
        }

        if (_readsWaitingForApply.Count == 0)
        {
            return;
        }

        _readsWaitingForApply.RemoveAll(pair =>
        {
            if (pair.Index <= applied)
            {
                CompleteRead(pair.Read, pair.Index);
                return true;
            }

            return false;
        });
    }

    private static void CompleteRead(ReadInput read, LogIndex index)
    {
        ServerMetrics.ReadBarrier.Record(ServerMetrics.Seconds(read.StartedAt));
        read.Completion.TrySetResult(index);
    }

    private void FailWaitersUpTo(LogIndex index)
    {
        foreach (var waiter in _waiters.Values.Where(w => w.Index <= index).ToList())
        {
            _waiters.Remove(waiter.Index);
            waiter.Completion.TrySetException(new RaftHostException(HostErrorKind.Timeout,
                "replaced by a snapshot from the leader before the outcome was known; outcome unknown", outcomeUnknown: true));
        }
    }

    private void MaybeSnapshot(bool force)
    {
        if (_snapshotTask is not null)
        {
            return; // the requests are answered when the running snapshot is saved
        }

        var applied = _cache.AppliedIndex;
        if (applied <= _lastSnapshot.Index)
        {
            foreach (var request in _snapshotRequests)
            {
                request.TrySetResult(_lastSnapshot);
            }

            _snapshotRequests.Clear();
            return;
        }

        if (!force)
        {
            bool enoughEntries = LogIndex.Distance(_lastSnapshot.Index, applied) >= _options.SnapshotThreshold;
            bool enoughTime = _time.GetElapsedTime(_lastSnapshotTimestamp) >= _options.SnapshotInterval;
            if (!enoughEntries || !enoughTime)
            {
                return;
            }
        }

        var metadata = new SnapshotMetadata(applied, _appliedTerm, _confState);
        var view = _cache.BeginSnapshot();
        byte[] members = _members.Serialize();
        Log.SnapshotStarted(_logger, metadata.Index, metadata.Term);
        _snapshotTask = Task.Run(() =>
        {
            Exception? error = null;
            try
            {
                _snapshotStore.Save(metadata, stream =>
                {
                    SnapshotFormat.WriteHeader(stream, members);
                    view.WriteTo(stream);
                });
            }
            catch (Exception e)
            {
                error = e;
            }
            finally
            {
                view.Dispose();
            }

            if (!_inputs.Writer.TryWrite(new SnapshotSavedInput(metadata, error)))
            {
                // Queue full or closed: the loop still needs to learn; block briefly unless shutting down.
                _ = _inputs.Writer.WriteAsync(new SnapshotSavedInput(metadata, error), _stopping.Token).AsTask()
                    .ContinueWith(static _ => { }, TaskScheduler.Default);
            }
        });
    }

    private void OnSnapshotSaved(RaftNode node, SnapshotSavedInput saved)
    {
        _snapshotTask = null;
        // Only the snapshot interval restarts here. The tick epoch must not: CatchUpTicks counts ticks from it, so
        // moving it froze this node's Raft clock for as long as it had run (no heartbeats, elections or lease
        // expiry; failovers of 20-30 s after a snapshot under load).
        _lastSnapshotTimestamp = _time.GetTimestamp();
        if (saved.Error is not null)
        {
            Log.SnapshotFailed(_logger, saved.Metadata.Index, saved.Error);
            foreach (var request in _snapshotRequests)
            {
                request.TrySetException(saved.Error);
            }

            _snapshotRequests.Clear();
            return;
        }

        _lastSnapshot = saved.Metadata;
        node.SnapshotTaken(saved.Metadata, _options.SnapshotTrailingEntries);

        // The WAL deletes segments only behind a snapshot it knows of; the snapshot file is durable by now.
        _logStore.ApplySnapshot(saved.Metadata);
        if (saved.Metadata.Index.Value > _options.SnapshotTrailingEntries)
        {
            _logStore.Compact(saved.Metadata.Index - _options.SnapshotTrailingEntries);
        }

        Log.SnapshotTaken(_logger, saved.Metadata.Index, saved.Metadata.Term);
        foreach (var request in _snapshotRequests)
        {
            request.TrySetResult(saved.Metadata);
        }

        _snapshotRequests.Clear();
    }

    private void PublishStatus(RaftNode node)
    {
        var status = node.GetStatus();
        string role = status.Role switch
        {
            RaftRole.Leader => "leader",
            RaftRole.Candidate or RaftRole.PreCandidate => "candidate",
            _ when status.ConfState.IsLearner(Id) => "learner",
            _ => "follower",
        };
        _status = new HostStatus(Id, _options.Self.Name, role, status.Term, status.Leader, status.Commit, _cache.AppliedIndex,
            status.LastIndex, _lastSnapshot.Index, status.ConfState, status.Progress)
        {
            Ticks = _ticksDone,
        };
    }

    private PersistentState Recover()
    {
        var state = _logStore.Load();
        using var snapshot = _snapshotStore.OpenNewest();
        if (snapshot is not null && snapshot.Metadata.Index != LogIndex.Zero)
        {
            if (snapshot.Metadata.Index < state.Snapshot.Index)
            {
                throw new InvalidDataException($"the log was compacted to {state.Snapshot.Index} but the newest snapshot is at {snapshot.Metadata.Index}");
            }

            RestoreFrom(snapshot.Metadata, snapshot.Data);
            _lastSnapshot = snapshot.Metadata;
            var hard = state.HardState;
            if (hard.Commit < snapshot.Metadata.Index)
            {
                hard = hard with { Commit = snapshot.Metadata.Index };
            }

            state = new PersistentState(hard, snapshot.Metadata, [.. state.Entries.Where(e => e.Index > snapshot.Metadata.Index)]);
            Log.SnapshotRestored(_logger, snapshot.Metadata.Index, _cache.Count);
        }
        else if (!state.Snapshot.Index.Equals(LogIndex.Zero))
        {
            throw new InvalidDataException($"the log starts after snapshot {state.Snapshot.Index} but no snapshot file was found");
        }

        return state;
    }

    private void OnMemberChanged(MemberInfo info)
    {
        if (info.Id != Id.Value && info.RaftAddress.Length > 0)
        {
            _network.SetPeer(new NodeId(info.Id), CommandLine.NormalizeAddress(info.RaftAddress));
        }
    }

    /// <summary>
    /// This node lists itself as a member as of its applied index; a peer whose configuration is newer does not.
    /// Configurations follow one committed history, so the change that dropped this node is in between: it was
    /// removed while it was away and missed the entry. A peer that is behind (it has not applied this node's
    /// addition yet) answers with an older index and is ignored.
    /// </summary>
    private void OnToldNotAMember(NotAMemberInput told)
    {
        if (WasRemoved || !_confState.IsMember(Id) || told.AsOf <= _cache.AppliedIndex)
        {
            Log.NotAMemberIgnored(_logger, told.Peer, told.AsOf, _cache.AppliedIndex);
            return;
        }

        Log.RemovedWhileAway(_logger, told.Peer, told.AsOf, _cache.AppliedIndex);
        Interlocked.CompareExchange(ref _removed, 1, 0);
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
        foreach (var waiter in _waiters.Values)
        {
            waiter.Completion.TrySetException(error);
        }

        _waiters.Clear();
        foreach (var read in _pendingReads.Values)
        {
            read.Completion.TrySetException(error);
        }

        _pendingReads.Clear();
        foreach (var (_, read) in _readsWaitingForApply)
        {
            read.Completion.TrySetException(error);
        }

        _readsWaitingForApply.Clear();
        foreach (var wait in _appliedWaits)
        {
            wait.Completion.TrySetException(error);
        }

        _appliedWaits.Clear();
        while (_inputs.Reader.TryRead(out var input))
        {
            switch (input)
            {
                case ProposeInput p:
                    p.Waiter.Completion.TrySetException(error);
                    break;
                case ConfChangeInput c:
                    c.Waiter.Completion.TrySetException(error);
                    break;
                case ReadInput r:
                    r.Completion.TrySetException(error);
                    break;
                case AppliedWaitInput w:
                    w.Completion.TrySetException(error);
                    break;
                case TransferInput t:
                    t.Completion.TrySetException(error);
                    break;
                case SnapshotRequestInput s:
                    s.Completion.TrySetException(error);
                    break;
            }
        }

        foreach (var request in _snapshotRequests)
        {
            request.TrySetException(error);
        }
    }
}
