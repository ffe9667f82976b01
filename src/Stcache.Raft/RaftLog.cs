namespace Stcache.Raft;

/// <summary>
/// The in-memory view of one node's log: every entry after the compaction point, plus what has reached stable
/// storage, what is committed and what has been handed to the state machine.
/// </summary>
internal sealed class RaftLog
{
    // Entries (_offset, LastIndex] are in _entries; _entries[i].Index == _offset + 1 + i.
    private readonly EntryBuffer _entries = new();

    // Index and term of the entry just before _entries[0]: the compaction point, whose term is still known.
    private LogIndex _offset;
    private Term _offsetTerm;

    public RaftLog(SnapshotMetadata snapshot, IReadOnlyList<Entry> entries, LogIndex commit)
    {
        Snapshot = snapshot;
        _offset = snapshot.Index;
        _offsetTerm = snapshot.Term;
        foreach (var entry in entries)
        {
            if (entry.Index <= _offset)
            {
                continue; // Covered by the snapshot.
            }

            if (entry.Index != LastIndex.Next)
            {
                throw new InvalidDataException($"stored log is not contiguous: expected index {LastIndex.Next}, found {entry.Index}");
            }

            if (entry.Term < LastTerm)
            {
                throw new InvalidDataException($"stored log terms decrease at index {entry.Index}");
            }

            _entries.Add(entry);
        }

        if (commit > LastIndex)
        {
            throw new InvalidDataException($"stored commit index {commit} is beyond the stored log's last index {LastIndex}: committed entries are missing");
        }

        Committed = LogIndex.Max(commit, snapshot.Index);
        Applied = snapshot.Index;
        Stable = LastIndex;
        InProgress = LastIndex;
    }

    /// <summary>The newest snapshot the host has taken or installed; followers behind it are sent this.</summary>
    public SnapshotMetadata Snapshot { get; private set; }

    /// <summary>Invariant: Applied &lt;= Committed &lt;= LastIndex.</summary>
    public LogIndex Committed { get; private set; }

    /// <summary>Highest index handed to the host as committed and acknowledged with Advance.</summary>
    public LogIndex Applied { get; private set; }

    /// <summary>Highest index known to be on stable storage. Invariant: Stable &lt;= LastIndex.</summary>
    public LogIndex Stable { get; private set; }

    /// <summary>
    /// With asynchronous storage writes: the highest index handed to the host to persist (in a Ready), durable or
    /// not. Entries after it have not been handed out; entries in (Stable, InProgress] are being written.
    /// Invariant: Stable &lt;= InProgress &lt;= LastIndex. Without asynchronous writes it is not used.
    /// </summary>
    public LogIndex InProgress { get; private set; }

    public LogIndex FirstIndex => _offset.Next;

    public LogIndex LastIndex => _offset + (ulong)_entries.Count;

    public Term LastTerm => _entries.Count > 0 ? _entries[_entries.Count - 1].Term : _offsetTerm;

    public bool TryTerm(LogIndex index, out Term term)
    {
        if (index == _offset)
        {
            term = _offsetTerm;
            return true;
        }

        if (index > _offset && index <= LastIndex)
        {
            term = _entries[(int)(index.Value - _offset.Value - 1)].Term;
            return true;
        }

        if (index == Snapshot.Index)
        {
            term = Snapshot.Term;
            return true;
        }

        term = Term.Zero;
        return false;
    }

    /// <summary>Term at <paramref name="index"/>, or zero if unknown (compacted or beyond the log).</summary>
    public Term TermOrZero(LogIndex index) => TryTerm(index, out var term) ? term : Term.Zero;

    public bool MatchTerm(LogIndex index, Term term) => TryTerm(index, out var t) && t == term;

    public Entry EntryAt(LogIndex index) => _entries[(int)(index.Value - _offset.Value - 1)];

    /// <summary>Thesis §3.6.1: a candidate's log is at least as up to date as ours.</summary>
    public bool IsUpToDate(Term lastTerm, LogIndex lastIndex) =>
        lastTerm > LastTerm || (lastTerm == LastTerm && lastIndex >= LastIndex);

    /// <summary>Copies entries [from, LastIndex] up to <paramref name="bytesMax"/> (at least one entry).
    /// Returns false when <paramref name="from"/> was compacted away.</summary>
    public bool TrySlice(LogIndex from, LogIndex to, long bytesMax, out Entry[] entries)
    {
        if (from <= _offset)
        {
            entries = [];
            return false;
        }

        to = LogIndex.Min(to, LastIndex);
        if (from > to)
        {
            entries = [];
            return true;
        }

        var (start, count) = Range(from, to, bytesMax);
        entries = _entries.Copy(start, count);
        return true;
    }

    private (int Start, int Count) Range(LogIndex from, LogIndex to, long bytesMax)
    {
        to = LogIndex.Min(to, LastIndex);
        int start = (int)(from.Value - _offset.Value - 1);
        int count = 0;
        long bytes = 0;
        int available = (int)(to.Value - from.Value + 1);
        while (count < available)
        {
            bytes += _entries[start + count].SizeBytes;
            if (count > 0 && bytes > bytesMax)
            {
                break;
            }

            count++;
        }

        return (start, count);
    }

    /// <summary>Entries not yet on stable storage, as a view that stays valid until the log next changes.</summary>
    public IReadOnlyList<Entry> Unstable()
    {
        if (Stable >= LastIndex)
        {
            return [];
        }

        int start = (int)(Stable.Value - _offset.Value);
        return _entries.View(start, _entries.Count - start);
    }

    /// <summary>Copies the entries not yet handed out to be persisted ((InProgress, LastIndex]) and marks them handed
    /// out: the host persists them while the log goes on changing, so they are a copy, not a view.</summary>
    public Entry[] TakeUnpersisted()
    {
        var from = LogIndex.Max(InProgress, Stable);
        if (from >= LastIndex)
        {
            return [];
        }

        int start = (int)(from.Value - _offset.Value);
        var entries = _entries.Copy(start, _entries.Count - start);
        InProgress = LastIndex;
        return entries;
    }

    /// <summary>Like <see cref="TrySlice"/>, but a view that stays valid until the log next changes.</summary>
    public IReadOnlyList<Entry> CommittedView(LogIndex from, LogIndex to, long bytesMax)
    {
        if (from <= _offset || from > to)
        {
            return [];
        }

        var (start, count) = Range(from, to, bytesMax);
        return _entries.View(start, count);
    }

    public void Append(Entry entry)
    {
        Invariant.Check(entry.Index == LastIndex.Next, "appended entry must follow the last index");
        Invariant.Check(entry.Term >= LastTerm, "appended entry must not lower the last term");
        _entries.Add(entry);
    }

    /// <summary>
    /// The follower side of AppendEntries (thesis §3.5): if our entry at <paramref name="index"/> has
    /// <paramref name="logTerm"/>, adopt <paramref name="entries"/>, overwriting a conflicting suffix, and advance
    /// the commit index no further than what the message proves matches. Returns the last index the message covers.
    /// </summary>
    public bool TryAppend(LogIndex index, Term logTerm, LogIndex leaderCommit, Entry[] entries, out LogIndex lastNew)
    {
        lastNew = index + (ulong)entries.Length;
        if (!MatchTerm(index, logTerm))
        {
            return false;
        }

        int conflict = FindConflict(entries);
        if (conflict >= 0)
        {
            var first = entries[conflict].Index;
            Invariant.Check(first > Committed, $"conflicting entry {first} at or below commit {Committed}");
            TruncateFrom(first);
            for (int i = conflict; i < entries.Length; i++)
            {
                _entries.Add(entries[i]);
            }
        }

        CommitTo(LogIndex.Min(leaderCommit, lastNew));
        return true;
    }

    /// <summary>Position in <paramref name="entries"/> of the first entry that is new or conflicts; -1 if none.</summary>
    private int FindConflict(Entry[] entries)
    {
        for (int i = 0; i < entries.Length; i++)
        {
            if (!MatchTerm(entries[i].Index, entries[i].Term))
            {
                return i;
            }
        }

        return -1;
    }

    private void TruncateFrom(LogIndex first)
    {
        if (first > LastIndex)
        {
            return;
        }

        int keep = (int)(first.Value - _offset.Value - 1);
        _entries.TruncateTo(keep);
        if (Stable >= first)
        {
            Stable = first.Previous;
        }

        if (InProgress >= first)
        {
            // The replaced entries may still be in the host's writer; the new ones are handed out next, and the
            // writer's replace-from-first-index rule orders them after the old ones on disk.
            InProgress = first.Previous;
        }
    }

    /// <summary>
    /// The largest index &lt;= <paramref name="index"/> whose term is &lt;= <paramref name="term"/>, with its term: the
    /// rejection hint that lets a leader skip a whole conflicting term per round trip.
    /// </summary>
    public (LogIndex Index, Term Term) FindConflictByTerm(LogIndex index, Term term)
    {
        index = LogIndex.Min(index, LastIndex);
        while (true)
        {
            if (!TryTerm(index, out var t))
            {
                return (index, Term.Zero);
            }

            if (t <= term || index == LogIndex.Zero)
            {
                return (index, t);
            }

            index = index.Previous;
        }
    }

    public void CommitTo(LogIndex index)
    {
        if (index > Committed)
        {
            Invariant.Check(index <= LastIndex, $"commit {index} beyond last index {LastIndex}");
            Committed = index;
        }
    }

    public void StableTo(LogIndex index, Term term)
    {
        // The entry may have been overwritten after the Ready was handed out; only a matching (index, term)
        // proves the stored prefix equals ours (log matching).
        if (index > Stable && MatchTerm(index, term))
        {
            Stable = index;
        }
    }

    /// <summary>Asynchronous writes: a handed-out batch ending at (index, term) is durable (see <see cref="StableTo"/>).</summary>
    public void PersistedTo(LogIndex index, Term term)
    {
        StableTo(index, term);
        if (InProgress < Stable)
        {
            InProgress = Stable;
        }
    }

    public void AppliedTo(LogIndex index)
    {
        Invariant.Check(index <= Committed, $"applied {index} beyond commit {Committed}");
        Invariant.Check(index >= Applied, $"applied index moved back from {Applied} to {index}");
        Applied = index;
    }

    /// <summary>Replaces the whole log with <paramref name="snapshot"/> (a follower installing the leader's image).</summary>
    public void Restore(SnapshotMetadata snapshot)
    {
        _entries.Clear();
        _offset = snapshot.Index;
        _offsetTerm = snapshot.Term;
        Snapshot = snapshot;
        Committed = snapshot.Index;
        Applied = snapshot.Index;
        Stable = snapshot.Index;
        InProgress = snapshot.Index;
    }

    /// <summary>Records a snapshot the host took and drops entries up to <paramref name="dropUpTo"/>.</summary>
    public void Compact(SnapshotMetadata snapshot, LogIndex dropUpTo)
    {
        if (snapshot.Index > Snapshot.Index)
        {
            Invariant.Check(snapshot.Index <= Applied, $"snapshot {snapshot.Index} beyond applied {Applied}");
            Invariant.Check(MatchTerm(snapshot.Index, snapshot.Term) || snapshot.Index <= _offset, "snapshot term differs from the log");
            Snapshot = snapshot;
        }

        dropUpTo = LogIndex.Min(dropUpTo, LogIndex.Min(Snapshot.Index, Stable));
        if (dropUpTo <= _offset)
        {
            return;
        }

        int drop = (int)(dropUpTo.Value - _offset.Value);
        _offsetTerm = _entries[drop - 1].Term;
        _entries.DropFront(drop);
        _offset = dropUpTo;
    }

    public long BytesBetween(LogIndex after, LogIndex upTo)
    {
        long total = 0;
        var from = LogIndex.Max(after.Next, FirstIndex);
        for (var i = from; i <= upTo && i <= LastIndex; i = i.Next)
        {
            total += EntryAt(i).SizeBytes;
        }

        return total;
    }

    public void AssertInvariants()
    {
        Invariant.Check(Applied <= Committed, "applied beyond commit");
        Invariant.Check(Committed <= LastIndex, "commit beyond last index");
        Invariant.Check(Stable <= LastIndex, "stable beyond last index");
        Invariant.Check(InProgress <= LastIndex, "in-progress beyond last index");
        Invariant.Check(Snapshot.Index <= LastIndex || _entries.Count == 0, "snapshot beyond the log");
        var previousTerm = _offsetTerm;
        for (int i = 0; i < _entries.Count; i++)
        {
            Invariant.Check(_entries[i].Index == _offset + (ulong)i + 1, "log not contiguous");
            Invariant.Check(_entries[i].Term >= previousTerm, "log terms decrease");
            previousTerm = _entries[i].Term;
        }
    }
}

/// <summary>
/// A growable list of entries that hands out views without copying. A view is valid until the buffer next
/// moves or drops entries; using it after that throws, so a host that forgot to copy fails loudly instead of
/// reading entries that changed under it.
/// </summary>
internal sealed class EntryBuffer
{
    // Entries live in fixed chunks of ChunkSize (40 KB, below the large object heap), not in one array that doubles:
    // appending never copies or reallocates the log, and the chunks a compaction frees are kept (SpareMax of them)
    // for the entries that follow. One big array cost the leader about 150 bytes per write in growth and regrowth
    // after each snapshot. Entry i is at _chunks[(_start + i) >> ChunkBits][(_start + i) & ChunkMask].
    internal const int ChunkBits = 10;
    internal const int ChunkSize = 1 << ChunkBits;
    private const int ChunkMask = ChunkSize - 1;
    private const int SpareMax = 4;

    private readonly List<Entry[]> _chunks = [];
    private readonly Stack<Entry[]> _spare = new();
    private int _start;

    public int Count { get; private set; }

    /// <summary>Bumped by every change that moves or drops entries, invalidating outstanding views.</summary>
    public int Version { get; private set; }

    public Entry this[int i]
    {
        get
        {
            int p = _start + i;
            return _chunks[p >> ChunkBits][p & ChunkMask];
        }
    }

    public void Add(Entry entry)
    {
        int p = _start + Count;
        if ((p >> ChunkBits) == _chunks.Count)
        {
            _chunks.Add(_spare.TryPop(out var chunk) ? chunk : new Entry[ChunkSize]);
        }

        _chunks[p >> ChunkBits][p & ChunkMask] = entry;
        Count++;
    }

    public void Clear()
    {
        ClearRange(0, Count);
        foreach (var chunk in _chunks)
        {
            Release(chunk);
        }

        _chunks.Clear();
        _start = 0;
        Count = 0;
        Version++;
    }

    public void TruncateTo(int count)
    {
        ClearRange(count, Count - count);
        Count = count;
        int needed = (_start + count + ChunkMask) >> ChunkBits;
        while (_chunks.Count > needed)
        {
            Release(_chunks[^1]);
            _chunks.RemoveAt(_chunks.Count - 1);
        }

        if (_chunks.Count == 0)
        {
            _start = 0;
        }

        Version++;
    }

    public void DropFront(int count)
    {
        ClearRange(0, count); // Release payloads to the GC.
        _start += count;
        Count -= count;
        int whole = Count == 0 ? _chunks.Count : _start >> ChunkBits;
        for (int c = 0; c < whole; c++)
        {
            Release(_chunks[c]);
        }

        _chunks.RemoveRange(0, whole);
        _start = Count == 0 ? 0 : _start - (whole << ChunkBits);
        Version++;
    }

    public Entry[] Copy(int start, int count)
    {
        var copy = new Entry[count];
        int done = 0;
        while (done < count)
        {
            int p = _start + start + done;
            int n = Math.Min(count - done, ChunkSize - (p & ChunkMask));
            Array.Copy(_chunks[p >> ChunkBits], p & ChunkMask, copy, done, n);
            done += n;
        }

        return copy;
    }

    /// <summary>Chunks in use and kept spare (tests).</summary>
    internal (int InUse, int Spare) Chunks => (_chunks.Count, _spare.Count);

    private void ClearRange(int start, int count)
    {
        int done = 0;
        while (done < count)
        {
            int p = _start + start + done;
            int n = Math.Min(count - done, ChunkSize - (p & ChunkMask));
            Array.Clear(_chunks[p >> ChunkBits], p & ChunkMask, n);
            done += n;
        }
    }

    private void Release(Entry[] chunk)
    {
        if (_spare.Count < SpareMax)
        {
            _spare.Push(chunk); // every slot already cleared
        }
    }

    public IReadOnlyList<Entry> View(int start, int count) => new EntryView(this, start, count);

    private sealed class EntryView(EntryBuffer owner, int start, int count) : IReadOnlyList<Entry>
    {
        private readonly int _version = owner.Version;

        public int Count => count;

        public Entry this[int index]
        {
            get
            {
                ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual((uint)index, (uint)count, nameof(index));
                if (owner.Version != _version)
                {
                    throw new InvalidOperationException("Ready entries used after the log changed: copy them before Advance to keep them");
                }

                return owner[start + index];
            }
        }

        public IEnumerator<Entry> GetEnumerator()
        {
            for (int i = 0; i < count; i++)
            {
                yield return this[i];
            }
        }

        System.Collections.IEnumerator System.Collections.IEnumerable.GetEnumerator() => GetEnumerator();
    }
}
