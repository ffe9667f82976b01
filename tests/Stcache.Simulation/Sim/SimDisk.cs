using Stcache.Raft;

namespace Stcache.Simulation.Sim;

/// <summary>
/// One node's stable storage, in memory. It survives the node's crashes: whatever <see cref="Save"/> accepted is
/// durable (the model is "atomic and synced when Save returns"); a crash before Save loses the batch.
/// <see cref="SaveTorn"/> models a crash in the middle of a write: a prefix of the entries survives, the hard
/// state does not.
/// </summary>
public sealed class SimDisk : IRaftLogStore, ISnapshotStore
{
    private const int SnapshotsKept = 3;

    private readonly List<Snapshot> _snapshots = [];

    // Invariant: _entries is contiguous; entries at or below the snapshot index may linger until Compact.
    private readonly List<Entry> _entries = [];

    public SimDisk(NodeId id)
    {
        Id = id;
    }

    public NodeId Id { get; }

    public HardState HardState { get; private set; } = HardState.Empty;

    /// <summary>Called after every durable change of entries: (first index written, entries written).</summary>
    public Action<SimDisk, LogIndex, IReadOnlyList<Entry>>? EntriesSaved { get; set; }

    public SnapshotMetadata SnapshotMetadata => _snapshots.Count == 0 ? SnapshotMetadata.Empty : _snapshots[^1].Metadata;

    public LogIndex LastIndex => _entries.Count > 0 ? _entries[^1].Index : SnapshotMetadata.Index;

    public int SaveCount { get; private set; }

    /// <summary>Writes the founders' bootstrap state as if a previous run had saved it.</summary>
    public void Initialize(PersistentState state)
    {
        HardState = state.HardState;
        _entries.Clear();
        _entries.AddRange(state.Entries);
    }

    public PersistentState Load()
    {
        var snapshot = SnapshotMetadata;
        return new(HardState, snapshot, _entries.Where(e => e.Index > snapshot.Index).ToArray());
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

    /// <summary>Term at <paramref name="index"/> if known (entry or snapshot boundary).</summary>
    public Term? TermAt(LogIndex index)
    {
        if (TryGetEntry(index, out var entry))
        {
            return entry.Term;
        }

        if (index == SnapshotMetadata.Index)
        {
            return SnapshotMetadata.Term;
        }

        return index == LogIndex.Zero ? Term.Zero : null;
    }

    public IReadOnlyList<Entry> Entries => _entries;

    public void Save(HardState? hardState, IReadOnlyList<Entry> entries)
    {
        SaveCount++;
        Append(entries, entries.Count);
        if (hardState is { } hs)
        {
            HardState = hs;
        }
    }

    /// <summary>A crash in the middle of a batch: only the first <paramref name="survivingEntries"/> entries made it.</summary>
    public void SaveTorn(IReadOnlyList<Entry> entries, int survivingEntries)
    {
        Append(entries, survivingEntries);
    }

    public void ApplySnapshot(SnapshotMetadata snapshot)
    {
        bool keep = TryGetEntry(snapshot.Index, out var atIndex) && atIndex.Term == snapshot.Term;
        if (keep)
        {
            _entries.RemoveAll(e => e.Index <= snapshot.Index);
        }
        else
        {
            _entries.Clear();
        }

        if (HardState.Commit < snapshot.Index)
        {
            HardState = HardState with { Commit = snapshot.Index };
        }
    }

    public void Compact(LogIndex upTo)
    {
        var limit = LogIndex.Min(upTo, SnapshotMetadata.Index);
        _entries.RemoveAll(e => e.Index <= limit);
    }

    public void Save(SnapshotMetadata metadata, Action<Stream> writeData)
    {
        using var stream = new MemoryStream();
        writeData(stream);
        Save(new Snapshot(metadata, stream.ToArray()));
    }

    public void Save(Snapshot snapshot)
    {
        if (_snapshots.Count > 0 && _snapshots[^1].Metadata.Index >= snapshot.Metadata.Index)
        {
            // An older or equal snapshot adds nothing; keep the newest as newest.
            return;
        }

        _snapshots.Add(snapshot);
        if (_snapshots.Count > SnapshotsKept)
        {
            _snapshots.RemoveAt(0);
        }
    }

    public Snapshot? LoadNewest() => _snapshots.Count == 0 ? null : _snapshots[^1];

    public Snapshot? Find(LogIndex index, Term term) =>
        _snapshots.LastOrDefault(s => s.Metadata.Index == index && s.Metadata.Term == term);

    private void Append(IReadOnlyList<Entry> entries, int count)
    {
        if (count == 0)
        {
            return;
        }

        var first = entries[0].Index;
        for (int i = 0; i < count; i++)
        {
            if (entries[i].Index <= HardState.Commit && TryGetEntry(entries[i].Index, out var existing) && existing.Term != entries[i].Term)
            {
                throw new SimulationFailureException(
                    $"node {Id}: overwrote committed entry {existing} with {entries[i]} (durable commit {HardState.Commit})");
            }
        }

        if (_entries.Count > 0 && first <= _entries[^1].Index)
        {
            int keep = first < _entries[0].Index ? 0 : (int)(first.Value - _entries[0].Index.Value);
            _entries.RemoveRange(keep, _entries.Count - keep);
        }

        if (_entries.Count > 0 && first != _entries[^1].Index.Next)
        {
            throw new SimulationFailureException($"node {Id}: saved entries start at {first} but the log ends at {_entries[^1].Index} (gap)");
        }

        if (_entries.Count == 0 && first != SnapshotMetadata.Index.Next)
        {
            throw new SimulationFailureException($"node {Id}: saved entries start at {first} but the snapshot ends at {SnapshotMetadata.Index} (gap)");
        }

        for (int i = 0; i < count; i++)
        {
            _entries.Add(entries[i]);
        }

        EntriesSaved?.Invoke(this, first, entries.Take(count).ToArray());
    }
}
