using System.Security.Cryptography;
using Stcache.Raft;
using static Stcache.Storage.Tests.Entries;

namespace Stcache.Storage.Tests;

public sealed class StorageInspectorTests : IDisposable
{
    private readonly TempDirectory _temp = new();

    public void Dispose() => _temp.Dispose();

    private string NodePath => _temp.Combine("node0");

    private static void Populate(DataDirectory directory)
    {
        using WriteAheadLog wal = directory.OpenLog();
        var change = new ConfChange(ConfChangeType.AddVoter, new NodeId(1), "127.0.0.1:7000"u8.ToArray());
        wal.Save(Hard(3, 1, 4), [
            new Entry(new Term(1), new LogIndex(1), EntryType.ConfChange, change.Encode()),
            new Entry(new Term(2), new LogIndex(2), EntryType.Normal, ReadOnlyMemory<byte>.Empty),
            Make(3, 3, "set abc=efg"),
            new Entry(new Term(3), new LogIndex(4), EntryType.Normal, new byte[] { 0, 1, 2, 255 }),
        ]);
        directory.OpenSnapshots().Save(new SnapshotMetadata(new LogIndex(2), new Term(2), new ConfState([new NodeId(1)], [])), s => s.Write("state"u8));
    }

    [Fact]
    public void PrintsHardStateLogAndSnapshots()
    {
        using (DataDirectory directory = DataDirectory.Open(NodePath))
        {
            Populate(directory);

            // Runs beside the process that holds the lock.
            var output = new StringWriter();
            int code = new StorageInspector(NodePath).Inspect(output);
            string text = output.ToString();
            Assert.Equal(StorageInspector.ExitOk, code);
            Assert.Contains("hard state: term=3 vote=1 commit=4", text, StringComparison.Ordinal);
            Assert.Contains("AddVoter node=1 context=\"127.0.0.1:7000\"", text, StringComparison.Ordinal);
            Assert.Contains("(no-op)", text, StringComparison.Ordinal);
            Assert.Contains("\"set abc=efg\"", text, StringComparison.Ordinal);
            Assert.Contains("0x000102ff", text, StringComparison.Ordinal);
            Assert.Contains("index=2 term=2 voters=(1) learners=() data=5 bytes checksum=ok", text, StringComparison.Ordinal);
        }
    }

    [Fact]
    public void UsesTheCallersDecoderAndPages()
    {
        using (DataDirectory directory = DataDirectory.Open(NodePath))
        {
            using WriteAheadLog wal = directory.OpenLog();
            wal.Save(Hard(1, 1, 50), Range(1, 1, 50));
        }

        var output = new StringWriter();
        new StorageInspector(NodePath, data => "len" + data.Length).Inspect(output, new InspectOptions { FromIndex = new LogIndex(10), Limit = 5 });
        string[] lines = output.ToString().Split('\n', StringSplitOptions.TrimEntries);
        string[] logLines = [.. lines.Where(l => l.Contains("Normal", StringComparison.Ordinal))];
        Assert.Equal(5, logLines.Length);
        Assert.StartsWith("10 ", logLines[0], StringComparison.Ordinal);
        Assert.EndsWith("len3", logLines[0], StringComparison.Ordinal);
        Assert.Contains("... more from index 15", lines);
    }

    [Fact]
    public void NeverModifiesTheDirectoryEvenWithATornTail()
    {
        string segment;
        using (DataDirectory directory = DataDirectory.Open(NodePath))
        {
            using WriteAheadLog wal = directory.OpenLog(new WalOptions { SegmentSizeBytes = 64 * 1024 });
            wal.Save(Hard(1, 1, 2), Range(1, 1, 3));
            segment = wal.ActiveSegmentPath;
            long end = wal.ActiveOffset;
            wal.Dispose();
            using var stream = new FileStream(segment, FileMode.Open, FileAccess.Write);
            stream.Position = end;
            stream.Write([99, 0, 0, 0, 5, 5]);
        }

        Dictionary<string, string> before = Fingerprint();
        var output = new StringWriter();
        Assert.Equal(StorageInspector.ExitOk, new StorageInspector(NodePath).Inspect(output));
        Assert.Contains("torn tail of 6 bytes", output.ToString(), StringComparison.Ordinal);
        Assert.Equal(before, Fingerprint());
    }

    [Fact]
    public void ReportsCorruptionWithFileAndOffset()
    {
        using (DataDirectory directory = DataDirectory.Open(NodePath))
        {
            using WriteAheadLog wal = directory.OpenLog();
            wal.Save(null, Range(1, 1, 5));
            WriteAheadLogTests.FlipBit(wal.ActiveSegmentPath, WalFormat.SegmentHeaderBytes + 12, 0);
        }

        var output = new StringWriter();
        Assert.Equal(StorageInspector.ExitCorrupt, new StorageInspector(NodePath).Inspect(output));
        Assert.Contains("CORRUPT", output.ToString(), StringComparison.Ordinal);
        Assert.Contains("at offset 32", output.ToString(), StringComparison.Ordinal);
    }

    [Fact]
    public void RefusesPolitelyOutsideADataDirectory()
    {
        string other = _temp.Combine("other");
        Directory.CreateDirectory(other);
        File.WriteAllText(Path.Combine(other, "file.txt"), "x");
        var output = new StringWriter();
        Assert.Equal(StorageInspector.ExitNotDataDirectory, new StorageInspector(other).Inspect(output));
        Assert.Contains("not a stcache data directory", output.ToString(), StringComparison.Ordinal);
        Assert.Equal(StorageInspector.ExitNotDataDirectory, new StorageInspector(_temp.Combine("missing")).Inspect(new StringWriter()));
        Assert.False(Directory.Exists(_temp.Combine("missing")));
    }

    private Dictionary<string, string> Fingerprint() =>
        Directory.GetFiles(NodePath, "*", SearchOption.AllDirectories)
            .ToDictionary(p => p, p => Convert.ToHexString(SHA256.HashData(File.ReadAllBytes(p))) + File.GetLastWriteTimeUtc(p).Ticks);
}
