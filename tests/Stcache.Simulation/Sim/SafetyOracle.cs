using Stcache.Raft;

namespace Stcache.Simulation.Sim;

/// <summary>
/// Cluster-wide safety checks fed by the hosts: election safety (one leader per term), log matching (same index
/// and term means the same entry and the same term before it), leader completeness (a new leader holds every
/// committed entry), state machine safety (every node applies the same entry at an index; committed entries never
/// change). Committed entries are learned from what nodes apply, each with a bound on the term in which it was
/// committed: the lowest term any node was in when it applied it.
/// </summary>
internal sealed class SafetyOracle
{
    private readonly Dictionary<Term, NodeId> _leaders = [];
    private readonly List<Entry?> _committed = [null];
    private readonly Dictionary<(ulong Index, ulong Term), (byte[] Data, EntryType Type, Term? PreviousTerm)> _entries = [];
    private readonly Dictionary<ulong, long> _firstApplied = [];

    // Index -> the lowest term any node was in when it applied that index. A node applies only what a leader of its
    // term or an earlier one knew to be committed, so the entry was committed in this term or before it.
    private readonly Dictionary<ulong, Term> _committedBy = [];

    /// <summary>Highest index known committed (entries below it may be unknown when only snapshots carried them).</summary>
    public LogIndex CommittedMax => new((ulong)_committed.Count - 1);

    public int LeaderTermCount => _leaders.Count;

    public IReadOnlyDictionary<Term, NodeId> Leaders => _leaders;

    public bool TryGetCommitted(LogIndex index, out Entry entry)
    {
        entry = default;
        if (index.Value >= (ulong)_committed.Count || _committed[(int)index.Value] is not { } e)
        {
            return false;
        }

        entry = e;
        return true;
    }

    /// <summary>
    /// When the entry a proposal was given (<paramref name="index"/> at <paramref name="term"/>) first became
    /// visible (applied anywhere), if it ever did. Same index and term means the same entry (log matching).
    /// </summary>
    public bool TryGetCommitTime(LogIndex index, Term term, out long time)
    {
        time = 0;
        return TryGetCommitted(index, out var entry) && entry.Term == term && _firstApplied.TryGetValue(index.Value, out time);
    }

    public void ObserveRole(NodeId node, RaftRole role, Term term)
    {
        if (role != RaftRole.Leader)
        {
            return;
        }

        if (_leaders.TryGetValue(term, out var existing))
        {
            if (existing != node)
            {
                throw new SimulationFailureException($"election safety: nodes {existing} and {node} are both leader of term {term}");
            }

            return;
        }

        _leaders.Add(term, node);
    }

    /// <summary>
    /// Leader completeness: a newly elected leader's durable log holds every entry committed in an earlier term.
    /// The host checks it once the leader's log is durable, which may be long after the election (a disk that
    /// refuses batches, a pause): entries committed meanwhile by leaders of later terms do not bind it.
    /// </summary>
    public void CheckLeaderCompleteness(NodeId leader, Term term, DurableLog disk)
    {
        for (ulong i = disk.SnapshotMetadata.Index.Value + 1; i < (ulong)_committed.Count; i++)
        {
            if (_committed[(int)i] is not { } committed)
            {
                continue;
            }

            // Leader completeness binds leaders of later terms only. A stale leader of an older term can still win
            // its election late (its votes were delayed) after a newer term committed entries elsewhere; it cannot
            // commit anything, since a majority has moved on (found by the soak: sim seeds 62553 and 70574).
            if (committed.Term >= term)
            {
                break;
            }

            // Raft's leader completeness binds the entries committed in terms before the leader's, not every entry
            // of an older term committed by now: a leader of term 4 whose first durable moment comes after a
            // leader of term 5 committed an entry of term 3 (over its own entry of term 5, Figure 8) need not hold
            // it (sim seed 62729: the winner of term 4 could not write its log until after term 5 had committed).
            if (_committedBy.TryGetValue(i, out var committedBy) && committedBy >= term)
            {
                continue;
            }

            if (!disk.TryGetEntry(new LogIndex(i), out var entry) || entry.Term != committed.Term)
            {
                string has = disk.TryGetEntry(new LogIndex(i), out entry) ? $"term {entry.Term}" : "nothing";
                throw new SimulationFailureException(
                    $"leader completeness: node {leader} became leader of term {term} but holds {has} at index {i}, where term {committed.Term} is committed");
            }
        }

        if (disk.SnapshotMetadata.Index.Value < (ulong)_committed.Count &&
            _committed[(int)disk.SnapshotMetadata.Index.Value] is { } atSnapshot &&
            atSnapshot.Term != disk.SnapshotMetadata.Term)
        {
            throw new SimulationFailureException($"leader completeness: node {leader}'s snapshot at {disk.SnapshotMetadata.Index} has term {disk.SnapshotMetadata.Term}, committed is {atSnapshot.Term}");
        }
    }

    /// <summary>Log matching, checked incrementally as entries reach any node's disk.</summary>
    public void ObserveSaved(DurableLog disk, IReadOnlyList<Entry> entries)
    {
        foreach (var entry in entries)
        {
            var previousTerm = disk.TermAt(entry.Index.Previous);
            var key = (entry.Index.Value, entry.Term.Value);
            if (_entries.TryGetValue(key, out var known))
            {
                if (known.Type != entry.Type || !known.Data.AsSpan().SequenceEqual(entry.Data.Span))
                {
                    throw new SimulationFailureException($"log matching: node {disk.Id} saved a different entry at index {entry.Index} term {entry.Term} than another node");
                }

                if (known.PreviousTerm is { } p && previousTerm is { } q && p != q)
                {
                    throw new SimulationFailureException(
                        $"log matching: node {disk.Id} has term {q} before {entry.Term}/{entry.Index}, another node has term {p}");
                }

                if (known.PreviousTerm is null && previousTerm is not null)
                {
                    _entries[key] = known with { PreviousTerm = previousTerm };
                }
            }
            else
            {
                _entries.Add(key, (entry.Data.ToArray(), entry.Type, previousTerm));
            }
        }
    }

    /// <summary>Finds a node's disk, to check that what is committed is durable on a majority.</summary>
    public Func<NodeId, DurableLog?>? DiskOf { get; set; }

    /// <summary>State machine safety: every node applies the same entry at each index; committed never changes.
    /// The first time an entry is applied anywhere, it must be durable on a majority of the voters that could
    /// have committed it (the applying node's configuration, or the one before its last change).
    /// <paramref name="nodeTerm"/> is the applying node's current term: the entry was committed in it or earlier.</summary>
    public void ObserveApplied(NodeId node, Term nodeTerm, Entry entry, long time, ConfState? voters = null, ConfState? previousVoters = null)
    {
        int index = checked((int)entry.Index.Value);
        if (!_committedBy.TryGetValue(entry.Index.Value, out var by) || nodeTerm < by)
        {
            _committedBy[entry.Index.Value] = nodeTerm;
        }

        while (_committed.Count <= index)
        {
            _committed.Add(null);
        }

        if (_committed[index] is { } known)
        {
            if (known.Term != entry.Term || known.Type != entry.Type || !known.Data.Span.SequenceEqual(entry.Data.Span))
            {
                throw new SimulationFailureException(
                    $"state machine safety: node {node} applied {entry} at index {entry.Index}, but {known} was applied there before");
            }

            return;
        }

        if (DiskOf is not null && voters is not null && !DurableOnMajority(entry, voters) &&
            (previousVoters is null || !DurableOnMajority(entry, previousVoters)))
        {
            // previousVoters is null only after a restart or snapshot, where the history is not known: then the
            // current configuration must hold it.
            throw new SimulationFailureException(
                $"durability: node {node} applied {entry} but it is on the disks of fewer than a majority of {voters}" +
                (previousVoters is null ? string.Empty : $" or of {previousVoters}"));
        }

        _committed[index] = entry with { Data = entry.Data.ToArray() };
        _firstApplied.TryAdd(entry.Index.Value, time);
    }

    private bool DurableOnMajority(Entry entry, ConfState conf)
    {
        if (conf.Voters.Count == 0)
        {
            return true;
        }

        int holders = 0;
        foreach (var voter in conf.Voters)
        {
            if (DiskOf!(voter) is { } disk &&
                (disk.TermAt(entry.Index) == entry.Term || disk.SnapshotMetadata.Index >= entry.Index))
            {
                holders++;
            }
        }

        return holders * 2 > conf.Voters.Count;
    }

    /// <summary>A snapshot installed or loaded covers committed entries: its (index, term) must match them.</summary>
    public void ObserveSnapshot(NodeId node, SnapshotMetadata metadata)
    {
        if (TryGetCommitted(metadata.Index, out var entry) && entry.Term != metadata.Term)
        {
            throw new SimulationFailureException($"node {node} installed snapshot {metadata.Index}/{metadata.Term} but term {entry.Term} is committed there");
        }
    }
}
