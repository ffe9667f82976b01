using System.Diagnostics;
using System.Text.Json;
using Microsoft.Extensions.Logging;
using Microsoft.Extensions.Logging.Abstractions;
using Stcache.Cache;
using Stcache.Raft;

namespace Stcache.Server;

/// <summary>
/// Before a node serves, runs the code a failover needs once, on a scratch three-member cluster inside this process:
/// memory stores, messages handed over in process, nothing on disk or on the network, no log lines, and no metrics
/// (it ends before the metrics listeners start). It goes through an election with pre-vote, the first commit as
/// leader, proposals, replication and apply on the followers, linearizable and lease read barriers, the forwarded
/// batch's codec, then a leader lost through its connections and the election and writes after it.
/// <para>
/// Why: a process that has never led otherwise JIT-compiles about a thousand methods in the middle of its first
/// failover (its own leader code, and the framework's generic code over its types, which ReadyToRun cannot hold), a
/// few hundred milliseconds on a busy machine, on the critical path of the first write after the crash. Here they
/// are compiled once at start, off that path. Best effort: a failure is logged and the node starts anyway.
/// <c>--warmup off</c> skips it (and the forwarded batch to itself): a faster start, a slower first failover.
/// </para>
/// </summary>
internal static partial class Warmup
{
    private const int Members = 3;
    private const int Rounds = 8;
    private static readonly TimeSpan s_limit = TimeSpan.FromSeconds(20);

    /// <summary>Runs the scratch cluster (unless <c>--warmup off</c>); never throws. Log the report once a logger exists.</summary>
    public static async Task<Report> RunAsync(ServerOptions options)
    {
        if (!options.Warmup)
        {
            return new Report(0, 0, null) { Skipped = true };
        }

        long started = Stopwatch.GetTimestamp();
        using var limit = new CancellationTokenSource(s_limit);
        try
        {
            int writes = await RunClusterAsync(options, new LocalNetwork(), limit.Token).ConfigureAwait(false);
            return new Report((long)Stopwatch.GetElapsedTime(started).TotalMilliseconds, writes, null);
        }
        catch (Exception e)
        {
            return new Report((long)Stopwatch.GetElapsedTime(started).TotalMilliseconds, 0, e.GetType().Name + ": " + e.Message);
        }
    }

    /// <summary>
    /// Once the node serves: one forwarded batch to its own API over loopback, as a follower sends a leader's, empty
    /// so that no role may apply it (refused as such). The forwarding hop's HTTP code on both sides (the client's
    /// connection and request, the server's route, body and error answer) is then compiled before the first failover
    /// needs it. Best effort and silent.
    /// </summary>
    public static async Task ForwardToSelfAsync(ServerOptions options, IHttpClientFactory clients, CancellationToken stopping)
    {
        if (!options.Warmup)
        {
            return;
        }

        string address = CommandLine.IsAnyHost(options.HttpAddress)
            ? "127.0.0.1:" + CommandLine.PortOf(CommandLine.NormalizeAddress(options.HttpAddress)).ToString(System.Globalization.CultureInfo.InvariantCulture)
            : CommandLine.NormalizeAddress(options.HttpAddress);
        try
        {
            using var message = HttpApi.ForwardRequest("POST", new Uri($"{options.HttpScheme}://{address}{CommandService.ProposePath}", UriKind.Absolute),
                WriteRequest.EncodeAll([]), "application/octet-stream");
            message.Headers.TryAddWithoutValidation(HttpApi.ForwardedHeader, "0");

            // Not kept alive: an idle pooled connection to itself would hold one of the node's --max-connections.
            message.Headers.ConnectionClose = true;
            using var client = clients.CreateClient();
            client.Timeout = options.RequestTimeout;
            using var response = await client.SendAsync(message, stopping).ConfigureAwait(false);
            _ = await response.Content.ReadAsByteArrayAsync(stopping).ConfigureAwait(false);
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException or InvalidOperationException)
        {
            // A node whose API cannot be dialled from itself (TLS names, a firewall) only misses the warm-up.
        }
    }

    /// <summary>How the warm-up went.</summary>
    public readonly record struct Report(long ElapsedMs, int Writes, string? Error)
    {
        /// <summary>Not run: <c>--warmup off</c>.</summary>
        public bool Skipped { get; init; }

        public void Log(ILogger logger)
        {
            if (Skipped)
            {
                Off(logger);
            }
            else if (Error is null)
            {
                Done(logger, ElapsedMs, Writes);
            }
            else
            {
                Failed(logger, ElapsedMs, Error);
            }
        }
    }

    private static async Task<int> RunClusterAsync(ServerOptions options, LocalNetwork network, CancellationToken cancellationToken)
    {
        var members = Enumerable.Range(1, Members)
            .Select(i => new MemberInfo((ulong)i, "warmup" + i, "127.0.0.1:" + i, string.Empty))
            .ToArray();
        var initial = PersistentState.Bootstrap([.. members.Select(m => new ConfChange(ConfChangeType.AddVoter, new NodeId(m.Id), m.ToContext()))]);
        var hosts = new List<RaftHost>();
        try
        {
            foreach (var member in members)
            {
                var hostOptions = new RaftHostOptions
                {
                    Raft = new RaftConfig
                    {
                        Id = new NodeId(member.Id),
                        ElectionTimeoutTicks = 50,
                        HeartbeatIntervalTicks = 5,
                        LeaderLostDelayTicksMax = 3,
                        RandomSeed = member.Id,
                    },
                    Self = member,

                    // Short ticks, so the first election comes after 100-200 ms and the one after the leader's loss
                    // after a few ms; an election timeout of 50 ticks rides out a busy machine's stalls.
                    TickInterval = TimeSpan.FromMilliseconds(2),
                    RequestTimeout = s_limit,
                };
                var host = new RaftHost(hostOptions, new MemoryLogStore(initial), new MemorySnapshotStore(), network,
                    new CacheStateMachine(), new MemberBook(), NullLogger<RaftHost>.Instance);
                network.Add(host);
                hosts.Add(host);
            }

            foreach (var host in hosts)
            {
                host.Start();
            }

            var leader = await LeaderAsync(hosts, cancellationToken).ConfigureAwait(false);
            int writes = await ExerciseAsync(leader, options, cancellationToken).ConfigureAwait(false);

            // The leader crashes: its peers hear nothing more from it, and their transports report the connections
            // lost, which starts the fast path (leader-lost delay, pre-vote, vote) and the new leader's first commit.
            network.Isolate(leader.Id);
            var survivors = hosts.Where(h => h != leader).ToList();
            foreach (var survivor in survivors)
            {
                survivor.ReportConnectionLost(leader.Id);
            }

            var next = await LeaderAsync(survivors, cancellationToken).ConfigureAwait(false);
            writes += await ExerciseAsync(next, options, cancellationToken).ConfigureAwait(false);
            return writes;
        }
        finally
        {
            foreach (var host in hosts)
            {
                await host.DisposeAsync().ConfigureAwait(false);
            }
        }
    }

    /// <summary>The host among <paramref name="hosts"/> that leads, once one does (woken by their leadership events).</summary>
    private static async Task<RaftHost> LeaderAsync(IReadOnlyList<RaftHost> hosts, CancellationToken cancellationToken)
    {
        var elected = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        void OnChanged(LeadershipChange change)
        {
            if (change.IsLeader)
            {
                elected.TrySetResult();
            }
        }

        foreach (var host in hosts)
        {
            host.LeadershipChanged += OnChanged;
        }

        try
        {
            while (true)
            {
                if (hosts.FirstOrDefault(h => h.Status.IsLeader) is { } leader)
                {
                    return leader;
                }

                await elected.Task.WaitAsync(cancellationToken).ConfigureAwait(false);
                elected = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            }
        }
        finally
        {
            foreach (var host in hosts)
            {
                host.LeadershipChanged -= OnChanged;
            }
        }
    }

    /// <summary>A leader's write and read paths, as the HTTP and RESP front ends drive them, and the codec of a
    /// forwarded batch and its answer; the number of writes applied.</summary>
    private static async Task<int> ExerciseAsync(RaftHost leader, ServerOptions options, CancellationToken cancellationToken)
    {
        var service = new CommandService(leader, options, NoClients.Instance, NullLogger.Instance);
        byte[] value = new byte[100];
        int applied = 0;
        for (int round = 0; round < Rounds; round++)
        {
            WriteRequest[] batch =
            [
                WriteRequest.Of(CacheCommand.Set("warmup", value)),
                WriteRequest.Of(CacheCommand.Set("warmup-ttl", value), 60_000),
            ];
            var outcomes = await service.WriteBatchAsync(batch, cancellationToken).ConfigureAwait(false);
            applied += outcomes.Count(o => o.Status == WriteStatus.Applied);
            await service.WriteAsync(WriteRequest.Of(CacheCommand.Delete("warmup-ttl")), cancellationToken).ConfigureAwait(false);
            await service.ReadBarrierAsync(ReadConsistency.Linearizable, cancellationToken).ConfigureAwait(false);
            await service.ReadBarrierAsync(ReadConsistency.Lease, cancellationToken).ConfigureAwait(false);

            // What a forwarded batch costs each side besides the proposal: the follower encodes the commands and
            // reads the answer, the leader decodes them and writes the answer.
            var decoded = WriteRequest.DecodeAll(WriteRequest.EncodeAll(batch), out _);
            var forwarded = outcomes.Select(ForwardedResult.From).ToArray();
            byte[] answer = JsonSerializer.SerializeToUtf8Bytes(forwarded, CommandJson.Default.ForwardedResultArray);
            var results = JsonSerializer.Deserialize(answer, CommandJson.Default.ForwardedResultArray);

            // The leader's HTTP answer streams its JSON, which takes the serializer's other path.
            await JsonSerializer.SerializeAsync(Stream.Null, forwarded, CommandJson.Default.ForwardedResultArray, cancellationToken).ConfigureAwait(false);
            if (decoded is null || results is null || results.Length != batch.Length)
            {
                throw new InvalidOperationException("the forwarded batch's codec did not round-trip");
            }

            _ = results.Select(r => r.ToOutcome(leader.Id)).ToArray();
            leader.Cache.TryGet("warmup", out _, leader.Cache.LastLogTimeUnixMs);
        }

        return applied;
    }

    [LoggerMessage(1141, LogLevel.Information, "Warm-up: the failover paths ran on a scratch in-process cluster in {ElapsedMs} ms ({Writes} writes)")]
    private static partial void Done(ILogger logger, long elapsedMs, int writes);

    [LoggerMessage(1142, LogLevel.Warning, "Warm-up stopped after {ElapsedMs} ms: {Reason}; the node starts anyway")]
    private static partial void Failed(ILogger logger, long elapsedMs, string reason);

    [LoggerMessage(1144, LogLevel.Information, "Warm-up off (--warmup off): the first failover this node takes part in compiles its code paths as it goes")]
    private static partial void Off(ILogger logger);

    /// <summary>Hands each message straight to its addressee's host; drops what an isolated node sends or is sent.</summary>
    private sealed class LocalNetwork : IPeerNetwork
    {
        private readonly Dictionary<NodeId, RaftHost> _hosts = [];
        private volatile NodeId[] _isolated = [];

        public void Add(RaftHost host) => _hosts[host.Id] = host;

        public void Isolate(NodeId id) => _isolated = [.. _isolated, id];

        public void Send(Message message)
        {
            var isolated = _isolated;
            if (Array.IndexOf(isolated, message.From) < 0 && Array.IndexOf(isolated, message.To) < 0
                && _hosts.TryGetValue(message.To, out var to))
            {
                to.Deliver(message);
            }
        }

        public void SendSnapshot(Message header, Stream stored) => stored.Dispose();

        public void SetPeer(NodeId id, string address)
        {
        }

        public void RemovePeer(NodeId id)
        {
        }
    }

    /// <summary>The scratch cluster forwards nothing over HTTP.</summary>
    private sealed class NoClients : IHttpClientFactory
    {
        public static readonly NoClients Instance = new();

        public HttpClient CreateClient(string name) => throw new InvalidOperationException("the warm-up cluster has no HTTP peers");
    }
}
