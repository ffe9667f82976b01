using System.Globalization;
using System.Text;
using System.Text.Json;

namespace Stcache.LoadGen;

/// <summary>Why an operation did not succeed.</summary>
public enum ErrorKind
{
    /// <summary>HTTP 4xx other than a compare-and-set conflict.</summary>
    Status4xx = 0,
    Status5xx = 1,
    /// <summary>Any other unexpected status (1xx, 3xx).</summary>
    StatusOther = 2,
    /// <summary>The per-operation timeout expired.</summary>
    Timeout = 3,
    /// <summary>Refused, reset or otherwise failed at the socket level.</summary>
    Connection = 4,
    /// <summary>A compare-and-set lost the race (409/412); counted apart from errors.</summary>
    CasConflict = 5,
}

/// <summary>Latency figures of one operation class, in milliseconds.</summary>
public sealed record LatencySummary(long Count, double MeanMs, double P50Ms, double P90Ms, double P99Ms, double P999Ms, double MaxMs)
{
    public static LatencySummary From(LatencyHistogram histogram)
    {
        ArgumentNullException.ThrowIfNull(histogram);
        static double Ms(long ns) => ns / 1_000_000.0;
        return new LatencySummary(
            histogram.TotalCount,
            histogram.Mean / 1_000_000.0,
            Ms(histogram.ValueAtPercentile(50)),
            Ms(histogram.ValueAtPercentile(90)),
            Ms(histogram.ValueAtPercentile(99)),
            Ms(histogram.ValueAtPercentile(99.9)),
            Ms(histogram.Max));
    }
}

/// <summary>The outcome of a run: throughput of successful operations, latency of every completed
/// operation, and the failures by kind.</summary>
public sealed record LoadReport(
    LoadOptions Options,
    TimeSpan Measured,
    long Succeeded,
    LatencySummary All,
    LatencySummary Reads,
    LatencySummary Writes,
    LatencySummary Cas,
    IReadOnlyDictionary<ErrorKind, long> Errors)
{
    private static readonly JsonSerializerOptions s_json = new() { WriteIndented = true };

    public double OpsPerSecond => Measured.TotalSeconds > 0 ? Succeeded / Measured.TotalSeconds : 0;

    public long ErrorCount => Errors.Where(e => e.Key != ErrorKind.CasConflict).Sum(e => e.Value);

    public string ToTable()
    {
        var text = new StringBuilder();
        var c = CultureInfo.InvariantCulture;
        text.AppendLine(c, $"targets      {string.Join(",", Options.Targets)}");
        text.AppendLine(c, $"load         {Options.Connections} connections, {Options.Measured()} s measured after {Options.Warmup.TotalSeconds:0.#} s warm-up, {Options.KeyCount} keys, {Options.ValueSizeBytes} B values, reads {Options.ReadRatio:P0} ({(Options.Consistency.Length == 0 ? "default" : Options.Consistency)}), CAS {Options.CasRatio:P0} of writes");
        text.AppendLine(c, $"throughput   {OpsPerSecond:0} ops/s ({Succeeded} ok, {ErrorCount} errors)");
        text.AppendLine("op       count      mean      p50      p90      p99    p99.9      max   (ms)");
        Row(text, "all", All);
        Row(text, "read", Reads);
        Row(text, "write", Writes);
        Row(text, "cas", Cas);
        foreach (var (kind, count) in Errors.Where(e => e.Value > 0).OrderBy(e => e.Key))
        {
            text.AppendLine(c, $"error {kind,-12} {count}");
        }

        return text.ToString();
    }

    public string ToJson()
    {
        var document = new
        {
            targets = Options.Targets.Select(t => t.ToString()).ToArray(),
            connections = Options.Connections,
            durationSeconds = Measured.TotalSeconds,
            warmupSeconds = Options.Warmup.TotalSeconds,
            keys = Options.KeyCount,
            valueBytes = Options.ValueSizeBytes,
            readRatio = Options.ReadRatio,
            casRatio = Options.CasRatio,
            consistency = Options.Consistency,
            opsPerSecond = Math.Round(OpsPerSecond, 1),
            succeeded = Succeeded,
            latencyMs = new { all = All, read = Reads, write = Writes, cas = Cas },
            errors = Errors.ToDictionary(e => e.Key.ToString(), e => e.Value),
        };
        return JsonSerializer.Serialize(document, s_json);
    }

    private static void Row(StringBuilder text, string name, LatencySummary s)
    {
        if (s.Count == 0)
        {
            return;
        }

        text.AppendLine(CultureInfo.InvariantCulture, $"{name,-5} {s.Count,9} {s.MeanMs,9:0.000} {s.P50Ms,8:0.000} {s.P90Ms,8:0.000} {s.P99Ms,8:0.000} {s.P999Ms,8:0.000} {s.MaxMs,8:0.000}");
    }
}

internal static class LoadOptionsExtensions
{
    public static string Measured(this LoadOptions options) => options.Duration.TotalSeconds.ToString("0.#", CultureInfo.InvariantCulture);
}
