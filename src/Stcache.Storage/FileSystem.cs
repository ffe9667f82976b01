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

    public void Sync() => NativeSync.SyncData(_handle);

    public void Dispose() => _handle.Dispose();
}

/// <summary>
/// fdatasync and directory fsync. .NET exposes only fsync (FileStream.Flush(true)), which also forces the inode's
/// timestamps out on every call and so costs an extra journal commit per batch; and it cannot open directories.
/// </summary>
internal static partial class NativeSync
{
    private const int OpenReadOnly = 0;
    private const int OpenDirectory = 0x10000; // O_DIRECTORY on Linux (x64 and arm64).

    public static void SyncData(SafeFileHandle handle)
    {
        if (OperatingSystem.IsLinux())
        {
            while (true)
            {
                int result = Fdatasync(handle);
                if (result == 0)
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

        // Elsewhere fall back to the framework's full flush (FlushFileBuffers / fsync / F_FULLFSYNC).
        using var stream = new FileStream(handle, FileAccess.ReadWrite, 0, false);
        stream.Flush(flushToDisk: true);
    }

    public static void SyncDirectory(string directory)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS())
        {
            // Windows has no directory fsync; NTFS journals metadata itself.
            return;
        }

        int flags = OperatingSystem.IsLinux() ? OpenReadOnly | OpenDirectory : OpenReadOnly;
        int fd = Open(directory, flags);
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
