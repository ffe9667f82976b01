using Stcache.Raft;

namespace Stcache.Integration.Tests;

/// <summary>A log store whose saves block while the gate is closed, like a disk that stopped answering.</summary>
internal sealed class GatedLogStore(IRaftLogStore inner) : IRaftLogStore, IDisposable
{
    private readonly ManualResetEventSlim _open = new(initialState: true);
    private readonly SemaphoreSlim _blocked = new(0);

    public void Close() => _open.Reset();

    public void Dispose()
    {
        _open.Dispose();
        _blocked.Dispose();
    }

    public void Open() => _open.Set();

    /// <summary>Completes once the loop is held inside a save.</summary>
    public Task<bool> WaitUntilBlockedAsync() => _blocked.WaitAsync(TimeSpan.FromSeconds(20));

    public PersistentState Load() => inner.Load();

    public bool Save(HardState? hardState, IReadOnlyList<Entry> entries)
    {
        if (!_open.IsSet)
        {
            _blocked.Release();
            _open.Wait();
        }

        return inner.Save(hardState, entries);
    }

    public void ApplySnapshot(SnapshotMetadata snapshot) => inner.ApplySnapshot(snapshot);

    public void Compact(LogIndex upTo) => inner.Compact(upTo);
}
