namespace Stcache.Raft;

/// <summary>
/// The durable Raft log and hard state. Implemented in memory by the simulator and by the write-ahead log in
/// Stcache.Storage. Single-threaded: the host calls it from its loop only.
/// </summary>
public interface IRaftLogStore
{
    /// <summary>What is on stable storage: hard state, the latest snapshot's metadata, and the entries after it.</summary>
    PersistentState Load();

    /// <summary>
    /// Appends entries and records the hard state, durably, with one sync, before returning (a change of the commit
    /// index alone may skip the sync: a lower commit index after a crash is safe). If the first entry's
    /// index is already in the log, that entry and every later one are replaced. Either argument may be empty.
    /// Throws <see cref="IOException"/> when the batch could not be made durable; nothing of it then counts.
    /// </summary>
    void Save(HardState? hardState, IReadOnlyList<Entry> entries);

    /// <summary>Records that a snapshot at <paramref name="snapshot"/> was installed: entries up to its index are
    /// discarded, and every entry after it too unless it matches the snapshot's term at that index.</summary>
    void ApplySnapshot(SnapshotMetadata snapshot);

    /// <summary>Allows entries up to and including <paramref name="upTo"/> to be discarded (lazily).</summary>
    void Compact(LogIndex upTo);
}

/// <summary>Durable snapshot files. Single-threaded like <see cref="IRaftLogStore"/> except where noted.</summary>
public interface ISnapshotStore
{
    /// <summary>Writes a snapshot atomically: the callback streams the data; the file is published only when
    /// complete and synced. May be called off the host loop.</summary>
    void Save(SnapshotMetadata metadata, Action<Stream> writeData);

    /// <summary>Saves a snapshot received in full from a leader.</summary>
    void Save(Snapshot snapshot) => Save(snapshot.Metadata, s => s.Write(snapshot.Data.Span));

    /// <summary>The newest snapshot whose checksum verifies, or null if there is none.</summary>
    Snapshot? LoadNewest();
}

/// <summary>Sends messages to peers. Must not block; may drop (Raft retries).</summary>
public interface IMessageSink
{
    void Send(Message message);
}
