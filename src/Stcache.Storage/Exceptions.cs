namespace Stcache.Storage;

/// <summary>
/// Data on disk failed verification somewhere a crash cannot explain (not a torn tail). The node must not start
/// on it: restore the directory from a peer or backup, or open the WAL with <see cref="WalOptions.RepairCorruption"/>.
/// </summary>
public sealed class StorageCorruptionException : Exception
{
    public StorageCorruptionException(string filePath, long offset, string reason)
        : base($"corrupt data in {filePath} at offset {offset}: {reason}")
    {
        FilePath = filePath;
        Offset = offset;
        Reason = reason;
    }

    public string FilePath { get; }

    public long Offset { get; }

    public string Reason { get; }
}

/// <summary>The data directory cannot be used: locked by another process, or not a stcache data directory.</summary>
public sealed class DataDirectoryException : IOException
{
    public DataDirectoryException(string message)
        : base(message)
    {
    }

    public DataDirectoryException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
