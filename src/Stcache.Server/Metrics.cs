using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using OpenTelemetry.Metrics;
using OpenTelemetry.Resources;
using Stcache.Raft;

namespace Stcache.Server;

/// <summary>
/// The server's instruments (meter <c>Stcache.Server</c>), exported by OpenTelemetry at <c>GET /metrics</c> in
/// Prometheus format and readable by <c>dotnet-counters</c>. The histograms split a request's time into the stages
/// of the write path, so a slow write can be traced to the disk, the loop or the network. With no listener
/// attached, recording costs one branch. docs/OPERATIONS.md lists every series and the alerts built on them.
/// </summary>
internal static class ServerMetrics
{
    public const string MeterName = "Stcache.Server";

    /// <summary>Histogram buckets in seconds, 50 µs to 10 s: one write to a local disk up to a stalled election.</summary>
    public static readonly double[] SecondsBuckets =
    [
        0.00005, 0.0001, 0.00015, 0.0002, 0.0003, 0.0004, 0.0005, 0.0007, 0.001, 0.0015, 0.002, 0.003, 0.005,
        0.007, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
    ];

    private static readonly Meter s_meter = new(MeterName);

    /// <summary>How long an input waited in the host's queue before the loop took it (tag kind).</summary>
    public static readonly Histogram<double> InputWait = s_meter.CreateHistogram<double>(
        "stcache.host.input_wait", "s", "time an input waited in the Raft loop's queue");

    /// <summary>One write-ahead log save: write plus fdatasync (the fsync latency operators alert on).</summary>
    public static readonly Histogram<double> WalSave = s_meter.CreateHistogram<double>(
        "stcache.wal.save", "s", "write-ahead log save (write and fdatasync) of one batch");

    /// <summary>On the leader: from the loop taking a proposal to its result being applied.</summary>
    public static readonly Histogram<double> Commit = s_meter.CreateHistogram<double>(
        "stcache.proposal.commit", "s", "leader: proposal taken by the loop until applied");

    /// <summary>From the loop taking a linearizable read to its read index being applied here.</summary>
    public static readonly Histogram<double> ReadBarrier = s_meter.CreateHistogram<double>(
        "stcache.read.barrier", "s", "read taken by the loop until its read index is confirmed and applied");

    /// <summary>One pass of the loop over a Ready: send, persist, apply.</summary>
    public static readonly Histogram<double> Ready = s_meter.CreateHistogram<double>(
        "stcache.host.ready", "s", "handling of one Ready (send, persist, apply)");

    /// <summary>An HTTP request to the key-value API, from its handler's start to its answer written (tag method);
    /// recorded by the <c>/v1/kv</c> handlers themselves (HttpApi.Kv.cs).</summary>
    public static readonly Histogram<double> Request = s_meter.CreateHistogram<double>(
        "stcache.http.request", "s", "key-value API request handled by this node");

    /// <summary>Saving one snapshot file (taken locally or received from the leader), data and sync.</summary>
    public static readonly Histogram<double> SnapshotDuration = s_meter.CreateHistogram<double>(
        "stcache.snapshot.duration", "s", "time to write and sync one snapshot file");

    /// <summary>Leader round trip to each peer: a heartbeat until its answer (tag peer).</summary>
    public static readonly Histogram<double> PeerRoundTrip = s_meter.CreateHistogram<double>(
        "stcache.peer.round_trip", "s", "leader: heartbeat to a peer until its response");

    /// <summary>Times this node saw the leader change (a new leader, or none), counted from its start.</summary>
    public static readonly Counter<long> LeaderChanges = s_meter.CreateCounter<long>(
        "stcache.leader.changes", null, "leader changes seen by this node");

    /// <summary>Writes answered with a failure after reaching the Raft layer (tag outcome: not-applied, unknown).</summary>
    public static readonly Counter<long> ProposalsFailed = s_meter.CreateCounter<long>(
        "stcache.proposals.failed", null, "writes that failed with a server-side error (503, 504, 500)");

    public static double Seconds(long startTimestamp) => Stopwatch.GetElapsedTime(startTimestamp).TotalSeconds;

    /// <summary>OpenTelemetry: this meter (with second buckets for its histograms), .NET's runtime meter (GC and
    /// process memory), and the Prometheus exporter behind <c>GET /metrics</c>.</summary>
    public static void Configure(MeterProviderBuilder metrics)
    {
        metrics
            .ConfigureResource(resource => resource.AddService("stcached"))
            .AddMeter(MeterName, "System.Runtime")
            .AddView(instrument => instrument.Meter.Name == MeterName && instrument.Unit == "s"
                ? new ExplicitBucketHistogramConfiguration { Boundaries = SecondsBuckets }
                : null)
            .AddPrometheusExporter(o => o.ScrapeResponseCacheDurationMilliseconds = 0);
    }
}

/// <summary>
/// Gauges read from one node when scraped: Raft position, lag, keys, memory and storage health. Names keep those
/// of the hand-written exposition they replace (stcache_term, stcache_commit_index, ...).
/// </summary>
internal sealed class NodeMetrics : IDisposable
{
    private readonly Meter _meter = new(ServerMetrics.MeterName);
    private readonly RaftHost _host;
    private NodeId _lastLeader = NodeId.None;

    public NodeMetrics(RaftHost host, Func<string?> snapshotDirectory, Func<long?> memoryLimitBytes)
    {
        _host = host;
        _meter.CreateObservableGauge("stcache.term", () => (long)_host.Status.Term.Value, null, "current Raft term");
        _meter.CreateObservableGauge("stcache.is_leader", () => _host.Status.IsLeader ? 1 : 0, null, "1 on the leader, else 0");
        _meter.CreateObservableGauge("stcache.has_leader", () => _host.Status.Leader.IsNone ? 0 : 1, null, "1 while this node knows a leader");
        _meter.CreateObservableGauge("stcache.commit_index", () => (long)_host.Status.Commit.Value, null, "highest log index known committed");
        _meter.CreateObservableGauge("stcache.applied_index", () => (long)_host.Status.Applied.Value, null, "highest log index applied to the cache");
        _meter.CreateObservableGauge("stcache.last_index", () => (long)_host.Status.LastIndex.Value, null, "last index in this node's log");
        _meter.CreateObservableGauge("stcache.snapshot_index", () => (long)_host.Status.SnapshotIndex.Value, null, "index of the newest snapshot");
        _meter.CreateObservableGauge("stcache.apply_lag", () => (long)LogIndex.Distance(_host.Status.Applied, LogIndex.Max(_host.Status.Applied, _host.Status.Commit)),
            null, "entries committed but not yet applied here");
        _meter.CreateObservableGauge("stcache.replication_lag", ReplicationLag, null, "leader: entries in its log a follower has not matched (tag peer)");
        _meter.CreateObservableGauge("stcache.keys", () => (long)_host.Cache.Count, null, "keys in the cache");
        _meter.CreateObservableGauge("stcache.storage_failing", () => _host.StorageFailing ? 1 : 0, null, "1 while the write-ahead log refuses writes");
        _meter.CreateObservableGauge("stcache.members", () => (long)_host.Status.ConfState.Voters.Count, null, "voters in the configuration");
        _meter.CreateObservableCounter("stcache.raft.ticks", () => _host.Status.Ticks, null, "Raft ticks delivered since start");
        _meter.CreateObservableCounter("stcache.raft.clock_jumps", () => _host.Status.ClockJumps, null,
            "stalls after which the due Raft ticks were collapsed to one");
        _meter.CreateObservableCounter("stcache.raft.inputs_dropped", () => _host.PeerInputsDropped, null,
            "peer messages and transport reports the Raft loop's queue could not take (each also logged, at most once a second)");
        _meter.CreateObservableGauge("stcache.memory.used", () => Environment.WorkingSet, "By", "process working set");
        _meter.CreateObservableGauge("stcache.memory.limit", () => (memoryLimitBytes() ?? _host.Cache.MaxMemoryBytes) is > 0 and var limit ? [new Measurement<long>(limit)] : Array.Empty<Measurement<long>>(),
            "By", "the memory limit (--max-memory or CONFIG SET maxmemory, as replicated), when set");
        _meter.CreateObservableGauge("stcache.cache.memory.used", () => _host.Cache.UsedMemoryBytes, "By",
            "accounted memory of the cache's state (what the limit applies to; the same on every replica at the same index)");

        // Counted where entries are applied (evictions and expiries come from the log), so every replica counts the same.
        _meter.CreateObservableCounter("stcache.cache.evictions", () => _host.Cache.EvictedKeys, null, "keys evicted under the memory limit");
        _meter.CreateObservableCounter("stcache.cache.expirations", () => _host.Cache.ExpiredKeys, null, "keys removed because their TTL passed");
        _meter.CreateObservableGauge("stcache.snapshot.size", () => NewestSnapshotBytes(snapshotDirectory()), "By", "size of the newest snapshot file");
        host.LeadershipChanged += OnLeadershipChanged;
    }

    public void Dispose()
    {
        _host.LeadershipChanged -= OnLeadershipChanged;
        _meter.Dispose();
    }

    internal static IEnumerable<Measurement<long>> NewestSnapshotBytes(string? directory)
    {
        if (directory is null || !Directory.Exists(directory))
        {
            return [];
        }

        var newest = new DirectoryInfo(directory).GetFiles("*.snap").OrderByDescending(f => f.Name, StringComparer.Ordinal).FirstOrDefault();
        return newest is null ? [] : [new Measurement<long>(newest.Length)];
    }

    private IEnumerable<Measurement<long>> ReplicationLag()
    {
        var status = _host.Status;
        if (!status.IsLeader)
        {
            return [];
        }

        return status.Progress.Where(p => p.Id != status.Id)
            .Select(p => new Measurement<long>((long)LogIndex.Distance(p.Match, LogIndex.Max(p.Match, status.LastIndex)),
                new KeyValuePair<string, object?>("peer", p.Id.ToString())))
            .ToList();
    }

    private void OnLeadershipChanged(LeadershipChange change)
    {
        if (change.Leader != _lastLeader)
        {
            _lastLeader = change.Leader;
            ServerMetrics.LeaderChanges.Add(1);
        }
    }
}

/// <summary>
/// Leader-to-peer round trips and each peer's last contact, read off the messages the node sends and receives: a
/// heartbeat's send time is kept until that peer's heartbeat response arrives.
/// </summary>
public sealed class PeerRoundTrips
{
    private readonly ConcurrentDictionary<ulong, long> _pendingHeartbeat = new();
    private readonly ConcurrentDictionary<ulong, long> _lastHeard = new();
    private readonly ConcurrentDictionary<ulong, double> _lastRoundTrip = new();
    private readonly ConcurrentDictionary<ulong, KeyValuePair<string, object?>> _tags = new();

    public void OnSend(Message message)
    {
        if (message.Type == MessageType.Heartbeat)
        {
            // One heartbeat in flight per peer; one unanswered for a second (the peer was down) is forgotten, so
            // the first answer after an outage does not count the outage as a round trip.
            long now = Stopwatch.GetTimestamp();
            _pendingHeartbeat.AddOrUpdate(message.To.Value, now, (_, sent) => Stopwatch.GetElapsedTime(sent, now) > TimeSpan.FromSeconds(1) ? now : sent);
        }
    }

    public void OnReceive(Message message)
    {
        ulong peer = message.From.Value;
        _lastHeard[peer] = Stopwatch.GetTimestamp();
        if (message.Type == MessageType.HeartbeatResponse && _pendingHeartbeat.TryRemove(peer, out long sent))
        {
            double seconds = ServerMetrics.Seconds(sent);
            _lastRoundTrip[peer] = seconds;
            var tag = _tags.GetOrAdd(peer, id => new KeyValuePair<string, object?>("peer", message.From.ToString()));
            ServerMetrics.PeerRoundTrip.Record(seconds, tag);
        }
    }

    /// <summary>Time since anything arrived from the peer, or null if nothing has.</summary>
    public TimeSpan? SinceLastContact(NodeId peer) =>
        _lastHeard.TryGetValue(peer.Value, out long at) ? Stopwatch.GetElapsedTime(at) : null;

    /// <summary>The latest measured round trip to the peer (leader only), or null.</summary>
    public TimeSpan? LastRoundTrip(NodeId peer) =>
        _lastRoundTrip.TryGetValue(peer.Value, out double seconds) ? TimeSpan.FromSeconds(seconds) : null;
}

/// <summary>Times each snapshot file write for <see cref="ServerMetrics.SnapshotDuration"/>.</summary>
internal sealed class MeasuredSnapshotStore(ISnapshotStore inner) : ISnapshotStore
{
    public void Save(SnapshotMetadata metadata, Action<Stream> writeData)
    {
        long started = Stopwatch.GetTimestamp();
        inner.Save(metadata, writeData);
        ServerMetrics.SnapshotDuration.Record(ServerMetrics.Seconds(started));
    }

    public Snapshot? LoadNewest() => inner.LoadNewest();

    // Every member is forwarded: the interface's defaults are for stores without files, and taking one here would
    // silently turn off streaming snapshots to and from peers.
    public SnapshotReader? OpenNewest() => inner.OpenNewest();

    public Stream? OpenStored(SnapshotMetadata metadata) => inner.OpenStored(metadata);

    public ISnapshotReceiver BeginReceive(SnapshotMetadata announced, long storedBytes) => inner.BeginReceive(announced, storedBytes);

    public SnapshotReader InstallReceived(SnapshotMetadata metadata) => inner.InstallReceived(metadata);
}

/// <summary>
/// In-process totals of the <see cref="ServerMetrics"/> histograms and counters, for the dashboard: cumulative
/// bucket counts per series (the page turns two polls into a rate and a quantile of the interval between them).
/// Buckets are fixed, so memory stays constant however long the node runs.
/// </summary>
internal sealed class LocalAggregates : IDisposable
{
    private readonly MeterListener _listener = new();
    private readonly ConcurrentDictionary<(string Name, string Tag), Series> _series = new();
    private readonly ConcurrentDictionary<(Instrument Instrument, object? Value), Series> _byTag = new();
    private readonly ConcurrentDictionary<string, long> _counters = new();

    public LocalAggregates()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == ServerMetrics.MeterName && !instrument.IsObservable)
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<double>(OnMeasurement);
        _listener.SetMeasurementEventCallback<long>((instrument, value, _, _) => _counters.AddOrUpdate(instrument.Name, value, (_, total) => total + value));
        _listener.Start();
    }

    public static IReadOnlyList<double> Bounds => ServerMetrics.SecondsBuckets;

    public void Dispose() => _listener.Dispose();

    /// <summary>Cumulative per-bucket counts (the last is above the highest bound) and the total of one series;
    /// tag "" sums every tag value.</summary>
    public (long[] Buckets, long Count) Histogram(string name, string tag = "")
    {
        var buckets = new long[ServerMetrics.SecondsBuckets.Length + 1];
        long count = 0;
        foreach (var (key, series) in _series)
        {
            if (key.Name == name && (tag.Length == 0 || key.Tag == tag))
            {
                count += series.AddTo(buckets);
            }
        }

        return (buckets, count);
    }

    public long Counter(string name) => _counters.TryGetValue(name, out long total) ? total : 0;

    private void OnMeasurement(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags, object? state)
    {
        // Recorded on the Raft loop for every input: a series is found without building its key again. Our
        // instruments carry at most one tag.
        object? tagValue = tags.Length > 0 ? tags[0].Value : null;
        if (!_byTag.TryGetValue((instrument, tagValue), out var series))
        {
            series = _series.GetOrAdd((instrument.Name, tagValue?.ToString() ?? string.Empty), _ => new Series());
            _byTag[(instrument, tagValue)] = series;
        }

        series.Record(value);
    }

    private sealed class Series
    {
        private readonly long[] _buckets = new long[ServerMetrics.SecondsBuckets.Length + 1];
        private long _count;

        public void Record(double seconds)
        {
            int i = Array.BinarySearch(ServerMetrics.SecondsBuckets, seconds);
            Interlocked.Increment(ref _buckets[i >= 0 ? i : ~i]);
            Interlocked.Increment(ref _count);
        }

        public long AddTo(long[] buckets)
        {
            for (int i = 0; i < buckets.Length; i++)
            {
                buckets[i] += Interlocked.Read(ref _buckets[i]);
            }

            return Interlocked.Read(ref _count);
        }
    }
}
