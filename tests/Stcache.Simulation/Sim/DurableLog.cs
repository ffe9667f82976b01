using Stcache.Raft;
using Stcache.Storage;

namespace Stcache.Simulation.Sim;

/// <summary>
/// The real <see cref="WriteAheadLog"/> with a shadow of what it acknowledged as durable, for the checkers: the
/// oracle reads a node's durable log from the shadow (also while the node is down), and at restart the shadow is
/// compared with what the WAL recovers from the simulated disk, so a log that loses acknowledged data is caught
/// directly, not only through its consequences.
/// </summary>
internal sealed class DurableLog : IRaftLogStore
{
    private readonly SafetyOracle _oracle;

    // Invariant: contiguous; entries at or below the snapshot index may linger until the next snapshot record.
    private readonly List<Entry> _entries = [];
    private WriteAheadLog? _wal;

    // The batch being saved when the power failed inside its sync, if it did: it may have become durable (a crash
    // after the sync took effect), so a restart may find it instead of the entries it overwrote.
    private Entry[]? _inFlight;

    public DurableLog(NodeId id, SafetyOracle oracle)
    {
        Id = id;
        _oracle = oracle;
    }

    public NodeId Id { get; }

    /// <summary>The last hard state the WAL accepted (a commit-only change is not durable; term and vote are).</summary>
    public HardState HardState { get; private set; } = HardState.Empty;

    public SnapshotMetadata SnapshotMetadata { get; private set; } = SnapshotMetadata.Empty;

    public LogIndex LastIndex => _entries.Count > 0 ? _entries[^1].Index : SnapshotMetadata.Index;

    /// <summary>Attaches the WAL of a new incarnation; <see cref="Load"/> then checks it against the shadow.</summary>
    public void Attach(WriteAheadLog wal) => _wal = wal;

    /// <summary>The incarnation stops cleanly: the WAL is disposed, which writes a commit index it held in memory.</summary>
    public void Detach()
    {
        _wal?.Dispose();
        _wal = null;
    }

    /// <summary>
    /// The incarnation crashed: nothing of it runs any more, so its WAL is dropped, not disposed. Disposing would
    /// write the commit index the WAL keeps in memory (a commit-only save writes nothing), through a file handle of
    /// a process that no longer exists, onto the disk the crash just left behind. The simulated files hold no
    /// resources, and the simulator prepares no segments in the background.
    /// </summary>
    public void Abandon() => _wal = null;

    /// <summary>Forgets the shadow (the operator wiped the disk).</summary>
    public void Reset()
    {
        _entries.Clear();
        _inFlight = null;
        HardState = HardState.Empty;
        SnapshotMetadata = SnapshotMetadata.Empty;
    }

    public PersistentState Load()
    {
        var state = Wal.Load();
        CheckNothingAcknowledgedWasLost(state);
        _inFlight = null;
        HardState = state.HardState;
        SnapshotMetadata = state.Snapshot;
        _entries.Clear();
        _entries.AddRange(state.Entries);
        return state;
    }

    public bool Save(HardState? hardState, IReadOnlyList<Entry> entries)
    {
        _inFlight = [.. entries];
        bool wrote = Wal.Save(hardState, entries);
        _inFlight = null;
        if (entries.Count > 0)
        {
            int keep = _entries.FindIndex(e => e.Index >= entries[0].Index);
            if (keep >= 0)
            {
                _entries.RemoveRange(keep, _entries.Count - keep);
            }

            foreach (var entry in entries)
            {
                _entries.Add(entry with { Data = entry.Data.ToArray() });
            }

            _oracle.ObserveSaved(this, entries);
        }

        if (hardState is { } state)
        {
            HardState = state;
        }

        return wrote;
    }

    public void ApplySnapshot(SnapshotMetadata snapshot)
    {
        Wal.ApplySnapshot(snapshot);
        if (snapshot.Index <= SnapshotMetadata.Index)
        {
            return;
        }

        if (TermAt(snapshot.Index) == snapshot.Term)
        {
            _entries.RemoveAll(e => e.Index <= snapshot.Index);
        }
        else
        {
            _entries.Clear();
        }

        SnapshotMetadata = snapshot;
    }

    public void Compact(LogIndex upTo) => Wal.Compact(upTo);

    public Term? TermAt(LogIndex index)
    {
        if (index == SnapshotMetadata.Index)
        {
            return SnapshotMetadata.Term;
        }

        return TryGetEntry(index, out var entry) ? entry.Term : index == LogIndex.Zero ? Term.Zero : null;
    }

    public bool TryGetEntry(LogIndex index, out Entry entry)
    {
        entry = default;
        if (_entries.Count == 0 || index < _entries[0].Index || index > _entries[^1].Index)
        {
            return false;
        }

        entry = _entries[(int)(index.Value - _entries[0].Index.Value)];
        return true;
    }

    private WriteAheadLog Wal => _wal ?? throw new InvalidOperationException($"node {Id} has no open log");

    private void CheckNothingAcknowledgedWasLost(PersistentState recovered)
    {
        if (recovered.HardState.Term < HardState.Term ||
            (recovered.HardState.Term == HardState.Term && !HardState.Vote.IsNone && recovered.HardState.Vote != HardState.Vote))
        {
            throw new SimulationFailureException(
                $"durability: node {Id} restarted with term {recovered.HardState.Term} vote {recovered.HardState.Vote}, but its log had acknowledged term {HardState.Term} vote {HardState.Vote}");
        }

        var covered = recovered.Snapshot.Index > SnapshotMetadata.Index ? recovered.Snapshot.Index : SnapshotMetadata.Index;
        var byIndex = recovered.Entries.ToDictionary(e => e.Index);
        if (_inFlight is { Length: > 0 } batch && BatchPrefixBecameDurable(batch, covered, recovered.Entries, byIndex))
        {
            // The batch in flight at the crash became durable, whole or a prefix of it (the power failed during its
            // sync; the rest was never acknowledged): it replaced the acknowledged entries from its first index. Raft
            // overwrites only entries that conflict with a leader's, which are not committed, and a prefix leaves
            // the log the node would hold had the leader sent it only those entries.
            CheckEntries(_entries.Where(e => e.Index < batch[0].Index), covered, byIndex);
            return;
        }

        CheckEntries(_entries, covered, byIndex);
    }

    /// <summary>True if the recovered log, from the batch's first index on, is a non-empty prefix of the batch (or
    /// the snapshot covers the whole batch).</summary>
    private static bool BatchPrefixBecameDurable(Entry[] batch, LogIndex covered, IReadOnlyList<Entry> recovered, Dictionary<LogIndex, Entry> byIndex)
    {
        var beyond = batch.Where(e => e.Index > covered).ToList();
        if (beyond.Count == 0)
        {
            return true;
        }

        if (!byIndex.TryGetValue(beyond[0].Index, out var head) || head.Term != beyond[0].Term)
        {
            return false;
        }

        var batchByIndex = beyond.ToDictionary(e => e.Index);
        return recovered.Where(e => e.Index >= beyond[0].Index).All(e => batchByIndex.TryGetValue(e.Index, out var b) && b.Term == e.Term);
    }

    private void CheckEntries(IEnumerable<Entry> acknowledged, LogIndex covered, Dictionary<LogIndex, Entry> byIndex)
    {
        foreach (var entry in acknowledged)
        {
            if (entry.Index <= covered)
            {
                continue;
            }

            bool present = byIndex.TryGetValue(entry.Index, out var found);
            if (!present || found.Term != entry.Term)
            {
                throw new SimulationFailureException(
                    $"durability: node {Id} restarted without entry {entry.Index}/{entry.Term} that its log had acknowledged as saved" +
                    (present ? $" (found term {found.Term})" : " (missing)"));
            }
        }
    }
}
