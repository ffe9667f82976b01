using Stcache.Node;
using Stcache.Raft;

namespace Stcache.Simulation.Sim;

/// <summary>
/// fsync takes simulated time. The driver saves synchronously, as the host's loop does: while a sync is in flight
/// the process reads no input, so messages and ticks that arrive meanwhile queue behind it (the driver then takes
/// them as one backlog, and due ticks all at once; client requests are refused as overloaded, and the simulated
/// clients try again), and what the driver sends after the sync
/// (acknowledgements, votes, the leader's messages after persisting) leaves only when the sync returns. What it
/// sent before the sync (a leader's appends, pipelined ahead of its own write) leaves at once. A crash within
/// the window loses the held messages: the sync took effect, its acknowledgements never left. The latency is
/// drawn from the simulator's seed, so runs stay deterministic.
/// </summary>
internal sealed partial class SimNode
{
    private readonly List<Message> _heldForSync = [];
    private int _syncBusyIncarnation = -1;
    private bool _inRun;
    private long _syncsAtRunStart;

    /// <summary>The process is blocked in an fsync: inputs queue.</summary>
    public bool InSync => _syncBusyIncarnation == _incarnation;

    /// <summary>Longest simulated sync so far, in milliseconds (statistics).</summary>
    public long SyncLatencyMaxMs { get; private set; }

    private bool BeginRun()
    {
        if (_inRun)
        {
            return false;
        }

        _inRun = true;
        _syncsAtRunStart = Disk.Syncs;
        return true;
    }

    /// <summary>Ends the outermost run: when the disk synced during it, the node stays busy for the sync's latency.</summary>
    private void EndRun(bool outermost)
    {
        if (!outermost)
        {
            return;
        }

        _inRun = false;
        long syncs = Disk.Syncs - _syncsAtRunStart;
        if (syncs == 0 || _settings.FsyncLatencyMsMax <= 0 || Driver is null)
        {
            FlushHeld();
            return;
        }

        long latency = 0;
        for (long i = 0; i < Math.Min(syncs, 4); i++)
        {
            latency += _env.Random(_settings.FsyncLatencyMsMin, _settings.FsyncLatencyMsMax);
        }

        if (_env.Random(0, 99) < 2)
        {
            latency *= 10; // a slow device: a flush behind someone else's writeback
        }

        latency = Math.Max(1, latency);
        SyncLatencyMaxMs = Math.Max(SyncLatencyMaxMs, latency);
        int incarnation = _incarnation;
        _syncBusyIncarnation = incarnation;
        _env.Schedule(latency, () => SyncReturned(incarnation));
    }

    private void SyncReturned(int incarnation)
    {
        if (_incarnation != incarnation)
        {
            return; // crashed inside the sync window: the held messages never left (Down dropped them)
        }

        if (_env.PausedUntil(Id) is { } until)
        {
            // The disk finished, but a paused process runs nothing: what follows the sync waits for the resume.
            _env.Schedule(Math.Max(1, until - _env.Now), () => SyncReturned(incarnation));
            return;
        }

        _syncBusyIncarnation = -1;
        FlushHeld();
        Run(_ => { });
    }

    private void SendEffect(Message message)
    {

        if (_inRun && _settings.FsyncLatencyMsMax > 0 && Disk.Syncs != _syncsAtRunStart)
        {
            _heldForSync.Add(message);
            return;
        }

        _env.Send(message);
    }

    private void FlushHeld()
    {
        if (_heldForSync.Count == 0)
        {
            return;
        }

        var held = _heldForSync.ToArray();
        _heldForSync.Clear();
        foreach (var message in held)
        {
            _env.Send(message);
        }
    }

    private void DropHeld() => _heldForSync.Clear();
}
