using Stcache.Raft;

namespace Stcache.Simulation.Sim;

/// <summary>
/// Term churn with uneven logs (the Raft paper's Figure 8), as a nemesis that watches for new leaders: a leader is
/// knocked out (crashed, cut off from everyone, or left with a minority) a few network delays after it won, which
/// is when it has replicated its first entries to some followers but not yet to a majority, or has just committed
/// an entry of an earlier term. Repeated over a run, this leaves logs whose tails differ in term from node to node
/// and elects leaders that must not commit older-term entries by counting replicas. Random fault steps alone
/// almost never line these events up (0 of 1,000 seeds caught an old-term entry committed by counting).
/// </summary>
internal sealed partial class Simulator
{
    private SplitMix? _churnRandom;
    private Term _churnTerm;
    private bool _churnFired;

    // The watched leader's commit index when first seen, and the first index of its own term in its log.
    private LogIndex _churnCommitAtStart;
    private LogIndex _churnOwnTermStart;

    /// <summary>Starts the watcher if this run has leader churn. Its randomness is its own, so runs without churn
    /// draw exactly what they drew before it existed.</summary>
    private void StartLeaderChurn()
    {
        if (_options.LeaderChurnPerMillion == 0)
        {
            return;
        }

        _churnRandom = new SplitMix(((ulong)_options.Seed * 0x9E3779B97F4A7C15UL) ^ 0xF168UL);
        Schedule(_churnRandom.Between(0, 20), ChurnWatch);
    }

    private void ChurnWatch()
    {
        var random = _churnRandom!;
        if (_livenessPhase)
        {
            return;
        }

        Schedule(random.Between(1, 3), ChurnWatch);
        if (CurrentLeader() is not { Node: { } core } leader || core.Term < _churnTerm)
        {
            return;
        }

        var term = core.Term;
        if (term > _churnTerm)
        {
            // A new leader. Knocked out at once, its no-op reaches nobody: its term lives on in its log alone
            // (Figure 8's S5 in term 3). A few network delays later, its first entries reached some followers.
            _churnTerm = term;
            _churnFired = false;
            _churnCommitAtStart = core.CommitIndex;
            _churnOwnTermStart = FirstIndexOfTerm(leader, term);
            if (random.ChancePerMillion(_options.LeaderChurnPerMillion))
            {
                _churnFired = true;
                long delay = random.Chance(1, 2) ? random.Between(0, 2) : random.Between(0, (4 * _network.DelayMaxMs) + 10);
                Schedule(delay, () => KnockOut(leader, term));
            }

            return;
        }

        if (_churnFired)
        {
            return;
        }

        // Figure 8 (c): a follower acknowledged entries of an earlier term that were not committed when this leader
        // took over, but the leader's own term has not reached it yet. Knocked out now, a node whose log ends in a
        // higher older term can win next, and must not find any of those entries committed.
        if (_churnOwnTermStart == LogIndex.Zero)
        {
            _churnOwnTermStart = FirstIndexOfTerm(leader, term);
        }

        foreach (var progress in core.GetStatus().Progress)
        {
            if (progress.Id != leader.Id && progress.Match > _churnCommitAtStart &&
                (_churnOwnTermStart == LogIndex.Zero || progress.Match < _churnOwnTermStart))
            {
                _churnFired = true;
                if (random.Chance(1, 2))
                {
                    Trace($"churn: n{progress.Id} holds older-term entries up to {progress.Match} from leader n{leader.Id}, not yet its term {term} (from {_churnOwnTermStart})");
                    KnockOut(leader, term);
                }

                return;
            }
        }
    }

    /// <summary>The first index of <paramref name="term"/> in the node's durable log, or zero if it has none yet.</summary>
    private static LogIndex FirstIndexOfTerm(SimNode node, Term term)
    {
        var log = node.Log;
        var first = LogIndex.Zero;
        for (var i = log.LastIndex; i > log.SnapshotMetadata.Index; i = new LogIndex(i.Value - 1))
        {
            var t = log.TermAt(i);
            if (t is null || t.Value < term)
            {
                break;
            }

            first = i;
        }

        return first;
    }

    private void KnockOut(SimNode leader, Term term)
    {
        var random = _churnRandom!;
        if (_livenessPhase || !leader.IsUp || leader.Node is not { } core || core.Term != term || _paused.ContainsKey(leader.Id.Value))
        {
            return;
        }

        long electionMs = (long)_options.ElectionTimeoutTicks * _options.TickMs;
        int hold = random.Between((int)(electionMs / 2), (int)(electionMs * 4));
        int kind = random.Next(3);
        if (kind == 0)
        {
            Trace($"churn: crash leader n{leader.Id} of term {term}");
            _stats.Crashes++;
            leader.Crash();
            Schedule(hold, () => Restart(leader));
            return;
        }

        // Cut off from everyone, or kept with a minority of the voters (it goes on replicating to them).
        var others = _nodes.Values.Where(n => !n.IsStopped && n.Id != leader.Id).Select(n => n.Id).OrderBy(_ => random.NextUInt64()).ToList();
        int voters = core.ConfState.Voters.Count;
        int keep = kind == 1 ? 0 : random.Between(0, Math.Max(0, ((voters - 1) / 2) - 1));
        keep = Math.Min(keep, others.Count);
        var side = others.Take(keep).Append(leader.Id).ToList();
        var rest = others.Skip(keep).ToList();
        if (rest.Count == 0)
        {
            return;
        }

        int handle = _partitions.Split(side, rest);
        _stats.Partitions++;
        Trace($"churn: partition #{handle}: leader n{leader.Id} of term {term} with {string.Join(',', side)} | {string.Join(',', rest)}");
        Schedule(hold, () =>
        {
            _partitions.Heal(handle);
            Trace($"heal #{handle}");
        });
    }
}
