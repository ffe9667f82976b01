using System.Diagnostics;
using Microsoft.Extensions.Logging;
using Stcache.Raft;

namespace Stcache.Server;

/// <summary>The stages of a write that <see cref="FailoverTrace"/> times after a leadership change.</summary>
internal enum FailoverStage
{
    /// <summary>A follower sent a batch of writes to the leader.</summary>
    ForwardSent,

    /// <summary>A follower received the leader's answer to a forwarded batch.</summary>
    ForwardAnswered,

    /// <summary>A follower applied as far as the leader had when it answered (read-your-writes), and answers its client.</summary>
    ForwardCaughtUp,

    /// <summary>The leader read a follower's forwarded batch.</summary>
    ForwardedReceived,

    /// <summary>The leader answers a follower's forwarded batch.</summary>
    ForwardedAnswered,

    /// <summary>The leader applied a write it proposed (a client's or a forwarded one).</summary>
    ProposalApplied,
}

/// <summary>
/// One Information line the first time each stage of the write path runs after a leadership change this node saw
/// ("Failover trace: ..."), with its time since the change: when a failover is slow, the nodes' logs show which hop
/// held the first write. At most one line per stage per change, so a busy node logs no more than a quiet one.
/// </summary>
internal sealed partial class FailoverTrace
{
    private readonly ILogger _logger;
    private long _changedAt = Stopwatch.GetTimestamp();
    private int _logged = (1 << Enum.GetValues<FailoverStage>().Length) - 1;
    private LeadershipChange _change;

    public FailoverTrace(RaftHost host, ILogger logger)
    {
        _logger = logger;
        host.LeadershipChanged += change =>
        {
            _change = change;
            Volatile.Write(ref _changedAt, Stopwatch.GetTimestamp());
            Volatile.Write(ref _logged, 0);
        };
    }

    /// <summary>Logs the stage if it is its first time since the last leadership change.</summary>
    public void Reached(FailoverStage stage)
    {
        int bit = 1 << (int)stage;
        if ((Volatile.Read(ref _logged) & bit) != 0 || (Interlocked.Or(ref _logged, bit) & bit) != 0)
        {
            return;
        }

        var change = _change;
        long ms = (long)Stopwatch.GetElapsedTime(Volatile.Read(ref _changedAt)).TotalMilliseconds;
        StageReached(_logger, stage, ms, change.Leader, change.Term);
    }

    [LoggerMessage(1140, LogLevel.Information, "Failover trace: first {Stage} {ElapsedMs} ms after this node saw leader {Leader} at term {Term}")]
    private static partial void StageReached(ILogger logger, FailoverStage stage, long elapsedMs, NodeId leader, Term term);
}
