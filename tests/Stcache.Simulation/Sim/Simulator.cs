using System.Globalization;
using System.Text;
using Stcache.Cache;
using Stcache.Node;
using Stcache.Raft;
using Stcache.Testing;

namespace Stcache.Simulation.Sim;

/// <summary>Everything one run does, drawn from its seed.</summary>
public sealed record SimulationOptions
{
    public required int Seed { get; init; }

    public int NodeCount { get; init; } = 3;

    public bool PreVote { get; init; } = true;

    public bool CheckQuorum { get; init; } = true;

    public int TickMs { get; init; } = 10;

    public int ElectionTimeoutTicks { get; init; } = 10;

    public long SafetyPhaseMs { get; init; } = 4_000;

    /// <summary>The liveness bound: after healing, a fresh write must commit and every member converge in this many election timeouts.</summary>
    public int LivenessElectionTimeouts { get; init; } = 30;

    public required NetworkOptions Network { get; init; }

    public int ClientCount { get; init; } = 3;

    public int KeyCount { get; init; } = 3;

    public int ClientTimeoutMs { get; init; } = 1_500;

    /// <summary>Mean time between injected faults; 0 disables faults.</summary>
    public int FaultIntervalMs { get; init; } = 150;

    public int CrashWeight { get; init; } = 3;

    public int PartitionWeight { get; init; } = 3;

    public int MembershipWeight { get; init; } = 2;

    public int TransferWeight { get; init; } = 1;

    /// <summary>Process pauses (GC, VM stall): the node neither ticks nor receives; on resume it first catches up
    /// the missed ticks (as a host counting ticks from a monotonic clock must; the driver collapses a stall's burst to
    /// one tick), then handles queued messages.</summary>
    public int PauseWeight { get; init; }

    /// <summary>A disk that fills up (ENOSPC) or fails (EIO) for a while.</summary>
    public int DiskFaultWeight { get; init; }

    /// <summary>Clock faults: the wall clock steps (NTP), the tick timer stalls and then catches up.</summary>
    public int ClockFaultWeight { get; init; }

    /// <summary>An operator wipes a member: it is removed, its data deleted, and it joins again as a learner.</summary>
    public int WipeWeight { get; init; }

    /// <summary>Snapshot when this many entries were applied since the last one (0 = never).</summary>
    public int SnapshotIntervalEntries { get; init; } = 20;

    public int SnapshotTrailingEntries { get; init; } = 5;

    /// <summary>Chance that a crash also flips a bit in a synced file (a sealed WAL segment or a snapshot).</summary>
    public int BitFlipPerMillion { get; init; }

    /// <summary>Creations, renames and deletions need a directory fsync to survive a crash.</summary>
    public bool StrictDirectories { get; init; }

    /// <summary>Torn writes leave garbage rather than zeros.</summary>
    public bool TornGarbage { get; init; }

    public int SegmentSizeBytes { get; init; } = 16 * 1024;

    public bool Preallocate { get; init; }

    /// <summary>Learners this close to the commit index are promoted (the host option of the same name).</summary>
    public int LearnerTrailingEntriesMax { get; init; } = 5;

    public long AppendBytesMax { get; init; } = 1 << 20;

    public int InflightMessagesMax { get; init; } = 256;

    /// <summary>Maximum relative tick-rate difference of a node's clock, in parts per million (within the lease margin).</summary>
    public int ClockDriftPerMillion { get; init; }

    /// <summary>Chance that a new leader is knocked out a few network delays after it won (Figure 8 churn; 0 = off).</summary>
    public int LeaderChurnPerMillion { get; init; }

    /// <summary>Upper bound of one simulated fsync, in milliseconds (0: syncs take no time).</summary>
    public int FsyncLatencyMsMax { get; init; }

    /// <summary>Runs the Figure 8 fault schedule (<c>Sim/Figure8.cs</c>) again and again during the safety phase.</summary>
    public bool Figure8 { get; init; }

    /// <summary>Nodes persist through a writer off the loop (<c>--wal-pipeline true</c>, Sim/SimNode.WalPipeline.cs).</summary>
    public bool WalPipeline { get; init; }

    /// <summary>With <see cref="WalPipeline"/>: followers pipeline too (otherwise only a leader does).</summary>
    public bool WalPipelineFollowers { get; init; }

    public InjectedBug Bug { get; init; }

    /// <summary>Model the connection resets a crash causes: the dead process's connections reset (its peers learn it
    /// one network delay later) and dials to a node that is down are refused, both reported to the driver as
    /// connection lost (production's <c>PeerConnectionLost</c>). A partition resets nothing. Off only to show what
    /// the model exercises.</summary>
    public bool ConnectionResets { get; init; } = true;

    /// <summary>The run has no crash, partition, long pause or stall, stopping disk fault, transfer or membership
    /// change: once a leader is elected, no node may ever reach a later term (checked after every event).</summary>
    public bool ExpectStableLeader { get; init; }

    /// <summary>The TTL workload (drawn on its own stream: the options above do not depend on it).</summary>
    internal TtlOptions Ttl { get; init; } = new();

    /// <summary>Draws a random configuration from the seed: node count, Raft options, network and fault mix.</summary>
    public static SimulationOptions FromSeed(int seed)
    {
        var random = new SplitMix((ulong)seed * 0x2545F4914F6CDD1DUL);
        int nodes = random.Chance(1, 2) ? 3 : 5;
        return new SimulationOptions
        {
            Seed = seed,
            NodeCount = nodes,
            PreVote = random.Chance(3, 4),
            CheckQuorum = random.Chance(3, 4),
            SafetyPhaseMs = random.Between(2_000, 5_000),
            Network = NetworkOptions.Random(random),
            ClientCount = random.Between(1, 4),
            KeyCount = random.Between(1, 4),
            FaultIntervalMs = random.Chance(1, 10) ? 0 : random.Between(50, 600),
            CrashWeight = random.Between(0, 4),
            PartitionWeight = random.Between(0, 4),
            MembershipWeight = random.Between(0, 3),
            TransferWeight = random.Between(0, 2),
            PauseWeight = random.Between(0, 2),
            DiskFaultWeight = random.Between(0, 2),
            ClockFaultWeight = random.Between(0, 2),
            WipeWeight = random.Chance(1, 2) ? 0 : 1,
            SnapshotIntervalEntries = random.Chance(1, 5) ? 0 : random.Between(3, 40),
            SnapshotTrailingEntries = random.Between(0, 8),
            BitFlipPerMillion = random.Chance(1, 2) ? 0 : 100_000,
            StrictDirectories = random.Chance(1, 2),
            TornGarbage = random.Chance(1, 2),
            SegmentSizeBytes = random.Chance(1, 2) ? 4096 : 64 * 1024,
            Preallocate = random.Chance(1, 3),
            LearnerTrailingEntriesMax = random.Chance(1, 2) ? 0 : random.Between(1, 50),
            AppendBytesMax = random.Chance(1, 2) ? 200 : 1 << 20,
            InflightMessagesMax = random.Chance(1, 3) ? 1 : random.Between(2, 64),
            ClockDriftPerMillion = random.Chance(1, 2) ? 0 : random.Between(0, 50_000),
            Ttl = TtlOptions.FromSeed(seed),
            LeaderChurnPerMillion = random.Chance(1, 2) ? 0 : random.Between(200_000, 1_000_000),
            FsyncLatencyMsMax = random.Chance(1, 3) ? 0 : random.Between(1, 15),
            Figure8 = random.Chance(1, 2),
            WalPipeline = random.Chance(1, 2),
            WalPipelineFollowers = random.Chance(1, 2),
        };
    }

    public override string ToString() =>
        $"seed={Seed} nodes={NodeCount} preVote={PreVote} checkQuorum={CheckQuorum} safety={SafetyPhaseMs}ms clients={ClientCount} keys={KeyCount} " +
        $"faults/{FaultIntervalMs}ms crash={CrashWeight} partition={PartitionWeight} membership={MembershipWeight} transfer={TransferWeight} pause={PauseWeight} " +
        $"disk={DiskFaultWeight} clock={ClockFaultWeight} wipe={WipeWeight} bitFlip={BitFlipPerMillion} strictDirs={StrictDirectories} tornGarbage={TornGarbage} " +
        $"segment={SegmentSizeBytes} prealloc={Preallocate} learnerTrailing={LearnerTrailingEntriesMax} " +
        $"snapshotEvery={SnapshotIntervalEntries} trailing={SnapshotTrailingEntries} appendMax={AppendBytesMax} inflight={InflightMessagesMax} drift={ClockDriftPerMillion} churn={LeaderChurnPerMillion} fsync={FsyncLatencyMsMax}ms walPipeline={WalPipeline}/{(WalPipelineFollowers ? "all" : "leader")} figure8={Figure8} bug={Bug} " +
        $"resets={ConnectionResets} stableLeader={ExpectStableLeader} " +
        $"net={Network} {Ttl}";
}

public sealed record SimulationResult(
    int Seed,
    string? Failure,
    long VirtualTimeMs,
    long Events,
    int LeaderTerms,
    ulong CommittedMax,
    int OperationsAcknowledged,
    int OperationsUnknown,
    LinearizabilityVerdict Linearizability,
    SimulationStats Stats,
    string Options)
{
    public bool Passed => Failure is null;

    public string ReplayCommand =>
        $"SIM_SEED={Seed} dotnet test tests/Stcache.Simulation --filter FullyQualifiedName~SimulationTests.ReplaySeed";

    public override string ToString() =>
        $"seed {Seed}: {(Passed ? "ok" : "FAILED")} t={VirtualTimeMs}ms events={Events} leaderTerms={LeaderTerms} committed={CommittedMax} " +
        $"acked={OperationsAcknowledged} unknown={OperationsUnknown} lin={Linearizability}" +
        (Failure is null ? string.Empty : $"\n  {Failure}\n  options: {Options}\n  replay: {ReplayCommand}");
}

/// <summary>What a run exercised, so a green run can be told from an idle one.</summary>
public sealed class SimulationStats
{
    public long Crashes { get; set; }

    public long Partitions { get; set; }

    public long ConfChangesApplied { get; set; }

    public long Transfers { get; set; }

    public long Pauses { get; set; }

    public long SnapshotsTaken { get; set; }

    public long SnapshotsInstalled { get; set; }

    public long WritesAcknowledged { get; set; }

    public long WritesLost { get; set; }

    public long ReadIndexReads { get; set; }

    public long LeaseReads { get; set; }

    public long LeaderTerms { get; set; }

    public long SyncCrashes { get; set; }

    public long DiskFaults { get; set; }

    public long StorageRefusals { get; set; }

    /// <summary>Persist jobs queued for the pipelined writer that a crash discarded before their save.</summary>
    public long PersistsLostInFlight { get; set; }

    public long ClockFaults { get; set; }

    public long Joins { get; set; }

    public long Wipes { get; set; }

    public long RefusedStarts { get; set; }

    public long RemovalsLearned { get; set; }

    public long FollowerWrites { get; set; }

    /// <summary>Connection-lost reports delivered to drivers (resets on crash, refused dials).</summary>
    public long ConnectionLostReports { get; set; }

    /// <summary>Leaders that crashed (or otherwise went down) during the safety phase.</summary>
    public long LeaderCrashes { get; set; }

    /// <summary>Crashed leaders replaced within half an election timeout of the crash by a node that had been told
    /// the crashed leader's connection was lost: the fast path (a follower's election timer waits at least a whole
    /// election timeout after it last heard from the leader).</summary>
    public long FastFailovers { get; set; }

    public TtlStats Ttl { get; set; } = new();

    public void Add(SimulationStats other)
    {
        Ttl.Add(other.Ttl);
        ConnectionLostReports += other.ConnectionLostReports;
        LeaderCrashes += other.LeaderCrashes;
        FastFailovers += other.FastFailovers;
        SyncCrashes += other.SyncCrashes;
        DiskFaults += other.DiskFaults;
        StorageRefusals += other.StorageRefusals;
        PersistsLostInFlight += other.PersistsLostInFlight;
        ClockFaults += other.ClockFaults;
        Joins += other.Joins;
        Wipes += other.Wipes;
        RefusedStarts += other.RefusedStarts;
        RemovalsLearned += other.RemovalsLearned;
        FollowerWrites += other.FollowerWrites;
        Crashes += other.Crashes;
        Partitions += other.Partitions;
        ConfChangesApplied += other.ConfChangesApplied;
        Transfers += other.Transfers;
        Pauses += other.Pauses;
        SnapshotsTaken += other.SnapshotsTaken;
        SnapshotsInstalled += other.SnapshotsInstalled;
        WritesAcknowledged += other.WritesAcknowledged;
        WritesLost += other.WritesLost;
        ReadIndexReads += other.ReadIndexReads;
        LeaseReads += other.LeaseReads;
        LeaderTerms += other.LeaderTerms;
    }

    public override string ToString() =>
        $"crashes={Crashes} partitions={Partitions} confChanges={ConfChangesApplied} transfers={Transfers} pauses={Pauses} snapshotsTaken={SnapshotsTaken} " +
        $"snapshotsInstalled={SnapshotsInstalled} writesAcked={WritesAcknowledged} writesLost={WritesLost} readIndexReads={ReadIndexReads} " +
        $"leaseReads={LeaseReads} leaderTerms={LeaderTerms} syncCrashes={SyncCrashes} diskFaults={DiskFaults} storageRefusals={StorageRefusals} persistsLostInFlight={PersistsLostInFlight} " +
        $"clockFaults={ClockFaults} joins={Joins} wipes={Wipes} refusedStarts={RefusedStarts} removalsLearned={RemovalsLearned} followerWrites={FollowerWrites} " +
        $"connectionLostReports={ConnectionLostReports} leaderCrashes={LeaderCrashes} fastFailovers={FastFailovers} {Ttl}";
}

/// <summary>Deliberate disk bugs, to prove the checkers catch what they claim to catch. Bugs in the node itself
/// are proven by the mutation table in the README (temporary edits of the real code).</summary>
public enum InjectedBug : byte
{
    None = 0,

    /// <summary>Every node's disk acknowledges fsyncs it never did: a crash loses acknowledged writes.</summary>
    LyingFsync = 1,
}

/// <summary>
/// A deterministic whole-cluster run of the real node (modelled on TigerBeetle's VOPR): every node is the real
/// <see cref="NodeDriver"/> with the real write-ahead log, snapshot store and cache over a simulated disk, on its own
/// clock. A safety phase with random faults (crashes at any point including inside a sync, torn writes, bit flips,
/// full and failing disks, partitions, loss, duplication, reordering, pauses, stalled timers, clock steps, joins,
/// removals including of nodes that are down, wipes, leadership transfers), then a liveness phase (everything
/// healed) in which a fresh write must commit, learners be promoted, removed nodes stop, and every member converge
/// within a bound. Safety is checked after every event; the clients' history is checked for linearizability.
/// </summary>
internal sealed partial class Simulator : ISimEnvironment
{
    private const string LivenessKey = "__liveness";

    private readonly SimulationOptions _options;
    private readonly SplitMix _random;
    private readonly SplitMix _networkRandom;
    private readonly SplitMix _diskRandom;
    private readonly PriorityQueue<Action, (long Time, long Sequence)> _events = new();
    private readonly SortedDictionary<ulong, SimNode> _nodes = [];
    private readonly SafetyOracle _oracle = new();
    private readonly SimPartitions _partitions = new();
    private readonly List<ClientOperation> _operations = [];
    private readonly Action<string>? _trace;
    private readonly SimulationStats _stats = new();
    private readonly HashSet<LogIndex> _confChangesSeen = [];
    private readonly Dictionary<ulong, Pause> _paused = [];
    private readonly Dictionary<ulong, int> _stalled = [];
    private readonly Dictionary<ulong, ulong> _digests = [];
    private readonly HashSet<ulong> _rejoining = [];
    private readonly HashSet<(ulong From, ulong To, ulong AsOf)> _notices = [];
    private readonly HashSet<ulong> _everMember = [];

    // Nodes that are down with a bit flipped on their disk, not yet restarted: they may refuse to start and need a
    // wipe of their own.
    private readonly HashSet<ulong> _rotten = [];
    private readonly List<string> _keys = [];
    private readonly Dictionary<(ulong From, ulong To), long> _refusedAt = [];
    private NetworkOptions _network;
    private (NodeId Id, Term Term, long At)? _crashedLeader;
    private readonly HashSet<ulong> _toldOfCrashedLeader = [];
    private readonly HashSet<ulong> _joinedInOwnView = [];
    private (NodeId Id, Term Term)? _firstLeader;
    private long _now;
    private long _sequence;
    private long _eventCount;
    private long _nextOperationId = 1;
    private ulong _nextNodeId;
    private bool _livenessPhase;
    private readonly TtlWorkload? _ttl;

    // The last index at which a membership change may have been proposed (a wipe waits until a leader applied it).
    private LogIndex _membershipProposedAt;

    public Simulator(SimulationOptions options, Action<string>? trace = null)
    {
        _options = options;
        _random = new SplitMix((ulong)options.Seed);
        _networkRandom = _random.Fork();
        _diskRandom = _random.Fork();
        _network = options.Network;
        _trace = trace;
        for (int k = 0; k < options.KeyCount; k++)
        {
            _keys.Add("k" + k.ToString(CultureInfo.InvariantCulture));
        }

        _keys.Add(LivenessKey);
        if (options.Ttl.Clients > 0)
        {
            _ttl = new TtlWorkload(options.Seed, options.Ttl, this, UpNodes, CurrentLeader, () => _livenessPhase);
            _keys.AddRange(_ttl.Keys);
        }
    }

    public long Now => _now;

    public static SimulationResult Run(int seed, Action<string>? trace = null) =>
        new Simulator(SimulationOptions.FromSeed(seed), trace).Run();

    public SimulationResult Run()
    {
        string? failure = null;
        var linearizability = LinearizabilityVerdict.Linearizable;
        try
        {
            Setup();
            RunUntil(_options.SafetyPhaseMs);
            RunLivenessPhase();
            var (verdict, description) = CheckHistory();
            linearizability = verdict;
            if (verdict == LinearizabilityVerdict.NotLinearizable)
            {
                failure = "linearizability: " + description;
            }
        }
        catch (SimulationFailureException e)
        {
            failure = e.Message;
        }
        catch (InvariantViolationException e)
        {
            failure = $"core invariant at t={_now}ms: {e.Message}\n{e.StackTrace}";
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or NotImplementedException or IndexOutOfRangeException
            or NullReferenceException or KeyNotFoundException or InvalidDataException or IOException or InvalidCastException)
        {
            failure = $"exception at t={_now}ms: {e}";
        }

        if (failure is not null)
        {
            Trace($"FAILURE: {failure}");
        }

        return new SimulationResult(
            _options.Seed,
            failure,
            _now,
            _eventCount,
            _oracle.LeaderTermCount,
            _oracle.CommittedMax.Value,
            _operations.Count(o => o.CompleteTime is not null),
            _operations.Count(o => o.CompleteTime is null && !o.Discarded),
            linearizability,
            CollectStats(),
            _options.ToString());
    }

    // ---------------------------------------------------------------- ISimEnvironment

    void ISimEnvironment.Send(Message message) => Send(message);

    void ISimEnvironment.Schedule(long delayMs, Action action) => Schedule(delayMs, action);

    int ISimEnvironment.Random(int low, int high) => _random.Between(low, high);

    void ISimEnvironment.Trace(string line) => Trace(line);

    long? ISimEnvironment.PausedUntil(NodeId id) => _paused.TryGetValue(id.Value, out var pause) ? pause.Until : null;

    // ---------------------------------------------------------------- setup

    private void Setup()
    {
        Trace($"options: {_options}");
        _oracle.DiskOf = id => _nodes.TryGetValue(id.Value, out var node) ? node.Log : null;
        var founders = new List<ConfChange>();
        for (int i = 1; i <= _options.NodeCount; i++)
        {
            var id = new NodeId((ulong)i);
            founders.Add(new ConfChange(ConfChangeType.AddVoter, id, new MemberInfo(id.Value, "n" + i, "sim:" + i, "sim:" + i).ToContext()));
        }

        var bootstrap = PersistentState.Bootstrap(founders);
        _nextNodeId = (ulong)_options.NodeCount + 1;
        var nodes = founders.Select(f => CreateNode(f.NodeId)).ToList();
        foreach (var node in nodes)
        {
            Bootstrap(node, bootstrap);
        }

        foreach (var node in nodes)
        {
            node.Start();
        }

        // Under the TTL workload's memory limit a write may be refused; the key-value history would count it.
        for (int c = 0; c < (_options.Ttl.MaxMemoryBytes > 0 ? 0 : _options.ClientCount); c++)
        {
            int client = c;
            Schedule(_random.Between(0, 50), () => ClientStep(client));
        }

        if (_options.FaultIntervalMs > 0)
        {
            Schedule(_random.Between(0, _options.FaultIntervalMs * 2), FaultStep);
        }

        _ttl?.Start();
        StartLeaderChurn();
        StartFigure8();
    }

    /// <summary>Writes the founders' bootstrap state through the real log, as the server's first start does.</summary>
    private void Bootstrap(SimNode node, PersistentState bootstrap)
    {
        var wal = Storage.WriteAheadLog.Open(node.Disk, "/data/wal", new Storage.WalOptions { SegmentSizeBytes = _options.SegmentSizeBytes, PrepareSegmentsAhead = false },
            Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance);
        node.Log.Attach(wal);
        node.Log.Load();
        node.Log.Save(bootstrap.HardState, bootstrap.Entries);
        node.Log.Detach();
    }

    private SimNode CreateNode(NodeId id)
    {
        var config = new RaftConfig
        {
            Id = id,
            ElectionTimeoutTicks = _options.ElectionTimeoutTicks,
            HeartbeatIntervalTicks = 1,
            RandomSeed = _random.NextUInt64(),
            PreVote = _options.PreVote,
            CheckQuorum = _options.CheckQuorum,
            AppendBytesMax = _options.AppendBytesMax,
            InflightMessagesMax = _options.InflightMessagesMax,
        };
        var settings = new SimNodeSettings
        {
            TickMs = _options.TickMs,
            SnapshotThresholdEntries = _options.SnapshotIntervalEntries == 0 ? int.MaxValue : _options.SnapshotIntervalEntries,
            SnapshotIntervalTicks = 1,
            SnapshotTrailingEntries = (ulong)_options.SnapshotTrailingEntries,
            LearnerTrailingEntriesMax = _options.LearnerTrailingEntriesMax,
            SegmentSizeBytes = _options.SegmentSizeBytes,
            Preallocate = _options.Preallocate,
            FsyncLatencyMsMax = _options.FsyncLatencyMsMax,
            WalPipeline = _options.WalPipeline,
            WalPipelineFollowers = _options.WalPipelineFollowers,
        };
        var node = new SimNode(config, settings, _oracle, this, _diskRandom.Fork())
        {
            ConfChangeApplied = OnConfChangeApplied,
            RemovedFromCluster = OnRemoved,
            GoingDown = OnGoingDown,
        };
        _ttl?.Attach(node);
        node.Disk.StrictDirectories = _options.StrictDirectories;
        node.Disk.TornGarbage = _options.TornGarbage;
        node.Disk.SyncIsALie = _options.Bug == InjectedBug.LyingFsync;
        int drift = _options.ClockDriftPerMillion == 0 ? 0 : _random.Between(-_options.ClockDriftPerMillion / 2, _options.ClockDriftPerMillion / 2);
        node.Clock.DriftPerMillion = drift;
        node.Clock.OffsetMs = _random.Between(-5_000, 5_000);
        _nodes.Add(id.Value, node);
        long phase = _random.Between(0, _options.TickMs - 1);
        long periodMicros = (_options.TickMs * 1000L) + (_options.TickMs * 1000L * drift / 1_000_000);
        long start = _now + phase;
        Schedule(phase, () => TickLoop(node, start, periodMicros, 1));
        return node;
    }

    /// <summary>Ticks a node on its own clock: tick k happens at start + k * period (period in microseconds).</summary>
    private void TickLoop(SimNode node, long start, long periodMicros, long count)
    {
        if (node.IsStopped && !_rejoining.Contains(node.Id.Value))
        {
            return;
        }

        if (_paused.TryGetValue(node.Id.Value, out var pause))
        {
            _paused[node.Id.Value] = pause with { MissedTicks = pause.MissedTicks + 1 };
        }
        else if (_stalled.TryGetValue(node.Id.Value, out int missed))
        {
            _stalled[node.Id.Value] = missed + 1;
        }
        else
        {
            node.Tick();
        }

        long next = start + (count * periodMicros / 1000);
        Schedule(Math.Max(1, next - _now), () => TickLoop(node, start, periodMicros, count + 1));
    }

    // ---------------------------------------------------------------- event loop

    private void Schedule(long delayMs, Action action) => _events.Enqueue(action, (_now + delayMs, _sequence++));

    private void RunUntil(long time)
    {
        while (_events.TryPeek(out _, out var at) && at.Time <= time)
        {
            var action = _events.Dequeue();
            _now = at.Time;
            _eventCount++;

            // A leader may confirm a read and step down within one event: its clock counts from the event's start.
            _ttl?.SampleLeaderClocks();
            action();
            CheckAll();
            CheckLeaderChanges();
        }

        _now = Math.Max(_now, time);
    }

    private void CheckAll()
    {
        foreach (var node in _nodes.Values)
        {
            if (!node.IsUp || node.IsWaiting)
            {
                continue;
            }

            node.AssertInvariants();

            // Replicas that applied the same prefix hold the same cache.
            ulong digest = node.Digest(_keys);
            if (_digests.TryGetValue(node.Applied.Value, out ulong known))
            {
                if (known != digest)
                {
                    throw new SimulationFailureException($"cache digest: node {node.Id} at applied index {node.Applied} differs from another replica at that index");
                }
            }
            else
            {
                _digests[node.Applied.Value] = digest;
            }
        }

        _ttl?.Check(_nodes.Values);
    }

    // ---------------------------------------------------------------- network

    private void Send(Message message)
    {
        var from = message.From;
        var to = message.To;
        if (!_nodes.TryGetValue(to.Value, out var receiver))
        {
            return;
        }

        if (!receiver.IsUp && !_partitions.IsBlocked(from, to))
        {
            DialRefused(from, to);
        }

        if (_partitions.IsBlocked(from, to))
        {
            if (_networkRandom.ChancePerMillion(_network.UnreachableReportPerMillion))
            {
                Schedule(1, () => Report(from, to, message.Type == MessageType.Snapshot, unreachable: true));
            }
            else if (message.Type == MessageType.Snapshot)
            {
                Schedule(1, () => Report(from, to, snapshot: true, unreachable: false));
            }

            return;
        }

        if (_networkRandom.ChancePerMillion(_network.DropPerMillion))
        {
            if (message.Type == MessageType.Snapshot)
            {
                Schedule(1, () => Report(from, to, snapshot: true, unreachable: false));
            }

            return;
        }

        Schedule(Delay(), () => Deliver(message));
        if (_networkRandom.ChancePerMillion(_network.DuplicatePerMillion))
        {
            Schedule(Delay(), () => Deliver(message));
        }
    }

    /// <summary>
    /// The process of <paramref name="node"/> is going away. Its connections reset: each live peer it can reach
    /// learns it one network delay later, as production's transport raises <c>PeerConnectionLost</c> (and
    /// <c>PeerUnreachable</c>) when a session ends with a reset or EOF. Across a partition the reset is lost like
    /// any other packet, so a partition alone never produces the report.
    /// </summary>
    private void OnGoingDown(SimNode node)
    {
        if (node.Node is { Role: RaftRole.Leader } core && !_livenessPhase)
        {
            _stats.LeaderCrashes++;
            _crashedLeader = (node.Id, core.Term, _now);
            _toldOfCrashedLeader.Clear();
        }

        if (!_options.ConnectionResets)
        {
            return;
        }

        foreach (var peer in _nodes.Values)
        {
            if (peer != node && peer.IsUp && !_partitions.IsBlocked(node.Id, peer.Id))
            {
                var (gone, to) = (node.Id, peer.Id);
                Schedule(Delay(), () => ConnectionLost(to, gone));
            }
        }
    }

    /// <summary>A live node's transport dials a peer that is down and is refused (nothing listens there); it
    /// redials after its back-off (50 ms at first), so a link reports at most once per 50 ms.</summary>
    private void DialRefused(NodeId from, NodeId to)
    {
        if (!_options.ConnectionResets ||
            (_refusedAt.TryGetValue((from.Value, to.Value), out long last) && _now - last < 50))
        {
            return;
        }

        _refusedAt[(from.Value, to.Value)] = _now;
        Schedule(_networkRandom.Between(0, _network.DelayMinMs), () => ConnectionLost(from, to));
    }

    private void ConnectionLost(NodeId at, NodeId peer)
    {
        if (_paused.TryGetValue(at.Value, out var pause))
        {
            Schedule(pause.Until - _now, () => ConnectionLost(at, peer));
            return;
        }

        if (_nodes.TryGetValue(at.Value, out var node) && node.IsUp)
        {
            _stats.ConnectionLostReports++;
            Trace($"n{at} connection to n{peer} lost");
            if (_crashedLeader is { } crashed && crashed.Id == peer)
            {
                _toldOfCrashedLeader.Add(at.Value);
            }

            node.ReportUnreachable(peer);
            node.ReportConnectionLost(peer);
        }
    }

    /// <summary>After every event: times the replacement of a crashed leader, and (in a run that expects a stable
    /// leader) fails as soon as any node reaches a term after the first leader's or another node leads.</summary>
    private void CheckLeaderChanges()
    {
        if (_crashedLeader is null && !_options.ExpectStableLeader)
        {
            return;
        }

        foreach (var node in _nodes.Values)
        {
            if (node.Node is not { } core || node.IsWaiting)
            {
                continue;
            }

            if (_crashedLeader is { } crashed && core.Role == RaftRole.Leader && core.Term > crashed.Term)
            {
                long tookMs = _now - crashed.At;
                bool fast = tookMs * 2 < (long)_options.ElectionTimeoutTicks * _options.TickMs && _toldOfCrashedLeader.Contains(node.Id.Value);
                if (fast)
                {
                    _stats.FastFailovers++;
                }

                Trace($"n{node.Id} replaced the crashed leader n{crashed.Id} of {crashed.Term} after {tookMs} ms{(fast ? " (connection lost)" : string.Empty)}");
                _crashedLeader = null;
            }

            if (!_options.ExpectStableLeader)
            {
                continue;
            }

            if (_firstLeader is null && core.Role == RaftRole.Leader)
            {
                _firstLeader = (node.Id, core.Term);
                Trace($"n{node.Id} is the first leader, term {core.Term}");
            }
            else if (_firstLeader is { } first &&
                (core.Term > first.Term || (core.Role == RaftRole.Leader) != (node.Id == first.Id)))
            {
                throw new SimulationFailureException(
                    $"stable leader: in a run without faults n{node.Id} is {core.Role} in term {core.Term} at t={_now}ms, " +
                    $"after n{first.Id} was elected in term {first.Term}. " + DescribeNodes());
            }
        }
    }

    private long Delay()
    {
        if (_networkRandom.ChancePerMillion(_network.LongDelayPerMillion))
        {
            return _networkRandom.Between(_network.DelayMaxMs, Math.Max(_network.DelayMaxMs, _network.LongDelayMaxMs));
        }

        return _networkRandom.Between(_network.DelayMinMs, _network.DelayMaxMs);
    }

    private void Deliver(Message message)
    {
        if (_paused.TryGetValue(message.To.Value, out var pause))
        {
            // A paused process does not read its socket: the message waits (and then follows the resume).
            Schedule(pause.Until - _now, () => Deliver(message));
            return;
        }

        if (!_nodes.TryGetValue(message.To.Value, out var node) || !node.IsUp || _partitions.IsBlocked(message.From, message.To))
        {
            if (message.Type == MessageType.Snapshot)
            {
                Report(message.From, message.To, snapshot: true, unreachable: false);
            }

            return;
        }

        // The transport's handshake: a node whose applied configuration does not list the dialer tells it as of
        // which index (production's "not a member" notice, once per connection: here once per link and index). The
        // connection is used as usual; the dialer judges whether the notice means it was removed.
        var conf = node.ConfState;
        if ((conf.Voters.Count > 0 || conf.Learners.Count > 0) && !conf.IsMember(message.From) &&
            _notices.Add((message.From.Value, message.To.Value, node.Applied.Value)))
        {
            var asOf = node.Applied;
            Schedule(Delay(), () =>
            {
                if (_nodes.TryGetValue(message.From.Value, out var sender) && sender.IsUp)
                {
                    sender.ReportNotAMember(message.To, asOf);
                }
            });
        }

        node.Step(message);
        if (message.Type == MessageType.Snapshot && _nodes.TryGetValue(message.From.Value, out var from) && from.IsUp)
        {
            from.ReportSnapshot(message.To, true);
        }
    }

    private void Report(NodeId from, NodeId to, bool snapshot, bool unreachable)
    {
        if (_paused.TryGetValue(from.Value, out var pause))
        {
            Schedule(pause.Until - _now, () => Report(from, to, snapshot, unreachable));
            return;
        }

        if (!_nodes.TryGetValue(from.Value, out var sender) || !sender.IsUp)
        {
            return;
        }

        if (unreachable)
        {
            sender.ReportUnreachable(to);
        }

        if (snapshot)
        {
            sender.ReportSnapshot(to, false);
        }
    }

    // ---------------------------------------------------------------- clients

    private void ClientStep(int client)
    {
        if (_livenessPhase)
        {
            return;
        }

        var targets = UpNodes().ToList();
        if (targets.Count == 0)
        {
            Schedule(_random.Between(10, 50), () => ClientStep(client));
            return;
        }

        var leader = CurrentLeader();
        var target = leader is not null && _random.Chance(1, 2) ? leader : _random.Pick(targets);
        string key = _keys[_random.Next(_options.KeyCount)];
        int choice = _random.Next(10);
        if (choice < 4)
        {
            bool lease = _options.CheckQuorum && target.Node!.Role == RaftRole.Leader && _random.Chance(1, 3);
            StartRead(client, target, key, lease);
            return;
        }

        long id = _nextOperationId++;
        string value = string.Create(CultureInfo.InvariantCulture, $"c{client}-{id}");
        var kind = choice switch
        {
            < 7 => KvOperationKind.Set,
            < 8 => KvOperationKind.Delete,
            _ => KvOperationKind.CompareAndSet,
        };
        string? expected = null;
        if (kind == KvOperationKind.CompareAndSet)
        {
            // Expect a value some earlier write used (or absent), so swaps sometimes succeed.
            var earlier = _operations.Where(o => o.Key == key && o.Value is not null).TakeLast(3).ToList();
            expected = earlier.Count == 0 || _random.Chance(1, 4) ? null : _random.Pick(earlier).Value;
        }

        var operation = new ClientOperation
        {
            Id = id,
            Client = client,
            Kind = kind,
            Key = key,
            Value = kind == KvOperationKind.Delete ? null : value,
            Expected = expected,
            InvokeTime = _now,
        };

        // A write sent to a follower is forwarded to the leader, and answered once the follower applied it (so the
        // client reads its write there).
        SimNode? via = null;
        if (target.Node!.Role != RaftRole.Leader && leader is not null && _random.Chance(1, 2))
        {
            via = target;
            target = leader;
        }

        StartWrite(operation, target, via);
    }

    private static CacheCommand ToCommand(ClientOperation operation) => operation.Kind switch
    {
        KvOperationKind.Set => CacheCommand.Set(operation.Key, Encoding.UTF8.GetBytes(operation.Value!)),
        KvOperationKind.Delete => CacheCommand.Delete(operation.Key),
        _ when operation.Expected is null => CacheCommand.SetIfVersion(operation.Key, Encoding.UTF8.GetBytes(operation.Value!), 0),
        _ => CacheCommand.SetIfValue(operation.Key, Encoding.UTF8.GetBytes(operation.Value!), Encoding.UTF8.GetBytes(operation.Expected)),
    };

    private void NextClientStep(int client) => Schedule(_random.Between(0, 30), () => ClientStep(client));

    private void StartWrite(ClientOperation operation, SimNode target, SimNode? via)
    {
        int client = operation.Client;
        var status = target.Propose(ToCommand(operation), proposal =>
        {
            if (operation.Finished)
            {
                return;
            }

            if (proposal.Result is { } result)
            {
                if (via is null)
                {
                    Acknowledge(operation, result);
                    return;
                }

                // Forwarded: the follower answers once it has applied the write itself.
                var index = proposal.Index;
                if (!via.WaitForApplied(index, applied =>
                {
                    if (operation.Finished)
                    {
                        return;
                    }

                    if (!applied)
                    {
                        operation.TimedOut = true;
                        NextClientStep(client);
                        return;
                    }

                    if (via.Applied < index)
                    {
                        throw new SimulationFailureException($"read your writes: node {via.Id} answered a forwarded write at {index} having applied only {via.Applied}");
                    }

                    _stats.FollowerWrites++;
                    Acknowledge(operation, result);
                }))
                {
                    operation.TimedOut = true;
                    NextClientStep(client);
                }

                return;
            }

            var error = proposal.Error!;
            if (!error.OutcomeUnknown && error.Kind == HostErrorKind.Lost)
            {
                operation.Discarded = true;
                _stats.WritesLost++;
                Trace($"client {client} #{operation.Id} lost");
            }
            else
            {
                operation.TimedOut = true;
                Trace($"client {client} #{operation.Id} outcome unknown: {error.Message}");
            }

            NextClientStep(client);
        }, out var request);
        if (status != ProposeStatus.Accepted)
        {
            Schedule(_random.Between(5, 40), () => ClientStep(client));
            return;
        }

        operation.Term = request.Term;
        operation.Index = request.Index;
        Trace($"client {client} #{operation.Id} {operation.Kind} {operation.Key}={operation.Value} expected={operation.Expected} at n{target.Id}{(via is null ? string.Empty : $" via n{via.Id}")} -> {request.Term}/{request.Index}");
        _operations.Add(operation);
        Schedule(_options.ClientTimeoutMs, () =>
        {
            if (!operation.Finished)
            {
                operation.TimedOut = true;
                NextClientStep(client);
            }
        });
    }

    private void Acknowledge(ClientOperation operation, ApplyResult result)
    {
        operation.CompleteTime = _now;
        operation.Succeeded = result.Status == ApplyStatus.Ok;
        _stats.WritesAcknowledged++;
        Trace($"client {operation.Client} #{operation.Id} {operation.Kind} {operation.Key} committed ({result.Status})");
        NextClientStep(operation.Client);
    }

    private void StartRead(int client, SimNode target, string key, bool lease)
    {
        var operation = new ClientOperation
        {
            Id = _nextOperationId++,
            Client = client,
            Kind = KvOperationKind.Get,
            Key = key,
            InvokeTime = _now,
        };
        _operations.Add(operation);
        bool accepted = target.Read(key, lease, (ok, value) =>
        {
            if (operation.Finished)
            {
                return;
            }

            if (!ok)
            {
                operation.Discarded = true;
                NextClientStep(client);
                return;
            }

            operation.CompleteTime = _now;
            operation.Result = value;
            if (lease)
            {
                _stats.LeaseReads++;
            }
            else
            {
                _stats.ReadIndexReads++;
            }

            Trace($"client {client} #{operation.Id} read {key} at n{target.Id} lease={lease} -> {value ?? "absent"}");
            NextClientStep(client);
        });
        if (!accepted)
        {
            operation.Discarded = true;
            Schedule(_random.Between(5, 40), () => ClientStep(client));
            return;
        }

        Schedule(_options.ClientTimeoutMs, () =>
        {
            if (!operation.Finished)
            {
                operation.Discarded = true;
                NextClientStep(client);
            }
        });
    }

    private (LinearizabilityVerdict Verdict, string Description) CheckHistory()
    {
        var history = new KvHistory();
        foreach (var operation in _operations.OrderBy(o => o.InvokeTime).ThenBy(o => o.Id))
        {
            if (operation.Discarded && operation.CompleteTime is null)
            {
                continue;
            }

            switch (operation.Kind)
            {
                case KvOperationKind.Get:
                    var get = history.InvokeGet(operation.Client, operation.Key, operation.InvokeTime);
                    if (operation.CompleteTime is { } readAt)
                    {
                        KvHistory.CompleteGet(get, operation.Result, readAt);
                    }

                    break;
                default:
                    long? completed = operation.CompleteTime;
                    if (completed is null)
                    {
                        // Unknown outcome: if its entry was ever applied, it took effect by its first application;
                        // if it never was, nothing could observe it.
                        if (!_oracle.TryGetCommitTime(operation.Index, operation.Term, out long appliedAt))
                        {
                            continue;
                        }

                        if (operation.Kind != KvOperationKind.CompareAndSet)
                        {
                            completed = appliedAt;
                        }
                    }

                    var write = operation.Kind switch
                    {
                        KvOperationKind.Set => history.InvokeSet(operation.Client, operation.Key, operation.Value!, operation.InvokeTime),
                        KvOperationKind.Delete => history.InvokeDelete(operation.Client, operation.Key, operation.InvokeTime),
                        _ => history.InvokeCompareAndSet(operation.Client, operation.Key, operation.Expected, operation.Value!, operation.InvokeTime),
                    };
                    if (completed is { } at)
                    {
                        if (write.Kind == KvOperationKind.CompareAndSet)
                        {
                            KvHistory.CompleteCompareAndSet(write, operation.Succeeded, at);
                        }
                        else
                        {
                            KvHistory.CompleteWrite(write, at);
                        }
                    }

                    break;
            }
        }

        var result = LinearizabilityChecker.Check(history);
        return (result.Verdict, result.Describe());
    }

    // ---------------------------------------------------------------- faults

    private void FaultStep()
    {
        if (_livenessPhase)
        {
            return;
        }

        Schedule(_random.Between(1, _options.FaultIntervalMs * 2), FaultStep);
        int total = _options.CrashWeight + _options.PartitionWeight + _options.MembershipWeight + _options.TransferWeight + _options.PauseWeight +
            _options.DiskFaultWeight + _options.ClockFaultWeight + _options.WipeWeight;
        if (total == 0)
        {
            return;
        }

        int pick = _random.Next(total);
        if ((pick -= _options.CrashWeight) < 0)
        {
            CrashSomeone();
        }
        else if ((pick -= _options.PartitionWeight) < 0)
        {
            PartitionSomehow();
        }
        else if ((pick -= _options.MembershipWeight) < 0)
        {
            ChangeMembership();
        }
        else if ((pick -= _options.PauseWeight) < 0)
        {
            PauseSomeone();
        }
        else if ((pick -= _options.DiskFaultWeight) < 0)
        {
            DiskFault();
        }
        else if ((pick -= _options.ClockFaultWeight) < 0)
        {
            ClockFault();
        }
        else if ((pick -= _options.WipeWeight) < 0)
        {
            WipeSomeone();
        }
        else
        {
            TransferLeadership();
        }
    }

    private void CrashSomeone()
    {
        var up = UpNodes().ToList();
        if (up.Count == 0)
        {
            return;
        }

        var leader = CurrentLeader();
        var victim = leader is not null && _random.Chance(1, 3) ? leader : _random.Pick(up);
        int mode = _random.Next(10);
        _stats.Crashes++;
        if (mode < 5)
        {
            victim.Crash();
            MaybeFlipBit(victim);
        }
        else
        {
            // Power fails inside the next fsync (before or after it took effect): the Ready's messages have left,
            // its batch is torn or durable, its acknowledgements have not left.
            var when = mode < 8 ? SyncCrash.Before : SyncCrash.After;
            Trace($"n{victim.Id} will crash {when} its next sync");
            victim.Disk.CrashAtSync = when;
            Schedule(_random.Between(10, 200), () =>
            {
                if (victim.Disk.CrashAtSync != SyncCrash.None)
                {
                    victim.Crash();
                }

                MaybeFlipBit(victim);
            });
        }

        Schedule(_random.Between(20, 1_500), () => Restart(victim));
    }

    private void MaybeFlipBit(SimNode node)
    {
        // Only while a majority stays healthy without this node: one rotten disk at a time, in a cluster of at least
        // four voters (removals keep three), so the operator can still remove it and add it back.
        var leader = CurrentLeader();
        if (!node.IsUp && _options.BitFlipPerMillion > 0 && _random.ChancePerMillion(_options.BitFlipPerMillion) &&
            _rejoining.Count == 0 && leader is { Node: { } core } && core.ConfState.Voters.Count >= 4 &&
            _nodes.Values.All(n => n.StartFailure is null))
        {
            // A bit rots in a synced file the node will read at start: a sealed WAL segment or a snapshot. The CRC
            // must catch it (the node refuses to start or falls back to an older snapshot).
            bool flipped = _random.Chance(1, 2) ? node.Disk.FlipBit("/data/wal", sealedOnly: true) : node.Disk.FlipBit("/data/snapshots", sealedOnly: false);
            if (flipped)
            {
                _rotten.Add(node.Id.Value);
                Trace($"n{node.Id} a bit flipped on its disk");
            }
        }
    }

    private void Restart(SimNode node)
    {
        if (node.IsUp || node.IsStopped || _livenessPhase || _rejoining.Contains(node.Id.Value))
        {
            return;
        }

        if (node.Start())
        {
            _rotten.Remove(node.Id.Value);
        }
        else
        {
            if (node.StartFailure is null)
            {
                Schedule(_random.Between(20, 300), () => Restart(node)); // a transient failure: try again
                return;
            }

            _stats.RefusedStarts++;
            WipeAndRejoin(node);
        }
    }

    private void PartitionSomehow()
    {
        var members = _nodes.Values.Where(h => !h.IsStopped).Select(h => h.Id).ToList();
        if (members.Count < 2)
        {
            return;
        }

        int kind = _random.Next(4);
        int handle;
        string what;
        if (kind == 0 && CurrentLeader() is { } leader)
        {
            handle = _partitions.Split([leader.Id], members.Where(m => m != leader.Id).ToList());
            what = $"isolate leader {leader.Id}";
        }
        else if (kind <= 1)
        {
            var victim = _random.Pick(members);
            handle = _partitions.Split([victim], members.Where(m => m != victim).ToList());
            what = $"isolate {victim}";
        }
        else if (kind == 2)
        {
            var shuffled = members.OrderBy(_ => _random.NextUInt64()).ToList();
            int cut = _random.Between(1, shuffled.Count - 1);
            handle = _partitions.Split(shuffled.Take(cut).ToList(), shuffled.Skip(cut).ToList());
            what = $"split {string.Join(',', shuffled.Take(cut))} | {string.Join(',', shuffled.Skip(cut))}";
        }
        else
        {
            var from = _random.Pick(members);
            var to = _random.Pick(members.Where(m => m != from).ToList());
            handle = _partitions.OneWay(from, to);
            what = $"one-way {from}->{to}";
        }

        Trace($"partition #{handle}: {what}");
        _stats.Partitions++;
        Schedule(_random.Between(50, 2_000), () =>
        {
            _partitions.Heal(handle);
            Trace($"heal #{handle}");
        });
    }

    private void ChangeMembership()
    {
        if (CurrentLeader() is not { Node: { } core } leader)
        {
            return;
        }

        var conf = core.ConfState;
        int live = _nodes.Values.Count(h => !h.IsStopped);
        if (_random.Chance(1, 2) && live < _options.NodeCount + 2 && conf.Learners.Count == 0)
        {
            // A join: the leader adds a learner; its driver promotes it once it caught up.
            var id = new NodeId(_nextNodeId);
            var status = leader.ChangeMembership(new ConfChange(ConfChangeType.AddLearner, id, Member(id).ToContext()));
            NoteMembershipProposal(leader, status);
            Trace($"n{leader.Id} propose add learner {id}: {status}");
            if (status == ProposeStatus.Accepted)
            {
                _nextNodeId++;
                _stats.Joins++;
                var joiner = CreateNode(id);
                joiner.Start();
                JoinStep(joiner);
            }
        }
        else if (conf.Voters.Count >= 3 && _rejoining.Count == 0)
        {
            // Any voter, the leader included, and nodes that are down (they must learn of it when they return).
            var victim = _random.Pick(conf.Voters);
            var status = leader.ChangeMembership(new ConfChange(ConfChangeType.RemoveNode, victim, ReadOnlyMemory<byte>.Empty));
            NoteMembershipProposal(leader, status);
            Trace($"n{leader.Id} propose remove {victim}{(_nodes.TryGetValue(victim.Value, out var v) && !v.IsUp ? " (down)" : string.Empty)}: {status}");
        }
    }

    private static MemberInfo Member(NodeId id) => new(id.Value, "n" + id.Value, "sim:" + id.Value, "sim:" + id.Value);

    private void OnConfChangeApplied(SimNode node, ConfChange change)
    {
        if (node.ConfState.IsMember(node.Id))
        {
            _joinedInOwnView.Add(node.Id.Value);
        }

        if (change.Type != ConfChangeType.RemoveNode && node.Node?.Role == RaftRole.Leader)
        {
            _everMember.Add(change.NodeId.Value);
        }

        if (node.Applied.Value > (ulong)_options.NodeCount && _confChangesSeen.Add(node.Applied))
        {
            _stats.ConfChangesApplied++;
        }
    }

    /// <summary>A node learned it was removed: it shuts itself down soon after (as the server does).</summary>
    private void OnRemoved(SimNode node)
    {
        _stats.RemovalsLearned++;
        Schedule(_random.Between(0, 100), () =>
        {
            if (!node.IsStopped && !_rejoining.Contains(node.Id.Value))
            {
                node.Stop();
            }
        });
    }

    /// <summary>
    /// The operator's procedure for a member whose data is gone (wiped, or refused to start on corruption): remove
    /// it, delete its data, and start a new incarnation on an empty disk under a new id, added as a learner; the
    /// leader promotes it when it caught up. A node id names one incarnation of a data directory: the old id is
    /// never added again (the cluster refuses it), because a wiped node forgot the votes and entries it had
    /// acknowledged under it (seed 44893: a stale node won an election with the votes of two wiped nodes re-added
    /// under ids that were still voters in its configuration).
    /// </summary>
    private void WipeAndRejoin(SimNode node)
    {
        if (!_rejoining.Add(node.Id.Value))
        {
            return;
        }

        node.Crash();
        _rotten.Remove(node.Id.Value);
        _stats.Wipes++;
        Trace($"n{node.Id} will be removed, wiped and rejoined under a new id");
        Schedule(_random.Between(0, 50), () => RemoveWiped(node));
    }

    /// <summary>Removes the wiped node's id; once the leader applied that, its data goes and a new incarnation starts.</summary>
    private void RemoveWiped(SimNode node)
    {
        Schedule(_random.Between(20, 100), () =>
        {
            var leader = CurrentLeader();
            if (leader?.Node is not { } core)
            {
                RemoveWiped(node);
                return;
            }

            if (core.ConfState.IsMember(node.Id) || leader.ConfState.IsMember(node.Id))
            {
                var status = leader.ChangeMembership(new ConfChange(ConfChangeType.RemoveNode, node.Id, ReadOnlyMemory<byte>.Empty));
                NoteMembershipProposal(leader, status);
                Trace($"n{leader.Id} propose remove {node.Id} (to wipe it): {status}");
                RemoveWiped(node);
                return;
            }

            // The removal is applied on the leader: the old incarnation is gone for good, its data deleted.
            node.Stop();
            node.Wipe();
            _rejoining.Remove(node.Id.Value);
            var fresh = CreateNode(new NodeId(_nextNodeId++));
            _rejoining.Add(fresh.Id.Value);
            Trace($"n{fresh.Id} is the new incarnation of wiped n{node.Id}");
            StartRejoined(fresh);
        });
    }

    /// <summary>Starts the new incarnation (again, if a fault stopped it) and asks the leader to add it until it has.</summary>
    private void StartRejoined(SimNode node)
    {
        if (!node.IsUp && !node.IsStopped && !node.Start() && node.StartFailure is not null)
        {
            throw new SimulationFailureException($"node {node.Id}, a wiped node's new incarnation, refused to start: {node.StartFailure}");
        }

        Schedule(_random.Between(20, 100), () =>
        {
            var leader = CurrentLeader();
            if (leader?.Node is not { } core)
            {
                StartRejoined(node);
                return;
            }

            if (leader.ConfState.IsMember(node.Id) && node.IsUp)
            {
                // Added and applied on the leader, and running: from here on it is a member like any other.
                _rejoining.Remove(node.Id.Value);
                _everMember.Add(node.Id.Value);
                return;
            }

            if (!core.ConfState.IsMember(node.Id))
            {
                var status = leader.ChangeMembership(new ConfChange(ConfChangeType.AddLearner, node.Id, Member(node.Id).ToContext()));
                NoteMembershipProposal(leader, status);
                Trace($"n{leader.Id} propose add {node.Id} (a wiped node's new incarnation) as learner: {status}");
            }

            StartRejoined(node);
        });
    }

    /// <summary>A joining node asks again until its addition is applied on the leader (the server's joiner retries).</summary>
    private void JoinStep(SimNode node)
    {
        Schedule(_random.Between(50, 200), () =>
        {
            var leader = CurrentLeader();
            if (_everMember.Contains(node.Id.Value) || node.IsStopped)
            {
                return; // added; or gone for good (wiped: its new incarnation joins under a new id)
            }

            if (leader?.Node is { } core && !core.ConfState.IsMember(node.Id))
            {
                var status = leader.ChangeMembership(new ConfChange(ConfChangeType.AddLearner, node.Id, Member(node.Id).ToContext()));
                NoteMembershipProposal(leader, status);
                Trace($"n{leader.Id} propose add learner {node.Id} again: {status}");
                if (status == ProposeStatus.Rejected)
                {
                    return; // added and removed meanwhile: a removed id is never added again
                }
            }

            JoinStep(node);
        });
    }

    private void NoteMembershipProposal(SimNode leader, ProposeStatus status)
    {
        if (status == ProposeStatus.Accepted && leader.Node is { } core && core.LastIndex > _membershipProposedAt)
        {
            _membershipProposedAt = core.LastIndex;
        }
    }

    private void WipeSomeone()
    {
        // One at a time, and never the last majority: the removal needs a quorum without the wiped node. So no
        // other membership change may be in flight (a removal applied meanwhile left two voters, both needed), and
        // the other voters must not be stopped (one that stopped, believing itself removed, does not vote), nor down
        // with a rotten disk (it may refuse to start and need a wipe too: seed 63656 lost two of four voters so).
        if (_rejoining.Count > 0 || _rotten.Count > 0 || CurrentLeader() is not { Node: { } core } leader || core.ConfState.Voters.Count < 3 ||
            leader.Applied < _membershipProposedAt || core.ConfState.Voters.Any(v => _nodes.TryGetValue(v.Value, out var n) && n.IsStopped))
        {
            return;
        }

        var candidates = core.ConfState.Voters.Where(v => v != leader.Id && _nodes.ContainsKey(v.Value) && !_rejoining.Contains(v.Value)).ToList();
        if (candidates.Count == 0)
        {
            return;
        }

        WipeAndRejoin(_nodes[_random.Pick(candidates).Value]);
    }

    private void DiskFault()
    {
        var up = UpNodes().ToList();
        if (up.Count == 0)
        {
            return;
        }

        var victim = _random.Pick(up);
        long duration = _random.Between(20, 800);
        _stats.DiskFaults++;
        if (_random.Chance(1, 2))
        {
            Trace($"n{victim.Id} disk full for {duration}ms");
            victim.Disk.Full = true;
            Schedule(duration, () => victim.Disk.Full = false);
        }
        else
        {
            Trace($"n{victim.Id} disk failing (EIO) for {duration}ms");
            victim.Disk.IoErrorPerMillion = _random.Between(10_000, 300_000);
            Schedule(duration, () => victim.Disk.IoErrorPerMillion = 0);
        }
    }

    private void ClockFault()
    {
        var up = UpNodes().ToList();
        if (up.Count == 0)
        {
            return;
        }

        var victim = _random.Pick(up);
        _stats.ClockFaults++;
        if (_random.Chance(1, 2))
        {
            long step = _random.Between(-10_000, 10_000);
            victim.Clock.OffsetMs += step;
            Trace($"n{victim.Id} wall clock steps {step}ms");
            return;
        }

        // The tick timer stalls (a starved thread pool): messages are still read, ticks come late, all at once.
        if (_stalled.ContainsKey(victim.Id.Value))
        {
            return;
        }

        long until = _random.Between(20, 400);
        _stalled[victim.Id.Value] = 0;
        Trace($"n{victim.Id} tick timer stalls for {until}ms");
        Schedule(until, () =>
        {
            if (_stalled.Remove(victim.Id.Value, out int missed) && missed > 0)
            {
                Trace($"n{victim.Id} timer catches up {missed} ticks");
                victim.Tick(missed);
            }
        });
    }

    private void TransferLeadership()
    {
        if (CurrentLeader() is not { Node: { } core } leader)
        {
            return;
        }

        var others = core.ConfState.Voters.Where(v => v != leader.Id).ToList();
        if (others.Count == 0)
        {
            return;
        }

        var target = _random.Pick(others);
        var status = leader.TransferLeadership(target);
        Trace($"n{leader.Id} transfer leadership to {target}: {status}");
        if (status == ProposeStatus.Accepted)
        {
            _stats.Transfers++;
        }
    }

    // ---------------------------------------------------------------- liveness

    private void RunLivenessPhase()
    {
        _livenessPhase = true;
        _partitions.HealAll();
        _network = _network with { DropPerMillion = 0, DuplicatePerMillion = 0, UnreachableReportPerMillion = 0 };
        Trace("liveness phase: heal everything, restart crashed nodes");
        foreach (var node in _nodes.Values)
        {
            node.Disk.CrashAtSync = SyncCrash.None;
            node.Disk.Full = false;
            node.Disk.IoErrorPerMillion = 0;
            if (_stalled.Remove(node.Id.Value, out int missed) && missed > 0)
            {
                node.Tick(missed);
            }

            if (!node.IsUp && !node.IsStopped && !_rejoining.Contains(node.Id.Value))
            {
                if (node.Start() || (node.StartFailure is null && node.Start()))
                {
                    _rotten.Remove(node.Id.Value);
                }
                else
                {
                    _stats.RefusedStarts++;
                    WipeAndRejoin(node);
                }

                CheckAll();
            }
        }

        long deadline = _now + ((long)_options.LivenessElectionTimeouts * _options.ElectionTimeoutTicks * _options.TickMs);
        long markerId = 0;
        Term markerTerm = Term.Zero;
        LogIndex markerIndex = LogIndex.Zero;
        ClientOperation? marker = null;
        while (_now < deadline)
        {
            RunUntil(_now + _options.TickMs);
            if (marker is not null && _oracle.TryGetCommitTime(marker.Index, marker.Term, out _))
            {
                markerIndex = marker.Index;
                if (Converged(markerIndex, out _))
                {
                    Trace($"liveness: marker committed at {markerIndex} and all members converged");
                    return;
                }

                continue;
            }

            if (CurrentLeader() is { Node: { } core } leader && core.Term != markerTerm)
            {
                long id = _nextOperationId++;
                var operation = new ClientOperation { Id = id, Client = -1, Kind = KvOperationKind.Set, Key = LivenessKey, Value = "live", InvokeTime = _now };
                var status = leader.Propose(ToCommand(operation), _ => { }, out var request);
                if (status == ProposeStatus.Accepted)
                {
                    markerId = id;
                    markerTerm = core.Term;
                    operation.Term = request.Term;
                    operation.Index = request.Index;
                    marker = operation;
                    Trace($"liveness: marker #{id} proposed at n{leader.Id} {request.Term}/{request.Index}");
                }
            }
        }

        Converged(markerIndex, out string why);
        var leaderNow = CurrentLeader();
        throw new SimulationFailureException(
            $"liveness: not converged within {_options.LivenessElectionTimeouts} election timeouts after healing: {why} " +
            $"(leader: {(leaderNow is null ? "none" : leaderNow.Id.ToString())}, marker index {markerIndex}). " + DescribeNodes());
    }

    /// <summary>
    /// After healing: the marker is applied by every member, no learner is left unpromoted, every rejoin finished,
    /// and every node outside the configuration has shut itself down.
    /// </summary>
    private bool Converged(LogIndex index, out string why)
    {
        why = "no leader";
        var leader = CurrentLeader();
        if (leader?.Node is not { } core)
        {
            return false;
        }

        if (index == LogIndex.Zero)
        {
            why = "no marker committed";
            return false;
        }

        foreach (var member in core.ConfState.Voters.Concat(core.ConfState.Learners))
        {
            if (!_nodes.TryGetValue(member.Value, out var node) || !node.IsUp || node.Applied < index)
            {
                why = $"member {member} has not applied the marker";
                return false;
            }
        }

        if (core.ConfState.Learners.Count > 0)
        {
            why = $"learners {string.Join(',', core.ConfState.Learners)} not promoted";
            return false;
        }

        if (_rejoining.Count > 0)
        {
            why = $"rejoins pending: {string.Join(',', _rejoining)}";
            return false;
        }

        foreach (var node in _nodes.Values)
        {
            // A node that never applied any configuration never joined in its own view (removed before it caught
            // up): it cannot tell a removal from a join still in progress, and stays up harmlessly, as in production.
            // So does one removed before it applied its own addition (a joiner still catching up).
            bool neverJoined = (node.Applied == LogIndex.Zero && node.ConfState.Voters.Count == 0 && node.ConfState.Learners.Count == 0) ||
                (!node.ConfState.IsMember(node.Id) && !_joinedInOwnView.Contains(node.Id.Value));

            // A removed node learns of it from a peer's "not a member" notice, which needs a message to a member
            // that is up (a campaign, or the probe of a node that may not campaign: a learner, a voter whose log is
            // known stale). A node whose configuration names only members that have shut down has nobody to ask.
            // Production cannot tell it either; the operator stops it.
            bool cannotAsk = node.ConfState.IsMember(node.Id) && node.ConfState.Voters.Concat(node.ConfState.Learners)
                .All(peer => peer == node.Id || !_nodes.TryGetValue(peer.Value, out var other) || !other.IsUp);
            if (!core.ConfState.IsMember(node.Id) && node.IsUp && !neverJoined && !cannotAsk)
            {
                why = $"node {node.Id} was removed but has not shut down";
                return false;
            }
        }

        return true;
    }

    private SimulationStats CollectStats()
    {
        _stats.SnapshotsTaken = _nodes.Values.Sum(h => (long)h.SnapshotsTaken);
        _stats.SnapshotsInstalled = _nodes.Values.Sum(h => (long)h.SnapshotsInstalled);
        _stats.SyncCrashes = _nodes.Values.Sum(h => h.Disk.SyncCrashes);
        _stats.StorageRefusals = _nodes.Values.Sum(h => (long)h.StorageRefusals);
        _stats.PersistsLostInFlight = _nodes.Values.Sum(h => (long)h.PersistsLostInFlight);
        _stats.LeaderTerms = _oracle.LeaderTermCount;
        _stats.Ttl = _ttl?.Stats ?? new TtlStats();
        return _stats;
    }

    private string DescribeNodes() =>
        string.Join("; ", _nodes.Values.Select(h => h.Node is { } n
            ? $"n{h.Id} {n.Role} term={n.Term} leader={n.Leader} commit={n.CommitIndex} applied={h.Applied} last={h.Log.LastIndex} conf=[{n.ConfState}]{(h.IsWaiting ? " waiting" : string.Empty)}"
            : $"n{h.Id} {(h.IsStopped ? "stopped" : h.StartFailure is null ? "down" : "refused to start")}"));

    // ---------------------------------------------------------------- helpers

    private IEnumerable<SimNode> UpNodes() => _nodes.Values.Where(h => h.IsUp && !_paused.ContainsKey(h.Id.Value));

    private void PauseSomeone()
    {
        var candidates = UpNodes().ToList();
        if (candidates.Count == 0)
        {
            return;
        }

        var leader = CurrentLeader();
        var victim = leader is not null && _random.Chance(1, 2) ? leader : _random.Pick(candidates);
        long until = _now + _random.Between(20, 600);
        _paused[victim.Id.Value] = new Pause(until, 0);
        _stats.Pauses++;
        Trace($"n{victim.Id} paused until {until}");
        Schedule(until - _now, () =>
        {
            if (_paused.Remove(victim.Id.Value, out var pause))
            {
                Trace($"n{victim.Id} resumes, catching up {pause.MissedTicks} ticks");
                if (pause.MissedTicks > 0)
                {
                    victim.Tick(pause.MissedTicks);
                }
            }
        });
    }

    private readonly record struct Pause(long Until, int MissedTicks);

    /// <summary>The leader with the highest term among the nodes that are up (what a client's discovery would find).</summary>
    private SimNode? CurrentLeader()
    {
        SimNode? best = null;
        foreach (var node in UpNodes())
        {
            if (!node.IsWaiting && node.Node!.Role == RaftRole.Leader && (best is null || node.Node.Term > best.Node!.Term))
            {
                best = node;
            }
        }

        return best;
    }

    private void Trace(string line)
    {
        _trace?.Invoke(string.Create(CultureInfo.InvariantCulture, $"{_now,7} {line}"));
    }

    private sealed class ClientOperation
    {
        public required long Id { get; init; }

        public required int Client { get; init; }

        public required KvOperationKind Kind { get; init; }

        public required string Key { get; init; }

        public string? Value { get; init; }

        public string? Expected { get; init; }

        public required long InvokeTime { get; init; }

        /// <summary>The entry the write was given when proposed (same index and term = same entry).</summary>
        public Term Term { get; set; }

        public LogIndex Index { get; set; }

        public long? CompleteTime { get; set; }

        public string? Result { get; set; }

        public bool Succeeded { get; set; }

        /// <summary>Known not to have taken effect (refused, lost, or a read never answered).</summary>
        public bool Discarded { get; set; }

        public bool Finished => CompleteTime is not null || Discarded || TimedOut;

        public bool TimedOut { get; set; }
    }
}
