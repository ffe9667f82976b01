using System.Diagnostics;
using System.Globalization;
using Microsoft.Win32.SafeHandles;
using Stcache.Raft;
using Stcache.Storage;

// Storage micro-benchmark: raw write+fdatasync versus the WAL on the same disk, in one run.
// Usage: Stcache.Storage.Bench [--dir PATH] [--iterations CHUNK] [--rounds R] [--unsynced-mib M]
string directory = Path.GetFullPath("stcache-bench-data");
int iterations = 200;
int rounds = 20;
int unsyncedMiB = 256;
for (int i = 0; i < args.Length; i++)
{
    switch (args[i])
    {
        case "--dir":
            directory = Path.GetFullPath(args[++i]);
            break;
        case "--iterations":
            iterations = int.Parse(args[++i], CultureInfo.InvariantCulture);
            break;
        case "--rounds":
            rounds = int.Parse(args[++i], CultureInfo.InvariantCulture);
            break;
        case "--unsynced-mib":
            unsyncedMiB = int.Parse(args[++i], CultureInfo.InvariantCulture);
            break;
        default:
            Console.Error.WriteLine($"unknown argument {args[i]}");
            return 2;
    }
}

Directory.CreateDirectory(directory);
string runDirectory = Path.Combine(directory, Guid.NewGuid().ToString("N"));
Directory.CreateDirectory(runDirectory);
Console.WriteLine($"directory {runDirectory}, chunks of {iterations} syncs x {rounds} rounds, {Environment.ProcessorCount} cores");
try
{
    // The disk is shared and its speed drifts by 10x within seconds, so the two synced workloads run
    // interleaved in small chunks against files that stay open: each sees the same conditions.
    var interleaved = SyncedInterleaved(runDirectory, iterations, rounds);
    Console.WriteLine();
    Console.WriteLine($"(a) raw 4 KiB write + fdatasync          : {interleaved.Raw,10:F0} ops/s");
    Console.WriteLine($"(b) WAL Save, 1 entry of 4096 B data     : {interleaved.WalFull,10:F0} ops/s = {100 * interleaved.WalFull / interleaved.Raw:F1}% of raw ({interleaved.BytesPerSync} bytes per sync)");
    Console.WriteLine($"    WAL Save, 1 entry, record = 4096 B   : {interleaved.WalPage,10:F0} ops/s = {100 * interleaved.WalPage / interleaved.Raw:F1}% of raw");
    Console.WriteLine($"    raw 4 KiB write + fsync (Flush(true)): {interleaved.RawFsync,10:F0} ops/s");
    Console.WriteLine($"    per-chunk WAL/raw ratio, median      : {100 * interleaved.MedianChunkRatio:F1}%");

    (double rawMiBps, double walMiBps, double walBatchMiBps) = Unsynced(runDirectory, unsyncedMiB);
    Console.WriteLine($"(c) unsynced raw append (4 KiB writes)   : {rawMiBps,10:F0} MiB/s");
    Console.WriteLine($"    unsynced WAL append, 1 x 4 KiB/Save  : {walMiBps,10:F0} MiB/s (includes cutting and zero-filling 64 MiB segments)");
    Console.WriteLine($"    unsynced WAL append, 64 x 4 KiB/Save : {walBatchMiBps,10:F0} MiB/s");
}
finally
{
    Directory.Delete(runDirectory, recursive: true);
}

return 0;

static (double Raw, double WalFull, double WalPage, double RawFsync, long BytesPerSync, double MedianChunkRatio) SyncedInterleaved(string directory, int chunk, int rounds)
{
    const int BlockBytes = 4096;
    long total = (long)chunk * rounds;
    string path = Path.Combine(directory, "raw.dat");
    var block = new byte[BlockBytes];
    Random.Shared.NextBytes(block);

    // Same conditions as the WAL: a file already filled with zeros, so writes never change its size.
    using (var create = new FileStream(path, FileMode.Create, FileAccess.Write))
    {
        var zeros = new byte[1024 * 1024];
        for (long written = 0; written < 2 * total * BlockBytes; written += zeros.Length)
        {
            create.Write(zeros);
        }

        create.Flush(flushToDisk: true);
    }

    using SafeFileHandle handle = File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite);
    using var stream = new FileStream(handle, FileAccess.ReadWrite, 0);
    using WriteAheadLog walFull = WriteAheadLog.Open(Path.Combine(directory, "wal-full"));
    using WriteAheadLog walPage = WriteAheadLog.Open(Path.Combine(directory, "wal-page"));
    byte[] fullData = new byte[BlockBytes];
    byte[] pageData = new byte[BlockBytes - WalFormat.AlignedRecordBytes(WalFormat.EntryPayloadHeaderBytes)];
    Random.Shared.NextBytes(fullData);
    Random.Shared.NextBytes(pageData);
    var batch = new Entry[1];
    TimeSpan rawTime = TimeSpan.Zero, fullTime = TimeSpan.Zero, pageTime = TimeSpan.Zero, fsyncTime = TimeSpan.Zero;
    var ratios = new List<double>();
    long rawOffset = 0;
    ulong fullIndex = 1, pageIndex = 1;
    for (int round = 0; round < rounds; round++)
    {
        long start = Stopwatch.GetTimestamp();
        for (int i = 0; i < chunk; i++, rawOffset += BlockBytes)
        {
            RandomAccess.Write(handle, block, rawOffset);
            NativeSync.SyncData(handle);
        }

        TimeSpan rawChunk = Stopwatch.GetElapsedTime(start);
        rawTime += rawChunk;

        start = Stopwatch.GetTimestamp();
        for (int i = 0; i < chunk; i++)
        {
            batch[0] = new Entry(new Term(1), new LogIndex(fullIndex++), EntryType.Normal, fullData);
            walFull.Save(null, batch);
        }

        TimeSpan fullChunk = Stopwatch.GetElapsedTime(start);
        fullTime += fullChunk;
        ratios.Add(rawChunk / fullChunk);

        start = Stopwatch.GetTimestamp();
        for (int i = 0; i < chunk; i++)
        {
            batch[0] = new Entry(new Term(1), new LogIndex(pageIndex++), EntryType.Normal, pageData);
            walPage.Save(null, batch);
        }

        pageTime += Stopwatch.GetElapsedTime(start);

        start = Stopwatch.GetTimestamp();
        for (int i = 0; i < chunk / 4; i++, rawOffset += BlockBytes)
        {
            RandomAccess.Write(handle, block, rawOffset);
            stream.Flush(flushToDisk: true);
        }

        fsyncTime += Stopwatch.GetElapsedTime(start);
    }

    if (walFull.SyncCount != total || walPage.SyncCount != total)
    {
        throw new InvalidOperationException("expected exactly one sync per Save");
    }

    stream.Dispose();
    File.Delete(path);
    return (total / rawTime.TotalSeconds, total / fullTime.TotalSeconds, total / pageTime.TotalSeconds,
        total / 4 / fsyncTime.TotalSeconds, walFull.SyncedBytes / walFull.SyncCount, Median(ratios));
}

static (double Raw, double Wal, double WalBatched) Unsynced(string directory, int mebibytes)
{
    const int BlockBytes = 4096;
    long total = (long)mebibytes * 1024 * 1024;
    var block = new byte[BlockBytes];
    Random.Shared.NextBytes(block);

    string path = Path.Combine(directory, "raw-unsynced.dat");
    double raw;
    using (SafeFileHandle handle = File.OpenHandle(path, FileMode.Create, FileAccess.Write))
    {
        long start = Stopwatch.GetTimestamp();
        for (long offset = 0; offset < total; offset += BlockBytes)
        {
            RandomAccess.Write(handle, block, offset);
        }

        raw = total / 1048576.0 / Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    File.Delete(path);
    double single = WalUnsynced(directory, total, block, 1);
    double batched = WalUnsynced(directory, total, block, 64);
    return (raw, single, batched);
}

static double WalUnsynced(string directory, long total, byte[] block, int batchSize)
{
    string walDirectory = Path.Combine(directory, "wal-unsynced-" + Guid.NewGuid().ToString("N"));
    double rate;
    using (WriteAheadLog wal = WriteAheadLog.Open(walDirectory, new WalOptions { SkipSync = true }))
    {
        var batch = new Entry[batchSize];
        ulong index = 1;
        long start = Stopwatch.GetTimestamp();
        for (long written = 0; written < total; written += (long)batchSize * block.Length)
        {
            for (int i = 0; i < batchSize; i++)
            {
                batch[i] = new Entry(new Term(1), new LogIndex(index++), EntryType.Normal, block);
            }

            wal.Save(null, batch);
        }

        rate = total / 1048576.0 / Stopwatch.GetElapsedTime(start).TotalSeconds;
    }

    Directory.Delete(walDirectory, recursive: true);
    return rate;
}

static double Median(List<double> values)
{
    var sorted = values.Order().ToList();
    return sorted[sorted.Count / 2];
}
