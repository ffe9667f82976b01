using Stcache.Raft;

namespace Stcache.Raft.Tests;

/// <summary>
/// A tiny synchronous cluster for unit tests: messages are queued and delivered on demand, storage is perfect,
/// and per-link filters drop traffic. The full fault-injecting simulator lives in Stcache.Simulation.
/// </summary>
internal sealed class MiniCluster
{
    private readonly Queue<Message> _inFlight = new();

    public MiniCluster(int size, Func<RaftConfig, RaftConfig>? configure = null)
    {
        var founders = Enumerable.Range(1, size).Select(i => new ConfChange(ConfChangeType.AddVoter, new NodeId((ulong)i), ReadOnlyMemory<byte>.Empty)).ToList();
        for (int i = 1; i <= size; i++)
        {
            var config = new RaftConfig { Id = new NodeId((ulong)i), RandomSeed = 42 };
            config = configure?.Invoke(config) ?? config;
            Configs[i] = config;
            Stored[i] = PersistentState.Bootstrap(founders);
            Nodes[i] = new RaftNode(config, Stored[i]);
            Applied[i] = [];
        }
    }

    public Dictionary<int, RaftNode> Nodes { get; } = [];

    public Dictionary<int, RaftConfig> Configs { get; } = [];

    public Dictionary<int, PersistentState> Stored { get; } = [];

    public Dictionary<int, List<Entry>> Applied { get; } = [];

    public List<(int Node, ReadState Read)> Reads { get; } = [];

    /// <summary>Links (from, to) whose messages are dropped.</summary>
    public HashSet<(int From, int To)> Cut { get; } = [];

    /// <summary>Drops any message for which this returns true (after the link cuts).</summary>
    public Func<Message, bool>? Drop { get; set; }

    public RaftNode this[int id] => Nodes[id];

    public void Isolate(int id)
    {
        foreach (var other in Nodes.Keys.Where(k => k != id))
        {
            Cut.Add((id, other));
            Cut.Add((other, id));
        }
    }

    public void Heal() => Cut.Clear();

    /// <summary>Handles every Ready and delivers every message until the cluster is quiet.</summary>
    public void Stabilize(int maxRounds = 10_000)
    {
        for (int round = 0; round < maxRounds; round++)
        {
            bool any = false;
            foreach (var (id, node) in Nodes)
            {
                while (node.HasReady())
                {
                    any = true;
                    Process(id, node);
                }
            }

            while (_inFlight.Count > 0)
            {
                any = true;
                var message = _inFlight.Dequeue();
                var to = (int)message.To.Value;
                if (Nodes.TryGetValue(to, out var target) && !Cut.Contains(((int)message.From.Value, to)) && Drop?.Invoke(message) != true)
                {
                    target.Step(message);
                }
            }

            foreach (var node in Nodes.Values)
            {
                node.AssertInvariants();
            }

            if (!any)
            {
                return;
            }
        }

        throw new InvalidOperationException("cluster did not stabilize");
    }

    public void TickAll(int ticks = 1)
    {
        for (int t = 0; t < ticks; t++)
        {
            foreach (var node in Nodes.Values)
            {
                node.Tick();
            }

            Stabilize();
        }
    }

    /// <summary>Runs one node's Ready/Advance cycles until it has nothing more, returning every message it sent
    /// (before and after persisting) instead of delivering them.</summary>
    public static List<Message> Drain(RaftNode node)
    {
        var sent = new List<Message>();
        while (node.HasReady())
        {
            var ready = node.GetReady();
            sent.AddRange(ready.Messages);
            sent.AddRange(ready.MessagesAfterPersist);
            node.Advance(ready);
        }

        return sent;
    }

    public int Leader()
    {
        var leaders = Nodes.Where(n => n.Value.Role == RaftRole.Leader).Select(n => n.Key).ToList();
        return leaders.Count == 1 ? leaders[0] : throw new InvalidOperationException($"expected one leader, found {leaders.Count}");
    }

    private void Process(int id, RaftNode node)
    {
        var ready = node.GetReady();
        foreach (var m in ready.Messages)
        {
            _inFlight.Enqueue(m);
        }

        var stored = Stored[id];
        var entries = stored.Entries.ToList();
        if (ready.Snapshot is { } snapshot)
        {
            entries.Clear();
            stored = stored with { Snapshot = snapshot.Metadata };
        }

        if (ready.Entries.Count > 0)
        {
            var first = ready.Entries[0].Index;
            entries.RemoveAll(e => e.Index >= first);
            entries.AddRange(ready.Entries);
        }

        Stored[id] = stored with { HardState = ready.HardState ?? stored.HardState, Entries = entries };
        foreach (var m in ready.MessagesAfterPersist)
        {
            _inFlight.Enqueue(m);
        }

        Applied[id].AddRange(ready.CommittedEntries);
        foreach (var read in ready.ReadStates)
        {
            Reads.Add((id, read));
        }

        node.Advance(ready);
        if (Configs[id].AsyncStorageWrites && ready.Entries.Count > 0)
        {
            // Storage here is perfect and immediate: the pipelined write is durable at once.
            node.ReportPersisted(ready.Entries[^1].Index, ready.Entries[^1].Term);
        }
    }

    /// <summary>Crashes node <paramref name="id"/> and restarts it from what it had persisted.</summary>
    public void Restart(int id)
    {
        Nodes[id] = new RaftNode(Configs[id], Stored[id]);
        Applied[id] = [];
    }
}
