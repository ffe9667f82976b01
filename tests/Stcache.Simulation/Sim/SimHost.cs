using Stcache.Raft;

namespace Stcache.Simulation.Sim;

public enum CrashPoint : byte
{
    /// <summary>Crash between two Ready batches.</summary>
    Clean = 0,

    /// <summary>Crash after sending a batch's Messages, before anything of it is durable.</summary>
    AfterMessages = 1,

    /// <summary>Crash while saving: a prefix of the batch's entries survives, the hard state does not.</summary>
    TornSave = 2,

    /// <summary>Crash after the batch is durable, before MessagesAfterPersist leave.</summary>
    AfterSave = 3,
}

public enum WriteOutcome : byte
{
    /// <summary>The entry was applied at the proposal's index with the proposal's term.</summary>
    Committed = 1,

    /// <summary>Another entry was applied at the proposal's index: the write never took effect.</summary>
    Lost = 2,

    /// <summary>The node crashed or stopped before the outcome was known.</summary>
    Unknown = 3,
}

/// <summary>
/// Drives one <see cref="RaftNode"/> the way the real host must (see <see cref="Ready"/>): send Messages, persist
/// snapshot then hard state and entries, send MessagesAfterPersist, apply committed entries, serve reads, Advance.
/// The disk survives crashes; everything else is rebuilt from it on restart.
/// </summary>
public sealed class SimHost
{
    private readonly Func<long> _clock;
    private readonly SafetyOracle _oracle;
    private readonly Action<Message> _send;
    private readonly Dictionary<LogIndex, List<PendingWrite>> _pendingWrites = [];
    private readonly Dictionary<ulong, PendingRead> _pendingReads = [];
    private readonly List<ReadState> _readStates = [];
    private LogIndex _lastSnapshotIndex;
    private Term _appliedTerm;
    private int _restarts;

    public SimHost(RaftConfig config, SimDisk disk, SafetyOracle oracle, Func<long> clock, Action<Message> send)
    {
        Config = config;
        Disk = disk;
        _oracle = oracle;
        _clock = clock;
        _send = send;
        Disk.EntriesSaved = (d, _, entries) => _oracle.ObserveSaved(d, entries);
    }

    public NodeId Id => Config.Id;

    public RaftConfig Config { get; }

    public SimDisk Disk { get; }

    /// <summary>Null while the node is down.</summary>
    public RaftNode? Node { get; private set; }

    public bool IsUp => Node is not null;

    /// <summary>Removed from the cluster and shut down for good.</summary>
    public bool IsStopped { get; private set; }

    public KvStateMachine Machine { get; } = new();

    public ConfState ConfState { get; private set; } = ConfState.Empty;

    public LogIndex Applied { get; private set; }

    /// <summary>Take a snapshot after this many applied entries (0 = never).</summary>
    public int SnapshotIntervalEntries { get; set; }

    public ulong SnapshotTrailingEntries { get; set; }

    /// <summary>Set by a fault injector: the next batch that must be synced crashes the node at this point.</summary>
    public CrashPoint? PendingCrash { get; set; }

    public int TornSurvivors { get; set; }

    public Action<SimHost, ConfChange>? ConfChangeApplied { get; set; }

    public Action<string>? Trace { get; set; }

    public void Start()
    {
        if (IsUp || IsStopped)
        {
            throw new InvalidOperationException($"node {Id} cannot start");
        }

        var state = Disk.Load();
        var config = Config with { RandomSeed = Config.RandomSeed + ((ulong)_restarts * 7919) };
        _restarts++;
        Machine.Restore(ReadOnlyMemory<byte>.Empty);
        ConfState = ConfState.Empty;
        Applied = LogIndex.Zero;
        _appliedTerm = Term.Zero;
        var snapshot = Disk.LoadNewest();
        if (snapshot is not null)
        {
            if (snapshot.Metadata != state.Snapshot)
            {
                throw new SimulationFailureException($"node {Id}: newest snapshot {snapshot.Metadata.Index} differs from the log store's {state.Snapshot.Index}");
            }

            _oracle.ObserveSnapshot(Id, snapshot.Metadata);
            Machine.Restore(snapshot.Data);
            ConfState = snapshot.Metadata.ConfState;
            Applied = snapshot.Metadata.Index;
            _appliedTerm = snapshot.Metadata.Term;
        }

        _lastSnapshotIndex = Applied;
        Node = new RaftNode(config, state);
        Trace?.Invoke($"n{Id} start term={state.HardState.Term} commit={state.HardState.Commit} snapshot={state.Snapshot.Index} entries={state.Entries.Count}");
    }

    /// <summary>The process dies: volatile state is gone, waiting clients learn nothing.</summary>
    public void Crash()
    {
        if (Node is null)
        {
            return;
        }

        Trace?.Invoke($"n{Id} crash");
        Node = null;
        PendingCrash = null;
        FailPending();
    }

    /// <summary>The node was removed from the cluster and shuts itself down for good.</summary>
    public void Stop()
    {
        Crash();
        IsStopped = true;
    }

    public ProposeResult Propose(KvCommand command, Action<WriteOutcome, bool> done)
    {
        var node = Node ?? throw new InvalidOperationException("node is down");
        var result = node.Propose(command.Encode());
        if (result.IsAccepted)
        {
            if (result.FirstIndex != result.LastIndex)
            {
                throw new SimulationFailureException($"node {Id}: one command occupied {result.FirstIndex}..{result.LastIndex}");
            }

            if (!_pendingWrites.TryGetValue(result.FirstIndex, out var list))
            {
                list = [];
                _pendingWrites.Add(result.FirstIndex, list);
            }

            list.Add(new PendingWrite(result.Term, done));
        }

        Process();
        return result;
    }

    public ReadStatus Read(ulong requestId, string key, bool lease, Action<string?> done)
    {
        var node = Node ?? throw new InvalidOperationException("node is down");
        var status = node.ReadIndex(requestId, lease);
        if (status == ReadStatus.Accepted)
        {
            _pendingReads[requestId] = new PendingRead(key, done);
        }

        Process();
        return status;
    }

    public void Tick()
    {
        Node?.Tick();
        Process();
    }

    public void Step(Message message)
    {
        if (Node is null)
        {
            return;
        }

        Node.Step(message);
        Process();
    }

    /// <summary>Handles every pending Ready batch, following the contract in <see cref="Ready"/>.</summary>
    public void Process()
    {
        while (Node is { } node && node.HasReady())
        {
            var ready = node.GetReady();
            if (ready.SoftState is { } soft)
            {
                Trace?.Invoke($"n{Id} {soft.Role} term={soft.Term} leader={soft.Leader}");
                _oracle.ObserveRole(Id, soft.Role, soft.Term);
            }

            foreach (var message in ready.Messages)
            {
                Send(node, message);
            }

            if (ready.MustSync && PendingCrash is { } crash && crash != CrashPoint.AfterSave)
            {
                if (crash == CrashPoint.TornSave && ready.Entries.Count > 0 && ready.Snapshot is null)
                {
                    int survivors = Math.Min(TornSurvivors, ready.Entries.Count - 1);
                    Trace?.Invoke($"n{Id} torn save: {survivors} of {ready.Entries.Count} entries survive");
                    Disk.SaveTorn(ready.Entries, survivors);
                }

                Crash();
                return;
            }

            if (ready.Snapshot is { } snapshot)
            {
                if (snapshot.Metadata.Index <= Applied)
                {
                    throw new SimulationFailureException($"node {Id}: asked to install snapshot {snapshot.Metadata.Index} at or below applied {Applied}");
                }

                _oracle.ObserveSnapshot(Id, snapshot.Metadata);
                Disk.Save(snapshot);
                Disk.ApplySnapshot(snapshot.Metadata);
                Machine.Restore(snapshot.Data);
                ConfState = snapshot.Metadata.ConfState;
                FailPendingUpTo(snapshot.Metadata.Index);
                Applied = snapshot.Metadata.Index;
                _appliedTerm = snapshot.Metadata.Term;
                _lastSnapshotIndex = Applied;
                Trace?.Invoke($"n{Id} installed snapshot {snapshot.Metadata.Index}/{snapshot.Metadata.Term} {snapshot.Metadata.ConfState}");
            }

            if (ready.HardState is not null || ready.Entries.Count > 0)
            {
                Disk.Save(ready.HardState, ready.Entries);
            }

            if (ready.SoftState is { Role: RaftRole.Leader } leader)
            {
                _oracle.CheckLeaderCompleteness(Id, leader.Term, Disk);
            }

            if (ready.MustSync && PendingCrash == CrashPoint.AfterSave)
            {
                Crash();
                return;
            }

            foreach (var message in ready.MessagesAfterPersist)
            {
                Send(node, message);
            }

            foreach (var entry in ready.CommittedEntries)
            {
                Apply(entry);
            }

            _readStates.AddRange(ready.ReadStates);
            ServeReads();
            node.Advance(ready);
            MaybeSnapshot(node);
        }
    }

    /// <summary>Checks the node's own invariants and that its log is consistent with its disk.</summary>
    public void AssertInvariants()
    {
        if (Node is not { } node)
        {
            return;
        }

        node.AssertInvariants();
        _oracle.ObserveRole(Id, node.Role, node.Term);
        if (Applied > node.CommitIndex)
        {
            throw new SimulationFailureException($"node {Id}: applied {Applied} beyond commit {node.CommitIndex}");
        }
    }

    private void Send(RaftNode node, Message message)
    {
        if (message.Type == MessageType.Snapshot && message.Snapshot is { } meta)
        {
            var full = Disk.Find(meta.Metadata.Index, meta.Metadata.Term);
            if (full is null)
            {
                Trace?.Invoke($"n{Id} has no snapshot {meta.Metadata.Index}/{meta.Metadata.Term} to send to {message.To}");
                node.ReportSnapshot(message.To, false);
                return;
            }

            message = message with { Snapshot = full };
        }

        _send(message);
    }

    private void Apply(Entry entry)
    {
        if (entry.Index != Applied.Next)
        {
            throw new SimulationFailureException($"node {Id}: applied {entry.Index} after {Applied} (not contiguous)");
        }

        _oracle.ObserveApplied(Id, entry, _clock());
        Applied = entry.Index;
        _appliedTerm = entry.Term;
        bool effect = true;
        if (entry.Type == EntryType.ConfChange)
        {
            if (!ConfChange.TryDecode(entry.Data.Span, out var change) || change is null)
            {
                throw new SimulationFailureException($"node {Id}: undecodable conf change at {entry.Index}");
            }

            ConfState = ConfState.Apply(change);
            ConfChangeApplied?.Invoke(this, change);
        }
        else if (!entry.Data.IsEmpty)
        {
            effect = Machine.Apply(KvCommand.Decode(entry.Data));
        }

        if (_pendingWrites.Remove(entry.Index, out var waiting))
        {
            foreach (var write in waiting)
            {
                write.Done(write.Term == entry.Term ? WriteOutcome.Committed : WriteOutcome.Lost, effect);
            }
        }
    }

    private void ServeReads()
    {
        for (int i = 0; i < _readStates.Count; i++)
        {
            var state = _readStates[i];
            if (state.Index > Applied)
            {
                continue;
            }

            _readStates.RemoveAt(i);
            i--;
            if (_pendingReads.Remove(state.RequestId, out var read))
            {
                read.Done(Machine.Get(read.Key));
            }
        }
    }

    private void MaybeSnapshot(RaftNode node)
    {
        if (SnapshotIntervalEntries <= 0 || LogIndex.Distance(_lastSnapshotIndex, Applied) < (ulong)SnapshotIntervalEntries)
        {
            return;
        }

        var metadata = new SnapshotMetadata(Applied, _appliedTerm, ConfState);
        Disk.Save(metadata, stream => stream.Write(Machine.Serialize()));
        node.SnapshotTaken(metadata, SnapshotTrailingEntries);
        Disk.Compact(Applied.Value > SnapshotTrailingEntries ? Applied - SnapshotTrailingEntries : LogIndex.Zero);
        _lastSnapshotIndex = Applied;
        Trace?.Invoke($"n{Id} snapshot at {Applied}/{_appliedTerm} {ConfState}");
    }

    private void FailPendingUpTo(LogIndex index)
    {
        foreach (var key in _pendingWrites.Keys.Where(k => k <= index).ToList())
        {
            // Covered by a snapshot: whether the write won is not known here.
            foreach (var write in _pendingWrites[key])
            {
                write.Done(WriteOutcome.Unknown, false);
            }

            _pendingWrites.Remove(key);
        }
    }

    private void FailPending()
    {
        var writes = _pendingWrites.Values.SelectMany(w => w).ToList();
        _pendingWrites.Clear();
        _pendingReads.Clear();
        _readStates.Clear();
        foreach (var write in writes)
        {
            write.Done(WriteOutcome.Unknown, false);
        }
    }

    private sealed record PendingWrite(Term Term, Action<WriteOutcome, bool> Done);

    private sealed record PendingRead(string Key, Action<string?> Done);
}
