using Microsoft.Extensions.Logging;
using Stcache.Raft;

namespace Stcache.Storage.Tests;

/// <summary>A fresh directory under the system temp path, deleted on dispose.</summary>
internal sealed class TempDirectory : IDisposable
{
    public TempDirectory()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "stcache-storage-tests", Guid.NewGuid().ToString("N"));
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public string Combine(params string[] parts) => System.IO.Path.Combine([Path, .. parts]);

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, recursive: true);
        }
        catch (IOException)
        {
            // Best effort; the temp path is not ours to keep clean beyond this.
        }
    }
}

/// <summary>Wraps the real file system and fails chosen operations, as a full or broken disk would.</summary>
internal sealed class FaultyFileSystem : IFileSystem
{
    /// <summary>When set, the next data write lands this many bytes and then fails with ENOSPC.</summary>
    public int? FailNextWriteAfterBytes { get; set; }

    /// <summary>Number of upcoming data writes (any file) that fail outright with ENOSPC.</summary>
    public int FailWrites { get; set; }

    /// <summary>Number of upcoming syncs that fail with EIO.</summary>
    public int FailSyncs { get; set; }

    public int Writes { get; private set; }

    /// <summary>Called with the file's path before each sync, on the syncing thread.</summary>
    public Action<string>? BeforeSync { get; set; }

    /// <summary>Called with the file's path when it is closed.</summary>
    public Action<string>? Closed { get; set; }

    private readonly Dictionary<string, int> _syncs = [];

    /// <summary>How many times <paramref name="path"/> was synced.</summary>
    public int SyncsOf(string path)
    {
        lock (_syncs)
        {
            return _syncs.GetValueOrDefault(path);
        }
    }

    private readonly Dictionary<string, (long Pending, long Most)> _unsynced = [];

    /// <summary>The most bytes written to <paramref name="path"/> between two of its syncs (its writes may come from
    /// another thread: the WAL prepares segments in the background).</summary>
    public long MostUnsyncedBytes(string path)
    {
        lock (_unsynced)
        {
            return _unsynced.TryGetValue(path, out var written) ? written.Most : 0;
        }
    }

    private void Wrote(string path, long bytes)
    {
        lock (_unsynced)
        {
            var (pending, most) = _unsynced.GetValueOrDefault(path);
            _unsynced[path] = (pending + bytes, Math.Max(most, pending + bytes));
        }
    }

    private void Synced(string path)
    {
        lock (_unsynced)
        {
            if (_unsynced.TryGetValue(path, out var written))
            {
                _unsynced[path] = (0, written.Most);
            }
        }
    }

    public IStorageFile Open(string path, FileMode mode, FileAccess access, FileShare share) =>
        new FaultyFile(this, PhysicalFileSystem.Instance.Open(path, mode, access, share));

    public string[] GetFiles(string directory, string searchPattern) => PhysicalFileSystem.Instance.GetFiles(directory, searchPattern);

    public bool FileExists(string path) => File.Exists(path);

    public void Move(string source, string destination, bool overwrite) => PhysicalFileSystem.Instance.Move(source, destination, overwrite);

    public void Delete(string path) => PhysicalFileSystem.Instance.Delete(path);

    public void SyncDirectory(string directory) => PhysicalFileSystem.Instance.SyncDirectory(directory);

    private sealed class FaultyFile(FaultyFileSystem owner, IStorageFile inner) : IStorageFile
    {
        public string Path => inner.Path;

        public long Length => inner.Length;

        public void SetLength(long length) => inner.SetLength(length);

        public int Read(long offset, Span<byte> buffer) => inner.Read(offset, buffer);

        public void Write(long offset, ReadOnlySpan<byte> data)
        {
            owner.Writes++;
            if (owner.FailNextWriteAfterBytes is int landed)
            {
                owner.FailNextWriteAfterBytes = null;
                inner.Write(offset, data[..Math.Min(landed, data.Length)]);
                throw new IOException("No space left on device (injected)");
            }

            if (owner.FailWrites > 0)
            {
                owner.FailWrites--;
                throw new IOException("No space left on device (injected)");
            }

            inner.Write(offset, data);
            owner.Wrote(Path, data.Length);
        }

        public void Sync()
        {
            if (owner.FailSyncs > 0)
            {
                owner.FailSyncs--;
                throw new IOException("Input/output error (injected)");
            }

            owner.BeforeSync?.Invoke(Path);
            inner.Sync();
            owner.Synced(Path);
            lock (owner._syncs)
            {
                owner._syncs[Path] = owner._syncs.GetValueOrDefault(Path) + 1;
            }
        }

        public void Dispose()
        {
            inner.Dispose();
            owner.Closed?.Invoke(Path);
        }
    }
}

/// <summary>Collects log lines so tests can assert what was reported.</summary>
internal sealed class ListLogger : ILogger
{
    public List<string> Lines { get; } = [];

    public IDisposable? BeginScope<TState>(TState state)
        where TState : notnull => null;

    public bool IsEnabled(LogLevel logLevel) => true;

    public void Log<TState>(LogLevel logLevel, EventId eventId, TState state, Exception? exception, Func<TState, Exception?, string> formatter)
    {
        lock (Lines)
        {
            Lines.Add($"{logLevel}: {formatter(state, exception)}");
        }
    }
}

internal static class Entries
{
    public static Entry Make(ulong term, ulong index, string data) =>
        new(new Term(term), new LogIndex(index), EntryType.Normal, System.Text.Encoding.UTF8.GetBytes(data));

    public static Entry[] Range(ulong term, ulong first, ulong last, string prefix = "v")
    {
        var entries = new Entry[last - first + 1];
        for (ulong i = first; i <= last; i++)
        {
            entries[i - first] = Make(term, i, $"{prefix}{i}");
        }

        return entries;
    }

    public static HardState Hard(ulong term, ulong vote, ulong commit) => new(new Term(term), new NodeId(vote), new LogIndex(commit));

    public static void AssertSame(IReadOnlyList<Entry> expected, IReadOnlyList<Entry> actual)
    {
        Assert.Equal(expected.Count, actual.Count);
        for (int i = 0; i < expected.Count; i++)
        {
            AssertSame(expected[i], actual[i]);
        }
    }

    public static void AssertSame(Entry expected, Entry actual)
    {
        Assert.Equal(expected.Index, actual.Index);
        Assert.Equal(expected.Term, actual.Term);
        Assert.Equal(expected.Type, actual.Type);
        Assert.Equal(expected.Data.ToArray(), actual.Data.ToArray());
    }

    public static bool Same(Entry a, Entry b) =>
        a.Index == b.Index && a.Term == b.Term && a.Type == b.Type && a.Data.Span.SequenceEqual(b.Data.Span);
}
