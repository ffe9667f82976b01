using Stcache.Raft;

namespace Stcache.Simulation.Sim;

/// <summary>
/// The Raft paper's Figure 8 as a fault schedule with random timing, driven by what the cluster does:
/// (a) the leader A is cut off while clients still write to it, so entries of its term pile up on A alone;
/// (b) the next leader B is cut off the moment it wins, so its no-op (a later term) lives on B alone;
/// (c) A returns and wins again; it sends its old-term entries to the others in size-limited appends, and it is cut
/// off at the moment a majority holds some of them but not yet an entry of A's new term (a leader that commits by
/// counting replicas commits them now); (d) B returns: its log ends in a later term than those entries, so it can
/// win and overwrite them. A correct leader committed nothing in (c); a leader that committed by counting has
/// applied entries that are now overwritten, which the safety checks catch. Any step that does not happen in time
/// (another node wins, the moment passes) heals everything and the schedule starts again later.
/// </summary>
internal sealed partial class Simulator
{
    private SplitMix? _figure8Random;
    private Figure8Step _figure8Step;
    private long _figure8Deadline;
    private SimNode? _figure8A;
    private SimNode? _figure8B;
    private Term _figure8Term;
    private LogIndex _figure8CommitAtStart;
    private int _figure8CutA;
    private int _figure8CutB;

    private enum Figure8Step
    {
        Idle,
        WaitForB,
        WaitForAAgain,
        WaitForMoment,
        BReturns,
    }

    private long ElectionMs => (long)_options.ElectionTimeoutTicks * _options.TickMs;

    private void StartFigure8()
    {
        if (!_options.Figure8)
        {
            return;
        }

        _figure8Random = new SplitMix(((ulong)_options.Seed * 0xD1B54A32D192ED03UL) ^ 0xF18E8UL);
        _figure8Deadline = _figure8Random.Between(0, (int)(ElectionMs * 5));
        Schedule(1, Figure8Watch);
    }

    private void Figure8Watch()
    {
        if (_livenessPhase)
        {
            return;
        }

        Schedule(_figure8Random!.Between(1, 2), Figure8Watch);
        var leader = CurrentLeader();
        switch (_figure8Step)
        {
            case Figure8Step.Idle:
                if (_now >= _figure8Deadline && leader is { Node: { } a })
                {
                    _figure8A = leader;
                    _figure8Term = a.Term;
                    _figure8CutA = Isolate(leader);
                    Figure8Next(Figure8Step.WaitForB, 6, $"(a) cut off leader n{leader.Id} of term {a.Term}");
                }

                break;
            case Figure8Step.WaitForB:
                if (leader is { Node: { } b } && leader != _figure8A && b.Term > _figure8Term)
                {
                    _figure8B = leader;
                    _figure8Term = b.Term;
                    _figure8CutB = Isolate(leader);

                    // A returns a little later (it may have to notice the new term first).
                    int cutA = _figure8CutA;
                    Schedule(_figure8Random!.Between(0, (int)ElectionMs), () => _partitions.Heal(cutA));
                    Figure8Next(Figure8Step.WaitForAAgain, 8, $"(b) cut off new leader n{leader.Id} of term {b.Term}");
                }

                break;
            case Figure8Step.WaitForAAgain:
                if (leader is { Node: { } again } && again.Term > _figure8Term)
                {
                    if (leader != _figure8A)
                    {
                        Figure8Abort($"n{leader.Id} won term {again.Term} instead of n{_figure8A!.Id}");
                        break;
                    }

                    _figure8Term = again.Term;
                    _figure8CommitAtStart = again.CommitIndex;
                    Figure8Next(Figure8Step.WaitForMoment, 4, $"(c) n{leader.Id} leads again in term {again.Term} from commit {again.CommitIndex}");
                }

                break;
            case Figure8Step.WaitForMoment:
                if (_figure8A is not { Node: { } core } || core.Term != _figure8Term || core.Role != RaftRole.Leader)
                {
                    Figure8Abort("the leader of (c) lost its term");
                    break;
                }

                var quorum = QuorumMatch(core);
                var ownTermStart = FirstIndexOfTerm(_figure8A, _figure8Term);
                if (quorum > _figure8CommitAtStart && (ownTermStart == LogIndex.Zero || quorum < ownTermStart))
                {
                    // A majority holds older-term entries up to `quorum`, none of term _figure8Term yet.
                    _figure8CutA = Isolate(_figure8A);
                    _partitions.Heal(_figure8CutB);
                    Figure8Next(Figure8Step.BReturns, 6, $"(c) a majority holds n{_figure8A.Id}'s older-term entries up to {quorum} but not its term {_figure8Term} (from {ownTermStart}): cut it off, n{_figure8B!.Id} returns");
                }
                else if (ownTermStart != LogIndex.Zero && quorum >= ownTermStart)
                {
                    Figure8Abort("the moment passed: its own term reached a majority at once");
                }

                break;
            case Figure8Step.BReturns:
                break;
        }

        if (_figure8Step != Figure8Step.Idle && _now >= _figure8Deadline)
        {
            Figure8Abort(_figure8Step == Figure8Step.BReturns ? "done" : $"timed out at {_figure8Step}");
        }
    }

    private void Figure8Next(Figure8Step step, int electionTimeouts, string what)
    {
        _figure8Step = step;
        _figure8Deadline = _now + (electionTimeouts * ElectionMs);
        Trace($"figure 8: {what}");
    }

    private void Figure8Abort(string why)
    {
        _partitions.Heal(_figure8CutA);
        _partitions.Heal(_figure8CutB);
        _figure8Step = Figure8Step.Idle;
        _figure8A = null;
        _figure8B = null;
        _figure8Deadline = _now + _figure8Random!.Between((int)ElectionMs, (int)(ElectionMs * 6));
        Trace($"figure 8: {why}; heal");
    }

    /// <summary>Cuts <paramref name="node"/> off from every other node; returns the partition's handle.</summary>
    private int Isolate(SimNode node)
    {
        var others = _nodes.Values.Where(n => n.Id != node.Id).Select(n => n.Id).ToList();
        _stats.Partitions++;
        return _partitions.Split([node.Id], others);
    }

    /// <summary>The highest index a majority of the leader's voters hold (its own durable log included), from its
    /// published progress.</summary>
    private static LogIndex QuorumMatch(RaftNode leader)
    {
        var status = leader.GetStatus();
        var matches = new List<ulong>();
        foreach (var voter in status.ConfState.Voters)
        {
            matches.Add(status.Progress.FirstOrDefault(p => p.Id == voter).Match.Value);
        }

        return new LogIndex(Quorum.MajorityValue(matches.ToArray()));
    }
}
