using Stcache.Raft;
using Stcache.Storage;

namespace Stcache.Server;

/// <summary>
/// Makes a data directory hold a one-member cluster: the state of a snapshot, a configuration naming only this
/// node, and a log that starts right after the snapshot. Used by <c>stcachectl snapshot restore</c> (a new
/// cluster from a backup) and by <c>stcachectl recover</c> (a survivor after a lost quorum). The node then starts
/// normally on the directory, elects itself, and others join it.
/// </summary>
public static class ClusterSeed
{
    /// <summary>Creates <paramref name="dataDirectory"/> (which must not exist or be empty) from a snapshot file
    /// saved by <c>stcachectl snapshot save</c>, its write-ahead log in segments of
    /// <paramref name="walSegmentSizeBytes"/> (the node's <c>--wal-segment-size</c>). Returns the restored snapshot's
    /// metadata.</summary>
    public static SnapshotMetadata Restore(string snapshotFile, string dataDirectory, MemberInfo self, string clusterId, long walSegmentSizeBytes)
    {
        var verified = FileSnapshotStore.Verify(snapshotFile);
        if (Directory.Exists(dataDirectory) && Directory.EnumerateFileSystemEntries(dataDirectory).Any())
        {
            throw new IOException($"refusing to restore into {Path.GetFullPath(dataDirectory)}: it is not empty (restore seeds a new node)");
        }

        using var directory = DataDirectory.Open(dataDirectory);
        File.Copy(snapshotFile, Path.Combine(directory.SnapshotPath, FileSnapshotStore.FileName(verified.Metadata)));
        var snapshots = directory.OpenSnapshots();
        var snapshot = snapshots.LoadNewest() ?? throw new InvalidDataException($"{snapshotFile} could not be read back");
        using var wal = directory.OpenLog(new WalOptions { SegmentSizeBytes = walSegmentSizeBytes, PrepareSegmentsAhead = false });
        var metadata = WriteSingleMember(snapshots, wal, snapshot, self, snapshot.Metadata.Term);
        new NodeIdentity(self.Id, self.Name, self.RaftAddress, self.HttpAddress, clusterId, true).Save(directory.Path);
        return metadata;
    }

    /// <summary>
    /// Replaces the configuration carried by <paramref name="snapshot"/> with this node alone, saves it under the
    /// same index and term, and resets the log to start after it at <paramref name="term"/>. The member book keeps
    /// only this node; the others' removal needs no log entry because no log before the snapshot is kept.
    /// </summary>
    public static SnapshotMetadata WriteSingleMember(FileSnapshotStore snapshots, WriteAheadLog wal, Snapshot snapshot, MemberInfo self, Term term)
    {
        ArgumentNullException.ThrowIfNull(snapshots);
        ArgumentNullException.ThrowIfNull(wal);
        ArgumentNullException.ThrowIfNull(snapshot);
        ArgumentNullException.ThrowIfNull(self);
        byte[] data = snapshot.Data.ToArray();
        using var reader = new MemoryStream(data, writable: false);
        var members = SnapshotFormat.ReadHeader(reader);
        int cacheStart = (int)reader.Position;
        var book = new MemberBook();
        var known = members.FirstOrDefault(m => m.Id == self.Id);
        book.Set(self with { Name = known?.Name ?? self.Name });
        var metadata = snapshot.Metadata with { ConfState = new ConfState([new NodeId(self.Id)], []) };
        snapshots.Save(metadata, stream =>
        {
            SnapshotFormat.WriteHeader(stream, book.Serialize());
            stream.Write(data.AsSpan(cacheStart));
        });

        // A log that still holds the snapshot's index under its term would be kept; entries after it (never
        // applied here) are dropped with it, and the commit index becomes the snapshot's.
        wal.ApplySnapshot(metadata);
        var hard = wal.HardState;
        wal.Save(new HardState(Term.Max(hard.Term, term), NodeId.None, metadata.Index), []);
        return metadata;
    }
}
