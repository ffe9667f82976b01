using System.Globalization;
using System.Text;
using Stcache.Cache;
using Stcache.Node;
using Stcache.Raft;
using Stcache.Simulation.Sim;
using Stcache.Testing;

namespace Stcache.Simulation.Scenarios;

/// <summary>What a scenario's write came to.</summary>
internal enum WriteOutcome : byte
{
    /// <summary>The entry was applied at the proposal's index with the proposal's term.</summary>
    Committed = 1,

    /// <summary>Another entry was applied at the proposal's index: the write never took effect.</summary>
    Lost = 2,

    /// <summary>The node crashed or stopped before the outcome was known.</summary>
    Unknown = 3,
}

/// <summary>
/// A small cluster driven step by step for named protocol scenarios. It runs the simulator's node (the real
/// driver, WAL, snapshot store and cache over a simulated disk) and safety oracle, but the test decides every tick
/// and every delivery: messages wait in a queue until <see cref="Deliver"/> or <see cref="Stabilize"/>, optionally
/// filtered. Work the node schedules (snapshot writes, storage retries) runs at the next delivery or tick round.
/// </summary>
internal sealed class ScenarioCluster : ISimEnvironment
{
    private readonly List<Message> _inFlight = [];
    private readonly List<Action> _scheduled = [];
    private readonly SplitMix _random = new(42);
    private readonly Func<RaftConfig, RaftConfig>? _configure;

    public ScenarioCluster(int size, bool preVote = true, bool checkQuorum = true, Func<RaftConfig, RaftConfig>? configure = null, int snapshotIntervalEntries = 0, ulong snapshotTrailingEntries = 0)
    {
        _configure = configure;
        Oracle.DiskOf = id => Hosts.TryGetValue((int)id.Value, out var host) ? host.Log : null;
        SnapshotIntervalEntries = snapshotIntervalEntries;
        SnapshotTrailingEntries = snapshotTrailingEntries;
        PreVote = preVote;
        CheckQuorum = checkQuorum;
        var founders = Enumerable.Range(1, size).Select(i => new ConfChange(ConfChangeType.AddVoter, new NodeId((ulong)i), Member(i))).ToList();
        var bootstrap = PersistentState.Bootstrap(founders);
        for (int i = 1; i <= size; i++)
        {
            var host = AddHost(i);
            var wal = Storage.WriteAheadLog.Open(host.Disk, "/data/wal", new Storage.WalOptions { SegmentSizeBytes = 64 * 1024, PrepareSegmentsAhead = false },
                Microsoft.Extensions.Logging.Abstractions.NullLogger.Instance);
            host.Log.Attach(wal);
            host.Log.Load();
            host.Log.Save(bootstrap.HardState, bootstrap.Entries);
            host.Log.Detach();
        }

        foreach (var host in Hosts.Values)
        {
            host.Start();
        }

        Check();
    }

    public bool PreVote { get; }

    public bool CheckQuorum { get; }

    public int SnapshotIntervalEntries { get; }

    public ulong SnapshotTrailingEntries { get; }

    public SafetyOracle Oracle { get; } = new();

    public SortedDictionary<int, SimNode> Hosts { get; } = [];

    /// <summary>Directed links (from, to) whose messages are dropped at delivery.</summary>
    public HashSet<(int From, int To)> Cut { get; } = [];

    /// <summary>Virtual time: one unit per tick round (used as the oracle's clock).</summary>
    public long Now { get; private set; }

    public IReadOnlyList<Message> InFlight => _inFlight;

    public int Delivered { get; private set; }

    public SimNode this[int id] => Hosts[id];

    public RaftNode Node(int id) => Hosts[id].Node ?? throw new InvalidOperationException($"node {id} is down");

    long ISimEnvironment.Now => Now;

    public static ReadOnlyMemory<byte> Member(int id) => new MemberInfo((ulong)id, "n" + id, "sim:" + id, "sim:" + id).ToContext();

    public SimNode AddHost(int id)
    {
        var config = new RaftConfig { Id = new NodeId((ulong)id), RandomSeed = (ulong)id * 1000, PreVote = PreVote, CheckQuorum = CheckQuorum };
        config = _configure?.Invoke(config) ?? config;
        var settings = new SimNodeSettings
        {
            SnapshotThresholdEntries = SnapshotIntervalEntries == 0 ? int.MaxValue : SnapshotIntervalEntries,
            SnapshotTrailingEntries = SnapshotTrailingEntries,
            SnapshotWriteMsMax = 0,
            LearnerTrailingEntriesMax = 0,
            SegmentSizeBytes = 64 * 1024,
        };
        var host = new SimNode(config, settings, Oracle, this, _random.Fork());
        Hosts.Add(id, host);
        return host;
    }

    void ISimEnvironment.Send(Message message) => _inFlight.Add(message);

    void ISimEnvironment.Schedule(long delayMs, Action action) => _scheduled.Add(action);

    int ISimEnvironment.Random(int low, int high) => _random.Between(low, high);

    void ISimEnvironment.Trace(string line)
    {
    }

    long? ISimEnvironment.PausedUntil(NodeId id) => null; // scenarios pause no process

    /// <summary>Runs the work nodes scheduled (snapshot writes, retries), in order.</summary>
    public void RunScheduled()
    {
        while (_scheduled.Count > 0)
        {
            var batch = _scheduled.ToList();
            _scheduled.Clear();
            foreach (var action in batch)
            {
                action();
            }
        }
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
        RunScheduled();
        var batch = _inFlight.ToList();
        _inFlight.Clear();
        foreach (var original in batch)
        {
            var message = rewrite is null ? original : rewrite(original);
            int from = (int)message.From.Value;
            int to = (int)message.To.Value;
            if (Cut.Contains((from, to)) || (keep is not null && !keep(message)) || !Hosts.TryGetValue(to, out var host) || !host.IsUp)
            {
                if (message.Type == MessageType.Snapshot && Hosts.TryGetValue(from, out var failedSender) && failedSender.IsUp)
                {
                    failedSender.ReportSnapshot(message.To, false);
                }

                continue;
            }

            Delivered++;

            // The transport's handshake, as the simulator models it: a node whose applied configuration does not list
            // the sender tells it so, as of its applied index; the sender's driver judges what the notice means.
            var conf = host.ConfState;
            if ((conf.Voters.Count > 0 || conf.Learners.Count > 0) && !conf.IsMember(message.From) &&
                Hosts.TryGetValue(from, out var dialer) && dialer.IsUp)
            {
                var asOf = host.Applied;
                _scheduled.Add(() =>
                {
                    if (dialer.IsUp)
                    {
                        dialer.ReportNotAMember(message.To, asOf);
                    }
                });
            }

            host.Step(message);
            if (message.Type == MessageType.Snapshot && Hosts.TryGetValue(from, out var sender) && sender.IsUp)
            {
                sender.ReportSnapshot(message.To, true);
            }

            Check();
        }
    }

    /// <summary>Delivers until no message is left (each round through <see cref="Deliver"/>).</summary>
    public void Stabilize(Func<Message, bool>? keep = null, Func<Message, Message>? rewrite = null)
    {
        for (int round = 0; round < 1000 && (_inFlight.Count > 0 || _scheduled.Count > 0); round++)
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
            RunScheduled();
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
        var status = this[id].Propose(CacheCommand.Set(key, Encoding.UTF8.GetBytes(value)), proposal =>
        {
            tracker.Outcome = proposal.Result is not null ? WriteOutcome.Committed
                : proposal.Error is { Kind: HostErrorKind.Lost, OutcomeUnknown: false } ? WriteOutcome.Lost
                : WriteOutcome.Unknown;
        }, out var request);
        tracker.Result = new ProposeResult(status, request.Term, request.Index, request.Index, NodeId.None);
        Check();
        return tracker;
    }

    /// <summary>Proposes sets on node <paramref name="id"/> as one batch; one tracker per set, in order.</summary>
    public List<WriteTracker> SetMany(int id, IReadOnlyList<(string Key, string Value)> sets)
    {
        var trackers = sets.Select(_ => new WriteTracker()).ToList();
        var entries = sets.Select(s => (ReadOnlyMemory<byte>)CacheCommand.Set(s.Key, Encoding.UTF8.GetBytes(s.Value)).Encode()).ToList();
        var status = this[id].ProposeEntries(entries, [.. trackers.Select(tracker => (Action<SimProposal>)(proposal =>
        {
            tracker.Outcome = proposal.Result is not null ? WriteOutcome.Committed
                : proposal.Error is { Kind: HostErrorKind.Lost, OutcomeUnknown: false } ? WriteOutcome.Lost
                : WriteOutcome.Unknown;
        }))], out var requests);
        for (int i = 0; i < trackers.Count; i++)
        {
            trackers[i].Result = new ProposeResult(status, requests[i].Term, requests[i].Index, requests[i].Index, NodeId.None);
        }

        Check();
        return trackers;
    }

    public ReadTracker Read(int id, string key, bool lease = false)
    {
        var tracker = new ReadTracker();
        bool accepted = this[id].Read(key, lease, (ok, value) =>
        {
            tracker.Value = value;
            tracker.Done = ok;
        });
        tracker.Status = accepted ? ReadStatus.Accepted : ReadStatus.NoLeader;
        Check();
        return tracker;
    }

    public ProposeResult ProposeConfChange(int leader, ConfChangeType type, int node)
    {
        var result = Node(leader).ProposeConfChange(new ConfChange(type, new NodeId((ulong)node), type == ConfChangeType.RemoveNode ? ReadOnlyMemory<byte>.Empty : Member(node)));
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
            ? string.Create(CultureInfo.InvariantCulture, $"n{h.Key} {n.Role} term={n.Term} commit={n.CommitIndex} applied={h.Value.Applied} last={h.Value.Log.LastIndex}")
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
