using System.Globalization;
using Stcache.Raft;
using Stcache.Testing;

namespace Stcache.Simulation.Sim;

/// <summary>Everything one run does, drawn from its seed.</summary>
public sealed record SimulationOptions
{
    public required int Seed { get; init; }

    public int NodeCount { get; init; } = 3;

    public bool PreVote { get; init; } = true;

    public bool CheckQuorum { get; init; } = true;

    public int TickMs { get; init; } = 10;

    public int ElectionTimeoutTicks { get; init; } = 10;

    public long SafetyPhaseMs { get; init; } = 4_000;

    /// <summary>The liveness bound: after healing, a fresh write must commit and every member converge in this many election timeouts.</summary>
    public int LivenessElectionTimeouts { get; init; } = 30;

    public required NetworkOptions Network { get; init; }

    public int ClientCount { get; init; } = 3;

    public int KeyCount { get; init; } = 3;

    public int ClientTimeoutMs { get; init; } = 1_500;

    /// <summary>Mean time between injected faults; 0 disables faults.</summary>
    public int FaultIntervalMs { get; init; } = 150;

    public int CrashWeight { get; init; } = 3;

    public int PartitionWeight { get; init; } = 3;

    public int MembershipWeight { get; init; } = 2;

    public int TransferWeight { get; init; } = 1;

    public int SnapshotIntervalEntries { get; init; } = 20;

    public int SnapshotTrailingEntries { get; init; } = 5;

    public int TornSavePerMillion { get; init; } = 100_000;

    public long AppendBytesMax { get; init; } = 1 << 20;

    public int InflightMessagesMax { get; init; } = 256;

    /// <summary>Draws a random configuration from the seed: node count, Raft options, network and fault mix.</summary>
    public static SimulationOptions FromSeed(int seed)
    {
        var random = new SplitMix((ulong)seed * 0x2545F4914F6CDD1DUL);
        int nodes = random.Chance(1, 2) ? 3 : 5;
        return new SimulationOptions
        {
            Seed = seed,
            NodeCount = nodes,
            PreVote = random.Chance(3, 4),
            CheckQuorum = random.Chance(3, 4),
            SafetyPhaseMs = random.Between(2_000, 5_000),
            Network = NetworkOptions.Random(random),
            ClientCount = random.Between(1, 4),
            KeyCount = random.Between(1, 4),
            FaultIntervalMs = random.Chance(1, 10) ? 0 : random.Between(50, 600),
            CrashWeight = random.Between(0, 4),
            PartitionWeight = random.Between(0, 4),
            MembershipWeight = random.Between(0, 3),
            TransferWeight = random.Between(0, 2),
            SnapshotIntervalEntries = random.Chance(1, 5) ? 0 : random.Between(3, 40),
            SnapshotTrailingEntries = random.Between(0, 8),
            TornSavePerMillion = random.Chance(1, 2) ? 0 : 200_000,
            AppendBytesMax = random.Chance(1, 2) ? 200 : 1 << 20,
            InflightMessagesMax = random.Chance(1, 3) ? 1 : random.Between(2, 64),
        };
    }

    public override string ToString() =>
        $"seed={Seed} nodes={NodeCount} preVote={PreVote} checkQuorum={CheckQuorum} safety={SafetyPhaseMs}ms clients={ClientCount} keys={KeyCount} " +
        $"faults/{FaultIntervalMs}ms crash={CrashWeight} partition={PartitionWeight} membership={MembershipWeight} transfer={TransferWeight} " +
        $"snapshotEvery={SnapshotIntervalEntries} trailing={SnapshotTrailingEntries} torn={TornSavePerMillion} appendMax={AppendBytesMax} inflight={InflightMessagesMax} " +
        $"net={Network}";
}

public sealed record SimulationResult(
    int Seed,
    string? Failure,
    long VirtualTimeMs,
    long Events,
    int LeaderTerms,
    ulong CommittedMax,
    int OperationsAcknowledged,
    int OperationsUnknown,
    LinearizabilityVerdict Linearizability,
    string Options)
{
    public bool Passed => Failure is null;

    public string ReplayCommand =>
        $"SIM_SEED={Seed} dotnet test tests/Stcache.Simulation --filter FullyQualifiedName~SimulationTests.ReplaySeed";

    public override string ToString() =>
        $"seed {Seed}: {(Passed ? "ok" : "FAILED")} t={VirtualTimeMs}ms events={Events} leaderTerms={LeaderTerms} committed={CommittedMax} " +
        $"acked={OperationsAcknowledged} unknown={OperationsUnknown} lin={Linearizability}" +
        (Failure is null ? string.Empty : $"\n  {Failure}\n  options: {Options}\n  replay: {ReplayCommand}");
}

/// <summary>
/// A deterministic whole-cluster run of the real Raft core in virtual time (modelled on TigerBeetle's VOPR): a
/// safety phase with random faults (crashes at any point of a Ready batch, partitions, loss, duplication,
/// reordering, membership changes, leadership transfers), then a liveness phase (everything healed) in which a
/// fresh write must commit and every member converge within a bound. Safety is checked after every event; the
/// clients' history is checked for linearizability at the end.
/// </summary>
public sealed class Simulator
{
    private const string LivenessKey = "__liveness";

    private readonly SimulationOptions _options;
    private readonly SplitMix _random;
    private readonly SplitMix _networkRandom;
    private readonly PriorityQueue<Action, (long Time, long Sequence)> _events = new();
    private readonly SortedDictionary<ulong, SimHost> _hosts = [];
    private readonly SafetyOracle _oracle = new();
    private readonly SimPartitions _partitions = new();
    private readonly List<ClientOperation> _operations = [];
    private readonly Action<string>? _trace;
    private NetworkOptions _network;
    private long _now;
    private long _sequence;
    private long _eventCount;
    private long _nextOperationId = 1;
    private ulong _nextRequestId = 1;
    private ulong _nextNodeId;
    private bool _livenessPhase;

    public Simulator(SimulationOptions options, Action<string>? trace = null)
    {
        _options = options;
        _random = new SplitMix((ulong)options.Seed);
        _networkRandom = _random.Fork();
        _network = options.Network;
        _trace = trace;
    }

    public long Now => _now;

    public static SimulationResult Run(int seed, Action<string>? trace = null) =>
        new Simulator(SimulationOptions.FromSeed(seed), trace).Run();

    public SimulationResult Run()
    {
        string? failure = null;
        var linearizability = LinearizabilityVerdict.Linearizable;
        try
        {
            Setup();
            RunUntil(_options.SafetyPhaseMs);
            RunLivenessPhase();
            var (verdict, description) = CheckHistory();
            linearizability = verdict;
            if (verdict == LinearizabilityVerdict.NotLinearizable)
            {
                failure = "linearizability: " + description;
            }
        }
        catch (SimulationFailureException e)
        {
            failure = e.Message;
        }
        catch (InvariantViolationException e)
        {
            failure = $"core invariant at t={_now}ms: {e.Message}\n{e.StackTrace}";
        }
        catch (Exception e) when (e is InvalidOperationException or ArgumentException or NotImplementedException or IndexOutOfRangeException or NullReferenceException or KeyNotFoundException)
        {
            failure = $"exception at t={_now}ms: {e}";
        }

        if (failure is not null)
        {
            Trace($"FAILURE: {failure}");
        }

        return new SimulationResult(
            _options.Seed,
            failure,
            _now,
            _eventCount,
            _oracle.LeaderTermCount,
            _oracle.CommittedMax.Value,
            _operations.Count(o => o.CompleteTime is not null),
            _operations.Count(o => o.CompleteTime is null && !o.Discarded),
            linearizability,
            _options.ToString());
    }

    private void Setup()
    {
        Trace($"options: {_options}");
        var founders = new List<ConfChange>();
        for (int i = 1; i <= _options.NodeCount; i++)
        {
            founders.Add(new ConfChange(ConfChangeType.AddVoter, new NodeId((ulong)i), ReadOnlyMemory<byte>.Empty));
        }

        var bootstrap = PersistentState.Bootstrap(founders);
        _nextNodeId = (ulong)_options.NodeCount + 1;
        foreach (var founder in founders)
        {
            var host = CreateHost(founder.NodeId);
            host.Disk.Initialize(bootstrap);
            _oracle.ObserveSaved(host.Disk, bootstrap.Entries);
            host.Start();
        }

        for (int c = 0; c < _options.ClientCount; c++)
        {
            int client = c;
            Schedule(_random.Between(0, 50), () => ClientStep(client));
        }

        if (_options.FaultIntervalMs > 0)
        {
            Schedule(_random.Between(0, _options.FaultIntervalMs * 2), FaultStep);
        }
    }

    private SimHost CreateHost(NodeId id)
    {
        var config = new RaftConfig
        {
            Id = id,
            ElectionTimeoutTicks = _options.ElectionTimeoutTicks,
            HeartbeatIntervalTicks = 1,
            RandomSeed = _random.NextUInt64(),
            PreVote = _options.PreVote,
            CheckQuorum = _options.CheckQuorum,
            AppendBytesMax = _options.AppendBytesMax,
            InflightMessagesMax = _options.InflightMessagesMax,
        };
        var host = new SimHost(config, new SimDisk(id), _oracle, () => _now, Send)
        {
            SnapshotIntervalEntries = _options.SnapshotIntervalEntries,
            SnapshotTrailingEntries = (ulong)_options.SnapshotTrailingEntries,
            ConfChangeApplied = OnConfChangeApplied,
            Trace = _trace is null ? null : Trace,
        };
        _hosts.Add(id.Value, host);
        long phase = _random.Between(0, _options.TickMs - 1);
        Schedule(phase, () => TickLoop(host));
        return host;
    }

    private void TickLoop(SimHost host)
    {
        if (host.IsStopped)
        {
            return;
        }

        host.Tick();
        Schedule(_options.TickMs, () => TickLoop(host));
    }

    // ---------------------------------------------------------------- event loop

    private void Schedule(long delayMs, Action action) => _events.Enqueue(action, (_now + delayMs, _sequence++));

    private void RunUntil(long time)
    {
        while (_events.TryPeek(out _, out var at) && at.Time <= time)
        {
            var action = _events.Dequeue();
            _now = at.Time;
            _eventCount++;
            action();
            CheckAll();
        }

        _now = Math.Max(_now, time);
    }

    private void CheckAll()
    {
        foreach (var host in _hosts.Values)
        {
            host.AssertInvariants();
        }
    }

    // ---------------------------------------------------------------- network

    private void Send(Message message)
    {
        var from = message.From;
        var to = message.To;
        if (!_hosts.TryGetValue(to.Value, out _))
        {
            return;
        }

        if (_partitions.IsBlocked(from, to))
        {
            if (_networkRandom.ChancePerMillion(_network.UnreachableReportPerMillion))
            {
                Schedule(1, () => Report(from, to, message.Type == MessageType.Snapshot, unreachable: true));
            }
            else if (message.Type == MessageType.Snapshot)
            {
                Schedule(1, () => Report(from, to, snapshot: true, unreachable: false));
            }

            return;
        }

        if (_networkRandom.ChancePerMillion(_network.DropPerMillion))
        {
            if (message.Type == MessageType.Snapshot)
            {
                Schedule(1, () => Report(from, to, snapshot: true, unreachable: false));
            }

            return;
        }

        Schedule(Delay(), () => Deliver(message));
        if (_networkRandom.ChancePerMillion(_network.DuplicatePerMillion))
        {
            Schedule(Delay(), () => Deliver(message));
        }
    }

    private long Delay()
    {
        if (_networkRandom.ChancePerMillion(_network.LongDelayPerMillion))
        {
            return _networkRandom.Between(_network.DelayMaxMs, Math.Max(_network.DelayMaxMs, _network.LongDelayMaxMs));
        }

        return _networkRandom.Between(_network.DelayMinMs, _network.DelayMaxMs);
    }

    private void Deliver(Message message)
    {
        if (!_hosts.TryGetValue(message.To.Value, out var host) || !host.IsUp || _partitions.IsBlocked(message.From, message.To))
        {
            if (message.Type == MessageType.Snapshot)
            {
                Report(message.From, message.To, snapshot: true, unreachable: false);
            }

            return;
        }

        host.Step(message);
        if (message.Type == MessageType.Snapshot && _hosts.TryGetValue(message.From.Value, out var sender) && sender.Node is { } node)
        {
            node.ReportSnapshot(message.To, true);
            sender.Process();
        }
    }

    private void Report(NodeId from, NodeId to, bool snapshot, bool unreachable)
    {
        if (!_hosts.TryGetValue(from.Value, out var sender) || sender.Node is not { } node)
        {
            return;
        }

        if (unreachable)
        {
            node.ReportUnreachable(to);
        }

        if (snapshot)
        {
            node.ReportSnapshot(to, false);
        }

        sender.Process();
    }

    // ---------------------------------------------------------------- clients

    private void ClientStep(int client)
    {
        if (_livenessPhase)
        {
            return;
        }

        var targets = UpHosts().Where(h => !h.IsStopped).ToList();
        if (targets.Count == 0)
        {
            Schedule(_random.Between(10, 50), () => ClientStep(client));
            return;
        }

        var leader = CurrentLeader();
        var target = leader is not null && _random.Chance(1, 2) ? leader : _random.Pick(targets);
        string key = "k" + _random.Next(_options.KeyCount).ToString(CultureInfo.InvariantCulture);
        int choice = _random.Next(10);
        if (choice < 4)
        {
            bool lease = _options.CheckQuorum && target.Node!.Role == RaftRole.Leader && _random.Chance(1, 3);
            StartRead(client, target, key, lease);
        }
        else
        {
            long id = _nextOperationId++;
            string value = string.Create(CultureInfo.InvariantCulture, $"c{client}-{id}");
            var kind = choice switch
            {
                < 7 => KvOperationKind.Set,
                < 8 => KvOperationKind.Delete,
                _ => KvOperationKind.CompareAndSet,
            };
            string? expected = null;
            if (kind == KvOperationKind.CompareAndSet)
            {
                // Expect a value some earlier write used (or absent), so swaps sometimes succeed.
                var earlier = _operations.Where(o => o.Key == key && o.Value is not null).TakeLast(3).ToList();
                expected = earlier.Count == 0 || _random.Chance(1, 4) ? null : _random.Pick(earlier).Value;
            }

            StartWrite(client, target, new KvCommand(id, kind, key, kind == KvOperationKind.Delete ? null : value, expected));
        }
    }

    private void NextClientStep(int client) => Schedule(_random.Between(0, 30), () => ClientStep(client));

    private void StartWrite(int client, SimHost target, KvCommand command)
    {
        var operation = new ClientOperation
        {
            Id = command.OperationId,
            Client = client,
            Kind = command.Kind,
            Key = command.Key,
            Value = command.Value,
            Expected = command.Expected,
            InvokeTime = _now,
        };
        var result = target.Propose(command, (outcome, effect) =>
        {
            if (operation.Finished)
            {
                return;
            }

            switch (outcome)
            {
                case WriteOutcome.Committed:
                    operation.CompleteTime = _now;
                    operation.Succeeded = effect;
                    Trace($"client {client} #{operation.Id} {operation.Kind} {operation.Key} committed (effect={effect})");
                    break;
                case WriteOutcome.Lost:
                    operation.Discarded = true;
                    Trace($"client {client} #{operation.Id} lost");
                    break;
                default:
                    operation.TimedOut = true;
                    break;
            }

            NextClientStep(client);
        });
        if (!result.IsAccepted)
        {
            Schedule(_random.Between(5, 40), () => ClientStep(client));
            return;
        }

        Trace($"client {client} #{operation.Id} {operation.Kind} {operation.Key}={operation.Value} expected={operation.Expected} at n{target.Id} -> {result.Term}/{result.FirstIndex}");
        _operations.Add(operation);
        Schedule(_options.ClientTimeoutMs, () =>
        {
            if (!operation.Finished)
            {
                operation.TimedOut = true;
                NextClientStep(client);
            }
        });
    }

    private void StartRead(int client, SimHost target, string key, bool lease)
    {
        ulong requestId = _nextRequestId++;
        var operation = new ClientOperation
        {
            Id = _nextOperationId++,
            Client = client,
            Kind = KvOperationKind.Get,
            Key = key,
            InvokeTime = _now,
        };
        var status = target.Read(requestId, key, lease, value =>
        {
            if (operation.Finished)
            {
                return;
            }

            operation.CompleteTime = _now;
            operation.Result = value;
            Trace($"client {client} #{operation.Id} read {key} at n{target.Id} lease={lease} -> {value ?? "absent"}");
            NextClientStep(client);
        });
        if (status != ReadStatus.Accepted)
        {
            Schedule(_random.Between(5, 40), () => ClientStep(client));
            return;
        }

        _operations.Add(operation);
        Schedule(_options.ClientTimeoutMs, () =>
        {
            if (!operation.Finished)
            {
                operation.Discarded = true;
                NextClientStep(client);
            }
        });
    }

    private (LinearizabilityVerdict Verdict, string Description) CheckHistory()
    {
        var history = new KvHistory();
        foreach (var operation in _operations.OrderBy(o => o.InvokeTime).ThenBy(o => o.Id))
        {
            if (operation.Discarded && operation.CompleteTime is null)
            {
                continue;
            }

            switch (operation.Kind)
            {
                case KvOperationKind.Get:
                    var get = history.InvokeGet(operation.Client, operation.Key, operation.InvokeTime);
                    if (operation.CompleteTime is { } readAt)
                    {
                        KvHistory.CompleteGet(get, operation.Result, readAt);
                    }

                    break;
                default:
                    long? completed = operation.CompleteTime;
                    if (completed is null)
                    {
                        // Unknown outcome: if it ever became visible, it took effect by its first application;
                        // if it never did, nothing could observe it.
                        if (!_oracle.TryGetOperationCommit(operation.Id, out _, out long appliedAt))
                        {
                            continue;
                        }

                        if (operation.Kind != KvOperationKind.CompareAndSet)
                        {
                            completed = appliedAt;
                        }
                    }

                    var write = operation.Kind switch
                    {
                        KvOperationKind.Set => history.InvokeSet(operation.Client, operation.Key, operation.Value!, operation.InvokeTime),
                        KvOperationKind.Delete => history.InvokeDelete(operation.Client, operation.Key, operation.InvokeTime),
                        _ => history.InvokeCompareAndSet(operation.Client, operation.Key, operation.Expected, operation.Value!, operation.InvokeTime),
                    };
                    if (completed is { } at)
                    {
                        if (write.Kind == KvOperationKind.CompareAndSet)
                        {
                            KvHistory.CompleteCompareAndSet(write, operation.Succeeded, at);
                        }
                        else
                        {
                            KvHistory.CompleteWrite(write, at);
                        }
                    }

                    break;
            }
        }

        var result = LinearizabilityChecker.Check(history);
        return (result.Verdict, result.Describe());
    }

    // ---------------------------------------------------------------- faults

    private void FaultStep()
    {
        if (_livenessPhase)
        {
            return;
        }

        Schedule(_random.Between(1, _options.FaultIntervalMs * 2), FaultStep);
        int total = _options.CrashWeight + _options.PartitionWeight + _options.MembershipWeight + _options.TransferWeight;
        if (total == 0)
        {
            return;
        }

        int pick = _random.Next(total);
        if ((pick -= _options.CrashWeight) < 0)
        {
            CrashSomeone();
        }
        else if ((pick -= _options.PartitionWeight) < 0)
        {
            PartitionSomehow();
        }
        else if ((pick -= _options.MembershipWeight) < 0)
        {
            ChangeMembership();
        }
        else
        {
            TransferLeadership();
        }
    }

    private void CrashSomeone()
    {
        var up = UpHosts().ToList();
        if (up.Count == 0)
        {
            return;
        }

        var leader = CurrentLeader();
        var victim = leader is not null && _random.Chance(1, 3) ? leader : _random.Pick(up);
        int mode = _random.Next(10);
        var point = mode switch
        {
            < 5 => CrashPoint.Clean,
            < 7 => CrashPoint.AfterMessages,
            < 8 => CrashPoint.TornSave,
            _ => CrashPoint.AfterSave,
        };
        if (point == CrashPoint.TornSave && !_random.ChancePerMillion(_options.TornSavePerMillion))
        {
            point = CrashPoint.AfterMessages;
        }

        if (point == CrashPoint.Clean)
        {
            victim.Crash();
        }
        else
        {
            Trace($"n{victim.Id} will crash at {point}");
            victim.PendingCrash = point;
            victim.TornSurvivors = _random.Between(0, 3);
            Schedule(_random.Between(10, 200), () =>
            {
                if (victim.PendingCrash is not null)
                {
                    victim.Crash();
                }
            });
        }

        Schedule(_random.Between(20, 1_500), () => Restart(victim));
    }

    private void Restart(SimHost host)
    {
        if (host.IsUp || host.IsStopped || _livenessPhase)
        {
            return;
        }

        host.Start();
        host.Process();
    }

    private void PartitionSomehow()
    {
        var members = _hosts.Values.Where(h => !h.IsStopped).Select(h => h.Id).ToList();
        if (members.Count < 2)
        {
            return;
        }

        int kind = _random.Next(4);
        int handle;
        string what;
        if (kind == 0 && CurrentLeader() is { } leader)
        {
            handle = _partitions.Split([leader.Id], members.Where(m => m != leader.Id).ToList());
            what = $"isolate leader {leader.Id}";
        }
        else if (kind <= 1)
        {
            var victim = _random.Pick(members);
            handle = _partitions.Split([victim], members.Where(m => m != victim).ToList());
            what = $"isolate {victim}";
        }
        else if (kind == 2)
        {
            var shuffled = members.OrderBy(_ => _random.NextUInt64()).ToList();
            int cut = _random.Between(1, shuffled.Count - 1);
            handle = _partitions.Split(shuffled.Take(cut).ToList(), shuffled.Skip(cut).ToList());
            what = $"split {string.Join(',', shuffled.Take(cut))} | {string.Join(',', shuffled.Skip(cut))}";
        }
        else
        {
            var from = _random.Pick(members);
            var to = _random.Pick(members.Where(m => m != from).ToList());
            handle = _partitions.OneWay(from, to);
            what = $"one-way {from}->{to}";
        }

        Trace($"partition #{handle}: {what}");
        Schedule(_random.Between(50, 2_000), () =>
        {
            _partitions.Heal(handle);
            Trace($"heal #{handle}");
        });
    }

    private void ChangeMembership()
    {
        if (CurrentLeader() is not { Node: { } node } leader)
        {
            return;
        }

        var conf = node.ConfState;
        var status = node.GetStatus();
        int action = _random.Next(3);

        // Promote a learner that has caught up.
        foreach (var learner in conf.Learners)
        {
            var progress = status.Progress.FirstOrDefault(p => p.Id == learner);
            if (progress.Id == learner && progress.Match.Value + 5 >= status.LastIndex.Value)
            {
                var promote = node.ProposeConfChange(new ConfChange(ConfChangeType.AddVoter, learner, ReadOnlyMemory<byte>.Empty));
                Trace($"n{leader.Id} propose promote {learner}: {promote.Status}");
                leader.Process();
                return;
            }
        }

        int live = _hosts.Values.Count(h => !h.IsStopped);
        if (action == 0 && live < _options.NodeCount + 2 && conf.Learners.Count == 0)
        {
            var id = new NodeId(_nextNodeId);
            var result = node.ProposeConfChange(new ConfChange(ConfChangeType.AddLearner, id, ReadOnlyMemory<byte>.Empty));
            Trace($"n{leader.Id} propose add learner {id}: {result.Status}");
            if (result.IsAccepted)
            {
                _nextNodeId++;
                var host = CreateHost(id);
                host.Start();
            }

            leader.Process();
        }
        else if (action == 1 && conf.Voters.Count >= 3)
        {
            var victim = _random.Pick(conf.Voters);
            var result = node.ProposeConfChange(new ConfChange(ConfChangeType.RemoveNode, victim, ReadOnlyMemory<byte>.Empty));
            Trace($"n{leader.Id} propose remove {victim}: {result.Status}");
            leader.Process();
        }
    }

    private void OnConfChangeApplied(SimHost host, ConfChange change)
    {
        if (change.Type != ConfChangeType.RemoveNode || !_hosts.TryGetValue(change.NodeId.Value, out var removed) || removed.IsStopped)
        {
            return;
        }

        // The removal is committed: the operator (or the node itself) shuts the removed node down soon after.
        Trace($"n{host.Id} applied removal of {change.NodeId}; stopping it");
        Schedule(_random.Between(0, 300), () =>
        {
            if (!removed.IsStopped)
            {
                removed.Stop();
            }
        });
    }

    private void TransferLeadership()
    {
        if (CurrentLeader() is not { Node: { } node } leader)
        {
            return;
        }

        var others = node.ConfState.Voters.Where(v => v != leader.Id).ToList();
        if (others.Count == 0)
        {
            return;
        }

        var target = _random.Pick(others);
        var status = node.TransferLeadership(target);
        Trace($"n{leader.Id} transfer leadership to {target}: {status}");
        leader.Process();
    }

    // ---------------------------------------------------------------- liveness

    private void RunLivenessPhase()
    {
        _livenessPhase = true;
        _partitions.HealAll();
        _network = _network with { DropPerMillion = 0, DuplicatePerMillion = 0, UnreachableReportPerMillion = 0 };
        Trace("liveness phase: heal everything, restart crashed nodes");
        foreach (var host in _hosts.Values)
        {
            host.PendingCrash = null;
            if (!host.IsUp && !host.IsStopped)
            {
                host.Start();
                host.Process();
                CheckAll();
            }
        }

        long deadline = _now + ((long)_options.LivenessElectionTimeouts * _options.ElectionTimeoutTicks * _options.TickMs);
        long markerId = 0;
        Term markerTerm = Term.Zero;
        LogIndex markerIndex = LogIndex.Zero;
        while (_now < deadline)
        {
            RunUntil(_now + _options.TickMs);
            if (markerId != 0 && _oracle.TryGetOperationCommit(markerId, out var committedAt, out _))
            {
                markerIndex = committedAt;
                if (Converged(markerIndex))
                {
                    Trace($"liveness: marker committed at {markerIndex} and all members converged");
                    return;
                }

                continue;
            }

            if (CurrentLeader() is { Node: { } node } leader && node.Term != markerTerm)
            {
                long id = _nextOperationId++;
                var result = leader.Propose(new KvCommand(id, KvOperationKind.Set, LivenessKey, "live", null), (_, _) => { });
                if (result.IsAccepted)
                {
                    markerId = id;
                    markerTerm = node.Term;
                    Trace($"liveness: marker #{id} proposed at n{leader.Id} {result.Term}/{result.FirstIndex}");
                }
            }
        }

        var leaderNow = CurrentLeader();
        throw new SimulationFailureException(
            $"liveness: no fresh write committed and converged within {_options.LivenessElectionTimeouts} election timeouts after healing " +
            $"(leader: {(leaderNow is null ? "none" : leaderNow.Id.ToString())}, marker index {markerIndex}). " + DescribeNodes());
    }

    private bool Converged(LogIndex index)
    {
        var leader = CurrentLeader();
        if (leader?.Node is not { } node)
        {
            return false;
        }

        foreach (var member in node.ConfState.Voters.Concat(node.ConfState.Learners))
        {
            if (!_hosts.TryGetValue(member.Value, out var host) || !host.IsUp || host.Applied < index)
            {
                return false;
            }
        }

        return true;
    }

    private string DescribeNodes() =>
        string.Join("; ", _hosts.Values.Select(h => h.Node is { } n
            ? $"n{h.Id} {n.Role} term={n.Term} leader={n.Leader} commit={n.CommitIndex} applied={h.Applied} last={h.Disk.LastIndex} conf=[{n.ConfState}]"
            : $"n{h.Id} {(h.IsStopped ? "stopped" : "down")}"));

    // ---------------------------------------------------------------- helpers

    private IEnumerable<SimHost> UpHosts() => _hosts.Values.Where(h => h.IsUp);

    /// <summary>The leader with the highest term among the nodes that are up (what a client's discovery would find).</summary>
    private SimHost? CurrentLeader()
    {
        SimHost? best = null;
        foreach (var host in UpHosts())
        {
            if (host.Node!.Role == RaftRole.Leader && (best is null || host.Node.Term > best.Node!.Term))
            {
                best = host;
            }
        }

        return best;
    }

    private void Trace(string line)
    {
        _trace?.Invoke(string.Create(CultureInfo.InvariantCulture, $"{_now,7} {line}"));
    }

    private sealed class ClientOperation
    {
        public required long Id { get; init; }

        public required int Client { get; init; }

        public required KvOperationKind Kind { get; init; }

        public required string Key { get; init; }

        public string? Value { get; init; }

        public string? Expected { get; init; }

        public required long InvokeTime { get; init; }

        public long? CompleteTime { get; set; }

        public string? Result { get; set; }

        public bool Succeeded { get; set; }

        /// <summary>Known not to have taken effect (refused, lost, or a read never answered).</summary>
        public bool Discarded { get; set; }

        public bool Finished => CompleteTime is not null || Discarded || TimedOut;

        public bool TimedOut { get; set; }
    }
}
