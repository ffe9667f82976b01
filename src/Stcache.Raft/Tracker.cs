namespace Stcache.Raft;

/// <summary>
/// What a node tracks about its cluster, in one place: the configuration (voters and learners), the leader's
/// progress of every member, and a candidate's votes. Every majority question the node asks (what is committed,
/// did the election end, is a quorum still active, which heartbeat round did a quorum acknowledge) is answered
/// here through <see cref="Quorum"/>, over the voters of <see cref="Config"/>.
/// </summary>
internal sealed class Tracker
{
    private readonly Dictionary<NodeId, bool> _votes = [];

    /// <summary>The configuration: who votes, who only learns.</summary>
    public ConfState Config { get; set; } = ConfState.Empty;

    /// <summary>The leader's view of each member (itself included); empty on followers and candidates after a reset.</summary>
    public Dictionary<NodeId, Progress> Progress { get; } = [];

    /// <summary>Replaces every member's progress with a fresh one (a new term): nothing is known about the followers.</summary>
    public void ResetProgress(NodeId self, LogIndex next, LogIndex selfStable, int inflightMessagesMax)
    {
        Progress.Clear();
        foreach (var id in Config.Voters.Concat(Config.Learners))
        {
            var progress = new Progress(next, inflightMessagesMax, Config.IsLearner(id));
            if (id == self)
            {
                progress.MaybeUpdate(selfStable);
            }

            Progress[id] = progress;
        }
    }

    /// <summary>The highest index a majority of the voters hold (the commit index, if it is of the leader's term).</summary>
    public LogIndex QuorumMatch()
    {
        Span<ulong> matches = stackalloc ulong[Config.Voters.Count];
        int n = 0;
        foreach (var voter in Config.Voters)
        {
            matches[n++] = Progress.TryGetValue(voter, out var p) ? p.Match.Value : 0;
        }

        return new LogIndex(Quorum.MajorityValue(matches));
    }

    /// <summary>The highest heartbeat round a majority of the voters acknowledged; the leader counts its own newest round.</summary>
    public ulong QuorumAckedRound(NodeId self, ulong selfRound)
    {
        Span<ulong> acks = stackalloc ulong[Config.Voters.Count];
        int n = 0;
        foreach (var voter in Config.Voters)
        {
            acks[n++] = voter == self ? selfRound : (Progress.TryGetValue(voter, out var p) ? p.AckedRound : 0);
        }

        return Quorum.MajorityValue(acks);
    }

    /// <summary>Check-quorum: a majority of the voters (the leader itself included) was heard from this round.</summary>
    public bool QuorumRecentlyActive(NodeId self)
    {
        int active = 0;
        foreach (var voter in Config.Voters)
        {
            if (voter == self || (Progress.TryGetValue(voter, out var p) && p.RecentActive))
            {
                active++;
            }
        }

        return Quorum.IsReached(Config.Voters.Count, active);
    }

    public void ResetVotes() => _votes.Clear();

    /// <summary>Records a voter's answer (the first one counts; non-voters are ignored) and returns the election's result.</summary>
    public VoteResult RecordVote(NodeId from, bool granted)
    {
        if (!Config.IsVoter(from))
        {
            return VoteResult.Pending;
        }

        _votes.TryAdd(from, granted);
        int yes = 0;
        int no = 0;
        foreach (var (_, vote) in _votes)
        {
            if (vote)
            {
                yes++;
            }
            else
            {
                no++;
            }
        }

        return Quorum.Vote(Config.Voters.Count, yes, no);
    }
}
