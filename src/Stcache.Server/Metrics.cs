using System.Collections.Concurrent;
using System.Diagnostics;
using System.Diagnostics.Metrics;
using System.Globalization;
using System.Text;

namespace Stcache.Server;

/// <summary>
/// The server's instruments (meter <c>Stcache.Server</c>). They split a request's time into the stages of the write
/// path, so a slow write can be traced to the disk, the loop or the network: <c>dotnet-counters</c> and any
/// OpenTelemetry listener can read them, and <c>GET /metrics</c> renders them in Prometheus text format. With
/// no listener attached, recording costs one branch.
/// </summary>
internal static class ServerMetrics
{
    public const string MeterName = "Stcache.Server";

    private static readonly Meter s_meter = new(MeterName);

    /// <summary>How long an input waited in the host's queue before the loop took it (tag kind).</summary>
    public static readonly Histogram<double> InputWait = s_meter.CreateHistogram<double>(
        "stcache.host.input_wait", "s", "time an input waited in the Raft loop's queue");

    /// <summary>One write-ahead log save: write plus fdatasync.</summary>
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

    /// <summary>An HTTP request to the key-value API, from routing to the result being written (tag op).</summary>
    public static readonly Histogram<double> Request = s_meter.CreateHistogram<double>(
        "stcache.http.request", "s", "key-value API request handled by this node");

    public static double Seconds(long startTimestamp) => Stopwatch.GetElapsedTime(startTimestamp).TotalSeconds;
}

/// <summary>
/// Aggregates the <see cref="ServerMetrics"/> histograms in-process and renders them in Prometheus text format.
/// Buckets are fixed (50 µs to 10 s), so memory stays constant however long the node runs.
/// </summary>
internal sealed class PrometheusExporter : IDisposable
{
    private static readonly double[] s_bounds =
    [
        0.00005, 0.0001, 0.00015, 0.0002, 0.0003, 0.0004, 0.0005, 0.0007, 0.001, 0.0015, 0.002, 0.003, 0.005,
        0.007, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
    ];

    private readonly MeterListener _listener = new();
    private readonly ConcurrentDictionary<(string Name, string Labels), Series> _series = new();
    private readonly ConcurrentDictionary<(Instrument Instrument, string? Key, object? Value), Series> _byTag = new();

    public PrometheusExporter()
    {
        _listener.InstrumentPublished = (instrument, listener) =>
        {
            if (instrument.Meter.Name == ServerMetrics.MeterName)
            {
                listener.EnableMeasurementEvents(instrument);
            }
        };
        _listener.SetMeasurementEventCallback<double>(OnMeasurement);
        _listener.Start();
    }

    public void Dispose() => _listener.Dispose();

    /// <summary>Appends every series in Prometheus text exposition format (names use _ and end in _seconds).</summary>
    public void WriteTo(StringBuilder text)
    {
        foreach (var group in _series.OrderBy(s => s.Key.Name, StringComparer.Ordinal).ThenBy(s => s.Key.Labels, StringComparer.Ordinal)
            .GroupBy(s => s.Key.Name))
        {
            string name = PrometheusName(group.Key);
            text.Append("# TYPE ").Append(name).AppendLine(" histogram");
            foreach (var (key, series) in group)
            {
                series.WriteTo(text, name, key.Labels);
            }
        }
    }

    private void OnMeasurement(Instrument instrument, double value, ReadOnlySpan<KeyValuePair<string, object?>> tags, object? state)
    {
        // Recorded on the Raft loop for every input: the series of a (name, tag) pair is found without building
        // its label text again. Our instruments carry at most one tag.
        var tag = tags.Length > 0 ? tags[0] : default;
        if (!_byTag.TryGetValue((instrument, tag.Key, tag.Value), out var series))
        {
            string labels = tag.Key is null ? string.Empty : $"{tag.Key}=\"{tag.Value}\"";
            series = _series.GetOrAdd((instrument.Name, labels), _ => new Series());
            _byTag[(instrument, tag.Key, tag.Value)] = series;
        }

        series.Record(value);
    }

    private static string PrometheusName(string name) => name.Replace('.', '_') + "_seconds";

    private sealed class Series
    {
        private readonly long[] _buckets = new long[s_bounds.Length + 1];
        private long _count;
        private long _sumMicroseconds;

        public void Record(double seconds)
        {
            int i = Array.BinarySearch(s_bounds, seconds);
            Interlocked.Increment(ref _buckets[i >= 0 ? i : ~i]);
            Interlocked.Increment(ref _count);
            Interlocked.Add(ref _sumMicroseconds, (long)(seconds * 1e6));
        }

        public void WriteTo(StringBuilder text, string name, string labels)
        {
            string prefix = labels.Length == 0 ? string.Empty : labels + ",";
            long cumulative = 0;
            for (int i = 0; i < s_bounds.Length; i++)
            {
                cumulative += Interlocked.Read(ref _buckets[i]);
                text.Append(CultureInfo.InvariantCulture, $"{name}_bucket{{{prefix}le=\"{s_bounds[i].ToString("R", CultureInfo.InvariantCulture)}\"}} {cumulative}\n");
            }

            cumulative += Interlocked.Read(ref _buckets[^1]);
            text.Append(CultureInfo.InvariantCulture, $"{name}_bucket{{{prefix}le=\"+Inf\"}} {cumulative}\n");
            string braces = labels.Length == 0 ? string.Empty : "{" + labels + "}";
            text.Append(CultureInfo.InvariantCulture, $"{name}_sum{braces} {(Interlocked.Read(ref _sumMicroseconds) / 1e6).ToString("R", CultureInfo.InvariantCulture)}\n");
            text.Append(CultureInfo.InvariantCulture, $"{name}_count{braces} {Interlocked.Read(ref _count)}\n");
        }
    }
}
