using System.Collections.Concurrent;
using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Stcache.Node;
using Stcache.Raft;

namespace Stcache.Server;

/// <summary>
/// The node's log writer under <c>--wal-pipeline true</c> (<see cref="RaftConfig.AsyncStorageWrites"/>): one
/// dedicated thread takes the loop's <see cref="PersistJob"/>s in order, writes whatever is queued with one
/// <see cref="IRaftLogStore.Save"/> (one write, one fdatasync: group commit), then sends the jobs' messages after
/// persist and hands the jobs back to the loop (<see cref="TryTakeCompleted"/>, announced by <c>completed</c>).
/// The loop meanwhile takes the next inputs and hands out the next Ready. A save the disk refuses is retried
/// with the same back-off as the synchronous path (50 ms doubling to 5 s); nothing of it, and nothing queued
/// behind it, is acknowledged meanwhile.
/// </summary>
internal sealed class RaftHostWalWriter : IDisposable
{
    private readonly IRaftLogStore _store;
    private readonly IMessageSink _network;
    private readonly Action _completed;
    private readonly ILogger _logger;
    private readonly object _gate = new();
    private readonly Queue<PersistJob> _queue = new();
    private readonly ConcurrentQueue<PersistJob> _done = new();
    private readonly SemaphoreSlim _doneSignal = new(0);
    private readonly CancellationTokenSource _stop = new();
    private readonly TimeProvider _time;
    private readonly Thread _thread;
    private bool _stopping;
    private volatile bool _failing;

    public RaftHostWalWriter(NodeId id, IRaftLogStore store, IMessageSink network, Action completed, ILogger logger, TimeProvider time)
    {
        _time = time;
        _store = store;
        _network = network;
        _completed = completed;
        _logger = logger;
        _thread = new Thread(Run) { IsBackground = true, Name = $"stcache-wal-{id.Value}" };
        _thread.Start();
    }

    /// <summary>True while the disk refuses the writer's batch.</summary>
    public bool Failing => _failing;

    public void Enqueue(PersistJob job)
    {
        lock (_gate)
        {
            if (_stopping)
            {
                return; // the node is stopping: like a crash, the job is not persisted and nothing of it is sent
            }

            _queue.Enqueue(job);
            if (_queue.Count == 1)
            {
                Monitor.Pulse(_gate);
            }
        }
    }

    public bool TryTakeCompleted(out PersistJob job) => _done.TryDequeue(out job!);

    /// <summary>Completes when a job was handed back since the last call (the loop then takes them).</summary>
    public Task WaitForCompletedAsync(CancellationToken cancellationToken) => _doneSignal.WaitAsync(cancellationToken);

    private void Run()
    {
        var batch = new List<PersistJob>();
        var retryDelay = NodeDriver.StorageRetryFirst;
        while (true)
        {
            lock (_gate)
            {
                while (_queue.Count == 0 && !_stopping)
                {
                    Monitor.Wait(_gate);
                }

                if (_stopping)
                {
                    return;
                }

                while (_queue.TryDequeue(out var job))
                {
                    batch.Add(job);
                }
            }

            var (hardState, entries) = PersistJob.Coalesce(batch);
            while (true)
            {
                try
                {
                    if (hardState is not null || entries.Count > 0)
                    {
                        long started = Stopwatch.GetTimestamp();
                        if (_store.Save(hardState, entries))
                        {
                            ServerMetrics.WalSave.Record(Stopwatch.GetElapsedTime(started).TotalSeconds);
                        }
                    }

                    break;
                }
                catch (IOException e)
                {
                    _failing = true;
                    Log.WalWriterSaveFailed(_logger, e.Message, retryDelay);
                    try
                    {
                        // On the host's clock, as the loop's own retry (a test's fake clock runs it).
                        Task.Delay(retryDelay, _time, _stop.Token).GetAwaiter().GetResult();
                    }
                    catch (OperationCanceledException)
                    {
                        return;
                    }

                    retryDelay = NodeDriver.NextStorageRetry(retryDelay);
                }
            }

            if (_failing)
            {
                _failing = false;
                retryDelay = NodeDriver.StorageRetryFirst;
                Log.WalWriterRecovered(_logger);
            }

            foreach (var job in batch)
            {
                foreach (var message in job.MessagesAfterPersist)
                {
                    _network.Send(message);
                }

                _done.Enqueue(job);
            }

            batch.Clear();
            if (_doneSignal.CurrentCount == 0)
            {
                _doneSignal.Release();
            }

            _completed();
        }
    }

    /// <summary>Stops the thread after the save in hand (queued jobs are dropped, as a crash would drop them).</summary>
    public void Dispose()
    {
        lock (_gate)
        {
            _stopping = true;
            Monitor.Pulse(_gate);
        }

        _stop.Cancel();
        _thread.Join();
        _stop.Dispose();
        _doneSignal.Dispose();
    }
}

/// <summary>
/// Serializes calls to a log store used by two threads: the writer's saves and the loop's snapshot and compaction
/// calls (<see cref="IRaftLogStore.ApplySnapshot"/>, <see cref="IRaftLogStore.Compact"/>). A loop call waits at
/// most for the save in progress.
/// </summary>
internal sealed class SerializedLogStore(IRaftLogStore inner) : IRaftLogStore
{
    private readonly Lock _gate = new();

    public PersistentState Load()
    {
        lock (_gate)
        {
            return inner.Load();
        }
    }

    public bool Save(HardState? hardState, IReadOnlyList<Entry> entries)
    {
        lock (_gate)
        {
            return inner.Save(hardState, entries);
        }
    }

    public void ApplySnapshot(SnapshotMetadata snapshot)
    {
        lock (_gate)
        {
            inner.ApplySnapshot(snapshot);
        }
    }

    public void Compact(LogIndex upTo)
    {
        lock (_gate)
        {
            inner.Compact(upTo);
        }
    }
}
