using System.Text;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;

namespace Stcache.Storage;

/// <summary>
/// A node's data directory: <c>stcache.meta</c> (marks the directory as ours, with the layout version),
/// <c>LOCK</c> (held exclusively while open, so two processes never write the same log), <c>wal/</c> and
/// <c>snap/</c>. Dispose releases the lock.
/// </summary>
public sealed class DataDirectory : IDisposable
{
    public const string MarkerFileName = "stcache.meta";
    public const string LockFileName = "LOCK";
    public const string WalDirectoryName = "wal";
    public const string SnapshotDirectoryName = "snap";
    public const int LayoutVersion = 1;

    private const string MarkerFirstLine = "stcache data directory";

    private readonly FileStream _lock;
    private readonly ILoggerFactory _loggerFactory;

    private DataDirectory(string path, FileStream lockFile, ILoggerFactory loggerFactory)
    {
        Path = path;
        _lock = lockFile;
        _loggerFactory = loggerFactory;
    }

    public string Path { get; }

    public string WalPath => System.IO.Path.Combine(Path, WalDirectoryName);

    public string SnapshotPath => System.IO.Path.Combine(Path, SnapshotDirectoryName);

    /// <summary>
    /// Opens the data directory at <paramref name="path"/>, creating it (and its layout) when missing or empty,
    /// and takes its exclusive lock. Throws <see cref="DataDirectoryException"/> when another process holds the
    /// lock, or when the directory has other content and is not a stcache data directory.
    /// </summary>
    public static DataDirectory Open(string path, ILoggerFactory? loggerFactory = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(path);
        string fullPath = System.IO.Path.GetFullPath(path);
        if (File.Exists(fullPath))
        {
            throw new DataDirectoryException($"{fullPath} is a file, not a data directory");
        }

        // A directory holding only what an interrupted first open leaves behind is still fresh.
        bool fresh = !Directory.Exists(fullPath) || Directory.EnumerateFileSystemEntries(fullPath)
            .Select(System.IO.Path.GetFileName)
            .All(name => name is LockFileName or MarkerFileName + ".tmp");
        if (!fresh)
        {
            string? problem = CheckMarker(fullPath);
            if (problem is not null)
            {
                throw new DataDirectoryException($"refusing to use {fullPath}: {problem}");
            }
        }

        Directory.CreateDirectory(fullPath);
        FileStream lockFile;
        try
        {
            // FileShare.None takes an exclusive flock on Unix and a share-mode lock on Windows; both vanish with
            // the process, so a crash never leaves a stale lock behind.
            lockFile = new FileStream(System.IO.Path.Combine(fullPath, LockFileName), FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.None);
        }
        catch (IOException exception)
        {
            throw new DataDirectoryException($"data directory {fullPath} is in use by another stcache process (cannot lock {LockFileName})", exception);
        }

        try
        {
            if (fresh)
            {
                WriteMarker(fullPath);
            }

            Directory.CreateDirectory(System.IO.Path.Combine(fullPath, WalDirectoryName));
            Directory.CreateDirectory(System.IO.Path.Combine(fullPath, SnapshotDirectoryName));
            PhysicalFileSystem.Instance.SyncDirectory(fullPath);
        }
        catch
        {
            lockFile.Dispose();
            throw;
        }

        return new DataDirectory(fullPath, lockFile, loggerFactory ?? NullLoggerFactory.Instance);
    }

    /// <summary>True when <paramref name="path"/> holds a stcache data directory of a layout this build reads.</summary>
    public static bool IsDataDirectory(string path, out string? problem)
    {
        problem = Directory.Exists(path) ? CheckMarker(path) : $"{path} does not exist";
        return problem is null;
    }

    /// <summary>Opens the write-ahead log in <see cref="WalPath"/>.</summary>
    public WriteAheadLog OpenLog(WalOptions? options = null) =>
        WriteAheadLog.Open(WalPath, options, _loggerFactory.CreateLogger<WriteAheadLog>());

    /// <summary>Opens the snapshot store in <see cref="SnapshotPath"/>.</summary>
    public FileSnapshotStore OpenSnapshots(SnapshotStoreOptions? options = null) =>
        FileSnapshotStore.Open(SnapshotPath, options, _loggerFactory.CreateLogger<FileSnapshotStore>());

    public void Dispose() => _lock.Dispose();

    private static string? CheckMarker(string path)
    {
        string marker = System.IO.Path.Combine(path, MarkerFileName);
        if (!File.Exists(marker))
        {
            return $"it is not empty and has no {MarkerFileName}, so it is not a stcache data directory";
        }

        string[] lines;
        try
        {
            var info = new FileInfo(marker);
            if (info.Length > 4096)
            {
                return $"{MarkerFileName} is too large to be ours";
            }

            lines = File.ReadAllLines(marker, Encoding.UTF8);
        }
        catch (IOException exception)
        {
            return $"cannot read {MarkerFileName}: {exception.Message}";
        }

        if (lines.Length < 2 || lines[0] != MarkerFirstLine || !lines[1].StartsWith("layout ", StringComparison.Ordinal))
        {
            return $"{MarkerFileName} is not a stcache marker";
        }

        if (!int.TryParse(lines[1].AsSpan("layout ".Length), out int version))
        {
            return $"{MarkerFileName} has a malformed layout version";
        }

        if (version != LayoutVersion)
        {
            return $"layout version {version} is not supported by this build (expects {LayoutVersion})";
        }

        return null;
    }

    private static void WriteMarker(string path)
    {
        string marker = System.IO.Path.Combine(path, MarkerFileName);
        string temp = marker + ".tmp";
        byte[] content = Encoding.UTF8.GetBytes($"{MarkerFirstLine}\nlayout {LayoutVersion}\n");
        using (var stream = new FileStream(temp, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            stream.Write(content);
            stream.Flush(flushToDisk: true);
        }

        File.Move(temp, marker, overwrite: true);
    }
}
