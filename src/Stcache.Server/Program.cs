using System.Net;
using System.Net.Http.Json;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using Stcache.Cache;
using Stcache.Raft;
using Stcache.Storage;
using Stcache.Transport;

namespace Stcache.Server;

public static class Program
{
    public const int ExitUsage = 2;

    public static async Task<int> Main(string[] args)
    {
        ServerOptions options;
        try
        {
            options = ConfigurationSources.Parse(args, Environment.GetEnvironmentVariables());
        }
        catch (UsageException e)
        {
            // One line per bad setting, naming it as given and where (flag, STCACHE_* variable or --config file).
            foreach (string line in e.Message.Split('\n'))
            {
                await Console.Error.WriteLineAsync("stcached: " + line + " (see stcached --help)");
            }

            return ExitUsage;
        }

        if (options.Help)
        {
            Console.Write(CommandLine.Usage());
            return 0;
        }

        // Before any socket exists: the runtime reads this once, when its socket engine starts.
        IoScheduling.Apply(options.InlineIo);

        try
        {
            return await RunAsync(options);
        }
        catch (Exception e) when (e is ListenerException or DataDirectoryException or InvalidDataException or IOException or UnauthorizedAccessException or CertificateFileException or StorageCorruptionException)
        {
            await Console.Error.WriteLineAsync("stcached: " + e.Message);
            return 1;
        }
    }

    private static async Task<int> RunAsync(ServerOptions options)
    {
        // Every listener first: an address that cannot be taken refuses the start with one line, before the data
        // directory is created or touched. The servers then take these sockets over.
        using var raftListener = Listeners.Bind("raft", options.RaftAddress);
        using var httpListener = Listeners.Bind("http", options.HttpAddress, dualModeWhenAny: true);
        using var respListener = options.RespAddress is null ? null : Listeners.Bind("resp", options.RespAddress);

        // The code a failover runs, compiled before this node serves and before the metrics listeners start (Warmup.cs).
        var warmup = Task.Run(() => Warmup.RunAsync(options));

        // No reloadOnChange: the node reads no appsettings file, and its watcher covered the whole working directory
        // tree (53,000 inotify watches from /), so every WAL write under it cost a managed event on every node.
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = ["--hostBuilder:reloadConfigOnChange=false"] });
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o =>
        {
            o.SingleLine = true;
            o.TimestampFormat = "yyyy-MM-ddTHH:mm:ss.fff ";
        });

        // A full console queue (a slow reader of stdout) drops lines, counted in the log, instead of blocking the
        // logging thread: with --io-threads inline that thread may be a socket thread serving every connection.
        builder.Services.Configure<Microsoft.Extensions.Logging.Console.ConsoleLoggerOptions>(o => o.QueueFullMode = Microsoft.Extensions.Logging.Console.ConsoleLoggerQueueFullMode.DropWrite);
        builder.Logging.SetMinimumLevel(Enum.Parse<LogLevel>(options.LogLevel, true));
        builder.Logging.AddFilter("Microsoft.AspNetCore", LogLevel.Warning);

        // Off entirely: while this category is enabled at any level, ASP.NET Core's hosting starts an Activity and
        // pushes a logging scope (two async-local changes) for every request, to log nothing at Warning.
        builder.Logging.AddFilter("Microsoft.AspNetCore.Hosting.Diagnostics", LogLevel.None);
        builder.Logging.AddFilter("Microsoft.Hosting", LogLevel.Warning);
        builder.Logging.AddFilter("System.Net.Http", LogLevel.Warning);
        var apiCertificate = Security.LoadApiCertificate(options);

        // With --io-threads inline, Kestrel runs a connection's request processing where the socket completed (the
        // runtime's socket thread) instead of queueing it to the thread pool (docs/PERFORMANCE.md, "I/O scheduling,
        // session 8"): nothing on the request path blocks; it awaits. Not under HTTPS: Kestrel's handshake (key
        // exchange and signature) would then run on the socket thread that every connection shares. With
        // --http-scheduling pool, Kestrel queues the request to the pool while RESP and peers stay inline.
        bool inlineHttp = options.InlineIo && options.InlineHttp && apiCertificate is null;
        builder.WebHost.UseSockets(sockets => sockets.UnsafePreferInlineScheduling = inlineHttp);
        builder.WebHost.ConfigureKestrel(kestrel =>
        {
            kestrel.Limits.MaxRequestBodySize = options.ValueBytesMax + (64 * 1024);

            // Bounded: connections beyond the limit are refused while the node stays responsive; slow clients
            // that trickle headers or bodies are cut off rather than holding a connection forever.
            kestrel.Limits.MaxConcurrentConnections = options.ConnectionsMax;
            kestrel.Limits.RequestHeadersTimeout = TimeSpan.FromSeconds(10);
            kestrel.Limits.KeepAliveTimeout = TimeSpan.FromSeconds(120);
            kestrel.Limits.MinRequestBodyDataRate = new MinDataRate(bytesPerSecond: 1024, gracePeriod: TimeSpan.FromSeconds(5));
            kestrel.AddServerHeader = false;
            kestrel.ListenHandle((ulong)httpListener.Handle, listen =>
            {
                if (apiCertificate is not null)
                {
                    listen.UseHttps(apiCertificate);
                }
            });
        });
        Security.ConfigureMemberClients(builder.Services, options);
        builder.Services.AddOpenTelemetry().WithMetrics(ServerMetrics.Configure);

        var warmedUp = await warmup;
        var app = builder.Build();
        var loggerFactory = app.Services.GetRequiredService<ILoggerFactory>();
        var logger = loggerFactory.CreateLogger("stcached");
        warmedUp.Log(logger);
        ServerLog.IoThreads(logger, options.InlineIo ? "inline" : "pool", await IoScheduling.ProbeAsync() ? "inline" : "pool", inlineHttp ? "inline" : "pool");

        Security.WarnIfExposed(logger, options);
        if (options.AuthToken is { } token)
        {
            Security.UseTokenAuthentication(app, token);
        }

        await using var node = NodeRuntime.Open(options, loggerFactory, logger);
        var service = new CommandService(node.Host, options, app.Services.GetRequiredService<IHttpClientFactory>(), loggerFactory.CreateLogger<CommandService>());
        AccessReports.Attach(node.Host, service);
        await using var heapCompactor = options.IdleGcCompaction ? IdleHeapCompactor.Start(loggerFactory.CreateLogger<IdleHeapCompactor>()) : null;
        var api = new HttpApi(node.Host, service, options, app.Services.GetRequiredService<IHttpClientFactory>(), loggerFactory.CreateLogger<HttpApi>());
        api.Map(app);
        AddressAnnouncement.Map(app, node.Host);
        OpsEndpoints.Map(app, node, options);
        await using var resp = options.RespAddress is null ? null : new Resp.RespServer(service, options, apiCertificate, loggerFactory.CreateLogger<Resp.RespServer>());

        var lifetime = app.Services.GetRequiredService<IHostApplicationLifetime>();
        node.Host.RemovedFromCluster += () =>
        {
            ServerLog.RemovedShuttingDown(logger);
            _ = Task.Run(async () =>
            {
                // Let the answer to the removal reach the client and the leader see the commit first.
                await Task.Delay(TimeSpan.FromMilliseconds(500));
                lifetime.StopApplication();
            });
        };

        await node.StartAsync(raftListener, lifetime.ApplicationStopping);
        await app.StartAsync();
        resp?.Start(respListener!);
        ServerLog.Listening(logger, options.HttpAddress, options.RaftAddress, node.Host.Id, node.Identity.Name, node.DataPath);
        node.ServeRaftChannelJoins(app.Services.GetRequiredService<IHttpClientFactory>(), lifetime.ApplicationStopping);
        node.StartJoining(app.Services.GetRequiredService<IHttpClientFactory>(), lifetime.ApplicationStopping);
        var announced = new MemberInfo(node.Host.Id.Value, node.Identity.Name, node.Identity.RaftAddress, node.Identity.HttpAddress,
            options.RespAddress is { } respAddress ? CommandLine.NormalizeAddress(respAddress) : null);
        AddressAnnouncement.Start(node.Host, announced, options, app.Services.GetRequiredService<IHttpClientFactory>(), logger, lifetime.ApplicationStopping);
        _ = Warmup.ForwardToSelfAsync(options, app.Services.GetRequiredService<IHttpClientFactory>(), lifetime.ApplicationStopping);

        var stopped = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lifetime.ApplicationStopping.Register(() => stopped.TrySetResult());
        var finished = await Task.WhenAny(stopped.Task, node.Host.Completion);
        int exitCode = 0;
        if (finished == node.Host.Completion && node.Host.Completion.IsFaulted)
        {
            exitCode = 1;
        }

        await app.StopAsync(CancellationToken.None);
        return exitCode;
    }

    internal static IPEndPoint ResolveEndPoint(string address)
    {
        string normalized = CommandLine.NormalizeAddress(address);
        int colon = normalized.LastIndexOf(':');
        string host = normalized[..colon].Trim('[', ']');
        int port = CommandLine.PortOf(normalized);
        if (CommandLine.IsAnyHost(address))
        {
            return new IPEndPoint(IPAddress.Any, port);
        }

        if (IPAddress.TryParse(host, out var ip))
        {
            return new IPEndPoint(ip, port);
        }

        var resolved = Dns.GetHostAddresses(host);
        return new IPEndPoint(resolved.First(a => a.AddressFamily == System.Net.Sockets.AddressFamily.InterNetwork), port);
    }
}

/// <summary>Everything one node owns: data directory, WAL, snapshots, transport, cache and the Raft host.</summary>
internal sealed class NodeRuntime : IAsyncDisposable
{
    private readonly ServerOptions _options;
    private readonly ILogger _logger;
    private readonly DataDirectory _directory;
    private readonly WriteAheadLog _wal;
    private readonly PeerTransport _transport;
    private bool _joinPending;
    private Task? _joining;

    private NodeRuntime(ServerOptions options, ILogger logger, DataDirectory directory, WriteAheadLog wal, PeerTransport transport, RaftHost host, NodeIdentity identity, bool joinPending)
    {
        _options = options;
        _logger = logger;
        _directory = directory;
        _wal = wal;
        _transport = transport;
        Host = host;
        Identity = identity;
        _joinPending = joinPending;
    }

    public RaftHost Host { get; }

    public NodeIdentity Identity { get; private set; }

    /// <summary>Round trips to and last contact with each peer, for /metrics and the dashboard.</summary>
    public PeerRoundTrips Peers { get; private init; } = new();

    public string DataPath => _directory.Path;

    public static NodeRuntime Open(ServerOptions options, ILoggerFactory loggerFactory, ILogger logger)
    {
        string path = options.DataDirectory ?? DefaultDataDirectory(options);
        var directory = DataDirectory.Open(path, loggerFactory);
        try
        {
            var wal = directory.OpenLog(new WalOptions { SegmentSizeBytes = options.WalSegmentSizeBytes });
            var snapshots = directory.OpenSnapshots();
            var identity = NodeIdentity.Load(directory.Path);
            bool joinPending = false;
            string raftAddress = CommandLine.NormalizeAddress(options.RaftAddress);
            string httpAddress = CommandLine.NormalizeAddress(options.HttpAddress);
            if (identity is not null)
            {
                ServerLog.Resuming(logger, new NodeId(identity.Id), identity.Name);
                joinPending = !identity.Joined && options.Join is not null;
                identity = identity with { RaftAddress = raftAddress, HttpAddress = httpAddress };
                identity.Save(directory.Path);
            }
            else
            {
                identity = CreateIdentity(options, raftAddress, httpAddress);
                var state = InitialState(options, identity);
                if (state is not null)
                {
                    wal.Save(state.HardState, state.Entries);
                }

                joinPending = options.Join is not null;
                identity = identity with { Joined = !joinPending };
                identity.Save(directory.Path);
            }

            string? respAddress = options.RespAddress is { } resp ? CommandLine.NormalizeAddress(resp) : null;
            var self = new MemberInfo(identity.Id, identity.Name, raftAddress, httpAddress, respAddress);
            var raftConfig = new RaftConfig
            {
                Id = new NodeId(identity.Id),
                ElectionTimeoutTicks = options.ElectionTicks,
                HeartbeatIntervalTicks = options.HeartbeatTicks,
                LeaderLostDelayTicksMax = options.EffectiveLeaderLostTicks,
                AsyncStorageWrites = options.WalPipeline,
#pragma warning disable CA5394 // the seed of election-timeout jitter, not a secret
                RandomSeed = (ulong)Random.Shared.NextInt64(1, long.MaxValue),
#pragma warning restore CA5394
            };
            string? inlinePasses = Environment.GetEnvironmentVariable(RaftHost.InlinePassesSwitch);
            var hostOptions = new RaftHostOptions
            {
                Raft = raftConfig,
                Self = self,
                TickInterval = options.TickInterval,
                RequestTimeout = options.RequestTimeout,
                SnapshotInterval = options.SnapshotInterval,
                SnapshotThreshold = options.SnapshotThreshold,
                SnapshotLogBytes = options.SnapshotLogBytes,
                SnapshotTrailingEntries = options.SnapshotTrailingEntries,
                PipelineFollowerWrites = options.WalPipelineFollowers,
                InlinePeerPasses = inlinePasses != "0",
                InlinePeerPassesOnLeader = inlinePasses == "all",
                InlinePeerAppends = inlinePasses is "appends" or "all",
                InlinePeerPassesWhenIdle = inlinePasses != "busy",
                ResumeOnDeliveringThread = Environment.GetEnvironmentVariable(RaftHost.ResumeOnDeliveringThreadSwitch) != "0",
                ConfiguredMemory = options.MaxMemoryBytes is null && options.EvictionPolicy is null ? null
                    : new MemorySetting(options.MaxMemoryBytes ?? 0, options.EvictionPolicy ?? EvictionPolicy.NoEviction),
            };

            RaftHost? host = null;
            var transportOptions = new TransportOptions
            {
                NodeId = raftConfig.Id,
                ClusterId = options.ClusterId,
                ListenEndPoint = Program.ResolveEndPoint(options.RaftAddress),
                ClusterSecret = options.ClusterSecret is null ? null : Encoding.UTF8.GetBytes(options.ClusterSecret),
            };
            Security.ConfigurePeerTls(transportOptions, options);
            var peers = new PeerRoundTrips();
            var transport = new PeerTransport(transportOptions, message =>
            {
                peers.OnReceive(message);
                host?.Deliver(message, PeerTransport.MoreReceived);
            }, loggerFactory.CreateLogger<PeerTransport>());
            var network = new TransportNetwork(transport, options.PeerDial.ToDictionary(p => p.Id, p => CommandLine.NormalizeAddress(p.RaftAddress)), peers);
            try
            {
                host = new RaftHost(hostOptions, wal, new MeasuredSnapshotStore(snapshots), network, new CacheStateMachine(), new MemberBook(), loggerFactory.CreateLogger<RaftHost>());
            }
            catch (InvalidDataException e) when (CorruptSnapshots(snapshots) is { Length: > 0 } corrupt)
            {
                // Recovery found no snapshot that covers the start of the log, because the one that does failed
                // verification. Name it: "no snapshot file was found" alone sends the operator looking elsewhere.
                throw new InvalidDataException($"cannot recover: {e.Message}, because {corrupt}; restore this data directory from a backup, or wipe it and add the node back as a new member", e);
            }

            transport.PeerUnreachable += host.ReportUnreachable;
            transport.PeerConnectionLost += host.ReportConnectionLost;
            transport.SnapshotSendCompleted += host.ReportSnapshot;
            transport.BeginSnapshotReceive = snapshots.BeginReceive;
            transport.ToldNotAMember += host.ReportNotAMember;
            transport.NotAMemberAsOf = host.NotAMemberAsOf;
            return new NodeRuntime(options, logger, directory, wal, transport, host, identity, joinPending) { Peers = peers };
        }
        catch
        {
            directory.Dispose();
            throw;
        }
    }

    public async Task StartAsync(System.Net.Sockets.Socket raftListener, CancellationToken cancellationToken)
    {
        await _transport.StartAsync(raftListener, cancellationToken);
        Host.Start();
    }

    /// <summary>Asks a member to add this node, retrying until it succeeds or the node stops.</summary>
    public void StartJoining(IHttpClientFactory clients, CancellationToken cancellationToken)
    {
        if (!_joinPending || _options.Join is null)
        {
            return;
        }

        _joining = Task.Run(async () =>
        {
            var joiner = new Joiner(clients, _logger);
            var self = new MemberInfo(Identity.Id, Identity.Name, CommandLine.NormalizeAddress(_options.RaftAddress), CommandLine.NormalizeAddress(_options.HttpAddress));
            bool joined = _options.Dialect == FlagDialect.Shaj13
                ? await JoinThroughRaftAddressAsync(self, cancellationToken)
                : await joiner.JoinAsync(_options, self, Host.Members, cancellationToken);
            if (joined)
            {
                _joinPending = false;
                Identity = Identity with { Joined = true };
                Identity.Save(_directory.Path);
            }
        }, CancellationToken.None);
    }

    /// <summary>Serves join requests that arrive on the raft port: adds the joiner through this node's own API
    /// (which forwards to the leader) and answers with the member list.</summary>
    public void ServeRaftChannelJoins(IHttpClientFactory clients, CancellationToken cancellationToken)
    {
        _transport.JoinReceived += (from, frame) =>
        {
            if (RaftChannelJoin.ParseAnswer(frame) is { } members)
            {
                foreach (var member in members)
                {
                    Host.Members.Merge(member);
                }

                return;
            }

            if (RaftChannelJoin.ParseRequest(frame) is not { } joiner || joiner.Id != from.Value || joiner.RaftAddress.Length == 0)
            {
                return;
            }

            _ = Task.Run(async () =>
            {
                try
                {
                    using var client = clients.CreateClient();
                    client.Timeout = _options.RequestTimeout + TimeSpan.FromSeconds(2);
                    string self = CommandLine.NormalizeAddress(_options.HttpAddress);
                    using var response = await client.PostAsync($"{_options.HttpScheme}://{self}/v1/cluster/members",
                        JsonContent.Create(joiner, MembershipJson.Default.MemberInfo), cancellationToken);
                    if (response.IsSuccessStatusCode)
                    {
                        _transport.SetPeer(from, joiner.RaftAddress);
                        _transport.SendJoin(from, RaftChannelJoin.Answer(Host.Members.All));
                    }
                    else
                    {
                        // Names the reason (a 409 says another member already holds this id); the joiner hears nothing.
                        string reason = await response.Content.ReadAsStringAsync(cancellationToken);
                        ServerLog.JoinRetry(_logger, joiner.RaftAddress, $"adding it failed: {(int)response.StatusCode} {reason.Trim()}");
                    }
                }
                catch (Exception e) when (e is HttpRequestException or OperationCanceledException)
                {
                    ServerLog.JoinRetry(_logger, joiner.RaftAddress, e.Message);
                }
            }, CancellationToken.None);
        };
    }

    private async Task<bool> JoinThroughRaftAddressAsync(MemberInfo self, CancellationToken cancellationToken)
    {
        string target = CommandLine.NormalizeAddress(_options.Join!);
        var member = new NodeId(MemberInfo.IdFromName(target));
        ServerLog.Joining(_logger, target);
        _transport.SetPeer(member, target);
        while (!cancellationToken.IsCancellationRequested)
        {
            // Removed already means it was a member: asking again would add back a node an operator just removed
            // (a restart right after the join can replay the membership and apply the removal within one pause).
            // So does anything committed in its log: only a member receives entries from a leader. A restarted
            // node knows that at once, before it has applied its log again, so it never asks a second time (a
            // second ask, queued behind an operator's removal, added the removed node back).
            var status = Host.Status;
            if (status.ConfState.IsMember(Host.Id) || Host.WasRemoved || status.Commit > LogIndex.Zero)
            {
                ServerLog.Joined(_logger, target);
                return true;
            }

            _transport.SendJoin(member, RaftChannelJoin.Request(self));
            try
            {
                await Task.Delay(TimeSpan.FromSeconds(1), cancellationToken);
            }
            catch (OperationCanceledException)
            {
                return false;
            }
        }

        return false;
    }

    public async ValueTask DisposeAsync()
    {
        if (_joining is not null)
        {
            await _joining.ConfigureAwait(false);
        }

        await Host.DisposeAsync();
        await _transport.DisposeAsync();
        _wal.Dispose();
        _directory.Dispose();
    }

    /// <summary>The snapshot files that fail verification and why, or empty; read only when recovery already failed.</summary>
    private static string CorruptSnapshots(FileSnapshotStore snapshots)
    {
        var corrupt = new List<string>();
        foreach (var file in snapshots.List())
        {
            try
            {
                FileSnapshotStore.Verify(file.Path);
            }
            catch (Exception e) when (e is StorageCorruptionException or IOException)
            {
                corrupt.Add($"snapshot {Path.GetFileName(file.Path)} failed verification: {e.Message}");
            }
        }

        return string.Join("; ", corrupt);
    }

    private static string DefaultDataDirectory(ServerOptions options)
    {
        string suffix = options.RaftId is { } id
            ? id.ToString(System.Globalization.CultureInfo.InvariantCulture)
            : CommandLine.NormalizeAddress(options.RaftAddress).Replace(':', '-');
        return Path.Combine(Environment.CurrentDirectory, "node-" + suffix);
    }

    private static NodeIdentity CreateIdentity(ServerOptions options, string raftAddress, string httpAddress)
    {
        if (options.RaftId is { } raftId)
        {
            string name = options.Name ?? raftId.ToString(System.Globalization.CultureInfo.InvariantCulture);
            return new NodeIdentity(raftId, name, raftAddress, httpAddress, options.ClusterId, true);
        }

        // A node id names one incarnation of a data directory, and a removed id is never added again (docs/RAFT.md,
        // "Node ids"). A node that joins or bootstraps under its default name (its raft address) draws a new random
        // id here, when its data directory is initialised: a wiped node restarted with the same flags is a new
        // member, never its old self with its votes and log forgotten. An explicit --name keeps the id derived from
        // it (stcachectl members add and the shaj13 seed's joiners compute it); reusing the name of a removed member
        // is refused by the cluster.
        string memberName = options.Name ?? raftAddress;
        ulong id = options.Name is null && options.Dialect == FlagDialect.Stcache && (options.Join is not null || options.Bootstrap)
            ? NodeIdentity.NewId()
            : MemberInfo.IdFromName(memberName);
        return new NodeIdentity(id, memberName, raftAddress, httpAddress, options.ClusterId, true);
    }

    private static PersistentState? InitialState(ServerOptions options, NodeIdentity identity)
    {
        if (options.StaticCluster.Count > 0)
        {
            // Every founder must write byte-identical entries, so contexts carry only what all of them know.
            var founders = options.StaticCluster
                .Select(m => new ConfChange(ConfChangeType.AddVoter, new NodeId(m.Id),
                    new MemberInfo(m.Id, m.Id.ToString(System.Globalization.CultureInfo.InvariantCulture), CommandLine.NormalizeAddress(m.RaftAddress), string.Empty).ToContext()))
                .ToList();
            return PersistentState.Bootstrap(founders);
        }

        // The shaj13 seed starts a single-member cluster when no -join is given.
        if (options.Bootstrap || (options.Dialect == FlagDialect.Shaj13 && options.Join is null))
        {
            var self = new MemberInfo(identity.Id, identity.Name, identity.RaftAddress, identity.HttpAddress);
            return PersistentState.Bootstrap([new ConfChange(ConfChangeType.AddVoter, new NodeId(identity.Id), self.ToContext())]);
        }

        return null;
    }
}

/// <summary>Adapts <see cref="PeerTransport"/> to the host's view of the network.</summary>
internal sealed class TransportNetwork(PeerTransport transport, IReadOnlyDictionary<ulong, string> dialOverrides, PeerRoundTrips peers) : IPeerNetwork
{
    public void Send(Message message)
    {
        peers.OnSend(message);
        transport.Send(message);
    }

    public void SendSnapshot(Message header, Stream stored) => transport.SendSnapshot(header, stored);

    public bool IsSendingSnapshot(NodeId peer) => transport.IsSendingSnapshot(peer);

    /// <summary>A <c>--peer-dial</c> override wins over the advertised address (fault-injection proxies).</summary>
    public void SetPeer(NodeId id, string address) =>
        transport.SetPeer(id, dialOverrides.TryGetValue(id.Value, out string? dial) ? dial : address);

    public void RemovePeer(NodeId id) => transport.RemovePeer(id);
}
