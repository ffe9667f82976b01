using System.Diagnostics;
using System.Diagnostics.Metrics;
using Microsoft.Extensions.Logging;
using Stcache.Cache;

namespace Stcache.Server;

/// <summary>
/// <c>--idle-gc-compaction</c>: checks the GC every few seconds and, when <see cref="IdleHeapCompaction"/> says the
/// node turned idle after a large growth with much more memory committed than live, runs one blocking, compacting,
/// aggressive full collection, which gives the free space back to the system (docs/PERFORMANCE.md, "Memory"). It
/// pauses the node for the collection (tens to hundreds of milliseconds with a million keys), hence opt-in. Logged
/// (event 1180) and metered (<c>stcache.gc.idle_compactions</c>, <c>stcache.gc.idle_compaction_released</c>,
/// <c>stcache.gc.idle_compaction_pause</c>).
/// </summary>
internal sealed partial class IdleHeapCompactor : IAsyncDisposable
{
    private static readonly Meter s_meter = new(ServerMetrics.MeterName);
    private static readonly Counter<long> s_compactions = s_meter.CreateCounter<long>(
        "stcache.gc.idle_compactions", null, "compacting full collections run because the node turned idle after a growth");
    private static readonly Counter<long> s_released = s_meter.CreateCounter<long>(
        "stcache.gc.idle_compaction_released", "By", "memory the GC gave back through those collections (committed before less after)");
    private static readonly Histogram<double> s_pause = s_meter.CreateHistogram<double>(
        "stcache.gc.idle_compaction_pause", "s", "duration of each of those collections (the node is paused meanwhile)");

    private readonly IdleHeapCompaction _policy;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private readonly long _start = Stopwatch.GetTimestamp();

    private IdleHeapCompactor(IdleHeapCompaction.Options options, ILogger logger)
    {
        _policy = new IdleHeapCompaction(options);
        _logger = logger;
        _loop = Task.Run(RunAsync);
    }

    public static IdleHeapCompactor Start(ILogger logger) => new(new IdleHeapCompaction.Options(), logger);

    private HeapSample Sample()
    {
        var last = GC.GetGCMemoryInfo(GCKind.Any);

        // The live size from the latest full collection, background or blocking, when there was one.
        var background = GC.GetGCMemoryInfo(GCKind.Background);
        var blocking = GC.GetGCMemoryInfo(GCKind.FullBlocking);
        var full = background.Index >= blocking.Index ? background : blocking;
        var live = full.Index > 0 ? full : last;
        return new HeapSample(Stopwatch.GetElapsedTime(_start), GC.GetTotalAllocatedBytes(), last.TotalCommittedBytes,
            live.HeapSizeBytes - live.FragmentedBytes, GC.CollectionCount(2));
    }

    private async Task RunAsync()
    {
        using var timer = new PeriodicTimer(_policy.Settings.CheckInterval);
        try
        {
            while (await timer.WaitForNextTickAsync(_stop.Token))
            {
                var sample = Sample();
                switch (_policy.Next(sample))
                {
                    case HeapAction.Measure:
                        // Concurrent: the node keeps serving while it marks.
                        GC.Collect(2, GCCollectionMode.Forced, blocking: false, compacting: false);
                        break;
                    case HeapAction.Compact:
                        Compact(sample);
                        break;
                }
            }
        }
        catch (OperationCanceledException) when (_stop.IsCancellationRequested)
        {
        }
    }

    private void Compact(HeapSample before)
    {
        long started = Stopwatch.GetTimestamp();
        GC.Collect(2, GCCollectionMode.Aggressive, blocking: true, compacting: true);
        var pause = Stopwatch.GetElapsedTime(started);
        var after = Sample();
        _policy.Compacted(after);
        long released = before.CommittedBytes - after.CommittedBytes;
        s_compactions.Add(1);
        s_released.Add(Math.Max(0, released));
        s_pause.Record(pause.TotalSeconds);
        Compacted(_logger, before.CommittedBytes >> 20, after.CommittedBytes >> 20, after.LiveBytes >> 20, pause.TotalMilliseconds);
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        await _loop;
        _stop.Dispose();
    }

    [LoggerMessage(1180, LogLevel.Information, "Idle after a growth: a compacting full collection took the GC's committed memory from {BeforeMiB} MiB to {AfterMiB} MiB ({LiveMiB} MiB live) in {PauseMs:F0} ms")]
    private static partial void Compacted(ILogger logger, long beforeMiB, long afterMiB, long liveMiB, double pauseMs);
}
