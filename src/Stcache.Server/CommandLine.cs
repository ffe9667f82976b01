using System.Globalization;
using System.Text;

namespace Stcache.Server;

/// <summary>Thrown for unknown, malformed or contradictory flags; the process exits with code 2.</summary>
public sealed class UsageException : Exception
{
    public UsageException(string message)
        : base(message)
    {
    }
}

/// <summary>Which seed's command line the flags follow; decides what <c>-join</c> points at.</summary>
public enum FlagDialect
{
    /// <summary>Our own flags (and the stcache seed's): <c>--join</c> is a member's HTTP address.</summary>
    Stcache,

    /// <summary>raft-demo: a static cluster from <c>--raft_cluster</c>.</summary>
    RaftDemo,

    /// <summary>shaj13: <c>-join</c> is a member's raft address.</summary>
    Shaj13,
}

/// <summary>Everything stcached was asked to do, parsed from Go-style flags and validated once.</summary>
public sealed record ServerOptions
{
    public string HttpAddress { get; init; } = "127.0.0.1:6000";

    public string RaftAddress { get; init; } = "127.0.0.1:7000";

    public string? DataDirectory { get; init; }

    public bool Bootstrap { get; init; }

    public string? Join { get; init; }

    public FlagDialect Dialect { get; init; } = FlagDialect.Stcache;

    /// <summary>Member name; defaults to the raft address (raft-demo: the raft id).</summary>
    public string? Name { get; init; }

    public ulong? RaftId { get; init; }

    /// <summary>raft-demo static members: id and raft address, in the given order.</summary>
    public IReadOnlyList<(ulong Id, string RaftAddress)> StaticCluster { get; init; } = [];

    /// <summary>
    /// Local dial overrides: reach these peers at these addresses instead of their advertised raft address.
    /// Never replicated; used to put fault-injecting proxies on peer links.
    /// </summary>
    public IReadOnlyList<(ulong Id, string RaftAddress)> PeerDial { get; init; } = [];

    public bool ForwardWrites { get; init; } = true;

    public string ClusterId { get; init; } = "stcache";

    public string? ClusterSecret { get; init; }

    /// <summary>50 ms ticks with a 10-tick election timeout: a leader that falls silent is replaced within 0.5-1 s (the
    /// timeout is randomized in [10, 20) ticks) while heartbeats still arrive ten times per timeout. A leader whose
    /// connections reset (a crashed process) is replaced after 1-<see cref="LeaderLostTicks"/> ticks (docs/RAFT.md).</summary>
    public TimeSpan TickInterval { get; init; } = TimeSpan.FromMilliseconds(50);

    public int ElectionTicks { get; init; } = 10;

    public int HeartbeatTicks { get; init; } = 1;

    /// <summary>Most ticks a follower waits to campaign once its leader's connections failed (0 = wait the election
    /// timeout as for silence). Unset: 3, or one below the election timeout if that is shorter.</summary>
    public int? LeaderLostTicks { get; init; }

    public int EffectiveLeaderLostTicks => LeaderLostTicks ?? Math.Min(3, ElectionTicks - 1);

    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(5);

    public TimeSpan SnapshotInterval { get; init; } = TimeSpan.FromSeconds(30);

    public ulong SnapshotThreshold { get; init; } = 8192;

    public long SnapshotLogBytes { get; init; } = 16L << 20;

    public ulong SnapshotTrailingEntries { get; init; } = 1024;

    public int ValueBytesMax { get; init; } = 1 << 20;

    public string LogLevel { get; init; } = "Information";

    public string? ClusterSecretFile { get; init; }

    /// <summary>Peer TLS: this node's certificate (PEM or PFX), its key (PEM) and the CA that signs every peer.</summary>
    public string? PeerTlsCert { get; init; }

    public string? PeerTlsKey { get; init; }

    public string? PeerTlsCa { get; init; }

    /// <summary>HTTPS for the API: certificate (PEM or PFX) and key (PEM); forwarded writes trust <see cref="TlsCa"/>.</summary>
    public string? TlsCert { get; init; }

    public string? TlsKey { get; init; }

    public string? TlsCa { get; init; }

    /// <summary>Bearer token every API call must present (health checks excepted).</summary>
    public string? AuthToken { get; init; }

    public string? AuthTokenFile { get; init; }

    public int ConnectionsMax { get; init; } = 1024;

    /// <summary>Where the Redis protocol (RESP) listens; null: no RESP listener.</summary>
    public string? RespAddress { get; init; }

    /// <summary>Concurrent RESP connections; the excess gets Redis's "max number of clients reached" and is closed.</summary>
    public int RespClientsMax { get; init; } = 10_000;

    /// <summary>A RESP connection idle this long is closed (Redis's <c>timeout</c>); zero: never.</summary>
    public TimeSpan RespIdleTimeout { get; init; } = TimeSpan.Zero;

    /// <summary>The memory limit in accounted bytes (0 = none); null when not given (the replicated setting, as
    /// CONFIG SET leaves it, stands).</summary>
    public long? MaxMemoryBytes { get; init; }

    /// <summary>Redis's maxmemory-policy; null when not given.</summary>
    public Stcache.Cache.EvictionPolicy? EvictionPolicy { get; init; }
    /// <summary>RESP connections start in READONLY mode (stale local reads) until they send READWRITE.</summary>
    public bool RespReadOnly { get; init; }

    /// <summary><c>--wal-segment-size</c>: the write-ahead log's segment size. Each segment is zero-filled when it is
    /// created and the next one is prepared ahead, so a fresh node writes two segments' worth of zeros.</summary>
    public long WalSegmentSizeBytes { get; init; } = Stcache.Storage.WalOptions.SegmentSizeBytesDefault;

    /// <summary><c>--wal-pipeline</c>: the Raft loop hands its log writes to a writer thread (group commit) and goes on,
    /// instead of waiting in each fdatasync (<see cref="Stcache.Raft.RaftConfig.AsyncStorageWrites"/>). Off by default:
    /// on the quiet machine it was behind on seven of eight write rows (docs/PERFORMANCE.md, "Session 10 run").</summary>
    public bool WalPipeline { get; init; }

    /// <summary><c>--wal-pipeline all</c>: followers pipeline their log writes too (<c>true</c>: only a leader does).</summary>
    public bool WalPipelineFollowers { get; init; }

    /// <summary><c>--io-threads inline</c> (the default): socket completions run on the runtime's socket threads, not
    /// handed to the thread pool (<see cref="IoScheduling"/>); <c>pool</c> hands them over.</summary>
    public bool InlineIo { get; init; } = true;

    /// <summary><c>--http-scheduling inline</c>: under <c>--io-threads inline</c>, Kestrel processes an HTTP request on
    /// the socket thread its receive completed on (the default); <c>pool</c> hands it to the thread pool while RESP and
    /// the peer transport stay inline.</summary>
    public bool InlineHttp { get; init; } = true;

    /// <summary>Give the GC's free memory back once the node turns idle after a large growth (IdleHeapCompactor).</summary>
    public bool IdleGcCompaction { get; init; }

    /// <summary><c>--warmup on|off</c>: run the failover paths once on a scratch cluster before serving (Warmup.cs).</summary>
    public bool Warmup { get; init; } = true;

    public string HttpScheme => TlsCert is null ? "http" : "https";

    public bool Help { get; init; }
}

/// <summary>
/// Parses the three seeds' command lines verbatim plus our own flags. Go's flag syntax: <c>-flag value</c>,
/// <c>-flag=value</c>, <c>--flag=value</c>, <c>--flag value</c>; a boolean flag alone means true and takes a value
/// only with <c>=</c> (<c>-bootstrap=true</c>).
/// </summary>
public static class CommandLine
{
    private sealed record Flag(string[] Names, bool IsBool, string Help, Func<ServerOptions, string, ServerOptions> Set);

    private static readonly Flag[] s_flags =
    [
        new(["http", "http_addr", "api", "http-address"], false, "HTTP API listen address host:port (':9090' = all interfaces)", (o, v) => o with { HttpAddress = v }),
        new(["raft", "raft_addr", "raft-address"], false, "Raft peer listen address host:port", (o, v) => o with { RaftAddress = v }),
        new(["node", "state_dir", "data-dir"], false, "data directory (default: ./node-<id> under the working directory)", (o, v) => o with { DataDirectory = v }),
        new(["bootstrap"], true, "start a new cluster with this node as its only member", (o, v) => o with { Bootstrap = ParseBool("bootstrap", v) }),
        new(["join"], false, "join a running cluster: a member's HTTP address (with -raft/-api/-state_dir: its raft address)", (o, v) => o with { Join = v }),
        new(["raft_id"], false, "raft-demo: this node's numeric id in --raft_cluster", (o, v) => o with { RaftId = ParseId(v) }),
        new(["raft_cluster"], false, "raft-demo: static members id/host:port,id/host:port,...", (o, v) => o with { StaticCluster = ParseCluster(v) }),
        new(["peer-dial"], false, "dial these peers here instead of their advertised raft address: id/host:port,... (testing proxies)", (o, v) => o with { PeerDial = ParseCluster(v) }),
        new(["name"], false, "member name (default: the raft address)", (o, v) => o with { Name = v }),
        new(["forward-writes"], true, "forward writes received by a follower to the leader (default true)", (o, v) => o with { ForwardWrites = ParseBool("forward-writes", v) }),
        new(["cluster-id"], false, "cluster id checked in the peer handshake (default stcache)", (o, v) => o with { ClusterId = v }),
        new(["cluster-secret"], false, "shared secret authenticating peers", (o, v) => o with { ClusterSecret = v }),
        new(["tick-ms"], false, "Raft tick in milliseconds (default 50)", (o, v) => o with { TickInterval = TimeSpan.FromMilliseconds(ParseInt(v)) }),
        new(["election-ticks"], false, "election timeout in ticks (default 10)", (o, v) => o with { ElectionTicks = ParseInt(v) }),
        new(["heartbeat-ticks"], false, "heartbeat interval in ticks (default 1)", (o, v) => o with { HeartbeatTicks = ParseInt(v) }),
        new(["leader-lost-ticks"], false, "most ticks a follower waits to campaign once its leader's connections reset (default 3, 0 = off)", (o, v) => o with { LeaderLostTicks = ParseInt(v) }),
        new(["request-timeout-ms"], false, "client request timeout in milliseconds (default 5000)", (o, v) => o with { RequestTimeout = TimeSpan.FromMilliseconds(ParseInt(v)) }),
        new(["snapshot-interval-s"], false, "seconds between snapshot checks (default 30)", (o, v) => o with { SnapshotInterval = TimeSpan.FromSeconds(ParseInt(v)) }),
        new(["snapshot-threshold"], false, "entries applied since the last snapshot before a new one (default 8192)", (o, v) => o with { SnapshotThreshold = (ulong)ParseInt(v) }),
        new(["snapshot-log-bytes"], false, "a snapshot also once the entries applied since the last one hold this many bytes and a quarter of the cache's memory, whatever the interval (default 16777216; 0 = off)", (o, v) => o with { SnapshotLogBytes = ParseInt(v) }),
        new(["snapshot-trailing"], false, "log entries kept behind a snapshot, in memory and in the write-ahead log (default 1024)", (o, v) => o with { SnapshotTrailingEntries = (ulong)ParseInt(v) }),
        new(["max-value-bytes"], false, "largest value accepted (default 1048576)", (o, v) => o with { ValueBytesMax = ParseInt(v) }),
        new(["cluster-secret-file"], false, "file holding the cluster secret (or set STCACHE_CLUSTER_SECRET)", (o, v) => o with { ClusterSecretFile = v }),
        new(["peer-tls-cert"], false, "TLS on peer links: this node's certificate (PEM, or .pfx)", (o, v) => o with { PeerTlsCert = v }),
        new(["peer-tls-key"], false, "TLS on peer links: this node's private key (PEM)", (o, v) => o with { PeerTlsKey = v }),
        new(["peer-tls-ca"], false, "TLS on peer links: CA certificate(s) every peer's certificate must chain to (PEM)", (o, v) => o with { PeerTlsCa = v }),
        new(["tls-cert"], false, "HTTPS for the API: certificate (PEM, or .pfx)", (o, v) => o with { TlsCert = v }),
        new(["tls-key"], false, "HTTPS for the API: private key (PEM)", (o, v) => o with { TlsKey = v }),
        new(["tls-ca"], false, "HTTPS: CA that signs the other members' API certificates (for forwarded requests)", (o, v) => o with { TlsCa = v }),
        new(["auth-token"], false, "require 'Authorization: Bearer <token>' on every API call but /healthz and /readyz (or set STCACHE_AUTH_TOKEN)", (o, v) => o with { AuthToken = v }),
        new(["auth-token-file"], false, "file holding the API token", (o, v) => o with { AuthTokenFile = v }),
        new(["max-memory", "maxmemory"], false, "memory limit in bytes, with Redis's units (100mb, 2gb; 0 = none); the leader evicts by --eviction-policy", (o, v) => o with { MaxMemoryBytes = ParseBytes("max-memory", v, "no limit") }),
        new(["eviction-policy", "maxmemory-policy"], false, "noeviction, allkeys-lru, allkeys-lfu, allkeys-random, volatile-lru, volatile-lfu, volatile-random, volatile-ttl (default noeviction)", (o, v) => o with { EvictionPolicy = ParsePolicy("eviction-policy", v) }),
        new(["max-connections"], false, "concurrent HTTP connections accepted; the excess is refused (default 1024)", (o, v) => o with { ConnectionsMax = ParseInt(v) }),
        new(["resp", "resp-address"], false, "Redis protocol (RESP) listen address host:port (default: none)", (o, v) => o with { RespAddress = v }),
        new(["max-clients"], false, "concurrent RESP connections accepted (default 10000)", (o, v) => o with { RespClientsMax = ParseInt(v) }),
        new(["resp-idle-timeout-s"], false, "close a RESP connection idle this many seconds (default 0: never, as Redis's timeout 0)", (o, v) => o with { RespIdleTimeout = TimeSpan.FromSeconds(ParseInt(v)) }),
        new(["resp-readonly"], true, "RESP connections start in READONLY mode: stale local reads until READWRITE (default false)", (o, v) => o with { RespReadOnly = ParseBool("resp-readonly", v) }),
        new(["io-threads"], false, "where socket work runs: inline (on the runtime's socket threads, no hand-off per request) or pool (handed to the thread pool) (default inline)", (o, v) => o with { InlineIo = !string.Equals(v.Trim(), "pool", StringComparison.OrdinalIgnoreCase) }),
        new(["http-scheduling"], false, "where HTTP requests run under --io-threads inline: inline (on the socket thread their receive completed on) or pool (handed to the thread pool: a shorter tail when every core is busy) (default inline)", (o, v) => o with { InlineHttp = string.Equals(v.Trim(), "inline", StringComparison.OrdinalIgnoreCase) }),
        new(["wal-pipeline"], false, "true: a leader's Raft loop hands log writes to a writer thread that syncs whatever is queued at once, and goes on; all: followers too; false: the loop waits in each fdatasync (the default)", (o, v) => string.Equals(v.Trim(), "all", StringComparison.OrdinalIgnoreCase)
            ? o with { WalPipeline = true, WalPipelineFollowers = true }
            : o with { WalPipeline = ParseBool("wal-pipeline", v), WalPipelineFollowers = false }),
        new(["wal-segment-size"], false, "write-ahead log segment size, in bytes or with Redis's units (16mb, 1gb; from 4kb to 2gb less a byte): each new segment is zero-filled up front and the next one prepared in the background, so a fresh node writes twice this (default 64mb)", (o, v) => o with { WalSegmentSizeBytes = ParseBytes("wal-segment-size", v) }),
        new(["idle-gc-compaction"], true, "once the node turns idle after a large growth, a compacting full GC gives free memory back (pauses the node for it; default false)", (o, v) => o with { IdleGcCompaction = ParseBool("idle-gc-compaction", v) }),
        new(["warmup"], false, "on or off: before serving, run the failover code paths once on a scratch in-process cluster, so the first failover does not compile them (default on; off starts sooner)", (o, v) => o with { Warmup = !string.Equals(v.Trim(), "off", StringComparison.OrdinalIgnoreCase) }),
        new(["log-level"], false, "Trace, Debug, Information, Warning, Error (default Information)", (o, v) => o with { LogLevel = v }),
        new(["help", "h"], true, "show this help", (o, v) => o with { Help = ParseBool("help", v) }),
    ];

    public static ServerOptions Parse(IReadOnlyList<string> args) => Parse(args, new Dictionary<string, string>());

    /// <summary>
    /// Parses, then validates: each value's range and form by <see cref="ServerSettings"/> (bound from configuration,
    /// checked by its compile-time validator), then the checks across flags. <paramref name="sources"/> names where a
    /// setting that did not come from the command line came from (by canonical flag), for the messages.
    /// </summary>
    public static ServerOptions Parse(IReadOnlyList<string> args, IReadOnlyDictionary<string, string> sources)
    {
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        var written = new Dictionary<string, string>(StringComparer.Ordinal);
        var options = ParseFlags(args, values, written);
        if (options.Help)
        {
            return options;
        }

        foreach (var (flag, where) in sources)
        {
            written[flag] = where + ": --" + flag;
        }

        ServerSettings.Validate(values, written);
        return Validate(options);
    }

    /// <summary>The flag's first name, or null when no flag has this name.</summary>
    internal static string? CanonicalName(string name) =>
        Array.Find(s_flags, f => f.Names.Contains(name, StringComparer.Ordinal))?.Names[0];

    internal static bool IsBoolFlag(string name) =>
        Array.Find(s_flags, f => f.Names.Contains(name, StringComparer.Ordinal))?.IsBool ?? false;

    /// <summary>Every flag's names, first name first (for the configuration file and environment).</summary>
    internal static IEnumerable<string[]> FlagNames => s_flags.Select(f => f.Names);

    /// <summary>Parses flags: their syntax only (<see cref="Parse"/> adds the checks of values and across flags).
    /// Records each flag's value and the name it was given as, by canonical name, when asked.</summary>
    internal static ServerOptions ParseFlags(IReadOnlyList<string> args, Dictionary<string, string>? values = null, Dictionary<string, string>? written = null)
    {
        var options = new ServerOptions();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        for (int i = 0; i < args.Count; i++)
        {
            string arg = args[i];
            if (arg.Length < 2 || arg[0] != '-' || arg == "--")
            {
                throw new UsageException($"unexpected argument '{arg}'");
            }

            string body = arg.StartsWith("--", StringComparison.Ordinal) ? arg[2..] : arg[1..];
            string? value = null;
            int equals = body.IndexOf('=', StringComparison.Ordinal);
            if (equals >= 0)
            {
                value = body[(equals + 1)..];
                body = body[..equals];
            }

            var flag = Array.Find(s_flags, f => f.Names.Contains(body, StringComparer.Ordinal))
                ?? throw new UsageException($"unknown flag '-{body}'");
            if (value is null)
            {
                if (flag.IsBool)
                {
                    value = "true";
                }
                else if (i + 1 < args.Count)
                {
                    value = args[++i];
                }
                else
                {
                    throw new UsageException($"flag '-{body}' needs a value");
                }
            }

            string canonical = flag.Names[0];
            if (!seen.Add(canonical))
            {
                throw new UsageException($"flag '-{body}' given twice");
            }

            options = flag.Set(options, value);
            options = options with { Dialect = DialectOf(body, options.Dialect) };
            if (values is not null)
            {
                values[canonical] = value;
            }

            if (written is not null)
            {
                written[canonical] = arg.StartsWith("--", StringComparison.Ordinal) ? "--" + body : "-" + body;
            }
        }

        return options;
    }

    public static string Usage()
    {
        var text = new StringBuilder();
        text.AppendLine("usage: stcached [flags]");
        text.AppendLine();
        text.AppendLine("Runs one node of an stcache cluster. Flags take Go syntax: -flag value, -flag=value, --flag=value.");
        text.AppendLine("Every flag can also come from --config FILE (JSON: {\"http\": \"127.0.0.1:6000\", \"tick-ms\": 50, ...})");
        text.AppendLine("or from STCACHE_<NAME> (STCACHE_HTTP, STCACHE_DATA_DIR, ...); flags win over the environment, which");
        text.AppendLine("wins over the file.");
        foreach (var group in s_flags.GroupBy(f => s_groups.GetValueOrDefault(f.Names[0], "Other")).OrderBy(g => Array.IndexOf(s_groupOrder, g.Key) is var i && i < 0 ? int.MaxValue : i))
        {
            text.AppendLine();
            text.Append(group.Key).AppendLine(":");
            if (group.Key == "Configuration")
            {
                text.AppendLine("  --config <value>");
                text.AppendLine("        JSON file of settings, named as the flags (flags and STCACHE_* variables override it)");
            }

            foreach (var flag in group)
            {
                string names = string.Join(", ", flag.Names.Select(n => "--" + n));
                text.Append("  ").AppendLine(flag.IsBool ? names : names + " <value>");
                text.Append("        ").AppendLine(flag.Help);
            }
        }

        text.AppendLine();
        text.AppendLine("examples:");
        text.AppendLine("  stcached --http=127.0.0.1:6000 --raft=127.0.0.1:7000 --node=./node0 --bootstrap=true");
        text.AppendLine("  stcached --http=127.0.0.1:6001 --raft=127.0.0.1:7001 --node=./node1 --join=127.0.0.1:6000");
        text.AppendLine("  stcached --http_addr=127.0.0.1:7001 --raft_addr=127.0.0.1:7000 --raft_id=1 --raft_cluster=1/127.0.0.1:7000,2/127.0.0.1:8000,3/127.0.0.1:9000");
        text.AppendLine("  stcached -state_dir /tmp/1 -raft :8080 -api :9090");
        text.AppendLine("  STCACHE_DATA_DIR=./node0 stcached --config node0.json");
        text.AppendLine("  stcached --http=127.0.0.1:6000 --raft=127.0.0.1:7000 --resp=127.0.0.1:6379 --node=./node0 --bootstrap=true");
        return text.ToString();
    }

    private static readonly string[] s_groupOrder = ["Cluster", "Storage and snapshots", "Raft timing", "Security", "Limits", "Configuration", "Other"];

    private static readonly Dictionary<string, string> s_groups = new(StringComparer.Ordinal)
    {
        ["http"] = "Cluster", ["raft"] = "Cluster", ["bootstrap"] = "Cluster", ["join"] = "Cluster", ["name"] = "Cluster",
        ["raft_id"] = "Cluster", ["raft_cluster"] = "Cluster", ["peer-dial"] = "Cluster", ["cluster-id"] = "Cluster",
        ["forward-writes"] = "Cluster", ["resp"] = "Cluster", ["resp-readonly"] = "Cluster",
        ["node"] = "Storage and snapshots", ["snapshot-interval-s"] = "Storage and snapshots",
        ["snapshot-threshold"] = "Storage and snapshots", ["snapshot-trailing"] = "Storage and snapshots",
        ["snapshot-log-bytes"] = "Storage and snapshots", ["wal-pipeline"] = "Storage and snapshots",
        ["wal-segment-size"] = "Storage and snapshots",
        ["tick-ms"] = "Raft timing", ["election-ticks"] = "Raft timing", ["heartbeat-ticks"] = "Raft timing", ["leader-lost-ticks"] = "Raft timing",
        ["request-timeout-ms"] = "Raft timing",
        ["cluster-secret"] = "Security", ["cluster-secret-file"] = "Security", ["peer-tls-cert"] = "Security",
        ["peer-tls-key"] = "Security", ["peer-tls-ca"] = "Security", ["tls-cert"] = "Security", ["tls-key"] = "Security",
        ["tls-ca"] = "Security", ["auth-token"] = "Security", ["auth-token-file"] = "Security",
        ["max-value-bytes"] = "Limits", ["max-connections"] = "Limits", ["max-clients"] = "Limits", ["resp-idle-timeout-s"] = "Limits",
        ["max-memory"] = "Limits", ["eviction-policy"] = "Limits", ["idle-gc-compaction"] = "Limits",
        ["log-level"] = "Configuration", ["io-threads"] = "Configuration", ["http-scheduling"] = "Configuration", ["help"] = "Configuration", ["warmup"] = "Configuration",
    };

    private static FlagDialect DialectOf(string name, FlagDialect current) => name switch
    {
        "raft_id" or "raft_cluster" or "http_addr" or "raft_addr" => FlagDialect.RaftDemo,
        "api" or "state_dir" => FlagDialect.Shaj13,
        _ => current,
    };

    private static ServerOptions Validate(ServerOptions options)
    {
        options = options with
        {
            ClusterSecret = SecretFrom("cluster-secret", options.ClusterSecret, options.ClusterSecretFile, "STCACHE_CLUSTER_SECRET"),
            AuthToken = SecretFrom("auth-token", options.AuthToken, options.AuthTokenFile, "STCACHE_AUTH_TOKEN"),
        };
        CheckTlsFlags("peer-tls", options.PeerTlsCert, options.PeerTlsKey, options.PeerTlsCa);
        CheckTlsFlags("tls", options.TlsCert, options.TlsKey, options.TlsCa);
        if (options.AuthToken is { Length: < 16 })
        {
            throw new UsageException("--auth-token must be at least 16 characters");
        }

        if (options.ClusterSecret is { } secret && Encoding.UTF8.GetByteCount(secret) < 16)
        {
            throw new UsageException("--cluster-secret must be at least 16 bytes");
        }

        if (options.ClusterId.Length is 0 or > 64)
        {
            throw new UsageException("--cluster-id must be 1..64 characters");
        }

        // Each address's form is checked by ServerSettings; here only how they relate.
        if (string.Equals(NormalizeAddress(options.HttpAddress), NormalizeAddress(options.RaftAddress), StringComparison.Ordinal))
        {
            throw new UsageException("HTTP and raft addresses must differ");
        }

        if (options.RespAddress is { } resp)
        {
            string normalized = NormalizeAddress(resp);
            if (normalized == NormalizeAddress(options.HttpAddress) || normalized == NormalizeAddress(options.RaftAddress))
            {
                throw new UsageException("the RESP address must differ from the HTTP and raft addresses");
            }
        }

        if (options.Bootstrap && options.Join is not null)
        {
            throw new UsageException("--bootstrap and --join contradict each other");
        }

        if (options.StaticCluster.Count > 0)
        {
            if (options.Bootstrap || options.Join is not null)
            {
                throw new UsageException("--raft_cluster cannot be combined with --bootstrap or --join");
            }

            if (options.RaftId is not { } id)
            {
                throw new UsageException("--raft_cluster needs --raft_id");
            }

            var self = options.StaticCluster.Where(m => m.Id == id).ToList();
            if (self.Count != 1)
            {
                throw new UsageException($"--raft_id {id} is not in --raft_cluster");
            }

            if (!string.Equals(NormalizeAddress(self[0].RaftAddress), NormalizeAddress(options.RaftAddress), StringComparison.Ordinal))
            {
                throw new UsageException($"--raft_addr {options.RaftAddress} differs from the address of {id} in --raft_cluster ({self[0].RaftAddress})");
            }
        }
        else if (options.RaftId is not null)
        {
            throw new UsageException("--raft_id needs --raft_cluster");
        }

        if (options.ElectionTicks <= options.HeartbeatTicks)
        {
            throw new UsageException("--election-ticks must exceed --heartbeat-ticks");
        }

        if (options.LeaderLostTicks >= options.ElectionTicks)
        {
            throw new UsageException("--leader-lost-ticks must be below --election-ticks");
        }

        return options;
    }

    /// <summary>":8080" and "0.0.0.0:8080" mean all interfaces; for comparison and advertising use loopback.</summary>
    public static string NormalizeAddress(string address)
    {
        int colon = address.LastIndexOf(':');
        string host = colon > 0 ? address[..colon] : string.Empty;
        string port = address[(colon + 1)..];
        if (host.Length == 0 || host is "0.0.0.0" or "*" or "[::]" or "+")
        {
            host = "127.0.0.1";
        }
        else if (host == "localhost")
        {
            host = "127.0.0.1";
        }

        return host + ":" + port;
    }

    /// <summary>Whether the address asks to listen on every interface.</summary>
    public static bool IsAnyHost(string address)
    {
        int colon = address.LastIndexOf(':');
        string host = colon > 0 ? address[..colon] : string.Empty;
        return host.Length == 0 || host is "0.0.0.0" or "*" or "[::]" or "+";
    }

    public static int PortOf(string address) => int.Parse(address[(address.LastIndexOf(':') + 1)..], CultureInfo.InvariantCulture);

    private static void CheckAddress(string flag, string address)
    {
        int colon = address.LastIndexOf(':');
        if (colon < 0 || !int.TryParse(address.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out int port) || port < 0 || port > 65535)
        {
            throw new UsageException($"--{flag}: '{address}' is not host:port");
        }

        string host = address[..colon];
        if (host.Contains('/', StringComparison.Ordinal) || host.Contains(' ', StringComparison.Ordinal))
        {
            throw new UsageException($"--{flag}: '{address}' is not host:port");
        }
    }

    private static bool ParseBool(string flag, string value) => value.ToLowerInvariant() switch
    {
        "true" or "1" or "t" or "yes" => true,
        "false" or "0" or "f" or "no" => false,
        _ => throw new UsageException($"--{flag}: '{value}' is not a boolean"),
    };

    /// <summary>The number, or 0 for text that is none: <see cref="ServerSettings"/>'s range then reports it (with
    /// where it came from) before the options are used.</summary>
    private static int ParseInt(string value) =>
        int.TryParse(value, NumberStyles.Integer, CultureInfo.InvariantCulture, out int result) ? result : 0;

    /// <summary>A byte count as Redis's config takes it: digits with an optional unit, k/m/g (powers of 1000) or
    /// kb/mb/gb (powers of 1024), any case. <paramref name="zero"/> says what 0 means, for the message (empty:
    /// nothing special).</summary>
    internal static long ParseBytes(string flag, string value, string zero = "") =>
        TryParseBytes(value, out long bytes)
            ? bytes
            : throw new UsageException($"--{flag}: '{value}' is not a size (bytes, or with a unit as in Redis: 100mb, 2gb{(zero.Length > 0 ? "; 0 = " + zero : string.Empty)})");

    /// <summary>A <c>--wal-segment-size</c> value as stcached parses and checks it (bytes or Redis's units, within the
    /// write-ahead log's limits), for a tool that writes a data directory for such a node. A bad value throws the
    /// <see cref="UsageException"/> stcached reports for it, in the same words.</summary>
    public static long ParseWalSegmentSize(string value)
    {
        long bytes = ParseBytes("wal-segment-size", value);
        ServerSettings.Validate(new Dictionary<string, string>(StringComparer.Ordinal) { ["wal-segment-size"] = value }, new Dictionary<string, string>());
        return bytes;
    }

    /// <summary><see cref="ParseBytes"/> without the exception: false for text that is no size.</summary>
    internal static bool TryParseBytes(string value, out long bytes)
    {
        string text = value.Trim().ToLowerInvariant();
        (string Suffix, long Factor)[] units = [("kb", 1L << 10), ("mb", 1L << 20), ("gb", 1L << 30), ("k", 1000), ("m", 1000_000), ("g", 1000_000_000), ("b", 1)];
        long factor = 1;
        foreach (var (suffix, unit) in units)
        {
            if (text.EndsWith(suffix, StringComparison.Ordinal))
            {
                text = text[..^suffix.Length];
                factor = unit;
                break;
            }
        }

        if (!long.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out long number) || number > long.MaxValue / factor)
        {
            bytes = 0;
            return false;
        }

        bytes = number * factor;
        return true;
    }

    internal static Stcache.Cache.EvictionPolicy ParsePolicy(string flag, string value) =>
        Stcache.Cache.EvictionPolicies.TryParse(value.Trim(), out var policy)
            ? policy
            : throw new UsageException($"--{flag}: '{value}' is not a policy (noeviction, allkeys-lru, allkeys-lfu, allkeys-random, volatile-lru, volatile-lfu, volatile-random, volatile-ttl)");

    private static ulong ParseId(string value)
    {
        if (!ulong.TryParse(value, NumberStyles.None, CultureInfo.InvariantCulture, out ulong id) || id == 0)
        {
            throw new UsageException($"--raft_id: '{value}' must be a positive integer");
        }

        return id;
    }

    private static List<(ulong Id, string RaftAddress)> ParseCluster(string value)
    {
        var members = new List<(ulong, string)>();
        foreach (string part in value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            int slash = part.IndexOf('/', StringComparison.Ordinal);
            if (slash <= 0)
            {
                throw new UsageException($"--raft_cluster: '{part}' is not id/host:port");
            }

            ulong id = ParseId(part[..slash]);
            string address = part[(slash + 1)..];
            CheckAddress("raft_cluster", address);
            if (members.Any(m => m.Item1 == id))
            {
                throw new UsageException($"--raft_cluster: id {id} appears twice");
            }

            members.Add((id, address));
        }

        if (members.Count == 0)
        {
            throw new UsageException("--raft_cluster is empty");
        }

        return members;
    }

    /// <summary>A secret from its flag, its file flag or the environment, in that order; both flags is an error.</summary>
    private static string? SecretFrom(string flag, string? value, string? file, string environmentVariable)
    {
        if (value is not null && file is not null)
        {
            throw new UsageException($"--{flag} and --{flag}-file contradict each other");
        }

        if (file is not null)
        {
            try
            {
                return File.ReadAllText(file).TrimEnd('\r', '\n');
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw new UsageException($"--{flag}-file: cannot read '{file}': {e.Message}");
            }
        }

        return value ?? (Environment.GetEnvironmentVariable(environmentVariable) is { Length: > 0 } fromEnvironment ? fromEnvironment : null);
    }

    private static void CheckTlsFlags(string prefix, string? cert, string? key, string? ca)
    {
        bool pfx = cert is not null && (cert.EndsWith(".pfx", StringComparison.OrdinalIgnoreCase) || cert.EndsWith(".p12", StringComparison.OrdinalIgnoreCase));
        if (cert is not null && key is null && !pfx)
        {
            throw new UsageException($"--{prefix}-cert needs --{prefix}-key (or a .pfx certificate)");
        }

        if (cert is null && key is not null)
        {
            throw new UsageException($"--{prefix}-key needs --{prefix}-cert");
        }

        if (prefix == "peer-tls" && cert is null && ca is not null)
        {
            throw new UsageException($"--{prefix}-ca needs --{prefix}-cert");
        }
    }
}
