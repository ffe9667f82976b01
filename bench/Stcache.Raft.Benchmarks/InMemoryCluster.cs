namespace Stcache.Raft.Benchmarks;

/// <summary>
/// Three <see cref="RaftNode"/>s wired together with no IO: messages are delivered at once, persisting is just
/// calling <see cref="RaftNode.Advance"/>, and applying a committed entry does nothing. What remains is the cost
/// of the consensus core itself. The log is compacted from time to time, as a host taking snapshots would, so
/// that memory stays bounded over millions of proposals.
/// </summary>
public sealed class InMemoryCluster
{
    private const ulong CompactEveryEntries = 16_384;
    private const ulong TrailingEntries = 1_024;

    private readonly RaftNode[] _nodes;
    private readonly Queue<Message> _inFlight = new();
    private ulong _compactedUpTo;

    public InMemoryCluster(int size = 3)
    {
        var founders = new List<ConfChange>();
        for (int i = 1; i <= size; i++)
        {
            founders.Add(new ConfChange(ConfChangeType.AddVoter, new NodeId((ulong)i), ReadOnlyMemory<byte>.Empty));
        }

        _nodes = new RaftNode[size];
        for (int i = 0; i < size; i++)
        {
            var config = new RaftConfig { Id = new NodeId((ulong)i + 1), RandomSeed = 7 };
            _nodes[i] = new RaftNode(config, PersistentState.Bootstrap(founders));
        }

        _nodes[0].Campaign();
        Stabilize();
        if (_nodes[0].Role != RaftRole.Leader)
        {
            throw new InvalidOperationException("node 1 did not become leader");
        }
    }

    public RaftNode Leader => _nodes[0];

    /// <summary>Readies handled so far (all nodes); for the profile printed by --quick.</summary>
    public long ReadyCount { get; private set; }

    /// <summary>Messages delivered so far.</summary>
    public long MessageCount { get; private set; }

    /// <summary>Entries handed to the host to persist, and committed entries handed to it to apply (all nodes).</summary>
    public long EntriesToPersist { get; private set; }

    public long EntriesToApply { get; private set; }

    /// <summary>Proposes one batch on the leader and runs the cluster until it is quiet (the batch committed and
    /// applied everywhere). Returns the number of proposals committed.</summary>
    public int ProposeAndCommit(IReadOnlyList<ReadOnlyMemory<byte>> batch)
    {
        var result = Leader.Propose(batch);
        if (!result.IsAccepted)
        {
            throw new InvalidOperationException($"proposal refused: {result.Status}");
        }

        Stabilize();
        if (Leader.CommitIndex < result.LastIndex)
        {
            throw new InvalidOperationException("batch did not commit");
        }

        MaybeCompact();
        return batch.Count;
    }

    public void Stabilize()
    {
        while (true)
        {
            bool any = false;
            foreach (var node in _nodes)
            {
                while (node.HasReady())
                {
                    any = true;
                    var ready = node.GetReady();
                    ReadyCount++;
                    EntriesToPersist += ready.Entries.Count;
                    EntriesToApply += ready.CommittedEntries.Count;
                    foreach (var message in ready.Messages)
                    {
                        _inFlight.Enqueue(message);
                    }

                    foreach (var message in ready.MessagesAfterPersist)
                    {
                        _inFlight.Enqueue(message);
                    }

                    node.Advance(ready);
                }
            }

            while (_inFlight.TryDequeue(out var message))
            {
                any = true;
                MessageCount++;
                _nodes[message.To.Value - 1].Step(message);
            }

            if (!any)
            {
                return;
            }
        }
    }

    private void MaybeCompact()
    {
        var applied = Leader.AppliedIndex.Value;
        if (applied - _compactedUpTo < CompactEveryEntries)
        {
            return;
        }

        foreach (var node in _nodes)
        {
            var metadata = new SnapshotMetadata(node.AppliedIndex, node.Term, node.ConfState);
            node.SnapshotTaken(metadata, TrailingEntries);
        }

        _compactedUpTo = applied;
    }
}
