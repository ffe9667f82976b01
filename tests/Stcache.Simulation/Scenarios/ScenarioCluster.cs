using System.Globalization;
using Stcache.Raft;
using Stcache.Simulation.Sim;
using Stcache.Testing;

namespace Stcache.Simulation.Scenarios;

/// <summary>
/// A small cluster driven step by step for named protocol scenarios. It uses the simulator's host (the real Ready
/// contract, disk, state machine) and safety oracle, but the test decides every tick and every delivery: messages
/// wait in a queue until <see cref="Deliver"/> or <see cref="Stabilize"/>, optionally filtered.
/// </summary>
internal sealed class ScenarioCluster
{
    private readonly List<Message> _inFlight = [];
    private readonly Func<RaftConfig, RaftConfig>? _configure;
    private long _operationId = 1;
    private ulong _requestId = 1;

    public ScenarioCluster(int size, bool preVote = true, bool checkQuorum = true, Func<RaftConfig, RaftConfig>? configure = null, int snapshotIntervalEntries = 0, ulong snapshotTrailingEntries = 0)
    {
        _configure = configure;
        Oracle.DiskOf = id => Hosts.TryGetValue((int)id.Value, out var host) ? host.Disk : null;
        SnapshotIntervalEntries = snapshotIntervalEntries;
        SnapshotTrailingEntries = snapshotTrailingEntries;
        PreVote = preVote;
        CheckQuorum = checkQuorum;
        var founders = Enumerable.Range(1, size).Select(i => new ConfChange(ConfChangeType.AddVoter, new NodeId((ulong)i), ReadOnlyMemory<byte>.Empty)).ToList();
        var bootstrap = PersistentState.Bootstrap(founders);
        for (int i = 1; i <= size; i++)
        {
            var host = AddHost(i);
            host.Disk.Initialize(bootstrap);
            Oracle.ObserveSaved(host.Disk, bootstrap.Entries);
            host.Start();
        }

        Check();
    }

    public bool PreVote { get; }

    public bool CheckQuorum { get; }

    public int SnapshotIntervalEntries { get; }

    public ulong SnapshotTrailingEntries { get; }

    public SafetyOracle Oracle { get; } = new();

    public SortedDictionary<int, SimHost> Hosts { get; } = [];

    /// <summary>Directed links (from, to) whose messages are dropped at delivery.</summary>
    public HashSet<(int From, int To)> Cut { get; } = [];

    /// <summary>Virtual time: one unit per tick round (used as the oracle's clock).</summary>
    public long Now { get; private set; }

    public IReadOnlyList<Message> InFlight => _inFlight;

    public int Delivered { get; private set; }

    public SimHost this[int id] => Hosts[id];

    public RaftNode Node(int id) => Hosts[id].Node ?? throw new InvalidOperationException($"node {id} is down");

    public SimHost AddHost(int id)
    {
        var config = new RaftConfig { Id = new NodeId((ulong)id), RandomSeed = (ulong)id * 1000, PreVote = PreVote, CheckQuorum = CheckQuorum };
        config = _configure?.Invoke(config) ?? config;
        var host = new SimHost(config, new SimDisk(config.Id), Oracle, () => Now, m => _inFlight.Add(m))
        {
            SnapshotIntervalEntries = SnapshotIntervalEntries,
            SnapshotTrailingEntries = SnapshotTrailingEntries,
        };
        Hosts.Add(id, host);
        return host;
    }

    public void Isolate(int id)
    {
        foreach (var other in Hosts.Keys.Where(k => k != id))
        {
            Cut.Add((id, other));
            Cut.Add((other, id));
        }
    }

    public void Heal() => Cut.Clear();

    /// <summary>Delivers the messages queued now (not those they cause) that pass the filter; drops the rest.</summary>
    public void Deliver(Func<Message, bool>? keep = null, Func<Message, Message>? rewrite = null)
    {
        var batch = _inFlight.ToList();
        _inFlight.Clear();
        foreach (var original in batch)
        {
            var message = rewrite is null ? original : rewrite(original);
            int from = (int)message.From.Value;
            int to = (int)message.To.Value;
            if (Cut.Contains((from, to)) || (keep is not null && !keep(message)) || !Hosts.TryGetValue(to, out var host) || !host.IsUp)
            {
                if (message.Type == MessageType.Snapshot && Hosts.TryGetValue(from, out var failedSender) && failedSender.Node is { } failedNode)
                {
                    failedNode.ReportSnapshot(message.To, false);
                    failedSender.Process();
                }

                continue;
            }

            Delivered++;
            host.Step(message);
            if (message.Type == MessageType.Snapshot && Hosts.TryGetValue(from, out var sender) && sender.Node is { } node)
            {
                node.ReportSnapshot(message.To, true);
                sender.Process();
            }

            Check();
        }
    }

    /// <summary>Delivers until no message is left (each round through <see cref="Deliver"/>).</summary>
    public void Stabilize(Func<Message, bool>? keep = null, Func<Message, Message>? rewrite = null)
    {
        for (int round = 0; round < 1000 && _inFlight.Count > 0; round++)
        {
            Deliver(keep, rewrite);
        }

        if (_inFlight.Count > 0)
        {
            throw new InvalidOperationException("cluster did not stabilize");
        }
    }

    /// <summary>Ticks every node that is up once per round, stabilizing after each round.</summary>
    public void TickAll(int rounds = 1, Func<Message, bool>? keep = null)
    {
        for (int r = 0; r < rounds; r++)
        {
            Now++;
            foreach (var host in Hosts.Values.Where(h => h.IsUp))
            {
                host.Tick();
                Check();
            }

            Stabilize(keep);
        }
    }

    /// <summary>Elects <paramref name="id"/> by campaigning and delivering everything.</summary>
    public void Elect(int id)
    {
        Node(id).Campaign();
        this[id].Process();
        Stabilize();
        Assert.Equal(RaftRole.Leader, Node(id).Role);
    }

    public int? Leader()
    {
        var leaders = Hosts.Where(h => h.Value.Node is { Role: RaftRole.Leader }).OrderByDescending(h => h.Value.Node!.Term).ToList();
        return leaders.Count == 0 ? null : leaders[0].Key;
    }

    /// <summary>Proposes a set on node <paramref name="id"/>; the returned tracker learns the outcome.</summary>
    public WriteTracker Set(int id, string key, string value)
    {
        var tracker = new WriteTracker();
        tracker.Result = this[id].Propose(new KvCommand(_operationId++, KvOperationKind.Set, key, value, null), (outcome, _) => tracker.Outcome = outcome);
        Check();
        return tracker;
    }

    public ReadTracker Read(int id, string key, bool lease = false)
    {
        var tracker = new ReadTracker();
        tracker.Status = this[id].Read(_requestId++, key, lease, value =>
        {
            tracker.Value = value;
            tracker.Done = true;
        });
        Check();
        return tracker;
    }

    public ProposeResult ProposeConfChange(int leader, ConfChangeType type, int node)
    {
        var result = Node(leader).ProposeConfChange(new ConfChange(type, new NodeId((ulong)node), ReadOnlyMemory<byte>.Empty));
        this[leader].Process();
        Check();
        return result;
    }

    public void Crash(int id) => this[id].Crash();

    public void Restart(int id)
    {
        this[id].Start();
        this[id].Process();
        Check();
    }

    public void Check()
    {
        foreach (var host in Hosts.Values)
        {
            host.AssertInvariants();
        }
    }

    public string Describe() =>
        string.Join("; ", Hosts.Select(h => h.Value.Node is { } n
            ? string.Create(CultureInfo.InvariantCulture, $"n{h.Key} {n.Role} term={n.Term} commit={n.CommitIndex} applied={h.Value.Applied} last={h.Value.Disk.LastIndex}")
            : $"n{h.Key} down"));

    internal sealed class WriteTracker
    {
        public ProposeResult Result { get; set; }

        public WriteOutcome? Outcome { get; set; }
    }

    internal sealed class ReadTracker
    {
        public ReadStatus Status { get; set; }

        public bool Done { get; set; }

        public string? Value { get; set; }
    }
}
