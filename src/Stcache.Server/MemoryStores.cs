using Stcache.Raft;

namespace Stcache.Server;

/// <summary>A volatile <see cref="IRaftLogStore"/> for tests and for running without a data directory.</summary>
public sealed class MemoryLogStore : IRaftLogStore
{
    private readonly List<Entry> _entries = [];
    private HardState _hardState;
    private SnapshotMetadata _snapshot = SnapshotMetadata.Empty;

    public MemoryLogStore(PersistentState? initial = null)
    {
        if (initial is not null)
        {
            _hardState = initial.HardState;
            _snapshot = initial.Snapshot;
            _entries.AddRange(initial.Entries);
        }
    }

    public PersistentState Load() => new(_hardState, _snapshot, [.. _entries]);

    public bool Save(HardState? hardState, IReadOnlyList<Entry> entries)
    {
        if (entries.Count > 0)
        {
            ulong first = entries[0].Index.Value;
            int keep = _entries.FindIndex(e => e.Index.Value >= first);
            if (keep >= 0)
            {
                _entries.RemoveRange(keep, _entries.Count - keep);
            }

            _entries.AddRange(entries);
        }

        if (hardState is { } state)
        {
            _hardState = state;
        }

        return entries.Count > 0 || hardState is not null;
    }

    public void ApplySnapshot(SnapshotMetadata snapshot)
    {
        int at = _entries.FindIndex(e => e.Index == snapshot.Index);
        if (at >= 0 && _entries[at].Term == snapshot.Term)
        {
            _entries.RemoveRange(0, at + 1);
        }
        else
        {
            _entries.Clear();
        }

        _snapshot = snapshot;
    }

    public void Compact(LogIndex upTo)
    {
        _entries.RemoveAll(e => e.Index <= upTo && e.Index <= _snapshot.Index);
    }
}

/// <summary>A volatile <see cref="ISnapshotStore"/>.</summary>
public sealed class MemorySnapshotStore : ISnapshotStore
{
    private readonly Lock _lock = new();
    private Snapshot? _newest;

    public void Save(SnapshotMetadata metadata, Action<Stream> writeData)
    {
        var buffer = new MemoryStream();
        writeData(buffer);
        lock (_lock)
        {
            if (_newest is null || _newest.Metadata.Index <= metadata.Index)
            {
                _newest = new Snapshot(metadata, buffer.ToArray());
            }
        }
    }

    public Snapshot? LoadNewest()
    {
        lock (_lock)
        {
            return _newest;
        }
    }
}
