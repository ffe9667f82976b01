using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using Stcache.Cache;
using Stcache.Node;
using Stcache.Raft;
using Stcache.Storage;

namespace Stcache.Simulation.Sim;

/// <summary>What the simulator does with a node's effects and scheduled completions.</summary>
internal interface ISimEnvironment
{
    long Now { get; }

    void Send(Message message);

    /// <summary>Runs <paramref name="action"/> after <paramref name="delayMs"/> of virtual time.</summary>
    void Schedule(long delayMs, Action action);

    int Random(int low, int high);

    void Trace(string line);

    /// <summary>The virtual time a paused process resumes at, or null while <paramref name="id"/> runs.</summary>
    long? PausedUntil(NodeId id);
}

/// <summary>A node's wall clock: virtual time, with its own offset, drift and NTP steps.</summary>
internal sealed class SimClock(ISimEnvironment environment) : TimeProvider
{
    private static readonly DateTimeOffset s_epoch = new(2026, 1, 1, 0, 0, 0, TimeSpan.Zero);

    /// <summary>Virtual time 0 in Unix ms: the true time of a simulated instant is this plus its virtual time.</summary>
    public static long EpochUnixMs => s_epoch.ToUnixTimeMilliseconds();

    /// <summary>Offset from true virtual time (NTP steps move it, either way).</summary>
    public long OffsetMs { get; set; }

    /// <summary>Rate error in parts per million.</summary>
    public int DriftPerMillion { get; set; }

    public long NowMs => environment.Now + OffsetMs + (environment.Now * DriftPerMillion / 1_000_000);

    public override DateTimeOffset GetUtcNow() => s_epoch.AddMilliseconds(NowMs);

    public override long TimestampFrequency => 1000;

    // Monotonic: never steps; only drifts.
    public override long GetTimestamp() => environment.Now + (environment.Now * DriftPerMillion / 1_000_000);
}

/// <summary>
/// One simulated node: the real <see cref="NodeDriver"/>, <see cref="WriteAheadLog"/>, <see cref="FileSnapshotStore"/>
/// and <see cref="CacheStateMachine"/>, over a <see cref="SimFileSystem"/> that survives its crashes. The simulator
/// plays the host: it hands inputs in, performs the effects (messages, snapshot writes and sends, storage retries)
/// as scheduled events, and checks what the node does.
/// </summary>
internal sealed partial class SimNode : INodeEffects
{
    private const string WalDirectory = "/data/wal";
    private const string SnapshotDirectory = "/data/snapshots";

    private readonly ISimEnvironment _env;
    private readonly SafetyOracle _oracle;
    private readonly SimNodeSettings _settings;
    private readonly Queue<Action<NodeDriver>> _backlog = new();
    private readonly HashSet<SimProposal> _outstanding = [];
    private readonly HashSet<Term> _completenessChecked = [];
    private FileSnapshotStore? _snapshots;
    private int _incarnation;
    private long _ticks;
    private int _starts;

    public SimNode(RaftConfig config, SimNodeSettings settings, SafetyOracle oracle, ISimEnvironment env, SplitMix random)
    {
        Config = config;
        _settings = settings;
        _oracle = oracle;
        _env = env;
        Disk = new SimFileSystem(random);
        Log = new DurableLog(config.Id, oracle);
        Clock = new SimClock(env);
    }

    public NodeId Id => Config.Id;

    public RaftConfig Config { get; }

    public SimFileSystem Disk { get; }

    /// <summary>What the node's log acknowledged as durable (survives crashes; rebuilt and checked at restart).</summary>
    public DurableLog Log { get; }

    public SimClock Clock { get; }

    /// <summary>Null while the node is down.</summary>
    public NodeDriver? Driver { get; private set; }

    /// <summary>The Raft core, null while down.</summary>
    public RaftNode? Node => Driver?.Core;

    public CacheStateMachine? Cache { get; private set; }

    public bool IsUp => Driver is not null;

    /// <summary>Removed from the cluster and shut down for good.</summary>
    public bool IsStopped { get; private set; }

    /// <summary>The driver waits for a completion (a disk that refuses writes, or its own snapshot).</summary>
    public bool IsWaiting => Driver is { Waiting: not DriverWait.None };

    /// <summary>The node refused to start (corrupt storage) and waits for an operator.</summary>
    public string? StartFailure { get; private set; }

    public ConfState ConfState { get; private set; } = ConfState.Empty;

    /// <summary>The configuration before the last change this node applied; null when unknown (after a restart or
    /// a snapshot).</summary>
    public ConfState? PreviousConfState { get; private set; }

    public LogIndex Applied { get; private set; }

    public bool LearnedRemoval { get; private set; }

    public int SnapshotsTaken { get; private set; }

    public int SnapshotsInstalled { get; private set; }

    public int StorageRefusals { get; private set; }

    /// <summary>Called after a conf change entry is applied here.</summary>
    public Action<SimNode, ConfChange>? ConfChangeApplied { get; set; }

    /// <summary>Called after every entry applied here (digest checks).</summary>
    public Action<SimNode, Entry>? EntryApplied { get; set; }

    /// <summary>Called when the node learns it was removed.</summary>
    public Action<SimNode>? RemovedFromCluster { get; set; }

    /// <summary>Called with a follower's access report for the leader (the host would send it over HTTP).</summary>
    public Action<NodeId, IReadOnlyList<byte[]>>? AccessReported { get; set; }
    /// <summary>Called when the process goes away (crash, failed start, shutdown), before its state is dropped: its
    /// core is still readable.</summary>
    public Action<SimNode>? GoingDown { get; set; }

    /// <summary>Starts (or restarts) the node from its disk. False if its storage is corrupt: it refuses to start.</summary>
    public bool Start()
    {
        if (IsUp || IsStopped)
        {
            throw new InvalidOperationException($"node {Id} cannot start");
        }

        _incarnation++;
        _ticks = 0;
        ConfState = ConfState.Empty;
        PreviousConfState = null;
        Applied = LogIndex.Zero;
        _completenessChecked.Clear();
        var config = Config with { RandomSeed = Config.RandomSeed + ((ulong)_starts++ * 7919), AsyncStorageWrites = _settings.WalPipeline };
        var options = new RaftHostOptions
        {
            Raft = config,
            Self = new MemberInfo(Id.Value, "n" + Id.Value, "sim:" + Id.Value, "sim:" + Id.Value),
            TickInterval = TimeSpan.FromMilliseconds(_settings.TickMs),
            SnapshotInterval = TimeSpan.FromMilliseconds(_settings.TickMs * _settings.SnapshotIntervalTicks),
            SnapshotThreshold = (ulong)Math.Max(1, _settings.SnapshotThresholdEntries),
            SnapshotTrailingEntries = _settings.SnapshotTrailingEntries,
            LearnerTrailingEntriesMax = _settings.LearnerTrailingEntriesMax,
            PipelineFollowerWrites = _settings.WalPipelineFollowers,
        };
        try
        {
            var wal = WriteAheadLog.Open(Disk, WalDirectory, new WalOptions
            {
                SegmentSizeBytes = _settings.SegmentSizeBytes,
                Preallocate = _settings.Preallocate,
                PrepareSegmentsAhead = false,
            }, NullLogger.Instance);
            Log.Attach(wal);
            _snapshots = FileSnapshotStore.Open(Disk, SnapshotDirectory, new SnapshotStoreOptions { Retain = 2 }, NullLogger.Instance);
            Cache = new CacheStateMachine();
            Driver = new NodeDriver(options, Log, _snapshots, this, Cache, new MemberBook(), NullLogger.Instance, Clock, (ulong)_env.Random(0, int.MaxValue) << 20);
        }
        catch (Exception e) when (e is StorageCorruptionException or InvalidDataException)
        {
            // Exactly as in production: a node whose storage fails its checksums refuses to start.
            Log.Detach();
            Driver = null;
            Cache = null;
            StartFailure = e.Message;
            _env.Trace($"n{Id} refuses to start: {e.Message}");
            return false;
        }
        catch (Exception e) when (e is SimCrashException or IOException)
        {
            // The disk is full or failing at start, or the power failed again: the process exits; restart later.
            _env.Trace($"n{Id} failed to start: {e.Message}");
            Disk.Crash();
            Down(crashed: true);
            return false;
        }

        StartFailure = null;
        var state = Log;
        _env.Trace($"n{Id} start term={state.HardState.Term} vote={state.HardState.Vote} snapshot={state.SnapshotMetadata.Index} last={state.LastIndex} applied={Applied}");
        Run(_ => { });
        return true;
    }

    /// <summary>The process dies (power loss): unsynced writes are lost or torn, volatile state is gone, and waiting
    /// clients learn nothing.</summary>
    public void Crash()
    {
        if (Driver is null)
        {
            return;
        }

        _env.Trace($"n{Id} crash");
        Disk.Crash();
        Down(crashed: true);
    }

    /// <summary>The node was removed from the cluster and shuts itself down for good.</summary>
    public void Stop()
    {
        if (Driver is not null)
        {
            _env.Trace($"n{Id} stops (removed)");
            Down(crashed: false);
        }

        IsStopped = true;
    }

    /// <summary>An operator wiped the data directory of this incarnation (its id is never used again).</summary>
    public void Wipe()
    {
        if (IsUp)
        {
            throw new InvalidOperationException("wipe a node that is down");
        }

        Disk.Wipe();
        Log.Reset();
        StartFailure = null;
    }

    /// <summary>Proposes a cache command. The callback gets the result, or the error (null result).</summary>
    public ProposeStatus Propose(CacheCommand command, Action<SimProposal> done, out SimProposal proposal) =>
        ProposeEntry(command.Encode(), done, out proposal);

    /// <summary>Proposes an encoded cache entry (a <see cref="WriteCommand"/> the caller stamped as the leader).</summary>
    public ProposeStatus ProposeEntry(ReadOnlyMemory<byte> entry, Action<SimProposal> done, out SimProposal proposal)
    {
        proposal = new SimProposal(this, done);
        if (Driver is null || IsWaiting || InSync)
        {
            return ProposeStatus.Overloaded;
        }

        var request = proposal;
        Run(driver =>
        {
            driver.Propose(entry, request);
            if (!request.Answered && request.Index != LogIndex.Zero)
            {
                request.Accepted();
            }
        });
        if (request.Answered && request.Error is not null && request.Index == LogIndex.Zero)
        {
            return request.Error.Kind switch
            {
                HostErrorKind.NotLeader or HostErrorKind.NoLeader => ProposeStatus.NotLeader,
                HostErrorKind.TransferInProgress => ProposeStatus.TransferInProgress,
                _ => ProposeStatus.Overloaded,
            };
        }

        return ProposeStatus.Accepted;
    }

    /// <summary>Proposes several encoded entries as one batch, as the host proposes what queued up while its loop was
    /// busy; the batch is accepted or refused as a whole. <paramref name="done"/>[i] learns the outcome of entry i.</summary>
    public ProposeStatus ProposeEntries(IReadOnlyList<ReadOnlyMemory<byte>> entries, IReadOnlyList<Action<SimProposal>> done, out SimProposal[] proposals)
    {
        var requests = proposals = [.. done.Select(d => new SimProposal(this, d))];
        if (Driver is null || IsWaiting || InSync)
        {
            return ProposeStatus.Overloaded;
        }

        Run(driver =>
        {
            driver.Propose(entries, requests);
            foreach (var request in requests)
            {
                if (!request.Answered && request.Index != LogIndex.Zero)
                {
                    request.Accepted();
                }
            }
        });
        return requests.Length > 0 && requests[0] is { Answered: true, Error: { } error, Index.Value: 0 }
            ? error.Kind switch
            {
                HostErrorKind.NotLeader or HostErrorKind.NoLeader => ProposeStatus.NotLeader,
                HostErrorKind.TransferInProgress => ProposeStatus.TransferInProgress,
                _ => ProposeStatus.Overloaded,
            }
            : ProposeStatus.Accepted;
    }

    /// <summary>A linearizable read of <paramref name="key"/>: the callback gets the value once the barrier passed.</summary>
    public bool Read(string key, bool lease, Action<bool, string?> done)
    {
        if (Driver is null || IsWaiting || InSync)
        {
            return false;
        }

        var request = new SimRead(this, key, done);
        Run(driver =>
        {
            driver.ReadBarrier(lease, request);
            request.Started = !request.Failed;
        });
        return !request.Failed;
    }

    /// <summary>A read barrier answered with its read point (index and the leader's time); false if refused at once.</summary>
    public bool ReadPoint(bool lease, Action<ReadPoint?> done)
    {
        if (Driver is null || IsWaiting)
        {
            return false;
        }

        var request = new SimReadPoint(done);
        Run(driver =>
        {
            driver.ReadBarrier(lease, request);
            request.Started = !request.Failed;
        });
        return !request.Failed;
    }

    /// <summary>Calls back once this node applied <paramref name="index"/> (false if it failed); false if down.</summary>
    public bool WaitForApplied(LogIndex index, Action<bool> done)
    {
        if (Driver is null || IsWaiting || InSync)
        {
            return false;
        }

        var request = new SimWait(done);
        Run(driver => driver.WaitForApplied(index, request));
        return true;
    }

    public ProposeStatus ChangeMembership(ConfChange change)
    {
        var status = ProposeStatus.Overloaded;
        if (Driver is null || IsWaiting || InSync)
        {
            return status;
        }

        var request = new SimProposal(this, _ => { });
        Run(driver => driver.ChangeMembership(change, request));
        if (request.Answered && request.Index == LogIndex.Zero)
        {
            // Adding a removed id is refused for good; anything else is worth another try.
            return request.Error?.Kind == HostErrorKind.MemberIdRemoved ? ProposeStatus.Rejected : ProposeStatus.ConfChangeInProgress;
        }

        return ProposeStatus.Accepted;
    }

    public ProposeStatus TransferLeadership(NodeId target)
    {
        var status = ProposeStatus.Overloaded;
        if (Driver is null || IsWaiting || InSync)
        {
            return status;
        }

        Run(driver => status = driver.TransferLeadership(target));
        return status;
    }

    /// <summary>The node's Raft clock moved on by <paramref name="count"/> ticks (more than one after a pause or a
    /// stalled timer: the driver delivers a few late ticks before anything else and collapses a stall's burst to one,
    /// as production's host does).</summary>
    public void Tick(int count = 1)
    {
        if (Driver is null)
        {
            return;
        }

        _ticks += count;
        long due = _ticks;
        Run(driver => driver.Tick(due));
    }

    public void Step(Message message) => Run(driver => driver.Step(message));

    public void ReportSnapshot(NodeId peer, bool succeeded) => Run(driver => driver.ReportSnapshot(peer, succeeded));

    public void ReportUnreachable(NodeId peer) => Run(driver => driver.ReportUnreachable(peer));

    /// <summary>The transport saw the connection to <paramref name="peer"/> reset or a dial to it refused.</summary>
    public void ReportConnectionLost(NodeId peer) => Run(driver => driver.ReportConnectionLost(peer));

    public void ReportNotAMember(NodeId peer, LogIndex asOf) => Run(driver => driver.ReportNotAMember(peer, asOf));

    /// <summary>Lets the driver process what the core has pending (after a test fed the core directly).</summary>
    public void Process() => Run(_ => { });

    /// <summary>The cache as text, for scenarios.</summary>
    public CacheView Machine => new(this);

    /// <summary>Checks the node's own invariants.</summary>
    public void AssertInvariants()
    {
        if (Node is not { } node || IsWaiting)
        {
            return;
        }

        node.AssertInvariants();
        _oracle.ObserveRole(Id, node.Role, node.Term);
        if (Applied > node.CommitIndex)
        {
            throw new SimulationFailureException($"node {Id}: applied {Applied} beyond commit {node.CommitIndex}");
        }

        if (Cache!.AppliedIndex != Applied)
        {
            throw new SimulationFailureException($"node {Id}: cache applied {Cache.AppliedIndex} but the driver reported {Applied}");
        }
    }

    /// <summary>A digest of the cache's state for the given keys (value, version, expiry, and what WATCH would record:
    /// for an absent key its bucket of the replicated deletion record), its log time, accounted memory and memory
    /// policy.</summary>
    public ulong Digest(IEnumerable<string> keys)
    {
        ulong hash = 14695981039346656037UL;
        hash = (hash ^ (ulong)Cache!.LastLogTimeUnixMs) * 1099511628211UL;
        hash = (hash ^ (ulong)Cache.UsedMemoryBytes) * 1099511628211UL;
        hash = (hash ^ (ulong)Cache.MaxMemoryBytes ^ ((ulong)Cache.Policy << 56)) * 1099511628211UL;
        foreach (string key in keys)
        {
            if (Cache!.TryGet(key, out var entry))
            {
                foreach (byte b in Encoding.UTF8.GetBytes(key))
                {
                    hash = (hash ^ b) * 1099511628211UL;
                }

                foreach (byte b in entry.Value)
                {
                    hash = (hash ^ b) * 1099511628211UL;
                }

                hash = (hash ^ entry.Version) * 1099511628211UL;
                hash = (hash ^ (ulong)entry.ExpiresAtUnixMs) * 1099511628211UL;
            }

            hash = (hash ^ Cache.WatchToken(Encoding.UTF8.GetBytes(key))) * 1099511628211UL;
        }

        return hash;
    }

    // ---------------------------------------------------------------- driving the driver

    /// <summary>Hands one input to the driver and lets it process; while it waits, inputs queue (a host that
    /// awaits a disk does not read its socket either).</summary>
    private void Run(Action<NodeDriver> input)
    {
        if (Driver is null)
        {
            return;
        }

        if (Driver.Waiting != DriverWait.None || InSync)
        {
            _backlog.Enqueue(input);
            return;
        }

        bool outermost = BeginRun();
        Guarded(driver =>
        {
            input(driver);
            driver.Process();
            while (driver.Waiting == DriverWait.None && _backlog.TryDequeue(out var queued))
            {
                queued(driver);
                driver.Process();
            }

            AfterProcess(driver);
        });
        EndRun(outermost);
    }

    private void Guarded(Action<NodeDriver> action)
    {
        var driver = Driver!;
        try
        {
            action(driver);
        }
        catch (SimCrashException)
        {
            _env.Trace($"n{Id} power loss during a sync");
            Disk.Crash();
            Down(crashed: true);
        }
        catch (IOException e)
        {
            // The disk failed outside the retried log save (snapshot install, compaction): the host's loop stops
            // and the process exits, as in production; a supervisor restarts it.
            _env.Trace($"n{Id} stops on a storage error: {e.Message}");
            Disk.Crash();
            Down(crashed: true);
        }
    }

    private void AfterProcess(NodeDriver driver)
    {
        if (!ReferenceEquals(driver, Driver))
        {
            return;
        }

        switch (driver.Waiting)
        {
            case DriverWait.StorageRetry:
                StorageRefusals++;
                int incarnation = _incarnation;
                long delay = Math.Max(1, (long)driver.StorageRetryDelay.TotalMilliseconds);
                _env.Trace($"n{Id} disk refused a batch ({driver.StorageError}); retry in {delay}ms");
                _env.Schedule(delay, () =>
                {
                    if (_incarnation == incarnation && Driver is { } current)
                    {
                        current.RetryStorage();
                        Run(_ => { });
                    }
                });
                break;
            case DriverWait.None when driver.Core.Role == RaftRole.Leader && _completenessChecked.Add(driver.Core.Term):
                _oracle.CheckLeaderCompleteness(Id, driver.Core.Term, Log);
                break;
        }
    }

    /// <summary>The incarnation ends: <paramref name="crashed"/> when the process died (its WAL is abandoned, not
    /// disposed: see <see cref="DurableLog.Abandon"/>), false when it stopped cleanly.</summary>
    private void Down(bool crashed)
    {
        GoingDown?.Invoke(this);
        _incarnation++;
        Driver = null;
        Cache = null;
        _snapshots = null;
        _backlog.Clear();
        DropHeld();
        DropWriterQueue();
        if (crashed)
        {
            Log.Abandon();
        }
        else
        {
            Log.Detach();
        }

        var orphans = _outstanding.ToList();
        _outstanding.Clear();
        foreach (var proposal in orphans)
        {
            proposal.Fail(new RaftHostException(HostErrorKind.ShuttingDown, "node crashed", outcomeUnknown: true));
        }
    }

    // ---------------------------------------------------------------- effects

    void INodeEffects.Send(Message message) => SendEffect(message);

    void INodeEffects.SendSnapshot(Message message)
    {
        // The host streams the snapshot file off the loop; here it is read at once and travels as a message.
        var wanted = message.Snapshot!.Metadata;
        Snapshot? snapshot = null;
        try
        {
            snapshot = _snapshots?.LoadNewest();
        }
        catch (IOException)
        {
        }

        if (snapshot is null || snapshot.Metadata.Index != wanted.Index || snapshot.Metadata.Term != wanted.Term)
        {
            _env.Trace($"n{Id} has no snapshot {wanted.Index}/{wanted.Term} to send to {message.To}");
            int incarnation = _incarnation;
            var to = message.To;
            _env.Schedule(1, () =>
            {
                if (_incarnation == incarnation)
                {
                    ReportSnapshot(to, false);
                }
            });
            return;
        }

        _env.Send(message with { Snapshot = snapshot });
    }

    void INodeEffects.SaveSnapshot(SnapshotJob job)
    {
        int incarnation = _incarnation;
        _env.Schedule(_env.Random(0, _settings.SnapshotWriteMsMax), () =>
        {
            if (_incarnation != incarnation || Driver is null)
            {
                return; // the process died while writing it; the temporary file is removed at the next start
            }

            job.Run();
            if (job.Error is SimCrashException)
            {
                _env.Trace($"n{Id} power loss while writing a snapshot");
                Disk.Crash();
                Down(crashed: true);
                return;
            }

            if (job.Error is null)
            {
                SnapshotsTaken++;
                _env.Trace($"n{Id} snapshot {job.Metadata.Index}/{job.Metadata.Term} written");
            }
            else
            {
                _env.Trace($"n{Id} snapshot {job.Metadata.Index} failed: {job.Error.Message}");
            }

            var driver = Driver;
            Guarded(d => d.SnapshotSaved(job));
            if (ReferenceEquals(driver, Driver))
            {
                Run(_ => { });
            }
        });
    }

    void INodeEffects.LeadershipChanged(LeadershipChange change)
    {
        _env.Trace($"n{Id} {change.Role} term={change.Term} leader={change.Leader}");
        _oracle.ObserveRole(Id, change.Role, change.Term);

        // Whoever is woken by a leadership change reads the leader from Status: it must already say so, or the
        // waiter goes back to sleep until its deadline (a lost wake-up).
        if (Driver is { Status: var status } && (status.Leader != change.Leader || status.Term != change.Term))
        {
            throw new SimulationFailureException(
                $"node {Id}: leadership changed to {change.Leader} at term {change.Term}, but its status still says leader {status.Leader} at term {status.Term}");
        }
    }

    void INodeEffects.Removed()
    {
        LearnedRemoval = true;
        _env.Trace($"n{Id} learned it was removed");
        RemovedFromCluster?.Invoke(this);
    }

    void INodeEffects.AccessReport(NodeId leader, IReadOnlyList<byte[]> keys) => AccessReported?.Invoke(leader, keys);

    void INodeEffects.Applied(Entry entry)
    {
        if (entry.Index != Applied.Next)
        {
            throw new SimulationFailureException($"node {Id}: applied {entry.Index} after {Applied} (not contiguous)");
        }

        // Before the driver exists (recovery applies up to the durable commit), the durable term bounds the term
        // in which that commit was learned.
        _oracle.ObserveApplied(Id, Driver?.Core.Term ?? Log.HardState.Term, entry, _env.Now, ConfState, PreviousConfState);
        Applied = entry.Index;
        if (entry.Type == EntryType.ConfChange && ConfChange.TryDecode(entry.Data.Span, out var change) && change is not null)
        {
            PreviousConfState = ConfState;
            ConfState = ConfState.Apply(change);
            ConfChangeApplied?.Invoke(this, change);
        }

        EntryApplied?.Invoke(this, entry);
    }

    void INodeEffects.SnapshotRestored(SnapshotMetadata metadata, bool installed)
    {
        if (installed && metadata.Index <= Applied)
        {
            throw new SimulationFailureException($"node {Id}: installed snapshot {metadata.Index} at or below applied {Applied}");
        }

        _oracle.ObserveSnapshot(Id, metadata);
        ConfState = metadata.ConfState;
        PreviousConfState = null;
        Applied = metadata.Index;
        if (installed)
        {
            SnapshotsInstalled++;
            _env.Trace($"n{Id} installed snapshot {metadata.Index}/{metadata.Term} {metadata.ConfState}");
        }
    }

    internal void Track(SimProposal proposal, bool outstanding)
    {
        if (outstanding)
        {
            _outstanding.Add(proposal);
        }
        else
        {
            _outstanding.Remove(proposal);
        }
    }
}

/// <summary>A write proposed through a <see cref="SimNode"/>; answered once.</summary>
internal sealed class SimProposal(SimNode node, Action<SimProposal> done) : ProposalRequest
{
    public bool Answered { get; private set; }

    public ApplyResult? Result { get; private set; }

    public RaftHostException? Error { get; private set; }

    public SimNode Node => node;

    public void Accepted() => node.Track(this, true);

    public override void Complete(ApplyResult result)
    {
        if (Answered)
        {
            return;
        }

        Answered = true;
        Result = result;
        node.Track(this, false);
        done(this);
    }

    /// <summary>Refused when proposed (never given an index): the proposer learns it from the return value, and
    /// the callback is not called.</summary>
    public override void Fail(RaftHostException error)
    {
        if (Answered)
        {
            return;
        }

        Answered = true;
        Error = error;
        node.Track(this, false);
        if (Index != LogIndex.Zero)
        {
            done(this);
        }
    }
}

/// <summary>A read barrier; reads the key from the node's cache when it passes.</summary>
internal sealed class SimRead(SimNode node, string key, Action<bool, string?> done) : NodeRequest<ReadPoint>
{
    public bool Failed { get; private set; }

    /// <summary>Set once the driver took the read; a failure before that is a refusal the reader learns from the
    /// return value, without the callback.</summary>
    public bool Started { get; set; }

    public override void Complete(ReadPoint result)
    {
        // Served at the read's time (the leader's when it confirmed the index), as the server does.
        string? value = node.Cache!.TryGet(key, out var entry, result.TimeUnixMs) ? Encoding.UTF8.GetString(entry.Value) : null;
        done(true, value);
    }

    public override void Fail(RaftHostException error)
    {
        Failed = true;
        if (Started)
        {
            done(false, null);
        }
    }
}

/// <summary>A read barrier whose caller serves the read itself at the read point (null: failed).</summary>
internal sealed class SimReadPoint(Action<ReadPoint?> done) : NodeRequest<ReadPoint>
{
    public bool Failed { get; private set; }

    public bool Started { get; set; }

    public override void Complete(ReadPoint result) => done(result);

    public override void Fail(RaftHostException error)
    {
        Failed = true;
        if (Started)
        {
            done(null);
        }
    }
}

/// <summary>Reads a node's cache as text (null: absent, or the node is down).</summary>
internal readonly struct CacheView(SimNode node)
{
    public string? Get(string key) =>
        node.Cache is { } cache && cache.TryGet(key, out var entry) ? Encoding.UTF8.GetString(entry.Value) : null;
}

/// <summary>A wait for an applied index.</summary>
internal sealed class SimWait(Action<bool> done) : NodeRequest<LogIndex>
{
    public override void Complete(LogIndex result) => done(true);

    public override void Fail(RaftHostException error) => done(false);
}

/// <summary>Per-run node settings drawn from the seed.</summary>
internal sealed record SimNodeSettings
{
    public int TickMs { get; init; } = 10;

    public int SnapshotThresholdEntries { get; init; } = 20;

    public int SnapshotIntervalTicks { get; init; } = 1;

    public ulong SnapshotTrailingEntries { get; init; } = 5;

    public int LearnerTrailingEntriesMax { get; init; } = 5;

    public int SegmentSizeBytes { get; init; } = 16 * 1024;

    public bool Preallocate { get; init; }

    public int SnapshotWriteMsMax { get; init; } = 20;

    /// <summary>Simulated fsync latency range in milliseconds (max 0: a sync takes no time).</summary>
    public int FsyncLatencyMsMin { get; init; }

    public int FsyncLatencyMsMax { get; init; }

    /// <summary>Persist through a writer off the loop (<see cref="RaftConfig.AsyncStorageWrites"/>).</summary>
    public bool WalPipeline { get; init; }

    public bool WalPipelineFollowers { get; init; }
}
