using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace Stcache.Storage;

/// <summary>
/// The few file operations storage needs. An interface so tests can inject ENOSPC/EIO and torn writes without a
/// real faulty disk; production uses <see cref="PhysicalFileSystem"/>.
/// </summary>
internal interface IFileSystem
{
    IStorageFile Open(string path, FileMode mode, FileAccess access, FileShare share);

    string[] GetFiles(string directory, string searchPattern);

    bool FileExists(string path);

    void Move(string source, string destination, bool overwrite);

    void Delete(string path);

    /// <summary>Makes renames, creations and deletions inside the directory durable.</summary>
    void SyncDirectory(string directory);

    /// <summary>Creates the directory (and its parents) if it does not exist.</summary>
    void CreateDirectory(string directory) => Directory.CreateDirectory(directory);
}

/// <summary>A file accessed by offset (no shared position), so a failed write never leaves a cursor behind.</summary>
internal interface IStorageFile : IDisposable
{
    string Path { get; }

    long Length { get; }

    void SetLength(long length);

    int Read(long offset, Span<byte> buffer);

    void Write(long offset, ReadOnlySpan<byte> data);

    /// <summary>Durably stores the written data (fdatasync where available).</summary>
    void Sync();
}

internal sealed class PhysicalFileSystem : IFileSystem
{
    public static readonly PhysicalFileSystem Instance = new();

    public IStorageFile Open(string path, FileMode mode, FileAccess access, FileShare share)
    {
        var handle = File.OpenHandle(path, mode, access, share);
        return new PhysicalFile(path, handle);
    }

    public string[] GetFiles(string directory, string searchPattern) => Directory.GetFiles(directory, searchPattern);

    public bool FileExists(string path) => File.Exists(path);

    public void Move(string source, string destination, bool overwrite) => File.Move(source, destination, overwrite);

    public void Delete(string path) => File.Delete(path);

    public void SyncDirectory(string directory) => NativeSync.SyncDirectory(directory);
}

internal sealed class PhysicalFile : IStorageFile
{
    private readonly SafeFileHandle _handle;
    private FileStream? _flushStream;

    public PhysicalFile(string path, SafeFileHandle handle)
    {
        Path = path;
        _handle = handle;
    }

    public string Path { get; }

    public long Length => RandomAccess.GetLength(_handle);

    public void SetLength(long length) => RandomAccess.SetLength(_handle, length);

    public int Read(long offset, Span<byte> buffer)
    {
        int total = 0;
        while (total < buffer.Length)
        {
            int read = RandomAccess.Read(_handle, buffer[total..], offset + total);
            if (read == 0)
            {
                break;
            }

            total += read;
        }

        return total;
    }

    public void Write(long offset, ReadOnlySpan<byte> data) => RandomAccess.Write(_handle, data, offset);

    public void Sync()
    {
        if (OperatingSystem.IsLinux())
        {
            NativeSync.SyncData(_handle);
            return;
        }

        // Elsewhere the framework's full flush (FlushFileBuffers / F_FULLFSYNC); the stream owns the handle from
        // now on, so it is created once and disposed with the file.
        _flushStream ??= new FileStream(_handle, FileAccess.ReadWrite, 0, false);
        _flushStream.Flush(flushToDisk: true);
    }

    public void Dispose()
    {
        _flushStream?.Dispose();
        _handle.Dispose();
    }
}

/// <summary>
/// fdatasync and directory fsync. .NET exposes only fsync (FileStream.Flush(true)), which also forces the inode's
/// timestamps out on every call and so costs an extra journal commit per batch; and it cannot open directories.
/// </summary>
internal static partial class NativeSync
{
    // O_RDONLY opens a directory too; O_DIRECTORY would only add a check and its value differs by architecture.
    private const int OpenReadOnly = 0;

    /// <summary>fdatasync on Linux. Other systems go through <see cref="PhysicalFile.Sync"/>.</summary>
    public static void SyncData(SafeFileHandle handle)
    {
        if (!OperatingSystem.IsLinux())
        {
            throw new PlatformNotSupportedException("fdatasync is used on Linux only");
        }

        while (true)
        {
            if (Fdatasync(handle) == 0)
            {
                return;
            }

            int errno = Marshal.GetLastPInvokeError();
            if (errno != Errno.Interrupted)
            {
                throw Errno.ToException(errno, "fdatasync");
            }
        }
    }

    public static void SyncDirectory(string directory)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS())
        {
            // Windows has no directory fsync; NTFS journals metadata itself.
            return;
        }

        int fd = Open(directory, OpenReadOnly);
        if (fd < 0)
        {
            throw Errno.ToException(Marshal.GetLastPInvokeError(), $"open directory {directory}");
        }

        try
        {
            if (Fsync(fd) != 0)
            {
                throw Errno.ToException(Marshal.GetLastPInvokeError(), $"fsync directory {directory}");
            }
        }
        finally
        {
            _ = Close(fd);
        }
    }

    [LibraryImport("libc", EntryPoint = "fdatasync", SetLastError = true)]
    private static partial int Fdatasync(SafeFileHandle fd);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int Fsync(int fd);

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int Open(string path, int flags);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int Close(int fd);

    private static class Errno
    {
        public const int Interrupted = 4;
        private const int NoSpace = 28;

        public static IOException ToException(int errno, string operation) =>
            new($"{operation} failed: {Marshal.GetPInvokeErrorMessage(errno)} (errno {errno})", errno == NoSpace ? unchecked((int)0x80070070) : errno);
    }
}
