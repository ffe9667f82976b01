namespace Stcache.Raft;

/// <summary>
/// The Raft consensus core: a deterministic state machine with no IO, clocks, threads or hidden randomness.
/// Drive it with <see cref="Tick"/>, <see cref="Step"/> and the request methods; collect work with
/// <see cref="GetReady"/>, handle it (see <see cref="Ready"/>), then call <see cref="Advance"/>. Not thread-safe.
/// </summary>
public sealed class RaftNode
{

    /// <summary>Election timeouts a follower may stay in Snapshot state with no news before it is probed again.</summary>
    private const int SnapshotStaleRoundsMax = 5;

    private readonly RaftConfig _config;
    private readonly SplitMix64 _random;
    private readonly RaftLog _log;
    private readonly Tracker _tracker = new();

    private List<Message> _messages = [];
    private List<Message> _messagesAfterPersist = [];
    private List<ReadState> _readStates = [];
    private readonly ReadTracker _reads = new();

    private Term _term;
    private NodeId _vote;
    private NodeId _leader;
    private RaftRole _role;

    // Index of the last conf change folded into the tracker's configuration.
    private LogIndex _confIndex;

    // Leader: index of the latest conf change proposed; a new one waits until it is applied.
    private LogIndex _pendingConfIndex;

    private long _uncommittedBytes;
    private NodeId _transferTarget;

    // Leader: the commit index moved and the followers have not all been sent it. The broadcast waits for GetReady:
    // an append proposed in the meantime carries the new commit index, and a follower that got one is skipped
    // (FlushCommitBroadcast). Sent at once, every commit cost each follower a second, empty Append per loop pass,
    // and an acknowledgement of it.
    private bool _commitBroadcastPending;

    // Monotonic tick counter: the core's only notion of time (leases). It counts every tick of the host's clock,
    // the ones a stall made the host skip included (ClockJumped), so times measured in it stay exact; the timers
    // (_electionElapsed, _heartbeatElapsed) count only the ticks delivered.
    private long _ticks;
    private int _electionElapsed;
    private int _heartbeatElapsed;
    private int _randomizedElectionTimeout;

    // Follower (and the campaigns after it): the tick at which the host reported the leader's connection lost, if
    // we have not heard from a leader since; -1 otherwise. See ReportConnectionLost.
    private long _leaderLostTick = -1;

    // Until this tick the wait to campaign is short (the leader-lost path); 0 once it ended or was yielded.
    private long _fastCampaignUntilTick;

    // A node that may not campaign sends its next probes at this tick at the earliest (SendProbes).
    private long _nextProbeTick;

    // Leader: until this tick the lease holds (a quorum acknowledged a round sent at least this recently).
    private long _leaseUntilTick;

    private Snapshot? _pendingSnapshot;

    // The highest index a leader told us is committed (an Append's commit, an installed snapshot). While our log
    // ends below it we are known to be stale and never campaign: see StartElection.
    private LogIndex _knownCommit;

    // The last entry array sent in an Append, shared with the next follower at the same position.
    private Entry[]? _lastSlice;
    private bool _lastSliceFull;
    private SoftState _previousSoftState;
    private HardState _previousHardState;
    private bool _readyInProgress;

    public RaftNode(RaftConfig config, PersistentState state)
    {
        ArgumentNullException.ThrowIfNull(config);
        ArgumentNullException.ThrowIfNull(state);
        config.Validate();
        _config = config;
        _random = new SplitMix64(config.RandomSeed ^ (config.Id.Value * 0x9E3779B97F4A7C15UL));
        _log = new RaftLog(state.Snapshot, state.Entries, state.HardState.Commit);
        _term = state.HardState.Term;
        _vote = state.HardState.Vote;
        _tracker.Config = state.Snapshot.ConfState;
        _confIndex = state.Snapshot.Index;

        // Conf changes that are committed take effect at once on restart; uncommitted ones wait for commit.
        for (var i = _log.FirstIndex; i <= _log.Committed; i = i.Next)
        {
            var entry = _log.EntryAt(i);
            if (entry.Type == EntryType.ConfChange && ConfChange.TryDecode(entry.Data.Span, out var change))
            {
                _tracker.Config = _tracker.Config.Apply(change!);
                _confIndex = i;
            }
        }

        _previousHardState = CurrentHardState;
        BecomeFollower(_term, NodeId.None);
        _previousSoftState = new SoftState(NodeId.None, RaftRole.Follower, _term);
    }

    public NodeId Id => _config.Id;

    public RaftRole Role => _role;

    public Term Term => _term;

    public NodeId Leader => _leader;

    public LogIndex CommitIndex => _log.Committed;

    public LogIndex AppliedIndex => _log.Applied;

    public LogIndex LastIndex => _log.LastIndex;

    public ConfState ConfState => _tracker.Config;

    private HardState CurrentHardState => new(_term, _vote, _log.Committed);

    private bool IsPromotable => _tracker.Config.IsVoter(Id);

    // A leader told us of a commit index beyond our log's end: we cannot be a legitimate leader (StartElection).
    private bool KnownStale => _knownCommit > _log.LastIndex;

    /// <summary>Advances logical time by one tick (elections, heartbeats, check-quorum, lease expiry).</summary>
    public void Tick()
    {
        EnsureNoReadyInProgress();
        _ticks++;
        if (_electionElapsed < int.MaxValue)
        {
            _electionElapsed++;
        }

        if (_role == RaftRole.Leader)
        {
            TickLeader();
        }
        else if (_electionElapsed >= _randomizedElectionTimeout)
        {
            if (IsPromotable && !KnownStale)
            {
                _electionElapsed = 0;
                StartElection(transfer: false);

                // A pre-candidate that campaigns again keeps its timeout; a short one (the leader-lost path) is drawn
                // again while the path is open, and ends with it.
                if (_role == RaftRole.PreCandidate && (LeaderLostWindowOpen || _randomizedElectionTimeout < _config.ElectionTimeoutTicks))
                {
                    RandomizeElectionTimeout();
                }

                // The campaign reaches the voters only; a learner may be the one member left up (sim seed 99197).
                SendProbes(learnersOnly: true);
            }
            else
            {
                // A node that cannot campaign (a learner, one that believes so, or one that knows its log is stale)
                // lets the timer run on: its view of the leader's lease must lapse and stay lapsed until it hears
                // from a leader again, or it would keep ignoring the pre-votes of the candidate that needs it (sim
                // seeds 57967, 9728). It probes the members instead, so that one removed meanwhile hears of it.
                SendProbes(learnersOnly: false);
            }
        }
    }

    /// <summary>
    /// The host's clock moved on by <paramref name="skippedTicks"/> ticks that it does not deliver: after a stall (a
    /// long GC, SIGSTOP, a frozen VM, a loop stuck behind a slow fsync) it collapses the burst of due ticks to one,
    /// so that the messages that waited through the stall are heard before any timer runs out (docs/RAFT.md, "Ticks
    /// after a stall"). The tick count takes the skipped ticks, so everything measured in it stays exact: a lease
    /// from a round sent before the stall is as old as it really is. No timer advances: a follower waits longer
    /// than the election timeout before it campaigns or votes for another, which is the direction the leaders'
    /// leases rely on. A leader's lease ends here regardless; the next quorum round renews it.
    /// </summary>
    public void ClockJumped(long skippedTicks)
    {
        EnsureNoReadyInProgress();
        ArgumentOutOfRangeException.ThrowIfNegative(skippedTicks);
        _ticks += skippedTicks;
        _leaseUntilTick = 0;
    }

    /// <summary>
    /// A node that hears no leader and may not campaign sends nothing else, and no member contacts a node it has
    /// removed: without a message from it, no member's transport can tell it it is no longer a member, and a node
    /// removed while it lagged (or while a learner) would run for ever (sim seeds 63414, 64982, 66449, 72131). So
    /// once per election timeout without a leader it sends each other member of its configuration a
    /// <see cref="MessageType.Probe"/>, which changes nothing where it arrives (see <see cref="Step"/>). A node
    /// that campaigns reaches the voters with its requests and probes only the learners
    /// (<paramref name="learnersOnly"/>): when the voters it knows are gone, a learner of its configuration may be
    /// the one member left to tell it (sim seed 99197).
    /// </summary>
    private void SendProbes(bool learnersOnly)
    {
        if (_role == RaftRole.Leader || _ticks < _nextProbeTick || !_tracker.Config.IsMember(Id))
        {
            return;
        }

        _nextProbeTick = _ticks + _config.ElectionTimeoutTicks;
        foreach (var member in learnersOnly ? _tracker.Config.Learners : _tracker.Config.Voters.Concat(_tracker.Config.Learners))
        {
            if (member != Id)
            {
                Send(new Message { Type = MessageType.Probe, From = Id, To = member, Term = _term });
            }
        }
    }

    private void TickLeader()
    {
        _heartbeatElapsed++;
        if (_electionElapsed >= _config.ElectionTimeoutTicks)
        {
            _electionElapsed = 0;
            if (_config.CheckQuorum)
            {
                if (!_tracker.QuorumRecentlyActive(Id))
                {
                    BecomeFollower(_term, NodeId.None);
                    return;
                }

                foreach (var (id, progress) in _tracker.Progress)
                {
                    progress.RecentActive = id == Id;
                }
            }

            // A transfer that did not finish within an election timeout is abandoned (thesis §3.10).
            _transferTarget = NodeId.None;

            // A snapshot whose outcome the host never reported (lost with its connection, say) is retried
            // rather than leaving the follower stranded.
            foreach (var (_, progress) in _tracker.Progress)
            {
                if (progress.State == ProgressState.Snapshot && ++progress.SnapshotStaleRounds > SnapshotStaleRoundsMax)
                {
                    progress.BecomeProbe();
                }
            }
        }

        if (_heartbeatElapsed >= _config.HeartbeatIntervalTicks)
        {
            _heartbeatElapsed = 0;
            BroadcastHeartbeat(_reads.StartRound(_ticks));
        }
    }

    /// <summary>Starts an election now, as a leadership transfer would: skipping pre-vote and overriding the
    /// voters' leases (tests, tools, manual failover).</summary>
    public void Campaign()
    {
        EnsureNoReadyInProgress();
        if (_role != RaftRole.Leader && IsPromotable)
        {
            StartElection(transfer: true);
        }
    }

    private void StartElection(bool transfer)
    {
        // A node must not campaign while committed conf changes are unapplied: it could count votes against a
        // configuration that is no longer current.
        if (HasUnappliedConfChange())
        {
            return;
        }

        // Nor while a leader has told it of a commit index beyond its log's end. Every later leader must hold that
        // entry (Leader Completeness), so this node cannot be a legitimate leader until it has it; and the
        // configuration it has applied is only a prefix of the history, which may name a quorum that no longer
        // exists. A node wiped and added back under its old id replays the log from index 1: after the first
        // founder's AddVoter alone it is the only voter of that configuration, and without this check it elected
        // itself and wrote its no-op over committed index 2 (sim seeds 3390, 4061, 6311, 7660, 9728). Nobody
        // waits on this node: it still votes, and it campaigns again once it has caught up. The bound is kept in
        // memory only: with ids unique per incarnation (a wiped node returns under a new id) a node restarted in
        // the middle of its catch-up cannot win anyway (docs/RAFT.md, "Node ids").
        if (KnownStale)
        {
            return;
        }

        if (_config.PreVote && !transfer)
        {
            BecomePreCandidate();
            RequestVotes(MessageType.PreVote, _term.Next, transfer);
        }
        else
        {
            BecomeCandidate();
            RequestVotes(MessageType.Vote, _term, transfer);
        }
    }

    private bool HasUnappliedConfChange()
    {
        // Changes up to _confIndex are already folded in (at restart, every committed one is).
        for (var i = LogIndex.Max(LogIndex.Max(_log.Applied, _confIndex).Next, _log.FirstIndex); i <= _log.Committed; i = i.Next)
        {
            if (_log.EntryAt(i).Type == EntryType.ConfChange)
            {
                return true;
            }
        }

        return false;
    }

    private void RequestVotes(MessageType type, Term term, bool transfer)
    {
        // Our own vote counts first; a single-voter cluster wins at once.
        if (_tracker.RecordVote(Id, true) == VoteResult.Won)
        {
            if (type == MessageType.PreVote)
            {
                BecomeCandidate();
                RequestVotes(MessageType.Vote, _term, transfer);
            }
            else
            {
                BecomeLeader();
            }

            return;
        }

        foreach (var voter in _tracker.Config.Voters)
        {
            if (voter == Id)
            {
                continue;
            }

            Send(new Message
            {
                Type = type,
                From = Id,
                To = voter,
                Term = term,
                LogTerm = _log.LastTerm,
                Index = _log.LastIndex,
                Campaign = transfer ? CampaignKind.Transfer : CampaignKind.Election,
            });
        }
    }

    /// <summary>Handles a message from a peer. Never throws on stale or nonsensical input; such messages are dropped.</summary>
    public void Step(Message message)
    {
        EnsureNoReadyInProgress();
        ArgumentNullException.ThrowIfNull(message);
        if (message.To != Id || message.Validate() is not null)
        {
            return;
        }

        if (message.Type == MessageType.Probe)
        {
            // Whatever its term: a probe is for the receiver's transport (the "not a member" notice), and a node
            // that may not campaign must not disturb anyone (thesis §4.2.3) by raising terms or resetting timers.
            return;
        }

        if (message.Term > _term)
        {
            if (message.Type is MessageType.Vote or MessageType.PreVote)
            {
                // Check-quorum lease (thesis §4.2.3): while we hear from a leader, ignore candidates, so a node that
                // was partitioned away cannot depose a healthy leader. A transfer's campaign overrides this.
                // A node that just restarted may have acknowledged a leader's lease before it crashed, so it also
                // stays quiet for one election timeout after start.
                // A follower whose leader's connections failed, and that has not heard from it since, no longer
                // counts as hearing from it (ReportConnectionLost).
                bool inLease = _config.CheckQuorum &&
                    ((!_leader.IsNone && _electionElapsed < _config.ElectionTimeoutTicks && _leaderLostTick < 0) ||
                     _ticks < _config.ElectionTimeoutTicks);
                if (inLease && message.Campaign != CampaignKind.Transfer)
                {
                    return;
                }
            }

            if (message.Type == MessageType.PreVote || (message.Type == MessageType.PreVoteResponse && !message.Reject))
            {
                // Pre-votes are for a term nobody has entered yet; they never change ours.
            }
            else if (message.Type is MessageType.Append or MessageType.Heartbeat or MessageType.Snapshot)
            {
                BecomeFollower(message.Term, message.From);
            }
            else
            {
                BecomeFollower(message.Term, NodeId.None);
            }
        }
        else if (message.Term < _term)
        {
            if (message.Type is MessageType.Append or MessageType.Heartbeat)
            {
                // A stale leader is told our term so it steps down; without this, with pre-vote or check-quorum,
                // a node with a higher term could be stuck ignoring the old leader forever.
                Send(new Message { Type = MessageType.AppendResponse, From = Id, To = message.From, Term = _term });
            }
            else if (message.Type == MessageType.PreVote)
            {
                Send(new Message { Type = MessageType.PreVoteResponse, From = Id, To = message.From, Term = _term, Reject = true });
            }
            else if (message.Type == MessageType.Vote)
            {
                // Raft Figure 2: a stale RequestVote is answered with our term so the candidate catches up. Without
                // it, a candidate that needs our vote but never receives our own requests (we campaign in an older
                // configuration that does not contain it) stays below our term forever (livelock, sim seed 12320).
                Send(new Message { Type = MessageType.VoteResponse, From = Id, To = message.From, Term = _term, Reject = true });
            }

            return;
        }

        switch (message.Type)
        {
            case MessageType.Vote:
            case MessageType.PreVote:
                HandleVoteRequest(message);
                return;
            default:
                break;
        }

        switch (_role)
        {
            case RaftRole.Leader:
                StepLeader(message);
                break;
            case RaftRole.Candidate:
            case RaftRole.PreCandidate:
                StepCandidate(message);
                break;
            default:
                StepFollower(message);
                break;
        }
    }

    private void HandleVoteRequest(Message message)
    {
        bool canVote =
            _vote == message.From ||
            (_vote.IsNone && _leader.IsNone) ||
            (message.Type == MessageType.PreVote && message.Term > _term);
        var responseType = message.Type == MessageType.Vote ? MessageType.VoteResponse : MessageType.PreVoteResponse;
        if (canVote && _log.IsUpToDate(message.LogTerm, message.Index))
        {
            // A granted pre-vote answers in the candidate's future term so it can be counted there.
            Send(new Message { Type = responseType, From = Id, To = message.From, Term = message.Term });
            if (message.Type == MessageType.Vote)
            {
                _electionElapsed = 0;
                _vote = message.From;
            }

            if (LeaderLostWindowOpen && (_role == RaftRole.Follower || message.From.Value < Id.Value))
            {
                // Another survivor of the crashed leader asks first: let it win rather than split the next term's
                // vote with it (that would cost an election timeout). A follower that grants yields its own short
                // wait; of two pre-candidates, the higher id steps back. Either campaigns after a full timeout if
                // the other does not win.
                _fastCampaignUntilTick = 0;
                if (_role == RaftRole.PreCandidate)
                {
                    BecomeFollower(_term, NodeId.None);
                }
                else
                {
                    _electionElapsed = 0;
                    RandomizeElectionTimeout();
                }
            }
        }
        else
        {
            Send(new Message { Type = responseType, From = Id, To = message.From, Term = _term, Reject = true });
            if (message.Type == MessageType.Vote && _log.IsUpToDate(message.LogTerm, message.Index) && _role != RaftRole.Leader)
            {
                // We already voted this term (for ourselves, say), but the candidate's log is at least as complete
                // as ours: hold back our next campaign so it gets a fair chance at the next term. Without this, a
                // node stranded in an old configuration that never asks the candidate for its vote could keep
                // winning the timeout race forever (no pre-vote; sim seed 12320). Timers never affect safety.
                _electionElapsed = 0;
            }
        }
    }

    private void StepFollower(Message message)
    {
        switch (message.Type)
        {
            case MessageType.Append:
                HeardFromLeader(message.From);
                HandleAppend(message);
                break;
            case MessageType.Heartbeat:
                HeardFromLeader(message.From);
                HandleHeartbeat(message);
                break;
            case MessageType.Snapshot:
                HeardFromLeader(message.From);
                HandleSnapshot(message);
                break;
            case MessageType.TimeoutNow:
                if (IsPromotable)
                {
                    StartElection(transfer: true);
                }

                break;
            case MessageType.ReadIndexResponse:
                if (!message.Reject)
                {
                    _readStates.Add(new ReadState(message.RequestId, message.Index, message.ReadTimeUnixMs));
                }

                break;
            default:
                break;
        }
    }

    private void StepCandidate(Message message)
    {
        var myResponse = _role == RaftRole.PreCandidate ? MessageType.PreVoteResponse : MessageType.VoteResponse;
        switch (message.Type)
        {
            case MessageType.Append:
                BecomeFollower(message.Term, message.From);
                HandleAppend(message);
                break;
            case MessageType.Heartbeat:
                BecomeFollower(message.Term, message.From);
                HandleHeartbeat(message);
                break;
            case MessageType.Snapshot:
                BecomeFollower(message.Term, message.From);
                HandleSnapshot(message);
                break;
            case MessageType.VoteResponse:
            case MessageType.PreVoteResponse:
                if (message.Type != myResponse)
                {
                    break;
                }

                if (message.Reject && _role == RaftRole.Candidate && LeaderLostWindowOpen && message.From.Value > Id.Value)
                {
                    // Two survivors of a crashed leader split this term's vote (each voted for itself). The lower id
                    // campaigns again after a short delay, the higher one waits its full timeout and votes for it.
                    _electionElapsed = 0;
                    _randomizedElectionTimeout = 1 + (int)_random.NextBelow((ulong)_config.LeaderLostDelayTicksMax);
                }

                switch (_tracker.RecordVote(message.From, !message.Reject))
                {
                    case VoteResult.Won when _role == RaftRole.PreCandidate:
                        StartElectionAfterPreVote();
                        break;
                    case VoteResult.Won:
                        BecomeLeader();
                        break;
                    case VoteResult.Lost:
                        BecomeFollower(_term, NodeId.None);
                        break;
                    default:
                        break;
                }

                break;
            default:
                break;
        }
    }

    private void HeardFromLeader(NodeId leader)
    {
        _electionElapsed = 0;
        _leader = leader;
        if (_leaderLostTick >= 0)
        {
            _leaderLostTick = -1;
            _fastCampaignUntilTick = 0;
            RandomizeElectionTimeout();
        }
    }

    private void StartElectionAfterPreVote()
    {
        BecomeCandidate();
        RequestVotes(MessageType.Vote, _term, transfer: false);
    }

    private void HandleAppend(Message message)
    {
        _knownCommit = LogIndex.Max(_knownCommit, message.Commit);
        if (message.Index < _log.Committed)
        {
            Send(new Message { Type = MessageType.AppendResponse, From = Id, To = message.From, Term = _term, Index = _log.Committed });
            return;
        }

        if (_log.TryAppend(message.Index, message.LogTerm, message.Commit, message.Entries, out var lastNew))
        {
            Send(new Message { Type = MessageType.AppendResponse, From = Id, To = message.From, Term = _term, Index = lastNew });
            return;
        }

        // Conflict hint (thesis §5.3 optimisation, in etcd's form): the last index at or before the probe whose
        // term is at most the leader's term there. The leader jumps past whole conflicting terms.
        var (hintIndex, hintTerm) = _log.FindConflictByTerm(LogIndex.Min(message.Index, _log.LastIndex), message.LogTerm);
        Send(new Message
        {
            Type = MessageType.AppendResponse,
            From = Id,
            To = message.From,
            Term = _term,
            Index = message.Index,
            Reject = true,
            RejectHint = hintIndex,
            LogTerm = hintTerm,
        });
    }

    private void HandleHeartbeat(Message message)
    {
        // The leader sends min(match, commit), so this never exceeds what we hold in common with it.
        _log.CommitTo(LogIndex.Min(message.Commit, _log.LastIndex));
        Send(new Message { Type = MessageType.HeartbeatResponse, From = Id, To = message.From, Term = _term, Round = message.Round });
    }

    private void HandleSnapshot(Message message)
    {
        var metadata = message.Snapshot!.Metadata;
        _knownCommit = LogIndex.Max(_knownCommit, metadata.Index);
        if (metadata.Index <= _log.Committed)
        {
            Send(new Message { Type = MessageType.AppendResponse, From = Id, To = message.From, Term = _term, Index = _log.Committed });
            return;
        }

        if (_log.MatchTerm(metadata.Index, metadata.Term))
        {
            // We already have the entries; the snapshot only tells us they are committed.
            _log.CommitTo(metadata.Index);
            Send(new Message { Type = MessageType.AppendResponse, From = Id, To = message.From, Term = _term, Index = _log.Committed });
            return;
        }

        _log.Restore(metadata);
        _tracker.Config = metadata.ConfState;
        _confIndex = metadata.Index;
        _pendingSnapshot = message.Snapshot;
        Send(new Message { Type = MessageType.AppendResponse, From = Id, To = message.From, Term = _term, Index = _log.LastIndex });
    }

    private void StepLeader(Message message)
    {
        if (!_tracker.Progress.TryGetValue(message.From, out var progress))
        {
            return;
        }

        switch (message.Type)
        {
            case MessageType.AppendResponse:
                progress.RecentActive = true;
                HandleAppendResponse(message, progress);
                break;
            case MessageType.HeartbeatResponse:
                progress.RecentActive = true;
                progress.ProbeSent = false;
                if (message.Round > progress.AckedRound)
                {
                    progress.AckedRound = message.Round;
                    ReleaseConfirmedReads();
                }

                if (progress.State == ProgressState.Replicate && progress.Inflights.IsFull)
                {
                    progress.Inflights.FreeFirstOne();
                }

                if (progress.Match < _log.LastIndex)
                {
                    // Even an empty append probes: a follower that lost in-flight appends rejects it and is repaired.
                    SendAppend(message.From, progress, sendIfEmpty: true);
                }

                break;
            case MessageType.ReadIndex:
                progress.RecentActive = true;
                if (!LeaderRead(message.RequestId, message.From, lease: false))
                {
                    Send(new Message { Type = MessageType.ReadIndexResponse, From = Id, To = message.From, Term = _term, RequestId = message.RequestId, Reject = true });
                }

                break;
            default:
                break;
        }
    }

    private void HandleAppendResponse(Message message, Progress progress)
    {
        if (message.Reject)
        {
            var hint = message.RejectHint;
            if (message.LogTerm > Term.Zero)
            {
                hint = _log.FindConflictByTerm(message.RejectHint, message.LogTerm).Index;
            }

            if (progress.MaybeDecreaseTo(message.Index, hint))
            {
                if (progress.State == ProgressState.Replicate)
                {
                    progress.BecomeProbe();
                }

                SendAppend(message.From, progress, sendIfEmpty: true);
            }

            return;
        }

        if (message.Index > _log.LastIndex)
        {
            return; // Acknowledges entries we never sent: not from a sane peer.
        }

        bool wasPaused = progress.IsPaused;
        if (!progress.MaybeUpdate(message.Index))
        {
            return;
        }

        switch (progress.State)
        {
            case ProgressState.Probe:
                progress.BecomeReplicate();
                break;
            case ProgressState.Snapshot when progress.Match >= progress.PendingSnapshot:
                progress.BecomeProbe();
                progress.BecomeReplicate();
                break;
            case ProgressState.Replicate:
                progress.Inflights.FreeUpTo(message.Index);
                break;
            default:
                break;
        }

        if (MaybeCommit())
        {
            _commitBroadcastPending = true;
        }
        else if (wasPaused)
        {
            // It may have missed commit updates while paused.
            SendAppend(message.From, progress, sendIfEmpty: true);
        }

        // Keep the pipeline full while there is more to send.
        while (SendAppend(message.From, progress, sendIfEmpty: false))
        {
        }

        if (message.From == _transferTarget && progress.Match == _log.LastIndex)
        {
            FlushCommitBroadcast(); // the target campaigns at once: it should know the commit index first
            Send(new Message { Type = MessageType.TimeoutNow, From = Id, To = message.From, Term = _term });
        }
    }

    /// <summary>Sends the follower what it lacks; returns true if a message was sent.</summary>
    private bool SendAppend(NodeId to, Progress progress, bool sendIfEmpty)
    {
        if (progress.IsPaused)
        {
            return false;
        }

        var previous = progress.Next.Previous;
        if (!_log.TryTerm(previous, out var previousTerm) || !TrySliceForAppend(progress.Next, out var entries))
        {
            return SendSnapshot(to, progress);
        }

        if (entries.Length == 0 && !sendIfEmpty)
        {
            return false;
        }

        long bytes = 0;
        foreach (var entry in entries)
        {
            bytes += entry.SizeBytes;
        }

        Send(new Message
        {
            Type = MessageType.Append,
            From = Id,
            To = to,
            Term = _term,
            Index = previous,
            LogTerm = previousTerm,
            Entries = entries,
            Commit = _log.Committed,
        });
        progress.SentEntries(entries.Length, previous + (ulong)entries.Length, bytes);
        progress.SentCommit = LogIndex.Max(progress.SentCommit, _log.Committed);
        return true;
    }

    /// <summary>Sends the moved commit index to every follower no append has carried it to yet.</summary>
    private void FlushCommitBroadcast()
    {
        if (!_commitBroadcastPending)
        {
            return;
        }

        _commitBroadcastPending = false;
        if (_role != RaftRole.Leader)
        {
            return;
        }

        foreach (var (id, progress) in _tracker.Progress)
        {
            if (id != Id && progress.SentCommit < _log.Committed)
            {
                SendAppend(id, progress, sendIfEmpty: true);
            }
        }
    }

    /// <summary>
    /// Entries from <paramref name="from"/> for an Append. Followers at the same position share one array: by log
    /// matching, an equal first index and an equal (index, term) of the last entry mean equal entries.
    /// </summary>
    private bool TrySliceForAppend(LogIndex from, out Entry[] entries)
    {
        if (_lastSlice is { Length: > 0 } cached && cached[0].Index == from &&
            _log.MatchTerm(cached[^1].Index, cached[^1].Term) && (cached[^1].Index == _log.LastIndex || _lastSliceFull))
        {
            entries = cached;
            return true;
        }

        if (!_log.TrySlice(from, _log.LastIndex, _config.AppendBytesMax, out entries))
        {
            return false;
        }

        _lastSlice = entries;
        _lastSliceFull = entries.Length > 0 && entries[^1].Index < _log.LastIndex;
        return true;
    }

    private bool SendSnapshot(NodeId to, Progress progress)
    {
        if (!progress.RecentActive)
        {
            return false;
        }

        var snapshot = _log.Snapshot;
        Invariant.Check(!snapshot.Index.Equals(LogIndex.Zero), "log compacted without a snapshot");
        Send(new Message
        {
            Type = MessageType.Snapshot,
            From = Id,
            To = to,
            Term = _term,
            Snapshot = new Snapshot(snapshot, ReadOnlyMemory<byte>.Empty),
        });
        progress.BecomeSnapshot(snapshot.Index);
        return true;
    }

    private void BroadcastAppend()
    {
        foreach (var (id, progress) in _tracker.Progress)
        {
            if (id != Id)
            {
                SendAppend(id, progress, sendIfEmpty: true);
            }
        }
    }

    private void BroadcastHeartbeat(ulong round)
    {
        foreach (var (id, progress) in _tracker.Progress)
        {
            if (id == Id)
            {
                continue;
            }

            Send(new Message
            {
                Type = MessageType.Heartbeat,
                From = Id,
                To = id,
                Term = _term,
                Commit = LogIndex.Min(progress.Match, _log.Committed),
                Round = round,
            });
        }
    }

    /// <summary>Advances the commit index to the highest index a quorum of voters holds, if it is of our term
    /// (thesis §3.6.2: entries of older terms commit only indirectly; the Figure 8 case).</summary>
    private bool MaybeCommit()
    {
        var quorumIndex = _tracker.QuorumMatch();
        if (quorumIndex <= _log.Committed || _log.TermOrZero(quorumIndex) != _term)
        {
            return false;
        }

        var before = _log.Committed;
        _log.CommitTo(quorumIndex);
        _uncommittedBytes = Math.Max(0, _uncommittedBytes - _log.BytesBetween(before, quorumIndex));
        _reads.LeaderCommittedInTerm = true;
        ReleaseConfirmedReads();
        return true;
    }

    public ProposeResult Propose(ReadOnlyMemory<byte> command) => Propose([command]);

    public ProposeResult Propose(IReadOnlyList<ReadOnlyMemory<byte>> commands)
    {
        EnsureNoReadyInProgress();
        ArgumentNullException.ThrowIfNull(commands);
        var refusal = CheckCanPropose();
        if (refusal != ProposeStatus.Accepted)
        {
            return Refused(refusal);
        }

        long bytes = 0;
        for (int i = 0; i < commands.Count; i++)
        {
            bytes += commands[i].Length + 24;
        }

        if (_config.UncommittedBytesMax > 0 && _uncommittedBytes > 0 && _uncommittedBytes + bytes > _config.UncommittedBytesMax)
        {
            return Refused(ProposeStatus.Overloaded);
        }

        var first = _log.LastIndex.Next;
        for (int i = 0; i < commands.Count; i++)
        {
            _log.Append(new Entry(_term, _log.LastIndex.Next, EntryType.Normal, commands[i]));
        }

        _uncommittedBytes += bytes;
        AfterLeaderAppend();
        return new ProposeResult(ProposeStatus.Accepted, _term, first, _log.LastIndex, Id);
    }

    public ProposeResult ProposeConfChange(ConfChange change)
    {
        EnsureNoReadyInProgress();
        ArgumentNullException.ThrowIfNull(change);
        var refusal = CheckCanPropose();
        if (refusal != ProposeStatus.Accepted)
        {
            return Refused(refusal);
        }

        // One change at a time, and only once this leader has committed an entry of its own term: otherwise two
        // single-server changes could overlap and allow disjoint majorities (Ongaro's 2015 raft-dev fix).
        if (_pendingConfIndex > _log.Applied || !_reads.LeaderCommittedInTerm)
        {
            return Refused(ProposeStatus.ConfChangeInProgress);
        }

        bool valid = change.Type switch
        {
            ConfChangeType.AddVoter => !_tracker.Config.IsVoter(change.NodeId),
            ConfChangeType.AddLearner => !_tracker.Config.IsMember(change.NodeId),
            ConfChangeType.RemoveNode => _tracker.Config.IsMember(change.NodeId) && !(_tracker.Config.IsVoter(change.NodeId) && _tracker.Config.Voters.Count == 1),
            _ => false,
        };
        if (!valid)
        {
            return Refused(ProposeStatus.InvalidConfChange);
        }

        var index = _log.LastIndex.Next;
        _log.Append(new Entry(_term, index, EntryType.ConfChange, change.Encode()));
        _pendingConfIndex = index;
        AfterLeaderAppend();
        return new ProposeResult(ProposeStatus.Accepted, _term, index, index, Id);
    }

    private ProposeStatus CheckCanPropose()
    {
        if (_role != RaftRole.Leader)
        {
            return ProposeStatus.NotLeader;
        }

        return _transferTarget.IsNone ? ProposeStatus.Accepted : ProposeStatus.TransferInProgress;
    }

    private ProposeResult Refused(ProposeStatus status) => new(status, _term, LogIndex.Zero, LogIndex.Zero, _leader);

    private void AfterLeaderAppend()
    {
        // A lone voter commits on its own persist (see Advance); others need the followers.
        BroadcastAppend();
    }

    /// <summary>Requests a linearizable read (ReadIndex, thesis §6.4); the answer comes as a <see cref="ReadState"/>.
    /// With <paramref name="lease"/> a leader holding a valid lease answers without a heartbeat round.</summary>
    public ReadStatus ReadIndex(ulong requestId, bool lease = false)
    {
        EnsureNoReadyInProgress();
        if (_role == RaftRole.Leader)
        {
            return LeaderRead(requestId, Id, lease) ? ReadStatus.Accepted : ReadStatus.Overloaded;
        }

        if (_leader.IsNone)
        {
            return ReadStatus.NoLeader;
        }

        Send(new Message { Type = MessageType.ReadIndex, From = Id, To = _leader, Term = _term, RequestId = requestId });
        return ReadStatus.Accepted;
    }

    private bool LeaderRead(ulong requestId, NodeId origin, bool lease)
    {
        if (_reads.PendingCount >= _config.PendingReadsMax)
        {
            return false;
        }

        bool single = _tracker.Config.Voters.Count == 1 && _tracker.Config.IsVoter(Id);
        bool leaseValid = lease && _config.CheckQuorum && _transferTarget.IsNone && _ticks < _leaseUntilTick;
        if (_reads.LeaderCommittedInTerm && (single || leaseValid))
        {
            CompleteRead(requestId, origin, _log.Committed);
            return true;
        }

        // The read index is our commit index once we know it is current (a no-op of our term committed) and we
        // know we are still leader (a heartbeat round sent after the read arrived is acknowledged by a quorum).
        bool needRound = _reads.Enqueue(requestId, origin);
        if (needRound && _reads.LeaderCommittedInTerm)
        {
            BroadcastHeartbeat(_reads.StartRound(_ticks));
        }

        return true;
    }

    private void ReleaseConfirmedReads()
    {
        if (!_reads.LeaderCommittedInTerm)
        {
            return;
        }

        var acked = _tracker.QuorumAckedRound(Id, _reads.LastRound);
        if (acked > 0)
        {
            long sentTick = _reads.SentTickOf(acked);
            if (sentTick >= 0)
            {
                _leaseUntilTick = Math.Max(_leaseUntilTick, sentTick + _config.ElectionTimeoutTicks - _config.LeaseDriftMarginTicks);
            }
        }

        bool startRound = _reads.Release(acked, _log.Committed, CompleteRead);
        if (startRound)
        {
            BroadcastHeartbeat(_reads.StartRound(_ticks));
        }
    }

    private void CompleteRead(ulong requestId, NodeId origin, LogIndex index)
    {
        if (origin == Id)
        {
            _readStates.Add(new ReadState(requestId, index));
        }
        else
        {
            Send(new Message { Type = MessageType.ReadIndexResponse, From = Id, To = origin, Term = _term, Index = index, RequestId = requestId });
        }
    }

    /// <summary>Starts moving leadership to <paramref name="target"/> (thesis §3.10). Only on the leader.</summary>
    public ProposeStatus TransferLeadership(NodeId target)
    {
        EnsureNoReadyInProgress();
        if (_role != RaftRole.Leader)
        {
            return ProposeStatus.NotLeader;
        }

        if (target == Id || !_tracker.Config.IsVoter(target) || !_tracker.Progress.TryGetValue(target, out var progress))
        {
            return ProposeStatus.Rejected;
        }

        if (_transferTarget == target)
        {
            return ProposeStatus.Accepted;
        }

        _transferTarget = target;
        _electionElapsed = 0;

        // The target will campaign ignoring leases, so ours ends now.
        _leaseUntilTick = 0;
        if (progress.Match == _log.LastIndex)
        {
            Send(new Message { Type = MessageType.TimeoutNow, From = Id, To = target, Term = _term });
        }
        else
        {
            SendAppend(target, progress, sendIfEmpty: true);
        }

        return ProposeStatus.Accepted;
    }

    public void ReportUnreachable(NodeId peer)
    {
        EnsureNoReadyInProgress();
        if (_role == RaftRole.Leader && _tracker.Progress.TryGetValue(peer, out var progress) && progress.State == ProgressState.Replicate)
        {
            progress.BecomeProbe();
        }
    }

    /// <summary>
    /// The host's transport saw a connection to or from <paramref name="peer"/> closed or reset by the other end,
    /// or a dial to it refused: evidence that the peer's process is gone, which a timeout is not. Report only such
    /// failures. A follower whose leader is <paramref name="peer"/> then campaigns (with pre-vote) after a short
    /// randomized delay of [1, <see cref="RaftConfig.LeaderLostDelayTicksMax"/>] ticks instead of the election
    /// timeout, and until it hears from a leader again it no longer counts as hearing from that leader, so it
    /// grants the pre-votes and votes of a peer that saw the same. A follower that still hears from the leader
    /// refuses them as always, so this path cannot depose a leader that a majority still hears. On a leader the
    /// report ends the lease (a follower that lost it may soon vote) and probes the peer as
    /// <see cref="ReportUnreachable"/> does. Repeated reports change nothing until the node hears from a leader.
    /// </summary>
    public void ReportConnectionLost(NodeId peer)
    {
        EnsureNoReadyInProgress();
        if (_role == RaftRole.Leader)
        {
            if (_tracker.Progress.TryGetValue(peer, out var progress) && peer != Id)
            {
                if (progress.State == ProgressState.Replicate)
                {
                    progress.BecomeProbe();
                }

                if (_tracker.Config.IsVoter(peer))
                {
                    _leaseUntilTick = 0;
                }
            }

            return;
        }

        if (_role != RaftRole.Follower || peer.IsNone || peer != _leader || _leaderLostTick >= 0 || !IsPromotable ||
            _config.LeaderLostDelayTicksMax == 0 || !_config.PreVote || !_config.CheckQuorum)
        {
            return;
        }

        _leaderLostTick = _ticks;
        _fastCampaignUntilTick = _ticks + _config.ElectionTimeoutTicks;
        _electionElapsed = 0;
        RandomizeElectionTimeout();
    }

    /// <summary>True while a leader-lost report is less than an election timeout old, no leader was heard since,
    /// and this node has not yielded to another survivor's campaign.</summary>
    private bool LeaderLostWindowOpen => _leaderLostTick >= 0 && _ticks < _fastCampaignUntilTick;

    private void RandomizeElectionTimeout()
    {
        // Only the wait to campaign is short. A candidate waits for its grants, which voters send only after an
        // fsync: on a loaded machine that easily takes a tick, and starting over would throw the grants away.
        _randomizedElectionTimeout = LeaderLostWindowOpen && _role != RaftRole.Candidate
            ? 1 + (int)_random.NextBelow((ulong)_config.LeaderLostDelayTicksMax)
            : _config.ElectionTimeoutTicks + (int)_random.NextBelow((ulong)_config.ElectionTimeoutTicks);
    }

    public void ReportSnapshot(NodeId peer, bool succeeded)
    {
        EnsureNoReadyInProgress();
        if (_role != RaftRole.Leader || !_tracker.Progress.TryGetValue(peer, out var progress) || progress.State != ProgressState.Snapshot)
        {
            return;
        }

        if (!succeeded)
        {
            progress.BecomeSnapshot(LogIndex.Zero);
        }

        // Wait for the follower's answer (or the next heartbeat) before probing again.
        progress.BecomeProbe();
        progress.ProbeSent = true;
    }

    /// <summary>Tells the core that the host saved a snapshot; entries up to its index may be dropped, keeping
    /// <paramref name="trailingEntries"/> so a slightly slow follower needs no snapshot.</summary>
    public void SnapshotTaken(SnapshotMetadata metadata, ulong trailingEntries)
    {
        EnsureNoReadyInProgress();
        ArgumentNullException.ThrowIfNull(metadata);
        if (metadata.Index > _log.Applied)
        {
            throw new ArgumentException($"snapshot index {metadata.Index} is beyond the applied index {_log.Applied}", nameof(metadata));
        }

        var dropUpTo = metadata.Index.Value > trailingEntries ? metadata.Index - trailingEntries : LogIndex.Zero;
        _log.Compact(metadata, dropUpTo);
    }

    public bool HasReady()
    {
        return _messages.Count > 0 || _messagesAfterPersist.Count > 0 || _readStates.Count > 0 || _commitBroadcastPending ||
            _pendingSnapshot is not null || UnpersistedEnd < _log.LastIndex || _log.Applied < ApplyLimit ||
            CurrentHardState != _previousHardState || CurrentSoftState != _previousSoftState;
    }

    private SoftState CurrentSoftState => new(_leader, _role, _term);

    // Entries up to here were handed to the host to persist (all of them, when it persists before Advance).
    private LogIndex UnpersistedEnd => _config.AsyncStorageWrites ? LogIndex.Max(_log.InProgress, _log.Stable) : _log.Stable;

    // Committed entries are handed out to apply up to here: with asynchronous writes, only what this node holds
    // durably, so that a restart never finds applied entries missing from its own log.
    private LogIndex ApplyLimit => _config.AsyncStorageWrites ? LogIndex.Min(_log.Committed, _log.Stable) : _log.Committed;

    /// <summary>
    /// With <see cref="RaftConfig.AsyncStorageWrites"/>: the host made the log durable up to the entry at
    /// <paramref name="index"/> of <paramref name="term"/> (the last entry of a Ready it persisted, with that Ready's
    /// hard state and every earlier Ready's). A leader counts its own copy toward the commit quorum only now, and
    /// committed entries are handed out to apply only up to here. A report for entries replaced since (a follower's
    /// conflicting suffix, a snapshot) is ignored: only a matching term proves the stored prefix is ours.
    /// </summary>
    public void ReportPersisted(LogIndex index, Term term)
    {
        EnsureNoReadyInProgress();
        if (!_config.AsyncStorageWrites)
        {
            throw new InvalidOperationException("ReportPersisted needs AsyncStorageWrites: otherwise the host persists before Advance");
        }

        _log.PersistedTo(index, term);
        if (_role == RaftRole.Leader && _tracker.Progress.TryGetValue(Id, out var self) && self.MaybeUpdate(_log.Stable) && MaybeCommit())
        {
            _commitBroadcastPending = true;
        }
    }

    private void EnsureNoReadyInProgress()
    {
        if (_readyInProgress)
        {
            // Ready's lists are views of the log; input now could change what the host is persisting.
            throw new InvalidOperationException("the node takes no input between GetReady and Advance");
        }
    }

    public Ready GetReady()
    {
        if (_readyInProgress)
        {
            throw new InvalidOperationException("GetReady called again before Advance");
        }

        FlushCommitBroadcast();
        _readyInProgress = true;
        var ready = new Ready();
        var soft = CurrentSoftState;
        if (soft != _previousSoftState)
        {
            ready.SoftState = soft;
        }

        var hard = CurrentHardState;
        if (hard != _previousHardState)
        {
            ready.HardState = hard;
        }

        ready.Snapshot = _pendingSnapshot;
        ready.Entries = _config.AsyncStorageWrites ? _log.TakeUnpersisted() : _log.Unstable();
        if (_messages.Count > 0)
        {
            ready.Messages = _messages;
            _messages = [];
        }

        if (_messagesAfterPersist.Count > 0)
        {
            ready.MessagesAfterPersist = _messagesAfterPersist;
            _messagesAfterPersist = [];
        }

        if (_readStates.Count > 0)
        {
            ready.ReadStates = _readStates;
            _readStates = [];
        }

        if (_log.Applied < ApplyLimit)
        {
            ready.CommittedEntries = _log.CommittedView(_log.Applied.Next, ApplyLimit, _config.CommittedBytesPerReadyMax);
        }

        return ready;
    }

    public void Advance(Ready ready)
    {
        ArgumentNullException.ThrowIfNull(ready);
        if (!_readyInProgress)
        {
            throw new InvalidOperationException("Advance called without GetReady");
        }

        _readyInProgress = false;
        if (ready.SoftState is { } soft)
        {
            _previousSoftState = soft;
        }

        if (ready.HardState is { } hard)
        {
            _previousHardState = hard;
        }

        if (ready.Snapshot is not null && ReferenceEquals(ready.Snapshot, _pendingSnapshot))
        {
            _pendingSnapshot = null;
        }

        if (ready.Entries.Count > 0 && !_config.AsyncStorageWrites)
        {
            var last = ready.Entries[^1];
            _log.StableTo(last.Index, last.Term);
            if (_role == RaftRole.Leader && _tracker.Progress.TryGetValue(Id, out var self) && self.MaybeUpdate(_log.Stable) && MaybeCommit())
            {
                _commitBroadcastPending = true;
            }
        }

        if (ready.CommittedEntries.Count > 0)
        {
            var lastApplied = ready.CommittedEntries[^1].Index;
            foreach (var entry in ready.CommittedEntries)
            {
                if (entry.Type == EntryType.ConfChange && entry.Index > _confIndex)
                {
                    ApplyConfChange(entry);
                }
            }

            if (lastApplied > _log.Applied && lastApplied <= _log.Committed)
            {
                _log.AppliedTo(lastApplied);
            }
        }
    }

    private void ApplyConfChange(Entry entry)
    {
        _confIndex = entry.Index;
        if (!ConfChange.TryDecode(entry.Data.Span, out var change))
        {
            // Only a leader's own encoder writes these; a malformed one in a committed log is a bug upstream.
            throw new InvariantViolationException($"undecodable conf change at index {entry.Index}");
        }

        _tracker.Config = _tracker.Config.Apply(change!);
        if (_role != RaftRole.Leader)
        {
            return;
        }

        if (change!.Type == ConfChangeType.RemoveNode)
        {
            _tracker.Progress.Remove(change.NodeId);
            if (change.NodeId == _transferTarget)
            {
                _transferTarget = NodeId.None;
            }

            if (change.NodeId == Id)
            {
                // A removed leader steps down once the change commits (thesis §4.2.2).
                BecomeFollower(_term, NodeId.None);
                return;
            }
        }
        else if (_tracker.Progress.TryGetValue(change.NodeId, out var existing))
        {
            existing.IsLearner = change.Type == ConfChangeType.AddLearner;
        }
        else
        {
            _tracker.Progress[change.NodeId] = new Progress(_log.LastIndex.Next, _config.InflightMessagesMax, change.Type == ConfChangeType.AddLearner)
            {
                RecentActive = true,
            };
        }

        // The quorum changed: more may be committed, and new members need the log.
        if (MaybeCommit())
        {
            _commitBroadcastPending = true;
        }
        else
        {
            ReleaseConfirmedReads();
        }

        foreach (var (id, progress) in _tracker.Progress)
        {
            if (id != Id && progress.Match == LogIndex.Zero)
            {
                SendAppend(id, progress, sendIfEmpty: true);
            }
        }
    }

    private void Reset(Term term)
    {
        if (term != _term)
        {
            _term = term;
            _vote = NodeId.None;
        }

        _leader = NodeId.None;
        _electionElapsed = 0;
        _heartbeatElapsed = 0;
        RandomizeElectionTimeout();
        _transferTarget = NodeId.None;
        _tracker.ResetVotes();
        _pendingConfIndex = LogIndex.Zero;
        _uncommittedBytes = 0;
        _leaseUntilTick = 0;
        _reads.Reset();
        _tracker.ResetProgress(Id, _log.LastIndex.Next, _log.Stable, _config.InflightMessagesMax);
    }

    private void BecomeFollower(Term term, NodeId leader)
    {
        Reset(term);
        _role = RaftRole.Follower;
        _leader = leader;
        if (!leader.IsNone)
        {
            HeardFromLeader(leader);
        }
    }

    private void BecomePreCandidate()
    {
        Invariant.Check(_role != RaftRole.Leader, "a leader cannot become a pre-candidate");
        _tracker.ResetVotes();
        _leader = NodeId.None;
        _role = RaftRole.PreCandidate;
    }

    private void BecomeCandidate()
    {
        Invariant.Check(_role != RaftRole.Leader, "a leader cannot become a candidate");
        _role = RaftRole.Candidate;
        Reset(_term.Next);
        _vote = Id;
    }

    private void BecomeLeader()
    {
        Invariant.Check(_role == RaftRole.Candidate, "only a candidate becomes leader");
        Reset(_term);
        _role = RaftRole.Leader;
        _leader = Id;
        _leaderLostTick = -1;
        _fastCampaignUntilTick = 0;
        foreach (var (id, progress) in _tracker.Progress)
        {
            progress.RecentActive = true;
            if (id == Id)
            {
                progress.BecomeReplicate();
            }
        }

        // Conf changes already in the log may be uncommitted: no new change until they are applied.
        _pendingConfIndex = _log.LastIndex;

        // The no-op commits everything before it and tells us the commit index is current (thesis §6.4).
        _log.Append(new Entry(_term, _log.LastIndex.Next, EntryType.Normal, ReadOnlyMemory<byte>.Empty));
        AfterLeaderAppend();
    }

    private void Send(Message message)
    {
        // Anything that vouches for our term, vote or log leaves only after that state is durable (thesis §3.8).
        if (message.Type is MessageType.Vote or MessageType.VoteResponse or MessageType.AppendResponse)
        {
            if (message.Type == MessageType.AppendResponse && !message.Reject && _messagesAfterPersist.Count > 0 &&
                _messagesAfterPersist[^1] is { Type: MessageType.AppendResponse, Reject: false } previous &&
                previous.To == message.To && previous.Term == message.Term)
            {
                // Several appends handled in one Ready: one acknowledgement, of the highest index, answers them all.
                // The leader's log is append-only within its term, so holding the higher index implies the lower.
                _messagesAfterPersist[^1] = message.Index >= previous.Index ? message : previous;
                return;
            }

            _messagesAfterPersist.Add(message);
        }
        else
        {
            _messages.Add(message);
        }
    }

    public RaftStatus GetStatus()
    {
        // Built on every pass of a leader's loop (the host publishes it): one array, sorted in place, no LINQ.
        ProgressStatus[] progress = [];
        if (_role == RaftRole.Leader)
        {
            progress = new ProgressStatus[_tracker.Progress.Count];
            int n = 0;
            foreach (var (id, p) in _tracker.Progress)
            {
                progress[n++] = new ProgressStatus(id, p.IsLearner, p.Match, p.Next, StateName(p.State), p.RecentActive);
            }

            Array.Sort(progress, static (a, b) => a.Id.Value.CompareTo(b.Id.Value));
        }

        return new RaftStatus(Id, _role, _term, _vote, _leader, _log.Committed, _log.Applied, _log.FirstIndex, _log.LastIndex, _tracker.Config, _transferTarget, progress);
    }

    private static string StateName(ProgressState state) => state switch
    {
        ProgressState.Probe => nameof(ProgressState.Probe),
        ProgressState.Replicate => nameof(ProgressState.Replicate),
        ProgressState.Snapshot => nameof(ProgressState.Snapshot),
        _ => state.ToString(),
    };

    /// <summary>Checks the expensive invariants; the simulator calls it after every step.</summary>
    public void AssertInvariants()
    {
        _log.AssertInvariants();
        Invariant.Check(_log.LastTerm <= _term, "last log term beyond current term");
        Invariant.Check((_role == RaftRole.Leader) == (_leader == Id), "leader field disagrees with role");
        Invariant.Check(_role != RaftRole.Candidate || _vote == Id, "candidate has not voted for itself");
        if (_role == RaftRole.Leader)
        {
            foreach (var (id, p) in _tracker.Progress)
            {
                Invariant.Check(p.Match < p.Next, $"progress of {id}: match {p.Match} not below next {p.Next}");
                Invariant.Check(p.Match <= _log.LastIndex, $"progress of {id}: match beyond the leader's log");
            }
        }
    }
}

/// <summary>Deterministic PRNG (SplitMix64): the core's only source of randomness, seeded from config.</summary>
internal sealed class SplitMix64
{
    private ulong _state;

    public SplitMix64(ulong seed) => _state = seed;

    public ulong Next()
    {
        ulong z = _state += 0x9E3779B97F4A7C15UL;
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9UL;
        z = (z ^ (z >> 27)) * 0x94D049BB133111EBUL;
        return z ^ (z >> 31);
    }

    public ulong NextBelow(ulong bound) => bound == 0 ? 0 : Next() % bound;
}
