using Stcache.Cache;
using Stcache.Raft;

namespace Stcache.Node;

/// <summary>Settings of one node (its <see cref="NodeDriver"/> and the host around it); validated at start.</summary>
public sealed record RaftHostOptions
{
    public required RaftConfig Raft { get; init; }

    public required MemberInfo Self { get; init; }

    public TimeSpan TickInterval { get; init; } = TimeSpan.FromMilliseconds(100);

    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>A snapshot is taken when both this much time passed and <see cref="SnapshotThreshold"/> entries were
    /// applied since the previous one (hashicorp/raft's SnapshotInterval and SnapshotThreshold). Measured in ticks
    /// (this divided by <see cref="TickInterval"/>), so a simulated node keeps the same policy.</summary>
    public TimeSpan SnapshotInterval { get; init; } = TimeSpan.FromSeconds(30);

    public ulong SnapshotThreshold { get; init; } = 8192;

    /// <summary>A snapshot is also taken, whatever <see cref="SnapshotInterval"/> says, once the entries applied
    /// since the previous one hold this many bytes in memory and at least a quarter of the cache's accounted memory
    /// (<see cref="CacheStateMachine.AppliedEntryBytes"/>): the Raft log keeps every entry in memory until a snapshot
    /// covers it, so a burst of writes between two timed snapshots held its data twice, once in the cache and once in
    /// the log. A quarter bounds the log to about a quarter of the data, and the snapshots' writing to four times the
    /// bytes written to the log. 0 turns this trigger off.</summary>
    public long SnapshotLogBytes { get; init; } = 16L << 20;

    /// <summary>The share of the cache's accounted memory the in-memory log may reach before a snapshot (see
    /// <see cref="SnapshotLogBytes"/>): 4 means a quarter.</summary>
    public const int SnapshotLogShareDivisor = 4;

    /// <summary>Eighths added to this node's <see cref="SnapshotLogBytes"/> threshold: 0, 1 or 2 by node id (1, 2, 3,
    /// then again). Every replica applies the same entries, so with one threshold all nodes crossed it at the same
    /// index and wrote their snapshots at the same moment, all contending for the disk and the cores the write path
    /// needs, under a steady load of 1 KiB writes about once a second (docs/PERFORMANCE.md, "Write tail latency,
    /// session 13"). Staggered, the leader and the nearest follower seldom write one together.</summary>
    public static long SnapshotLogStaggerEighths(NodeId id) => (long)((id.Value + 2) % 3);

    public ulong SnapshotTrailingEntries { get; init; } = 1024;

    /// <summary>Client inputs (proposals, reads, membership changes) waiting for the loop; a full queue makes
    /// clients wait (back-pressure) until their request timeout.</summary>
    public int InputQueueCapacity { get; init; } = 16_384;

    /// <summary>Peer messages, transport reports and ticks waiting for the loop, which takes them before client
    /// inputs. Generous so Raft traffic always gets in; beyond it an input is dropped, counted and logged.</summary>
    public int PeerInputQueueCapacity { get; init; } = 65_536;

    /// <summary>Inputs handled before the core is asked for a Ready; they then share one fsync (group commit).</summary>
    public int InputBatchMax { get; init; } = 4096;

    /// <summary>The production host only (the simulator has no threads): a peer message delivered while the loop
    /// is idle is handled by a pass on the delivering thread (the peer link's receive thread) instead of waking the
    /// loop. Off, every peer message is queued for the loop.</summary>
    public bool InlinePeerPasses { get; init; } = true;

    /// <summary>With <see cref="InlinePeerPasses"/>: a leader handles its peer messages inline too. Off (the
    /// default), only a follower (or candidate) does, and a leader queues them for its loop: on the quiet machine a
    /// leader that answered each acknowledgement where it arrived wrote 7-14% slower over HTTP
    /// (docs/PERFORMANCE.md, "Peer messages handled where they arrive, session 12").</summary>
    public bool InlinePeerPassesOnLeader { get; init; }

    /// <summary>With <see cref="InlinePeerPasses"/>: an append with entries is handled inline too. Off (the
    /// default), appends with entries (which a follower saves and syncs in the pass) are queued for the loop, and only
    /// the other messages (heartbeats and their read rounds, empty appends, responses, votes) are handled where they
    /// arrive: on the quiet machine, appends handled inline made the leader's batches smaller and cost 15-25% of the
    /// write rate at 16 HTTP connections (docs/PERFORMANCE.md, "Session 12 run").</summary>
    public bool InlinePeerAppends { get; init; }

    /// <summary>With <see cref="InlinePeerPasses"/>: a message the two options above leave to the loop (an append
    /// with entries on a follower, any message on a leader) is handled inline anyway while the host is idle: no pass
    /// runs, both input queues are empty, and the sender's next message has not already arrived. That spares the
    /// loop's wake-up on each hop of a lone write (docs/PERFORMANCE.md, "One-connection writes, session 14"); under
    /// load the queues are rarely empty and the loop still takes such messages in batches.</summary>
    public bool InlinePeerPassesWhenIdle { get; init; } = true;

    /// <summary>A pass on a delivering thread that answers exactly one write batch (a lone write's acknowledgement on
    /// an idle leader) resumes that batch's caller on the same thread once the pass has released the gate, instead of
    /// through a thread-pool work item. Off, every answered write is resumed on the thread pool.</summary>
    public bool ResumeOnDeliveringThread { get; init; } = true;

    /// <summary>The write batches a pass of the loop answers are resumed on the loop's thread once the pass has
    /// released the gate, before the loop takes its next inputs, instead of through a thread-pool work item: the
    /// replies are sent without waking another worker, whose wake-up and spinning cost more than the replies
    /// (docs/PERFORMANCE.md, "Answers resumed on the loop, session 20"). Off, they are resumed on the thread pool and
    /// the loop goes on at once.</summary>
    public bool ResumeOnLoop { get; init; } = true;

    /// <summary>A learner this close to the commit index (in entries) is promoted to voter.</summary>
    public int LearnerTrailingEntriesMax { get; init; } = 256;

    /// <summary>With <see cref="RaftConfig.AsyncStorageWrites"/>: followers pipeline their log writes too. Off, only
    /// a leader does (a follower saves on its loop, as without the pipeline).</summary>
    public bool PipelineFollowerWrites { get; init; }

    /// <summary>This node's <c>--max-memory</c>/<c>--eviction-policy</c>, or null when neither was given. The leader
    /// proposes it when the replicated setting differs, until the state has held it once (docs/CACHE.md).</summary>
    public MemorySetting? ConfiguredMemory { get; init; }

    /// <summary>Keys a leader's active expiry examines per batch, and the most one ExpireKeys entry names.</summary>
    public int ExpireBatchKeysMax { get; init; } = 1000;

    /// <summary>Expiry (and eviction) batches a leader proposes per tick at most; one is in flight at a time.</summary>
    public int HousekeepingBatchesPerTick { get; init; } = 10;

    /// <summary>Keys one Evict entry names at most.</summary>
    public int EvictBatchKeysMax { get; init; } = 1000;

    /// <summary>How often the reads a node served are reported for LRU/LFU (an Access entry).</summary>
    public TimeSpan AccessReportInterval { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>The access report interval in ticks (at least one).</summary>
    public long AccessReportIntervalTicks => Math.Max(1, (long)(AccessReportInterval / TickInterval));

    /// <summary>The snapshot interval in ticks (at least one).</summary>
    public long SnapshotIntervalTicks => Math.Max(1, (long)(SnapshotInterval / TickInterval));

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

        if (ExpireBatchKeysMax <= 0 || HousekeepingBatchesPerTick <= 0 || EvictBatchKeysMax <= 0 || AccessReportInterval <= TimeSpan.Zero)
        {
            throw new ArgumentException("expiry, eviction and access report settings must be positive");
        }

        if (ConfiguredMemory is { MaxBytes: < 0 })
        {
            throw new ArgumentException("max memory must not be negative");
        }

        if (SnapshotLogBytes < 0)
        {
            throw new ArgumentException("the snapshot log bytes must not be negative");
        }

        if (SnapshotThreshold == 0 || InputQueueCapacity <= 0 || PeerInputQueueCapacity <= 0 || InputBatchMax <= 0 || LearnerTrailingEntriesMax < 0)
        {
            throw new ArgumentException("snapshot threshold and queue sizes must be positive");
        }
    }
}

/// <summary>A memory limit (0 = none) and eviction policy, as <c>--max-memory</c> and <c>--eviction-policy</c> give them.</summary>
public sealed record MemorySetting(long MaxBytes, EvictionPolicy Policy);

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

    /// <summary>The membership change is invalid.</summary>
    ConfChangeRejected,

    /// <summary>Another membership change is still in progress (or the new leader has not committed yet): retry.</summary>
    ConfChangeInProgress,

    /// <summary>The change adds a node id that a committed change removed: removed ids are never added again.</summary>
    MemberIdRemoved,

    TransferInProgress,

    ShuttingDown,
}

/// <summary>A request the node could not complete. <see cref="OutcomeUnknown"/> is true when a write may or may
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

/// <summary>A point-in-time view of the node, published by the driver after every batch.</summary>
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

    /// <summary>Ticks of the host's clock skipped because a stall was collapsed (docs/RAFT.md, "Ticks after a stall").</summary>
    public long TicksSkipped { get; init; }

    /// <summary>Stalls after which this node's due ticks were collapsed to one.</summary>
    public long ClockJumps { get; init; }
}

/// <summary>
/// Where and when a linearizable or lease read is served (docs/CACHE.md): once this node has applied
/// <see cref="Index"/>, at <see cref="TimeUnixMs"/>, the leader's wall time when it confirmed the index (never
/// behind the log time this node had applied when the read completed). Every replica answers the same at the same
/// index and time, whatever its own clock says.
/// </summary>
public readonly record struct ReadPoint(LogIndex Index, long TimeUnixMs);

/// <summary>
/// A request the driver answers exactly once, by <see cref="Complete"/> or <see cref="Fail"/>, on the driver's
/// thread. The host completes a task from it; the simulator records the answer in its history.
/// </summary>
public abstract class NodeRequest<T>
{
    public abstract void Complete(T result);

    public abstract void Fail(RaftHostException error);
}

/// <summary>
/// A write (a cache command or a membership change) waiting to be proposed, then committed and applied. The
/// driver matches it to the entry applied at its index by term: the same term means this proposal, another term
/// means its position was taken by another leader's entry and it was lost.
/// </summary>
public abstract class ProposalRequest : NodeRequest<ApplyResult>
{
    private const int Pending = 0;
    private const int Proposed = 1;
    private const int Abandoned = 2;
    private int _state;

    /// <summary>The term the proposal was accepted at (set by the driver).</summary>
    public Term Term { get; internal set; }

    /// <summary>The log index the proposal was given (set by the driver).</summary>
    public LogIndex Index { get; internal set; }

    /// <summary>Called by the driver right before proposing; false if the caller already gave up.</summary>
    public bool TryMarkProposed() => Interlocked.CompareExchange(ref _state, Proposed, Pending) == Pending;

    /// <summary>Called by a caller that gives up; true means the write was never proposed and never will be.</summary>
    public bool TryAbandon() => Interlocked.CompareExchange(ref _state, Abandoned, Pending) == Pending;
}

/// <summary>
/// A snapshot captured on the driver's thread (a point-in-time view of the cache and the address book) that the
/// host writes to the snapshot store off the loop with <see cref="Run"/>, then hands back with
/// <see cref="NodeDriver.SnapshotSaved"/>. Applying goes on meanwhile (the cache view is copy-on-write).
/// </summary>
public sealed class SnapshotJob
{
    private readonly ISnapshotStore _store;
    private readonly CacheSnapshot _view;
    private readonly byte[] _members;
    private readonly IReadOnlyList<NodeId> _removed;
    private int _ran;

    internal SnapshotJob(ISnapshotStore store, SnapshotMetadata metadata, CacheSnapshot view, byte[] members, IReadOnlyList<NodeId> removed)
    {
        _store = store;
        Metadata = metadata;
        _view = view;
        _members = members;
        _removed = removed;
    }

    public SnapshotMetadata Metadata { get; }

    /// <summary>Set by <see cref="Run"/> when the save failed.</summary>
    public Exception? Error { get; private set; }

    /// <summary>True once <see cref="Run"/> finished (successfully or not).</summary>
    public bool Done => Volatile.Read(ref _ran) == 2;

    /// <summary>Writes the snapshot durably. Runs once, on any thread; never throws (see <see cref="Error"/>).</summary>
    public void Run()
    {
        if (Interlocked.CompareExchange(ref _ran, 1, 0) != 0)
        {
            return;
        }

        try
        {
            _store.Save(Metadata, stream =>
            {
                SnapshotFormat.WriteHeader(stream, _members, _removed);
                _view.WriteTo(stream);
            });
        }
        catch (Exception e)
        {
            Error = e;
        }
        finally
        {
            _view.Dispose();
            Volatile.Write(ref _ran, 2);
        }
    }
}

/// <summary>
/// Where a <see cref="NodeDriver"/>'s effects go. Called synchronously on the driver's thread; implementations
/// must not block and must not call back into the driver.
/// </summary>
public interface INodeEffects
{
    /// <summary>A Raft message for a peer (never a snapshot: see <see cref="SendSnapshot"/>).</summary>
    void Send(Message message);

    /// <summary>
    /// The core wants to send the snapshot named by <c>message.Snapshot.Metadata</c> (the message carries no data).
    /// The host streams that snapshot from the snapshot store to the peer off the loop and reports the outcome with
    /// <see cref="NodeDriver.ReportSnapshot"/>; the driver never loads a snapshot to send it.
    /// </summary>
    void SendSnapshot(Message message);

    /// <summary>A snapshot to write off the loop (<see cref="SnapshotJob.Run"/>), then hand back with
    /// <see cref="NodeDriver.SnapshotSaved"/>. At most one is outstanding.</summary>
    void SaveSnapshot(SnapshotJob job);

    /// <summary>The leader, role or term changed.</summary>
    void LeadershipChanged(LeadershipChange change) { }

    /// <summary>This node learned that it was removed from the cluster (raised once).</summary>
    void Removed() { }

    /// <summary>An entry was applied (to the cache, the configuration or the address book); for checkers.</summary>
    void Applied(Entry entry) { }

    /// <summary>The cache was replaced by a snapshot: loaded at start (<paramref name="installed"/> false) or
    /// installed from the leader; for checkers.</summary>
    void SnapshotRestored(SnapshotMetadata metadata, bool installed) { }

    /// <summary>One write-ahead log save took this long (metrics).</summary>
    void WalSaved(TimeSpan elapsed) { }

    /// <summary>
    /// With <see cref="Raft.RaftConfig.AsyncStorageWrites"/>: a Ready's persistence for the host's writer (see
    /// <see cref="PersistJob"/>). Must not block: the writer saves it off the driver's thread.
    /// </summary>
    void Persist(PersistJob job) => throw new NotSupportedException("this host has no asynchronous log writer; turn AsyncStorageWrites off");

    /// <summary>One Ready was handled in this long (metrics).</summary>
    void ReadyHandled(TimeSpan elapsed) { }

    /// <summary>
    /// A follower's access report: keys its reads found since the last one (each repeated by its count, bounded),
    /// for the LRU/LFU data. The host sends them to <paramref name="leader"/> as one
    /// <see cref="WriteCommand.Access"/> write, at most one report in flight; a lost report only costs precision.
    /// </summary>
    void AccessReport(NodeId leader, IReadOnlyList<byte[]> keys) { }
}

/// <summary>Why the driver cannot go on until the host hands it a completion.</summary>
public enum DriverWait : byte
{
    /// <summary>Not waiting: inputs may be handed in.</summary>
    None = 0,

    /// <summary>The write-ahead log refused a batch: call <see cref="NodeDriver.RetryStorage"/> after
    /// <see cref="NodeDriver.StorageRetryDelay"/>.</summary>
    StorageRetry = 1,

    /// <summary>A snapshot from the leader must be installed, but the node's own snapshot is still being written:
    /// hand in <see cref="NodeDriver.SnapshotSaved"/> for the outstanding job.</summary>
    SnapshotSave = 2,

    /// <summary>With <see cref="Raft.RaftConfig.AsyncStorageWrites"/>: a Ready must be persisted on the loop (it
    /// installs a snapshot, or this node no longer leads and followers do not pipeline) while earlier Readies are
    /// still with the writer; hand in <see cref="NodeDriver.Persisted"/> for each job outstanding
    /// (<see cref="NodeDriver.PersistsInFlight"/>) first.</summary>
    PersistDrain = 3,
}

/// <summary>
/// One Ready's persistence, handed to the host's writer with <see cref="INodeEffects.Persist"/> when
/// <see cref="Raft.RaftConfig.AsyncStorageWrites"/> is on. The writer saves jobs in the order it got them (it may
/// save several with one write and one sync: a later job's entries replace an earlier one's from their first index
/// on), then sends <see cref="MessagesAfterPersist"/> and hands the job back with <see cref="NodeDriver.Persisted"/>.
/// Everything in it is owned by the job (no views of the log).
/// </summary>
public sealed class PersistJob(HardState? hardState, IReadOnlyList<Entry> entries, IReadOnlyList<Message> messagesAfterPersist)
{
    public HardState? HardState { get; } = hardState;

    public IReadOnlyList<Entry> Entries { get; } = entries;

    /// <summary>Votes and append acknowledgements: they vouch for this job's state and every earlier job's, so they
    /// leave only after the sync that covers them.</summary>
    public IReadOnlyList<Message> MessagesAfterPersist { get; } = messagesAfterPersist;

    /// <summary>Merges consecutive jobs into what one <see cref="IRaftLogStore.Save"/> writes: the newest hard state,
    /// and the entries with each job's replacing the earlier ones from its first index on.</summary>
    public static (HardState? HardState, IReadOnlyList<Entry> Entries) Coalesce(IReadOnlyList<PersistJob> jobs)
    {
        if (jobs.Count == 1)
        {
            return (jobs[0].HardState, jobs[0].Entries);
        }

        HardState? hard = null;
        var entries = new List<Entry>();
        foreach (var job in jobs)
        {
            hard = job.HardState ?? hard;
            if (job.Entries.Count == 0)
            {
                continue;
            }

            var first = job.Entries[0].Index;
            if (entries.Count > 0 && first <= entries[^1].Index)
            {
                // Replaced entries are dropped; a job that starts before the merged ones replaces them all (Save
                // then replaces the stored log from its first index, as it would have for the job alone).
                int keep = first <= entries[0].Index ? 0 : (int)(first.Value - entries[0].Index.Value);
                entries.RemoveRange(keep, entries.Count - keep);
            }
            else if (entries.Count > 0 && first != entries[^1].Index.Next)
            {
                throw new InvalidOperationException($"persist jobs leave a gap: {entries[^1].Index} then {first}");
            }

            entries.AddRange(job.Entries);
        }

        return (hard, entries);
    }
}
