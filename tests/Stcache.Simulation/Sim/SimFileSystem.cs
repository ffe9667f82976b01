using Stcache.Storage;

namespace Stcache.Simulation.Sim;

/// <summary>The simulated machine lost power: thrown out of a file operation, it unwinds the node's stack.</summary>
public sealed class SimCrashException() : Exception("simulated crash");

/// <summary>When the next file sync crashes the node.</summary>
public enum SyncCrash : byte
{
    None = 0,

    /// <summary>The sync never happens: what was written since the last one may be lost or torn.</summary>
    Before = 1,

    /// <summary>The sync completes, then the power fails (before anything else the node would do next).</summary>
    After = 2,
}

/// <summary>
/// One node's disk, in memory, doing what real disks do to us: a write is only in the page cache until the file
/// is synced, so a crash loses it, or keeps any prefix of the unsynced writes with the last one torn at any byte
/// (optionally with garbage in the torn part); creations, renames and deletions are durable only once the
/// directory is synced (when <see cref="StrictDirectories"/>); a full disk refuses writes that grow a file
/// (ENOSPC); a failing disk throws EIO. The disk survives the node's crashes: the node reopens its files after
/// <see cref="Crash"/>. Deterministic: every choice comes from the <see cref="SplitMix"/> it is given.
/// </summary>
internal sealed class SimFileSystem : IFileSystem
{
    private const int DiskFullHResult = unchecked((int)0x80070070);

    private readonly SplitMix _random;
    private readonly SortedDictionary<string, FileData> _names = new(StringComparer.Ordinal);
    private SortedDictionary<string, FileData> _durableNames = new(StringComparer.Ordinal);

    public SimFileSystem(SplitMix random)
    {
        _random = random;
    }

    /// <summary>Namespace changes need a directory sync to survive a crash.</summary>
    public bool StrictDirectories { get; set; }

    /// <summary>Writes that grow a file fail with ENOSPC.</summary>
    public bool Full { get; set; }

    /// <summary>Chance per write or sync, in parts per million, of an EIO.</summary>
    public int IoErrorPerMillion { get; set; }

    /// <summary>Armed by a fault injector: what the next sync does.</summary>
    public SyncCrash CrashAtSync { get; set; }

    /// <summary>Bug injection: syncs do nothing, so a crash loses everything written since the node started.</summary>
    public bool SyncIsALie { get; set; }

    /// <summary>Torn writes leave random garbage (not zeros or old data) in the torn part.</summary>
    public bool TornGarbage { get; set; }

    public long Syncs { get; private set; }

    public long BytesWritten { get; private set; }

    /// <summary>How many times an injected sync crash fired.</summary>
    public long SyncCrashes { get; private set; }

    public IStorageFile Open(string path, FileMode mode, FileAccess access, FileShare share)
    {
        MaybeIoError("open");
        bool exists = _names.TryGetValue(path, out var data);
        switch (mode)
        {
            case FileMode.CreateNew when exists:
                throw new IOException($"{path} already exists");
            case FileMode.Open or FileMode.Truncate when !exists:
                throw new FileNotFoundException($"{path} not found", path);
        }

        if (!exists)
        {
            if (Full)
            {
                throw new IOException("No space left on device (simulated)", DiskFullHResult);
            }

            data = new FileData();
            _names[path] = data;
        }
        else if (mode is FileMode.Create or FileMode.Truncate)
        {
            data!.SetLength(0);
        }

        return new SimFile(this, path, data!);
    }

    public string[] GetFiles(string directory, string searchPattern)
    {
        string prefix = directory.EndsWith('/') ? directory : directory + "/";
        string suffix = searchPattern.StartsWith('*') ? searchPattern[1..] : throw new NotSupportedException(searchPattern);
        return [.. _names.Keys.Where(k => k.StartsWith(prefix, StringComparison.Ordinal) && k.IndexOf('/', prefix.Length) < 0 && k.EndsWith(suffix, StringComparison.Ordinal))];
    }

    public bool FileExists(string path) => _names.ContainsKey(path);

    public void Move(string source, string destination, bool overwrite)
    {
        MaybeIoError("rename");
        if (!_names.Remove(source, out var data))
        {
            throw new FileNotFoundException($"{source} not found", source);
        }

        if (!overwrite && _names.ContainsKey(destination))
        {
            _names[source] = data;
            throw new IOException($"{destination} already exists");
        }

        _names[destination] = data;
        SyncNamesIfLenient();
    }

    public void Delete(string path)
    {
        _names.Remove(path);
        SyncNamesIfLenient();
    }

    public void SyncDirectory(string directory)
    {
        MaybeIoError("fsync directory");
        _durableNames = new SortedDictionary<string, FileData>(_names, StringComparer.Ordinal);
    }

    public void CreateDirectory(string directory)
    {
    }

    /// <summary>Total bytes currently stored (for the disk-full fault).</summary>
    public long UsedBytes => _names.Values.Sum(f => f.Length);

    /// <summary>
    /// Power loss: every file goes back to its last synced content plus a random prefix of the writes since (the
    /// last of them torn at a random byte); the namespace goes back to the last directory sync.
    /// </summary>
    public void Crash()
    {
        CrashAtSync = SyncCrash.None;
        var files = (StrictDirectories ? _durableNames : _names).ToList();
        _names.Clear();
        foreach (var (name, data) in files)
        {
            _names[name] = data;
        }

        foreach (var data in _names.Values.Distinct())
        {
            data.Crash(_random, TornGarbage);
        }

        _durableNames = new SortedDictionary<string, FileData>(_names, StringComparer.Ordinal);
    }

    /// <summary>Flips one bit of a synced byte in a random file of <paramref name="directory"/> (with
    /// <paramref name="sealedOnly"/>, not the newest by name: the WAL's active segment, whose last record a flip
    /// makes indistinguishable from a torn write); true if it did.</summary>
    public bool FlipBit(string directory, bool sealedOnly)
    {
        var candidates = GetFiles(directory, "*").Where(p => _names[p].Length > 0).ToList();
        if (sealedOnly && candidates.Count > 0)
        {
            candidates.RemoveAt(candidates.Count - 1);
        }

        if (candidates.Count == 0)
        {
            return false;
        }

        var data = _names[_random.Pick(candidates)];
        data.FlipBit(_random);
        return true;
    }

    /// <summary>Removes every file (an operator wiped the data directory).</summary>
    public void Wipe()
    {
        _names.Clear();
        _durableNames.Clear();
    }

    private void SyncNamesIfLenient()
    {
        if (!StrictDirectories)
        {
            _durableNames = new SortedDictionary<string, FileData>(_names, StringComparer.Ordinal);
        }
    }

    private void MaybeIoError(string operation)
    {
        if (IoErrorPerMillion > 0 && _random.ChancePerMillion(IoErrorPerMillion))
        {
            throw new IOException($"{operation} failed: Input/output error (simulated)", 5);
        }
    }

    private void OnWrite(FileData data, long offset, ReadOnlySpan<byte> bytes)
    {
        MaybeIoError("write");
        if (Full && offset + bytes.Length > data.Length)
        {
            throw new IOException("No space left on device (simulated)", DiskFullHResult);
        }

        BytesWritten += bytes.Length;
        data.Write(offset, bytes);
    }

    private void OnSync(FileData data)
    {
        if (CrashAtSync == SyncCrash.Before)
        {
            SyncCrashes++;
            throw new SimCrashException();
        }

        MaybeIoError("fdatasync");
        Syncs++;
        if (!SyncIsALie)
        {
            data.Sync();
        }

        if (CrashAtSync == SyncCrash.After)
        {
            SyncCrashes++;
            throw new SimCrashException();
        }
    }

    /// <summary>A file's bytes: what the node sees now, and what is durable.</summary>
    private sealed class FileData
    {
        private byte[] _current = [];
        private byte[] _durable = [];
        private readonly List<(long Offset, byte[]? Data, long Length)> _unsynced = [];

        public long Length { get; private set; }

        public int Read(long offset, Span<byte> buffer)
        {
            if (offset >= Length)
            {
                return 0;
            }

            int count = (int)Math.Min(buffer.Length, Length - offset);
            _current.AsSpan((int)offset, count).CopyTo(buffer);
            return count;
        }

        public void Write(long offset, ReadOnlySpan<byte> bytes)
        {
            Apply(ref _current, Length, offset, bytes, out long length);
            Length = length;
            _unsynced.Add((offset, bytes.ToArray(), 0));
        }

        public void SetLength(long length)
        {
            Resize(ref _current, length);
            if (length > Length)
            {
                _current.AsSpan((int)Length, (int)(length - Length)).Clear();
            }

            Length = length;
            _unsynced.Add((0, null, length));
        }

        public void Sync()
        {
            _durable = _current.AsSpan(0, (int)Length).ToArray();
            _unsynced.Clear();
        }

        public void Crash(SplitMix random, bool garbage)
        {
            byte[] content = _durable.ToArray();
            long length = content.Length;
            int keep = _unsynced.Count == 0 ? 0 : random.Between(0, _unsynced.Count);
            for (int i = 0; i < keep; i++)
            {
                var (offset, data, newLength) = _unsynced[i];
                if (data is null)
                {
                    Resize(ref content, newLength);
                    if (newLength > length)
                    {
                        content.AsSpan((int)length, (int)(newLength - length)).Clear();
                    }

                    length = newLength;
                    continue;
                }

                ReadOnlySpan<byte> bytes = data;
                if (i == keep - 1 && random.Chance(1, 2))
                {
                    // The last write is torn at a random byte; the torn part holds zeros or garbage.
                    int cut = random.Between(0, data.Length);
                    var torn = data.ToArray();
                    for (int b = cut; b < torn.Length; b++)
                    {
                        torn[b] = garbage ? (byte)random.Next(256) : (byte)0;
                    }

                    bytes = random.Chance(1, 2) ? torn : torn.AsSpan(0, cut);
                }

                Apply(ref content, length, offset, bytes, out length);
            }

            _current = content;
            Length = length;
            _durable = content.AsSpan(0, (int)length).ToArray();
            _unsynced.Clear();
        }

        public void FlipBit(SplitMix random)
        {
            if (_durable.Length == 0)
            {
                return;
            }

            int at = random.Next(_durable.Length);
            byte mask = (byte)(1 << random.Next(8));
            _durable[at] ^= mask;
            if (at < Length)
            {
                _current[at] ^= mask;
            }
        }

        private static void Apply(ref byte[] content, long length, long offset, ReadOnlySpan<byte> bytes, out long newLength)
        {
            newLength = Math.Max(length, offset + bytes.Length);
            if (newLength > content.Length)
            {
                Resize(ref content, Math.Max(newLength, content.Length * 2L));
            }

            if (offset > length)
            {
                content.AsSpan((int)length, (int)(offset - length)).Clear();
            }

            bytes.CopyTo(content.AsSpan((int)offset));
        }

        private static void Resize(ref byte[] content, long length)
        {
            if (length > content.Length)
            {
                Array.Resize(ref content, checked((int)length));
            }
        }
    }

    private sealed class SimFile(SimFileSystem owner, string path, FileData data) : IStorageFile
    {
        public string Path { get; } = path;

        public long Length => data.Length;

        public void SetLength(long length)
        {
            if (owner.Full && length > data.Length)
            {
                throw new IOException("No space left on device (simulated)", DiskFullHResult);
            }

            data.SetLength(length);
        }

        public int Read(long offset, Span<byte> buffer) => data.Read(offset, buffer);

        public void Write(long offset, ReadOnlySpan<byte> bytes) => owner.OnWrite(data, offset, bytes);

        public void Sync() => owner.OnSync(data);

        public void Dispose()
        {
        }
    }
}
