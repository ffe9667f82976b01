using Stcache.Node;
using Stcache.Raft;

namespace Stcache.Simulation.Sim;

/// <summary>
/// The host's WAL writer thread under <c>--wal-pipeline true</c> (<see cref="RaftConfig.AsyncStorageWrites"/>), in
/// virtual time: the driver hands over persist jobs and goes on taking input; the writer saves whatever is queued
/// with one <see cref="IRaftLogStore.Save"/> once its sync latency has passed (group commit), then sends the jobs'
/// messages after persist and hands the jobs back. A crash before that loses the queued jobs and their messages
/// (nothing of them reached the disk); a power failure inside the save is the DurableLog's torn-batch case. A disk
/// that refuses the save is retried after a back-off, and nothing queued is acknowledged meanwhile.
/// </summary>
internal sealed partial class SimNode
{
    private readonly List<PersistJob> _writerQueue = [];
    private bool _writerScheduled;
    private long _writerRetryMs;

    /// <summary>Persist jobs a crash discarded before their save (statistics: the model is exercised).</summary>
    public int PersistsLostInFlight { get; private set; }

    void INodeEffects.Persist(PersistJob job)
    {
        _writerQueue.Add(job);
        if (!_writerScheduled)
        {
            ScheduleWriter(WriterLatency());
        }
    }

    private long WriterLatency()
    {
        if (_settings.FsyncLatencyMsMax <= 0)
        {
            return _env.Random(0, 1); // the writer thread still runs after the loop, sometimes a moment later
        }

        long latency = _env.Random(_settings.FsyncLatencyMsMin, _settings.FsyncLatencyMsMax);
        return _env.Random(0, 99) < 2 ? latency * 10 : Math.Max(1, latency);
    }

    private void ScheduleWriter(long delayMs)
    {
        _writerScheduled = true;
        int incarnation = _incarnation;
        _env.Schedule(delayMs, () => WriterRuns(incarnation));
    }

    private void WriterRuns(int incarnation)
    {
        if (_incarnation != incarnation || Driver is null)
        {
            return; // crashed: the queue was dropped with the process
        }

        if (_env.PausedUntil(Id) is { } until)
        {
            _env.Schedule(Math.Max(1, until - _env.Now), () => WriterRuns(incarnation));
            return;
        }

        var batch = _writerQueue.ToArray();
        _writerQueue.Clear();
        var (hardState, entries) = PersistJob.Coalesce(batch);
        try
        {
            if (hardState is not null || entries.Count > 0)
            {
                Log.Save(hardState, entries);
            }
        }
        catch (SimCrashException)
        {
            _env.Trace($"n{Id} power loss during the writer's sync ({batch.Length} jobs)");
            Disk.Crash();
            Down(crashed: true);
            return;
        }
        catch (IOException e)
        {
            StorageRefusals++;
            _writerQueue.InsertRange(0, batch);
            _writerRetryMs = _writerRetryMs == 0 ? 50 : Math.Min(_writerRetryMs * 2, 5000);
            _env.Trace($"n{Id} writer: disk refused a batch ({e.Message}); retry in {_writerRetryMs}ms");
            ScheduleWriter(_writerRetryMs);
            return;
        }

        _writerRetryMs = 0;
        _writerScheduled = false;
        foreach (var job in batch)
        {
            foreach (var message in job.MessagesAfterPersist)
            {
                _env.Send(message);
            }
        }

        HandBack(batch, incarnation);
        if (_writerQueue.Count > 0 && !_writerScheduled && _incarnation == incarnation)
        {
            ScheduleWriter(WriterLatency());
        }
    }

    /// <summary>The loop takes the finished jobs as an input (also while it waits for them), unless it is itself
    /// blocked in a sync: then a moment later.</summary>
    private void HandBack(PersistJob[] batch, int incarnation)
    {
        if (_incarnation != incarnation || Driver is null)
        {
            return;
        }

        if (InSync || _inRun)
        {
            _env.Schedule(1, () => HandBack(batch, incarnation));
            return;
        }

        bool outermost = BeginRun();
        Guarded(driver =>
        {
            foreach (var job in batch)
            {
                driver.Persisted(job);
            }
        });
        EndRun(outermost);
        Run(_ => { });
    }

    private void DropWriterQueue()
    {
        PersistsLostInFlight += _writerQueue.Count;
        _writerQueue.Clear();
        _writerScheduled = false;
        _writerRetryMs = 0;
    }
}
