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
    /// index alone need not be durable: a store may keep it in memory until its next write, since a lower commit
    /// index after a crash is safe). If the first entry's
    /// index is already in the log, that entry and every later one are replaced. Either argument may be empty.
    /// Throws <see cref="IOException"/> when the batch could not be made durable; nothing of it then counts.
    /// Returns false when nothing needed writing (a commit index kept in memory): the host times only the saves
    /// that write, so that the fsync latencies it reports hold no zeros.
    /// </summary>
    bool Save(HardState? hardState, IReadOnlyList<Entry> entries);

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

    /// <summary>
    /// The newest snapshot whose checksum verifies, with its data as a stream (the caller disposes it), or null.
    /// A file store reads the data from disk as the stream is read; the default buffers <see cref="LoadNewest"/>.
    /// </summary>
    SnapshotReader? OpenNewest() =>
        LoadNewest() is { IsEmpty: false } snapshot
            ? new SnapshotReader(snapshot.Metadata, new MemoryStream(snapshot.Data.ToArray(), writable: false))
            : null;

    /// <summary>
    /// Opens the stored snapshot at the index and term of <paramref name="metadata"/> as it is stored, to be
    /// streamed verbatim to a peer (which verifies it with <see cref="BeginReceive"/>); null when there is no
    /// such snapshot. Reads nothing but what locates it. Thread-safe. Default: null (a store without files).
    /// </summary>
    Stream? OpenStored(SnapshotMetadata metadata) => null;

    /// <summary>
    /// Starts receiving a snapshot that a peer streams verbatim from its store (see <see cref="OpenStored"/>),
    /// announced as <paramref name="announced"/> and <paramref name="storedBytes"/> long. Thread-safe.
    /// </summary>
    ISnapshotReceiver BeginReceive(SnapshotMetadata announced, long storedBytes) =>
        throw new NotSupportedException("this snapshot store cannot receive snapshots from peers");

    /// <summary>
    /// Makes the snapshot received at <paramref name="metadata"/> (completed by <see cref="ISnapshotReceiver.Complete"/>)
    /// the newest stored snapshot and opens its data. Throws <see cref="InvalidDataException"/> when no such
    /// received snapshot exists.
    /// </summary>
    SnapshotReader InstallReceived(SnapshotMetadata metadata) =>
        throw new InvalidDataException($"no received snapshot at index {metadata.Index}");
}

/// <summary>A snapshot's metadata and a stream of its data, positioned at the start. Disposing closes the stream.</summary>
public sealed class SnapshotReader(SnapshotMetadata metadata, Stream data) : IDisposable
{
    public SnapshotMetadata Metadata { get; } = metadata;

    public Stream Data { get; } = data;

    public void Dispose() => Data.Dispose();
}

/// <summary>
/// One snapshot arriving from a peer in pieces, written to storage as it comes (never held whole in memory).
/// Disposing before <see cref="Complete"/> discards it.
/// </summary>
public interface ISnapshotReceiver : IDisposable
{
    /// <summary>Bytes written so far.</summary>
    long Received { get; }

    /// <summary>Writes the next piece. Throws <see cref="InvalidDataException"/> when it goes beyond the announced length.</summary>
    void Write(ReadOnlySpan<byte> piece);

    /// <summary>
    /// Checks the whole snapshot (length, checksum, that it is the announced one), syncs it and keeps it for
    /// <see cref="ISnapshotStore.InstallReceived"/>; returns its metadata. Throws <see cref="InvalidDataException"/>
    /// (and keeps nothing) when it is incomplete or corrupt.
    /// </summary>
    SnapshotMetadata Complete();
}

/// <summary>Sends messages to peers. Must not block; may drop (Raft retries).</summary>
public interface IMessageSink
{
    void Send(Message message);
}
