using Microsoft.Extensions.Logging;
using Stcache.Cache;
using Stcache.Raft;

namespace Stcache.Node;

/// <summary>
/// One node's decisions, synchronous and deterministic: it feeds inputs to the Raft core and handles each
/// <see cref="Ready"/> in the order <see cref="Ready"/> prescribes (send, install a snapshot, persist, send after
/// persist, apply, complete waiters, serve reads, <see cref="RaftNode.Advance"/>). It owns applying (cache,
/// membership, host commands), the waiters (matched by index and term), reads (served once applied), the snapshot
/// policy, capture, install and recovery, learner promotion, removal detection, the address book and the status.
/// <para>
/// It does IO only through <see cref="IRaftLogStore"/>, <see cref="ISnapshotStore"/> and <see cref="INodeEffects"/>;
/// Raft time only from <see cref="Tick"/>; wall time only from the injected <see cref="TimeProvider"/>. It holds no
/// process-wide state. The production host (a channel, a timer and task completions) and the simulator both drive
/// this class, so the simulator proves the node the servers run.
/// </para>
/// <para>
/// Not thread-safe: one thread calls every method. When <see cref="Waiting"/> is not <see cref="DriverWait.None"/>
/// the driver is in the middle of a Ready and takes only ticks and completions (<see cref="RetryStorage"/>,
/// <see cref="SnapshotSaved"/>, <see cref="Persisted"/>); the caller then calls <see cref="Process"/> again.
/// </para>
/// </summary>
public sealed class NodeDriver
{
    /// <summary>The first wait after a refused log write; each further refusal doubles it, up to 5 s
    /// (<see cref="NextStorageRetry"/>). The host's pipelined log writer retries on the same schedule.</summary>
    public static readonly TimeSpan StorageRetryFirst = TimeSpan.FromMilliseconds(50);

    private static readonly TimeSpan s_storageRetryMax = TimeSpan.FromSeconds(5);

    private readonly RaftHostOptions _options;
    private readonly IRaftLogStore _logStore;
    private readonly ISnapshotStore _snapshotStore;
    private readonly INodeEffects _effects;
    private readonly CacheStateMachine _cache;
    private readonly MemberBook _members;
    private readonly ILogger _logger;
    private readonly TimeProvider _time;
    private readonly RaftNode _node;
    private readonly CacheHousekeeper _housekeeper;

    private readonly Dictionary<LogIndex, ProposalRequest> _waiters = [];
    private readonly Dictionary<ulong, NodeRequest<ReadPoint>> _pendingReads = [];
    private readonly List<(ReadPoint Point, NodeRequest<ReadPoint> Read)> _readsWaitingForApply = [];
    private readonly List<(LogIndex Index, NodeRequest<LogIndex> Wait)> _appliedWaits = [];
    private readonly List<NodeRequest<SnapshotMetadata>> _snapshotRequests = [];

    // The answers the Ready being handled owes (applied writes, served reads, applied-index waits), in the order it
    // decided them. They are given after Advance, once the status that shows their entries applied is published:
    // a client told that its membership change is applied may read /v1/status next, and must see the change there.
    private readonly List<Answer> _answers = [];

    // False once the published status shows everything done since; Process publishes again only when true.
    private bool _statusStale = true;

    // Propose(batch)'s scratch lists, reused.
    private readonly List<ReadOnlyMemory<byte>> _batchCommands = [];
    private readonly List<ProposalRequest> _batchRequests = [];

    // Leader: per learner, the commit index its current catch-up round must reach and the tick the round began.
    private readonly Dictionary<NodeId, (LogIndex Target, long StartTick)> _catchUpRounds = [];

    private ConfState _confState = ConfState.Empty;
    private Term _appliedTerm;
    private SoftState _softState;
    private ulong _nextReadId;
    private SnapshotMetadata _lastSnapshot = SnapshotMetadata.Empty;
    private long _lastSnapshotTick;

    // AppliedEntryBytes when the newest snapshot was begun or installed: the log entries in memory since then.
    private long _entryBytesAtSnapshot;
    private SnapshotJob? _snapshotJob;
    private SnapshotJob? _savedDuringReady;
    private bool _announceAddress;

    // The host's clock in ticks (_ticksDue) is the ticks delivered plus those skipped when a stall was collapsed.
    // Invariant: _ticksDone + _ticksSkipped <= _ticksDue.
    private long _ticksDone;
    private long _ticksDue;
    private long _ticksSkipped;
    private long _clockJumps;
    private bool _removalApplied;
    private bool _removalNoticed;
    private LogIndex _progressIndex;
    private long _progressTick;
    private long _lastPromotionTick = -1;

    // With asynchronous storage writes: jobs handed to the writer and not yet handed back, and the persisted
    // positions handed back while a Ready was being handled (the core takes them after Advance).
    private int _persistsInFlight;
    private readonly List<(LogIndex Index, Term Term)> _persistedDuringReady = [];

    private Ready? _ready;
    private int _readyStage;
    private long _readyStarted;
    private TimeSpan _storageRetryDelay = StorageRetryFirst;
    private volatile bool _storageFailing;
    private volatile HostStatus _status;
    private int _removed;

    /// <summary>
    /// Recovers the node from its stores (the newest valid snapshot, then the log after it) and creates the core.
    /// <paramref name="readIdSeed"/> is where read request ids start: a host passes a random number, so a leader's
    /// answer to a read asked by this node's previous incarnation (before a kill -9) cannot complete a new read; the
    /// simulator passes one drawn from its seed.
    /// </summary>
    public NodeDriver(
        RaftHostOptions options,
        IRaftLogStore logStore,
        ISnapshotStore snapshotStore,
        INodeEffects effects,
        CacheStateMachine cache,
        MemberBook members,
        ILogger logger,
        TimeProvider time,
        ulong readIdSeed)
    {
        options.Validate();
        _options = options;
        _logStore = logStore;
        _snapshotStore = snapshotStore;
        _effects = effects;
        _cache = cache;
        _members = members;
        _logger = logger;
        _time = time;
        _nextReadId = readIdSeed;
        var state = Recover();
        _node = new RaftNode(options.Raft, state);
        _housekeeper = new CacheHousekeeper(options, cache, time);
        _status = new HostStatus(Id, options.Self.Name, "follower", state.HardState.Term, NodeId.None,
            state.HardState.Commit, _cache.AppliedIndex, LogIndex.Zero, _lastSnapshot.Index, _confState, []);
        NodeLog.HostStarted(_logger, Id, state.HardState.Term, state.HardState.Commit, _lastSnapshot.Index, state.Entries.Count);
    }

    public NodeId Id => _options.Raft.Id;

    public RaftHostOptions Options => _options;

    public CacheStateMachine Cache => _cache;

    public MemberBook Members => _members;

    /// <summary>The wall clock this node stamps time with (TTLs, log time).</summary>
    public TimeProvider Time => _time;

    /// <summary>The latest status, published after every <see cref="Process"/>, and before any request is answered for
    /// an entry it applied (so it shows that entry). Safe to read from any thread.</summary>
    public HostStatus Status => _status;

    /// <summary>True while the write-ahead log refuses writes. Safe to read from any thread.</summary>
    public bool StorageFailing => _storageFailing;

    /// <summary>True once this node applied its own removal, or learned of it from a peer. Safe to read from any thread.</summary>
    public bool WasRemoved => Volatile.Read(ref _removed) != 0;

    /// <summary>What the driver waits for before it takes inputs again.</summary>
    public DriverWait Waiting { get; private set; }

    /// <summary>False while a Ready is being handled (its stages, or a wait inside one): the driver takes no input
    /// then. True between Readys, including while <see cref="Process"/> gives a Ready's answers: an answer's callback
    /// may hand the driver its next input (a read round) there.</summary>
    public bool TakesInput => _ready is null;

    /// <summary>With <see cref="DriverWait.StorageRetry"/>: how long to wait before <see cref="RetryStorage"/>.</summary>
    public TimeSpan StorageRetryDelay { get; private set; }

    /// <summary>Why the write-ahead log last refused a batch (while <see cref="StorageFailing"/>).</summary>
    public string? StorageError { get; private set; }

    /// <summary>The snapshot being written off the loop, if any.</summary>
    public SnapshotJob? OutstandingSnapshot => _snapshotJob;

    /// <summary>Raft ticks delivered to the core (the host's clock minus <see cref="TicksSkipped"/>).</summary>
    public long Ticks => _ticksDone;

    /// <summary>Ticks of the host's clock not delivered because a stall was collapsed (<see cref="Tick"/>).</summary>
    public long TicksSkipped => _ticksSkipped;

    /// <summary>Stalls after which the due ticks were collapsed (<see cref="Tick"/>).</summary>
    public long ClockJumps => _clockJumps;

    /// <summary>More due ticks than this at once are a stall, and are collapsed to one (docs/RAFT.md, "Ticks after a
    /// stall"). Half the election timeout: a burst this size runs at most one check-quorum window on a leader and
    /// cannot take a follower that heard its leader within the last half timeout to its election timeout.</summary>
    public int StallTicksMin => Math.Max(1, _options.Raft.ElectionTimeoutTicks / 2);

    /// <summary>The core, for invariant checks and inspection by tests. Feed it only through the driver.</summary>
    public RaftNode Core => _node;

    /// <summary>The leader's expiry, eviction, access-report and memory-setting decisions (counters for tests).</summary>
    internal CacheHousekeeper Housekeeper => _housekeeper;

    /// <summary>The newest snapshot this node saved or installed.</summary>
    public SnapshotMetadata LastSnapshot => _lastSnapshot;

    /// <summary>
    /// The node's Raft clock reached <paramref name="dueTicks"/> ticks since start. Missed ticks are delivered now,
    /// before anything else the caller hands in; while <see cref="Waiting"/>, once it ends. A burst of more than
    /// <see cref="StallTicksMin"/> at once is a stall (a long GC, SIGSTOP, a frozen VM, a loop stuck behind a slow
    /// fsync) and is collapsed to one tick, as a Go ticker drops the ticks a slow receiver missed: the messages that
    /// waited through the stall (the leader's heartbeats, the followers' acknowledgements) then arrive before any
    /// timer runs out, instead of behind an election timeout's worth of ticks. The core is told of the skipped
    /// ticks (<see cref="RaftNode.ClockJumped"/>): its tick count stays exact and a leader's lease ends.
    /// </summary>
    public void Tick(long dueTicks)
    {
        _ticksDue = Math.Max(_ticksDue, dueTicks);
        if (_ready is not null)
        {
            return;
        }

        DeliverTicks();
        MaybeSnapshot(force: false);
    }

    /// <summary>A Raft message from a peer, already validated and addressed to this node. A message from an id this
    /// node has applied the removal of is dropped: that id is gone for good (a removed id is never added again), so
    /// whatever runs under it (a process that missed its removal, or one restarted on a wiped directory with its old
    /// id) neither votes nor acknowledges here.</summary>
    public void Step(Message message)
    {
        EnsureTakesInput();
        if (_members.IsRemoved(message.From))
        {
            NodeLog.MessageFromRemovedDropped(_logger, message.Type, message.From);
            return;
        }

        _node.Step(message);
    }

    /// <summary>Proposes a cache command; <paramref name="request"/> is answered once it is applied, lost or refused.</summary>
    public void Propose(ReadOnlyMemory<byte> command, ProposalRequest request)
    {
        EnsureTakesInput();
        if (request.TryMarkProposed())
        {
            Track(request, _node.Propose(command));
        }
    }

    /// <summary>
    /// Proposes several cache commands as one batch, in order: the core appends them together and sends each
    /// follower one Append for all of them (proposed one by one, each went out in its own Append, and each
    /// follower answered each). <paramref name="requests"/>[i] is answered for <paramref name="commands"/>[i]; a
    /// request whose caller already gave up is left out. The batch is accepted or refused as a whole.
    /// </summary>
    public void Propose(IReadOnlyList<ReadOnlyMemory<byte>> commands, IReadOnlyList<ProposalRequest> requests)
    {
        EnsureTakesInput();
        if (commands.Count != requests.Count)
        {
            throw new ArgumentException("one request per command", nameof(requests));
        }

        _batchCommands.Clear();
        _batchRequests.Clear();
        for (int i = 0; i < commands.Count; i++)
        {
            if (requests[i].TryMarkProposed())
            {
                _batchCommands.Add(commands[i]);
                _batchRequests.Add(requests[i]);
            }
        }

        if (_batchCommands.Count == 0)
        {
            return;
        }

        var result = _node.Propose(_batchCommands);
        for (int i = 0; i < _batchRequests.Count; i++)
        {
            var index = result.FirstIndex + (ulong)i;
            Track(_batchRequests[i], result with { FirstIndex = index, LastIndex = index });
        }

        _batchCommands.Clear();
        _batchRequests.Clear();
    }

    /// <summary>
    /// Proposes a membership change; answered once it is applied, lost or refused. Adding an id that a committed
    /// change removed is refused (<see cref="HostErrorKind.MemberIdRemoved"/>): a node id names one incarnation of a
    /// data directory, and an id that comes back may be a wiped node that forgot its votes and log. Every replica
    /// holds the same removed set at the same applied index (from the log and the snapshot), and a leader proposes
    /// only once it has applied every earlier change, so the refusal does not depend on which node leads.
    /// </summary>
    public void ChangeMembership(ConfChange change, ProposalRequest request)
    {
        EnsureTakesInput();
        ArgumentNullException.ThrowIfNull(change);
        if (change.Type != ConfChangeType.RemoveNode && _members.IsRemoved(change.NodeId))
        {
            if (request.TryMarkProposed())
            {
                NodeLog.RemovedIdRefused(_logger, change.NodeId, change.Type);
                request.Fail(new RaftHostException(HostErrorKind.MemberIdRemoved,
                    $"node id {change.NodeId} was removed from the cluster and is never added again; a node that lost its data joins as a new member, under a new id (a new --name, or none)"));
            }

            return;
        }

        if (request.TryMarkProposed())
        {
            Track(request, _node.ProposeConfChange(change));
        }
    }

    /// <summary>
    /// A linearizable read barrier (ReadIndex, thesis §6.4): answered with the read index and the leader's time when
    /// it confirmed it, once this node applied up to it. With <paramref name="lease"/> the leader may skip the
    /// heartbeat round (the time is then the leader's when it answered).
    /// </summary>
    public void ReadBarrier(bool lease, NodeRequest<ReadPoint> request)
    {
        EnsureTakesInput();
        ulong id = ++_nextReadId;
        switch (_node.ReadIndex(id, lease))
        {
            case ReadStatus.Accepted:
                _pendingReads[id] = request;
                break;
            case ReadStatus.NoLeader:
                request.Fail(new RaftHostException(HostErrorKind.NoLeader, "no leader is known (election in progress or no quorum)"));
                break;
            default:
                request.Fail(new RaftHostException(HostErrorKind.Overloaded, "too many pending reads; retry later"));
                break;
        }
    }

    /// <summary>Answered once this node has applied <paramref name="index"/> and published a status that shows it
    /// (at once if it has).</summary>
    public void WaitForApplied(LogIndex index, NodeRequest<LogIndex> request)
    {
        if (index <= _status.Applied)
        {
            request.Complete(index);
            return;
        }

        _appliedWaits.Add((index, request));
    }

    public ProposeStatus TransferLeadership(NodeId target)
    {
        EnsureTakesInput();
        return _node.TransferLeadership(target);
    }

    /// <summary>Takes a snapshot now (if anything was applied since the last one); answered with its metadata.</summary>
    public void RequestSnapshot(NodeRequest<SnapshotMetadata> request)
    {
        _snapshotRequests.Add(request);
        if (_ready is null)
        {
            MaybeSnapshot(force: true);
        }
    }

    /// <summary>The transport could not reach <paramref name="peer"/> (the leader then probes it slowly).</summary>
    public void ReportUnreachable(NodeId peer)
    {
        EnsureTakesInput();
        _node.ReportUnreachable(peer);
    }

    /// <summary>The transport saw <paramref name="peer"/>'s connection reset, closed or refused (never a timeout):
    /// a follower whose leader that is campaigns after a few ticks instead of the election timeout.</summary>
    public void ReportConnectionLost(NodeId peer)
    {
        EnsureTakesInput();
        _node.ReportConnectionLost(peer);
    }

    /// <summary>The outcome of a snapshot the host streamed to <paramref name="peer"/> for <see cref="INodeEffects.SendSnapshot"/>.</summary>
    public void ReportSnapshot(NodeId peer, bool succeeded)
    {
        EnsureTakesInput();
        _node.ReportSnapshot(peer, succeeded);
    }

    /// <summary>
    /// A peer's configuration as of its applied index <paramref name="asOf"/> does not list this node. This node
    /// lists itself as a member as of its applied index; configurations follow one committed history, so if the
    /// peer's is newer, a change that dropped this node is in between: it was removed while it was away and missed
    /// the entry. A peer that is behind (it has not applied this node's addition yet) is ignored. A node wiped and
    /// added back under its old id is told the same by a peer that has applied the removal but not yet the
    /// addition, so the notice counts only if this node then makes no progress for two election timeouts (see
    /// <see cref="DetectAppliedRemoval"/>): a member is fed entries, a removed node hears nothing.
    /// </summary>
    public void ReportNotAMember(NodeId peer, LogIndex asOf)
    {
        if (WasRemoved || !_confState.IsMember(Id) || asOf <= _cache.AppliedIndex)
        {
            NodeLog.NotAMemberIgnored(_logger, peer, asOf, _cache.AppliedIndex);
            return;
        }

        NodeLog.RemovedWhileAway(_logger, peer, asOf, _cache.AppliedIndex);
        if (!_removalNoticed)
        {
            _removalNoticed = true;
            _progressIndex = _cache.AppliedIndex;
            _progressTick = _ticksDone;
        }
    }

    /// <summary>The host waited <see cref="StorageRetryDelay"/>: the refused batch is tried again by <see cref="Process"/>.</summary>
    public void RetryStorage()
    {
        if (Waiting == DriverWait.StorageRetry)
        {
            Waiting = DriverWait.None;
        }
    }

    /// <summary>Persist jobs handed to the host's writer and not yet handed back with <see cref="Persisted"/>.</summary>
    public int PersistsInFlight => _persistsInFlight;

    /// <summary>
    /// The host's writer made <paramref name="job"/> durable (and sent its messages after persist). Jobs are handed
    /// back in the order <see cref="INodeEffects.Persist"/> gave them. Taken also while <see cref="Waiting"/>.
    /// </summary>
    public void Persisted(PersistJob job)
    {
        ArgumentNullException.ThrowIfNull(job);
        if (_persistsInFlight == 0)
        {
            throw new InvalidOperationException("no persist job is outstanding");
        }

        _persistsInFlight--;
        _statusStale = true;
        if (job.Entries.Count > 0)
        {
            var last = job.Entries[^1];
            if (_ready is null)
            {
                _node.ReportPersisted(last.Index, last.Term);
            }
            else
            {
                _persistedDuringReady.Add((last.Index, last.Term));
            }
        }

        if (Waiting == DriverWait.PersistDrain && _persistsInFlight == 0)
        {
            Waiting = DriverWait.None;
        }
    }

    /// <summary>The host finished <paramref name="job"/> (<see cref="SnapshotJob.Run"/> returned).</summary>
    public void SnapshotSaved(SnapshotJob job)
    {
        if (!ReferenceEquals(job, _snapshotJob) || !job.Done)
        {
            throw new InvalidOperationException("not the outstanding snapshot, or it has not finished");
        }

        _snapshotJob = null;
        if (Waiting == DriverWait.SnapshotSave)
        {
            Waiting = DriverWait.None;
        }

        if (_ready is not null)
        {
            _savedDuringReady = job; // the core takes no input until Advance
            return;
        }

        OnSnapshotSaved(job);
    }

    /// <summary>
    /// Handles every Ready the core has, then promotes caught-up learners and publishes the status. A Ready that
    /// answers requests publishes the status before it gives them (<see cref="GiveAnswers"/>). Returns early when the
    /// driver must wait (<see cref="Waiting"/>); call again once the wait is over.
    /// </summary>
    public void Process()
    {
        if (Waiting != DriverWait.None)
        {
            return;
        }

        _statusStale = true; // the inputs handed in since the last Process may have changed what the status shows
        while (true)
        {
            if (_ready is null)
            {
                DeliverTicks();
                if (!_node.HasReady() && !_housekeeper.Run(_node, _ticksDone, _effects))
                {
                    break;
                }

                _statusStale = true;
                _ready = _node.GetReady();
                _readyStage = 0;
                _readyStarted = _time.GetTimestamp();
            }

            if (!ContinueReady(_ready))
            {
                return;
            }

            _node.Advance(_ready);
            _ready = null;
            foreach (var (index, term) in _persistedDuringReady)
            {
                _node.ReportPersisted(index, term);
            }

            _persistedDuringReady.Clear();
            _effects.ReadyHandled(_time.GetElapsedTime(_readyStarted));
            GiveAnswers();
            if (_savedDuringReady is { } saved)
            {
                _savedDuringReady = null;
                OnSnapshotSaved(saved);
            }

            if (_announceAddress)
            {
                _announceAddress = false;
                _statusStale = true;
                _node.Propose(HostCommand.EncodeMemberAddress(_options.Self));
            }
        }

        PromoteCaughtUpLearners();
        if (_statusStale)
        {
            PublishStatus();
            _statusStale = false;
        }

        DetectAppliedRemoval();
        if (Volatile.Read(ref _removed) == 1)
        {
            _removed = 2;
            _effects.Removed();
        }
    }

    /// <summary>Fails every request the driver holds (the node is stopping).</summary>
    public void FailAll(RaftHostException error)
    {
        // Decided already (their entries are applied): given as they are.
        foreach (var answer in _answers)
        {
            answer.Give();
        }

        _answers.Clear();
        foreach (var waiter in _waiters.Values)
        {
            waiter.Fail(error);
        }

        _waiters.Clear();
        foreach (var read in _pendingReads.Values)
        {
            read.Fail(error);
        }

        _pendingReads.Clear();
        foreach (var (_, read) in _readsWaitingForApply)
        {
            read.Fail(error);
        }

        _readsWaitingForApply.Clear();
        foreach (var (_, wait) in _appliedWaits)
        {
            wait.Fail(error);
        }

        _appliedWaits.Clear();
        foreach (var request in _snapshotRequests)
        {
            request.Fail(error);
        }

        _snapshotRequests.Clear();
    }

    /// <summary>
    /// This node applied its own removal and has not been added back. A node wiped and added back under its old id
    /// replays its earlier removal on the way, so the removal counts only once the node has applied everything it
    /// knows committed and made no progress for two election timeouts: one that is still catching up keeps
    /// applying, a removed one hears nothing more.
    /// </summary>
    private void DetectAppliedRemoval()
    {
        var applied = _cache.AppliedIndex;
        if (applied != _progressIndex)
        {
            _progressIndex = applied;
            _progressTick = _ticksDone;
            _removalNoticed = false; // fed entries: a member after all
        }

        bool quiet = _ticksDone - _progressTick >= 2L * _options.Raft.ElectionTimeoutTicks && applied >= _node.CommitIndex;
        if (!WasRemoved && quiet && ((_removalApplied && !_confState.IsMember(Id)) || _removalNoticed))
        {
            Interlocked.CompareExchange(ref _removed, 1, 0);
        }
    }

    private void EnsureTakesInput()
    {
        if (_ready is not null)
        {
            throw new InvalidOperationException($"the driver is waiting ({Waiting}) and takes no input until Process finishes the Ready");
        }
    }

    private void DeliverTicks()
    {
        long pending = _ticksDue - _ticksSkipped - _ticksDone;
        if (pending > StallTicksMin)
        {
            long skipped = pending - 1;
            _node.ClockJumped(skipped);
            _ticksSkipped += skipped;
            _clockJumps++;
            NodeLog.ClockJumped(_logger, (long)(pending * _options.TickInterval.TotalMilliseconds), pending, 1, _node.Role);
        }

        while (_ticksDone + _ticksSkipped < _ticksDue)
        {
            _node.Tick();
            _ticksDone++;
            _statusStale = true;
        }
    }

    /// <summary>
    /// Gives the answers the Ready just advanced owes, after publishing the status that shows their entries applied
    /// (and, with the core advanced, a membership change in effect): whoever hears an answer and then reads the
    /// status sees what was answered. Once per Ready with answers, not per entry; the Process that follows
    /// publishes again only if something changed since.
    /// </summary>
    private void GiveAnswers()
    {
        if (_answers.Count == 0)
        {
            return;
        }

        PublishStatus();
        _statusStale = false;
        foreach (var answer in _answers)
        {
            answer.Give();
        }

        _answers.Clear();
    }

    /// <summary>Runs the stages of one Ready from where it stopped; false when it must wait.</summary>
    private bool ContinueReady(Ready ready)
    {
        if (_readyStage == 0)
        {
            if (ready.SoftState is { } soft)
            {
                OnSoftState(soft);
            }

            SendAll(ready.Messages);
            _readyStage = 1;
        }

        if (_readyStage == 1)
        {
            if (ready.Snapshot is { IsEmpty: false } snapshot)
            {
                if (_persistsInFlight > 0)
                {
                    // The snapshot replaces the log: what the writer still holds goes to disk first, then the
                    // snapshot, then this Ready's entries, synchronously (a snapshot is rare; simple beats fast).
                    Waiting = DriverWait.PersistDrain;
                    return false;
                }

                if (_snapshotJob is not null)
                {
                    // The cache cannot be replaced while its own snapshot view is being written.
                    Waiting = DriverWait.SnapshotSave;
                    return false;
                }

                InstallSnapshot(snapshot);
            }

            _readyStage = 2;
        }

        if (_readyStage == 2)
        {
            // A follower's acknowledgement waits for its sync either way; pipelining its writes only cuts its batches
            // (a loop pass per append instead of the appends that queued during a sync), so by default only a leader
            // pipelines, and a node that stops leading drains its writer first.
            bool pipelined = _options.Raft.AsyncStorageWrites && ready.Snapshot is not { IsEmpty: false } &&
                (_options.PipelineFollowerWrites || _softState.Role == RaftRole.Leader);
            if (_options.Raft.AsyncStorageWrites && !pipelined && _persistsInFlight > 0)
            {
                Waiting = DriverWait.PersistDrain;
                return false;
            }

            if (pipelined)
            {
                if (ready.HardState is not null || ready.Entries.Count > 0 || ready.MessagesAfterPersist.Count > 0)
                {
                    // Even a job with messages only goes through the writer: they may vouch for entries an earlier
                    // job is still syncing.
                    _persistsInFlight++;
                    _effects.Persist(new PersistJob(ready.HardState, ready.Entries, ready.MessagesAfterPersist));
                }

                _readyStage = 4;
            }
            else
            {
                if ((ready.HardState is not null || ready.Entries.Count > 0) && !TrySave(ready.HardState, ready.Entries))
                {
                    return false;
                }

                if (_options.Raft.AsyncStorageWrites && ready.Entries.Count > 0)
                {
                    _persistedDuringReady.Add((ready.Entries[^1].Index, ready.Entries[^1].Term));
                }

                _readyStage = 3;
            }
        }

        if (_readyStage == 3)
        {
            SendAll(ready.MessagesAfterPersist);
        }

        foreach (var entry in ready.CommittedEntries)
        {
            ApplyEntry(entry);
        }

        foreach (var state in ready.ReadStates)
        {
            if (_pendingReads.Remove(state.RequestId, out var read))
            {
                // A read this node confirmed as leader is stamped with its own clock now; one asked of the leader
                // carries the leader's time from its answer. The follower's clock plays no part.
                var point = new ReadPoint(state.Index, state.LeaderTimeUnixMs > 0 ? state.LeaderTimeUnixMs : LeaderReadTime());
                if (state.Index <= _cache.AppliedIndex)
                {
                    _answers.Add(Answer.Served(read, Monotonic(point)));
                }
                else
                {
                    _readsWaitingForApply.Add((point, read));
                }
            }
        }

        CompleteReadsUpTo(_cache.AppliedIndex);
        return true;
    }

    /// <summary>
    /// Persists one batch. When the disk refuses it (full, or failing) nothing of the batch is acknowledged: its
    /// votes and append acknowledgements wait, clients' requests time out with "outcome unknown", peers see a silent
    /// node and elect around it if it led. The host retries after a back-off; when space returns the same batch is
    /// written (the WAL cleared what the failed attempt left) and the node carries on.
    /// </summary>
    private bool TrySave(HardState? hardState, IReadOnlyList<Entry> entries)
    {
        try
        {
            // Timed only when the store writes: a commit-only hard state the WAL keeps in memory is no fsync.
            long started = _time.GetTimestamp();
            if (_logStore.Save(hardState, entries))
            {
                _effects.WalSaved(_time.GetElapsedTime(started));
            }
        }
        catch (IOException e)
        {
            _storageFailing = true;
            StorageError = e.Message;
            StorageRetryDelay = _storageRetryDelay;
            NodeLog.StorageSaveFailed(_logger, e.Message, _storageRetryDelay);
            _storageRetryDelay = NextStorageRetry(_storageRetryDelay);
            Waiting = DriverWait.StorageRetry;
            return false;
        }

        if (_storageFailing)
        {
            _storageFailing = false;
            NodeLog.StorageRecovered(_logger);
        }

        _storageRetryDelay = StorageRetryFirst;
        return true;
    }

    /// <summary>The wait after one more refused log write: double the last, at most 5 s.</summary>
    public static TimeSpan NextStorageRetry(TimeSpan last) => TimeSpan.FromTicks(Math.Min(last.Ticks * 2, s_storageRetryMax.Ticks));

    private void Track(ProposalRequest request, ProposeResult result)
    {
        if (result.IsAccepted)
        {
            request.Term = result.Term;
            request.Index = result.LastIndex;
            _waiters[result.LastIndex] = request;
            return;
        }

        request.Fail(result.Status switch
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
                new RaftHostException(HostErrorKind.ConfChangeInProgress, "another membership change is in progress (or the new leader has not committed yet); retry"),
            _ => new RaftHostException(HostErrorKind.ConfChangeRejected, $"change rejected: {result.Status}"),
        });
    }

    private void OnSoftState(SoftState soft)
    {
        var previous = _softState;
        _softState = soft;
        if (soft.Role == RaftRole.Leader && previous.Role != RaftRole.Leader)
        {
            NodeLog.BecameLeader(_logger, Id, soft.Term, _node.LastIndex, _node.CommitIndex);
            var self = _members.Find(Id);
            if (self is null || self.HttpAddress != _options.Self.HttpAddress || self.RaftAddress != _options.Self.RaftAddress || self.RespAddress != _options.Self.RespAddress)
            {
                // Tell every replica where this leader answers HTTP (static clusters start without it). Proposed
                // after Advance: the core takes no input while a Ready is being handled.
                _announceAddress = true;
            }
        }
        else if (soft.Role == RaftRole.Follower && (previous.Role != RaftRole.Follower || previous.Leader != soft.Leader))
        {
            NodeLog.BecameFollower(_logger, Id, soft.Term, soft.Leader, _node.LastIndex, _node.CommitIndex);
        }
        else if (soft.Role is RaftRole.Candidate or RaftRole.PreCandidate && previous.Role != soft.Role)
        {
            NodeLog.BecameCandidate(_logger, Id, soft.Term, soft.Role, _node.LastIndex, _node.CommitIndex);
        }

        if (previous.Leader != soft.Leader)
        {
            // Reads in flight were asked of the old leader; it may never answer them.
            foreach (var read in _pendingReads.Values)
            {
                read.Fail(new RaftHostException(HostErrorKind.NoLeader, "leader changed while confirming the read; retry"));
            }

            _pendingReads.Clear();
        }

        // Status first: a request woken by the change reads the leader from Status, and an older status there
        // sent it back to sleep until its deadline (writes through a follower took the whole 5 s timeout after
        // a failover).
        PublishStatus();
        _effects.LeadershipChanged(new LeadershipChange(Id, soft.Leader, soft.Role, soft.Term));
    }

    private void SendAll(IReadOnlyList<Message> messages)
    {
        foreach (var message in messages)
        {
            if (message.Type == MessageType.Snapshot)
            {
                _effects.SendSnapshot(message);
            }
            else if (message.Type == MessageType.ReadIndexResponse && !message.Reject)
            {
                // The core confirmed a follower's read index just now: the read is served at this leader's time.
                _effects.Send(message with { ReadTimeUnixMs = LeaderReadTime() });
            }
            else
            {
                _effects.Send(message);
            }
        }
    }

    /// <summary>The time a read this leader confirms now is served at: its clock, never behind its log time.</summary>
    private long LeaderReadTime() => Math.Max(_time.GetUtcNow().ToUnixTimeMilliseconds(), _cache.LastLogTimeUnixMs);

    /// <summary>A read point served now: never behind the log time this node has applied (docs/CACHE.md).</summary>
    private ReadPoint Monotonic(ReadPoint point) =>
        point with { TimeUnixMs = Math.Max(point.TimeUnixMs, _cache.LastLogTimeUnixMs) };

    private void InstallSnapshot(Snapshot snapshot)
    {
        // A snapshot without data was streamed into the store by the transport, verified, and waits there; one
        // with data (an in-memory store or a test) is saved first. Either way the cache restores by streaming.
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
        _housekeeper.NoteApplied();
        _lastSnapshot = snapshot.Metadata;
        _entryBytesAtSnapshot = _cache.AppliedEntryBytes;
        _effects.SnapshotRestored(snapshot.Metadata, installed: true);
        NodeLog.SnapshotInstalled(_logger, snapshot.Metadata.Index, snapshot.Metadata.Term, _cache.Count);
    }

    private void RestoreFrom(SnapshotMetadata metadata, Stream data)
    {
        var members = SnapshotFormat.ReadHeader(data, out var removed);
        _cache.Restore(data);
        if (_cache.AppliedIndex != metadata.Index)
        {
            throw new InvalidDataException($"snapshot data is at index {_cache.AppliedIndex} but its metadata says {metadata.Index}");
        }

        _members.MergeAll(members);
        _members.MergeRemoved(removed);
        _confState = metadata.ConfState;
        _appliedTerm = metadata.Term;
    }

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
        _housekeeper.NoteApplied();
        _effects.Applied(entry);
        if (_waiters.Remove(entry.Index, out var waiter))
        {
            _answers.Add(waiter.Term == entry.Term
                ? Answer.Applied(waiter, result)
                : Answer.Lost(waiter, new RaftHostException(HostErrorKind.Lost,
                    "leadership changed before the write committed; it was not applied, retry", outcomeUnknown: false)));
        }
    }

    private void ApplyConfChange(Entry entry)
    {
        if (!ConfChange.TryDecode(entry.Data.Span, out var change))
        {
            NodeLog.BadConfChange(_logger, entry.Index);
            return;
        }

        _confState = _confState.Apply(change!);
        var id = change!.NodeId;
        if (change.Type == ConfChangeType.RemoveNode)
        {
            _members.Remove(id);
            NodeLog.MemberRemoved(_logger, id, entry.Index);
            if (id == Id)
            {
                _removalApplied = true;
            }

            return;
        }

        if (_members.IsRemoved(id))
        {
            // Never proposed since removed ids are refused (ChangeMembership); a log written before that rule may
            // hold one. The core applies it like any committed change; say so.
            NodeLog.RemovedIdAddedBack(_logger, id, entry.Index);
        }

        if (id == Id)
        {
            _removalApplied = false; // added back (a log written before removed ids were refused)
        }

        var info = MemberInfo.FromContext(change.Context.Span) ?? new MemberInfo(id.Value, id.ToString(), string.Empty, string.Empty);
        _members.Merge(info with { Id = id.Value });
        NodeLog.MemberAdded(_logger, id, change.Type, info.RaftAddress, info.HttpAddress, entry.Index);
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

                _answers.Add(Answer.Reached(wait.Wait, wait.Index));
                return true;
            });
        }

        if (_readsWaitingForApply.Count > 0)
        {
            _readsWaitingForApply.RemoveAll(pair =>
            {
                if (pair.Point.Index > applied)
                {
                    return false;
                }

                _answers.Add(Answer.Served(pair.Read, Monotonic(pair.Point)));
                return true;
            });
        }
    }

    private void FailWaitersUpTo(LogIndex index)
    {
        foreach (var waiter in _waiters.Values.Where(w => w.Index <= index).ToList())
        {
            _waiters.Remove(waiter.Index);
            waiter.Fail(new RaftHostException(HostErrorKind.Timeout,
                "replaced by a snapshot from the leader before the outcome was known; outcome unknown", outcomeUnknown: true));
        }
    }

    private void AnswerSnapshotRequests()
    {
        foreach (var request in _snapshotRequests)
        {
            request.Complete(_lastSnapshot);
        }

        _snapshotRequests.Clear();
    }

    private void MaybeSnapshot(bool force)
    {
        if (_snapshotJob is not null)
        {
            return; // the requests are answered when the running snapshot is saved
        }

        var applied = _cache.AppliedIndex;
        if (applied <= _lastSnapshot.Index)
        {
            AnswerSnapshotRequests();
            return;
        }

        if (!force)
        {
            bool enoughEntries = LogIndex.Distance(_lastSnapshot.Index, applied) >= _options.SnapshotThreshold;
            bool enoughTime = _ticksDone - _lastSnapshotTick >= _options.SnapshotIntervalTicks;
            if ((!enoughEntries || !enoughTime) && !LogHoldsTooMuch())
            {
                return;
            }
        }

        _entryBytesAtSnapshot = _cache.AppliedEntryBytes;
        var metadata = new SnapshotMetadata(applied, _appliedTerm, _confState);
        _snapshotJob = new SnapshotJob(_snapshotStore, metadata, _cache.BeginSnapshot(), _members.Serialize(), _members.RemovedIds);
        NodeLog.SnapshotStarted(_logger, metadata.Index, metadata.Term);
        _effects.SaveSnapshot(_snapshotJob);
    }

    /// <summary>The entries applied since the last snapshot hold <see cref="RaftHostOptions.SnapshotLogBytes"/> and a
    /// share of the cache's accounted memory (they stay in the in-memory log until a snapshot covers them), plus this
    /// node's stagger (<see cref="RaftHostOptions.SnapshotLogStaggerEighths"/>).</summary>
    private bool LogHoldsTooMuch()
    {
        if (_options.SnapshotLogBytes <= 0)
        {
            return false;
        }

        long logBytes = _cache.AppliedEntryBytes - _entryBytesAtSnapshot;
        long threshold = Math.Max(_options.SnapshotLogBytes, _cache.UsedMemoryBytes / RaftHostOptions.SnapshotLogShareDivisor);
        return logBytes >= threshold + threshold / 8 * RaftHostOptions.SnapshotLogStaggerEighths(Id);
    }

    private void OnSnapshotSaved(SnapshotJob job)
    {
        // Only the snapshot interval restarts here. The tick count must not: the Raft clock is the ticks delivered,
        // and a host that reset its tick epoch here froze this node's Raft clock for as long as it had run (no
        // heartbeats, elections or lease expiry; failovers of 20-30 s after a snapshot under load).
        _lastSnapshotTick = _ticksDone;
        if (job.Error is not null)
        {
            NodeLog.SnapshotFailed(_logger, job.Metadata.Index, job.Error);
            foreach (var request in _snapshotRequests)
            {
                request.Fail(new RaftHostException(HostErrorKind.ShuttingDown, "snapshot failed: " + job.Error.Message));
            }

            _snapshotRequests.Clear();
            return;
        }

        if (job.Metadata.Index > _lastSnapshot.Index)
        {
            // Not when a newer snapshot from the leader was installed while this one was being written.
            _lastSnapshot = job.Metadata;
            _node.SnapshotTaken(job.Metadata, _options.SnapshotTrailingEntries);

            // The WAL deletes segments only behind a snapshot it knows of; the snapshot file is durable by now.
            _logStore.ApplySnapshot(job.Metadata);
            if (job.Metadata.Index.Value > _options.SnapshotTrailingEntries)
            {
                _logStore.Compact(job.Metadata.Index - _options.SnapshotTrailingEntries);
            }

            NodeLog.SnapshotTaken(_logger, job.Metadata.Index, job.Metadata.Term);
        }

        AnswerSnapshotRequests();
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
    private void PromoteCaughtUpLearners()
    {
        if (_node.Role != RaftRole.Leader || _node.ConfState.Learners.Count == 0 || _ticksDone == _lastPromotionTick)
        {
            if (_node.Role != RaftRole.Leader)
            {
                _catchUpRounds.Clear();
            }

            return;
        }

        _lastPromotionTick = _ticksDone;
        var status = _node.GetStatus();
        foreach (var progress in status.Progress)
        {
            if (!progress.IsLearner || progress.Match == LogIndex.Zero || !CaughtUp(progress.Id, progress.Match, status.Commit))
            {
                continue;
            }

            var info = _members.Find(progress.Id);
            var context = info?.ToContext() ?? ReadOnlyMemory<byte>.Empty;
            var result = _node.ProposeConfChange(new ConfChange(ConfChangeType.AddVoter, progress.Id, context));
            if (result.IsAccepted)
            {
                _statusStale = true;
                _catchUpRounds.Remove(progress.Id);
                NodeLog.PromotingLearner(_logger, progress.Id, progress.Match);
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

    private void PublishStatus()
    {
        var status = _node.GetStatus();
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
            TicksSkipped = _ticksSkipped,
            ClockJumps = _clockJumps,
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

            var logLast = state.Entries.Count > 0 ? state.Entries[^1].Index : state.Snapshot.Index;
            if (logLast < snapshot.Metadata.Index)
            {
                // The log ends before the snapshot: the process stopped between saving a snapshot (installed from
                // the leader, or taken of entries applied before this node's own log had synced them) and recording
                // it in the log. Finish that now, or the log would refuse the entries that follow the snapshot.
                _logStore.ApplySnapshot(snapshot.Metadata);
            }

            RestoreFrom(snapshot.Metadata, snapshot.Data);
            if (snapshot.Metadata.Index > state.Snapshot.Index)
            {
                // The snapshot was saved but the node stopped before the log recorded it (an installed snapshot
                // whose log record failed with EIO): record it now, or the first append after a log that ends
                // below the snapshot leaves a gap the log refuses.
                _logStore.ApplySnapshot(snapshot.Metadata);
            }

            _lastSnapshot = snapshot.Metadata;
            _effects.SnapshotRestored(snapshot.Metadata, installed: false);

            // The snapshot is from after this node's removal: the removal entry will not be applied again. Its
            // removed ids say so exactly. A configuration that does not list this node does not: a joiner may have
            // installed a snapshot from before its addition and stopped before applying that (sim seed 60925: the
            // restarted learner took itself for removed and shut down).
            _removalApplied = _members.IsRemoved(Id);
            var hard = state.HardState;
            if (hard.Commit < snapshot.Metadata.Index)
            {
                hard = hard with { Commit = snapshot.Metadata.Index };
            }

            state = new PersistentState(hard, snapshot.Metadata, [.. state.Entries.Where(e => e.Index > snapshot.Metadata.Index)]);
            NodeLog.SnapshotRestored(_logger, snapshot.Metadata.Index, _cache.Count);
        }
        else if (!state.Snapshot.Index.Equals(LogIndex.Zero))
        {
            throw new InvalidDataException($"the log starts after snapshot {state.Snapshot.Index} but no snapshot file was found");
        }

        return state;
    }

    /// <summary>An answer a Ready owes one request (see <see cref="GiveAnswers"/>): a write applied or lost, a read
    /// served, or an applied index reached.</summary>
    private readonly struct Answer
    {
        private readonly ProposalRequest? _write;
        private readonly ApplyResult _result;
        private readonly RaftHostException? _error;
        private readonly NodeRequest<ReadPoint>? _read;
        private readonly ReadPoint _point;
        private readonly NodeRequest<LogIndex>? _wait;
        private readonly LogIndex _index;

        private Answer(ProposalRequest? write, ApplyResult result, RaftHostException? error, NodeRequest<ReadPoint>? read, ReadPoint point,
            NodeRequest<LogIndex>? wait, LogIndex index)
        {
            _write = write;
            _result = result;
            _error = error;
            _read = read;
            _point = point;
            _wait = wait;
            _index = index;
        }

        public static Answer Applied(ProposalRequest write, ApplyResult result) => new(write, result, null, null, default, null, default);

        public static Answer Lost(ProposalRequest write, RaftHostException error) => new(write, default, error, null, default, null, default);

        public static Answer Served(NodeRequest<ReadPoint> read, ReadPoint point) => new(null, default, null, read, point, null, default);

        public static Answer Reached(NodeRequest<LogIndex> wait, LogIndex index) => new(null, default, null, null, default, wait, index);

        public void Give()
        {
            if (_write is not null)
            {
                if (_error is not null)
                {
                    _write.Fail(_error);
                }
                else
                {
                    _write.Complete(_result);
                }
            }
            else if (_read is not null)
            {
                _read.Complete(_point);
            }
            else
            {
                _wait!.Complete(_index);
            }
        }
    }
}
