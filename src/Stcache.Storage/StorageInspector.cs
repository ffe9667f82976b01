using System.Globalization;
using System.Text;
using System.Text.Unicode;
using Stcache.Raft;

namespace Stcache.Storage;

/// <summary>Which part of the log <see cref="StorageInspector"/> prints.</summary>
public sealed class InspectOptions
{
    /// <summary>First log index to print; null starts at the first entry in the WAL.</summary>
    public LogIndex? FromIndex { get; init; }

    /// <summary>Last log index to print (inclusive); null means no upper bound.</summary>
    public LogIndex? ToIndex { get; init; }

    /// <summary>At most this many entries are printed (a page); the output says where the next page starts.</summary>
    public int Limit { get; init; } = 100;
}

/// <summary>
/// Prints what a data directory holds: hard state (term, vote, commit), the log (index, term, type, data) and
/// each snapshot's metadata. Read-only: opens files for reading with sharing, never takes the directory lock,
/// never repairs or deletes anything, so it can run beside a live node (it then sees a moment's state).
/// </summary>
public sealed class StorageInspector
{
    /// <summary>Exit code: everything read and verified.</summary>
    public const int ExitOk = 0;

    /// <summary>Exit code: not a stcache data directory (nothing printed beyond the reason).</summary>
    public const int ExitNotDataDirectory = 2;

    /// <summary>Exit code: corrupt data found (details printed).</summary>
    public const int ExitCorrupt = 3;

    private const int PreviewBytes = 48;

    private readonly string _path;
    private readonly Func<ReadOnlyMemory<byte>, string> _decoder;

    /// <param name="dataDirectory">The node's data directory (the one holding <c>stcache.meta</c>).</param>
    /// <param name="decoder">Renders a normal entry's command; by default a UTF-8 string when printable, else hex.</param>
    public StorageInspector(string dataDirectory, Func<ReadOnlyMemory<byte>, string>? decoder = null)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(dataDirectory);
        _path = Path.GetFullPath(dataDirectory);
        _decoder = decoder ?? Preview;
    }

    /// <summary>Writes the report to <paramref name="output"/> and returns one of the Exit* codes.</summary>
    public int Inspect(TextWriter output, InspectOptions? options = null)
    {
        ArgumentNullException.ThrowIfNull(output);
        options ??= new InspectOptions();
        ArgumentOutOfRangeException.ThrowIfLessThan(options.Limit, 1);
        if (!DataDirectory.IsDataDirectory(_path, out string? problem))
        {
            output.WriteLine($"not a stcache data directory: {problem}");
            return ExitNotDataDirectory;
        }

        output.WriteLine($"data directory {_path}");
        bool healthy = InspectWal(output, options);
        healthy &= InspectSnapshots(output);
        return healthy ? ExitOk : ExitCorrupt;
    }

    /// <summary>The default rendering: quoted UTF-8 when the bytes are printable text, else hex; both shortened.</summary>
    public static string Preview(ReadOnlyMemory<byte> data)
    {
        if (data.IsEmpty)
        {
            return "(empty)";
        }

        ReadOnlySpan<byte> span = data.Span;
        bool truncated = span.Length > PreviewBytes;
        ReadOnlySpan<byte> shown = truncated ? span[..PreviewBytes] : span;
        string suffix = truncated ? string.Create(CultureInfo.InvariantCulture, $"... ({span.Length} bytes)") : string.Empty;
        if (Utf8.IsValid(span) && !shown.ContainsAnyInRange((byte)0, (byte)0x1f))
        {
            // Cutting may split a multi-byte character; the replacement character is fine in a preview.
            return "\"" + Encoding.UTF8.GetString(shown) + "\"" + suffix;
        }

        return "0x" + Convert.ToHexStringLower(shown) + suffix;
    }

    private bool InspectWal(TextWriter output, InspectOptions options)
    {
        string walPath = Path.Combine(_path, DataDirectory.WalDirectoryName);
        if (!Directory.Exists(walPath))
        {
            output.WriteLine("wal: (none)");
            return true;
        }

        var fileSystem = PhysicalFileSystem.Instance;
        var reader = new WalReader(fileSystem);
        List<WalSegment> segments;
        PersistentState state;
        try
        {
            segments = WalSegment.List(fileSystem, walPath);
            reader.ReadAll(segments);
            state = reader.Finish(segments);
        }
        catch (StorageCorruptionException corruption)
        {
            PrintSegments(output, reader.Scans);
            output.WriteLine($"wal: CORRUPT: {corruption.Message}");
            return false;
        }

        HardState hardState = state.HardState;
        output.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"hard state: term={hardState.Term} vote={(hardState.Vote.IsNone ? "none" : hardState.Vote.ToString())} commit={hardState.Commit}"));
        PrintSegments(output, reader.Scans);
        SnapshotMetadata snapshot = state.Snapshot;
        output.WriteLine(snapshot.Index == LogIndex.Zero
            ? "log starts at: the beginning (no snapshot recorded in the WAL)"
            : string.Create(CultureInfo.InvariantCulture, $"log starts after snapshot: index={snapshot.Index} term={snapshot.Term} {snapshot.ConfState}"));

        IReadOnlyList<Entry> entries = state.Entries;
        if (entries.Count == 0)
        {
            output.WriteLine("log: no entries");
            return true;
        }

        ulong first = entries[0].Index.Value;
        ulong last = entries[^1].Index.Value;
        ulong from = Math.Max(first, options.FromIndex?.Value ?? first);
        ulong to = Math.Min(last, options.ToIndex?.Value ?? last);
        output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"log: entries {first}..{last}"));
        output.WriteLine("  index        term         type        data");
        int printed = 0;
        for (ulong index = from; index <= to && from <= last; index++)
        {
            if (printed == options.Limit)
            {
                output.WriteLine(string.Create(CultureInfo.InvariantCulture, $"  ... more from index {index}"));
                break;
            }

            Entry entry = entries[(int)(index - first)];
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  {entry.Index,-12} {entry.Term,-12} {entry.Type,-11} {Describe(entry)}"));
            printed++;
        }

        return true;
    }

    private string Describe(Entry entry)
    {
        if (entry.Type == EntryType.ConfChange)
        {
            return ConfChange.TryDecode(entry.Data.Span, out ConfChange? change)
                ? string.Create(CultureInfo.InvariantCulture, $"{change!.Type} node={change.NodeId} context={Preview(change.Context)}")
                : "(malformed conf change) " + Preview(entry.Data);
        }

        if (entry.IsNoop)
        {
            return "(no-op)";
        }

        try
        {
            return _decoder(entry.Data);
        }
        catch (Exception exception) when (exception is not OutOfMemoryException)
        {
            // A decoder that cannot read an old command must not stop the dump.
            return $"(decoder failed: {exception.Message}) {Preview(entry.Data)}";
        }
    }

    private static void PrintSegments(TextWriter output, IReadOnlyList<SegmentScan> scans)
    {
        output.WriteLine($"wal segments: {scans.Count}");
        foreach (SegmentScan scan in scans)
        {
            string tail = scan.GarbageEnd > scan.ValidEnd
                ? string.Create(CultureInfo.InvariantCulture, $", torn tail of {scan.GarbageEnd - scan.ValidEnd} bytes (cut at next start)")
                : string.Empty;
            output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"  {Path.GetFileName(scan.Segment.Path)} records={scan.Records} used={scan.ValidEnd} size={scan.FileLength}{tail}"));
        }
    }

    private bool InspectSnapshots(TextWriter output)
    {
        string snapPath = Path.Combine(_path, DataDirectory.SnapshotDirectoryName);
        string[] files = Directory.Exists(snapPath) ? Directory.GetFiles(snapPath, "*" + FileSnapshotStore.Extension) : [];
        Array.Sort(files, StringComparer.Ordinal);
        output.WriteLine($"snapshots: {files.Length}");
        bool healthy = true;
        foreach (string file in files)
        {
            string name = Path.GetFileName(file);
            try
            {
                SnapshotFileInfo info = FileSnapshotStore.Verify(file);
                SnapshotMetadata metadata = info.Metadata;
                output.WriteLine(string.Create(CultureInfo.InvariantCulture,
                    $"  {name} index={metadata.Index} term={metadata.Term} {metadata.ConfState} data={info.DataBytes} bytes checksum=ok"));
            }
            catch (Exception exception) when (exception is StorageCorruptionException or IOException or UnauthorizedAccessException)
            {
                output.WriteLine($"  {name} BAD: {exception.Message}");
                healthy = false;
            }
        }

        return healthy;
    }
}
