using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text;
using Stcache.Faults.Tests.Harness;
using Stcache.Testing;

namespace Stcache.Faults.Tests.Workload;

/// <summary>How a recorded operation ended.</summary>
public enum OpOutcome
{
    /// <summary>Acknowledged: the answer says what happened.</summary>
    Ok,

    /// <summary>Certainly not applied (4xx, refused connection, or an error that says "not-applied").</summary>
    Fail,

    /// <summary>Maybe applied (timeout, broken connection, 5xx without a not-applied outcome).</summary>
    Unknown,
}

/// <summary>One client operation as sent and answered. Times are <see cref="Stopwatch"/> timestamps.</summary>
public sealed record RecordedOp(
    int Client,
    KvOperationKind Kind,
    string Key,
    string? Value,
    string? Expected,
    string Node,
    long InvokeTime,
    long CompleteTime,
    OpOutcome Outcome,
    string? Result,
    bool Succeeded,
    string Detail);

public sealed record WorkloadOptions
{
    public int Clients { get; init; } = 10;

    public int Keys { get; init; } = 5;

    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>Pause between a client's operations, so histories stay small enough to check.</summary>
    public TimeSpan ThinkTime { get; init; } = TimeSpan.FromMilliseconds(20);

    public int Seed { get; init; } = Environment.TickCount;
}

/// <summary>
/// Concurrent HTTP clients doing gets, sets, compare-and-sets and deletes on a few keys, each request to a random
/// node, plus write-once keys whose acknowledged values must survive everything. Every operation is recorded.
/// </summary>
public sealed class KvWorkload : IFaultWorkload, IDisposable
{
    public const string KeyPrefix = "k";
    public const string DurableKeyPrefix = "durable-";

    private readonly ConcurrentQueue<RecordedOp> _ops = new();
    private readonly ConcurrentDictionary<string, string> _durableAcknowledged = new();
    private readonly WorkloadOptions _options;
    private readonly Func<IReadOnlyList<NodeProcess>> _targets;
    private readonly HttpClient _http;

    public KvWorkload(WorkloadOptions options, Func<IReadOnlyList<NodeProcess>> targets)
    {
        _options = options;
        _targets = targets;
        _http = new HttpClient(new SocketsHttpHandler
        {
            PooledConnectionLifetime = TimeSpan.FromSeconds(10),
            ConnectTimeout = TimeSpan.FromSeconds(1),
            MaxConnectionsPerServer = 64,
        })
        {
            Timeout = Timeout.InfiniteTimeSpan,
        };
    }

    public IReadOnlyCollection<RecordedOp> Operations => _ops;

    public int OperationCount => _ops.Count;

    /// <summary>Write-once keys whose write was acknowledged, with their values.</summary>
    public IReadOnlyDictionary<string, string> DurableAcknowledged => _durableAcknowledged;

    private readonly ConcurrentDictionary<string, bool> _keysUsed = new();
    private int _epoch;

    /// <summary>
    /// The key set changes every epoch (each fault cycle), so each key's history stays short enough for the
    /// checker however long the run: unknown outcomes otherwise pile up on a key and the search explodes.
    /// </summary>
    public void NextEpoch() => Interlocked.Increment(ref _epoch);

    public int Epoch => Volatile.Read(ref _epoch);

    /// <summary>The current epoch's keys.</summary>
    public IEnumerable<string> Keys => Enumerable.Range(0, _options.Keys).Select(i => KeyOf(Epoch, i));

    /// <summary>Every key any client touched, in any epoch.</summary>
    public IReadOnlyCollection<string> KeysUsed => [.. _keysUsed.Keys];

    private static string KeyOf(int epoch, int index) =>
        string.Create(CultureInfo.InvariantCulture, $"{KeyPrefix}{epoch}-{index}");

    public void Dispose() => _http.Dispose();

    public async Task RunAsync(CancellationToken stop)
    {
        var clients = Enumerable.Range(1, _options.Clients).Select(c => Task.Run(() => ClientLoopAsync(c, stop), CancellationToken.None));
        await Task.WhenAll(clients);
    }

    /// <summary>A linearizable read of <paramref name="key"/> through <paramref name="node"/>, recorded like any other.</summary>
    public Task<RecordedOp> ReadAsync(int client, NodeProcess node, string key, string consistency = "linearizable") =>
        ExecuteAsync(client, node, KvOperationKind.Get, key, null, null, consistency, record: consistency == "linearizable");

    private async Task ClientLoopAsync(int client, CancellationToken stop)
    {
        var random = new Random(_options.Seed * 31 + client);
        var lastSeen = new Dictionary<string, string>();
        int sequence = 0;
        while (!stop.IsCancellationRequested)
        {
            var targets = _targets();
            if (targets.Count == 0)
            {
                await Task.Delay(50, CancellationToken.None);
                continue;
            }

            var node = targets[random.Next(targets.Count)];
            string key = KeyOf(Epoch, random.Next(_options.Keys));
            _keysUsed[key] = true;
            string value = string.Create(CultureInfo.InvariantCulture, $"c{client}-{++sequence}");
            int roll = random.Next(100);
            RecordedOp op;
            if (roll < 40)
            {
                op = await ExecuteAsync(client, node, KvOperationKind.Get, key, null, null, "linearizable", record: true);
                if (op is { Outcome: OpOutcome.Ok, Result: { } seen })
                {
                    lastSeen[key] = seen;
                }
            }
            else if (roll < 62)
            {
                op = await ExecuteAsync(client, node, KvOperationKind.Set, key, value, null, null, record: true);
            }
            else if (roll < 80)
            {
                string expected = lastSeen.TryGetValue(key, out string? seen) ? seen : "none";
                op = await ExecuteAsync(client, node, KvOperationKind.CompareAndSet, key, value, expected, null, record: true);
            }
            else if (roll < 92)
            {
                op = await ExecuteAsync(client, node, KvOperationKind.Delete, key, null, null, null, record: true);
            }
            else
            {
                string durableKey = DurableKeyPrefix + value;
                op = await ExecuteAsync(client, node, KvOperationKind.Set, durableKey, value, null, null, record: true);
                if (op.Outcome == OpOutcome.Ok)
                {
                    _durableAcknowledged[durableKey] = value;
                }
            }

            if (_options.ThinkTime > TimeSpan.Zero)
            {
                await Task.Delay(_options.ThinkTime, CancellationToken.None);
            }
        }
    }

    private async Task<RecordedOp> ExecuteAsync(int client, NodeProcess node, KvOperationKind kind, string key, string? value, string? expected, string? consistency, bool record)
    {
        string path = "/v1/kv/" + Uri.EscapeDataString(key);
        var method = kind switch
        {
            KvOperationKind.Get => HttpMethod.Get,
            KvOperationKind.Delete => HttpMethod.Delete,
            _ => HttpMethod.Put,
        };
        if (kind == KvOperationKind.Get && consistency is not null)
        {
            path += "?consistency=" + consistency;
        }
        else if (kind == KvOperationKind.CompareAndSet)
        {
            path += "?prevValue=" + Uri.EscapeDataString(expected!);
        }

        using var request = new HttpRequestMessage(method, new Uri(node.BaseUri, path));
        if (value is not null)
        {
            request.Content = new ByteArrayContent(Encoding.UTF8.GetBytes(value));
        }
        else if (kind != KvOperationKind.Get)
        {
            // Without a body, HttpClient may resend a write on a new connection after the node read it and died
            // (dotnet/runtime#86714); the resend's "connection refused" would wrongly say "not applied" below.
            request.Content = new ByteArrayContent([]);
        }

        long invoke = Stopwatch.GetTimestamp();
        OpOutcome outcome;
        string? result = null;
        bool succeeded = false;
        string detail;
        using var timeout = new CancellationTokenSource(_options.RequestTimeout);
        try
        {
            using var response = await _http.SendAsync(request, timeout.Token);
            byte[] body = await response.Content.ReadAsByteArrayAsync(timeout.Token);
            int code = (int)response.StatusCode;
            string outcomeHeader = response.Headers.TryGetValues("X-Stcache-Outcome", out var values) ? values.FirstOrDefault() ?? string.Empty : string.Empty;
            string version = response.Headers.TryGetValues("X-Stcache-Version", out var versions) ? versions.FirstOrDefault() ?? string.Empty : string.Empty;
            detail = code.ToString(CultureInfo.InvariantCulture) + (outcomeHeader.Length > 0 ? " " + outcomeHeader : string.Empty) +
                (version.Length > 0 ? " v" + version : string.Empty);
            (outcome, result, succeeded) = (kind, code) switch
            {
                (KvOperationKind.Get, 200) => (OpOutcome.Ok, Encoding.UTF8.GetString(body), true),
                (KvOperationKind.Get, 404) => (OpOutcome.Ok, (string?)null, true),
                (KvOperationKind.CompareAndSet, 412) => (OpOutcome.Ok, null, false),
                (_, 200 or 204) => (OpOutcome.Ok, null, true),
                (_, >= 400 and < 500) => (OpOutcome.Fail, null, false),
                _ when outcomeHeader == "not-applied" => (OpOutcome.Fail, null, false),
                _ => (OpOutcome.Unknown, null, false),
            };
            if (kind == KvOperationKind.Get && outcome == OpOutcome.Unknown)
            {
                outcome = OpOutcome.Fail; // a read that did not answer has no effect
            }
        }
        catch (HttpRequestException e) when (e.HttpRequestError == HttpRequestError.ConnectionError)
        {
            // Connection refused or reset before a byte of the request went out: not applied.
            outcome = OpOutcome.Fail;
            detail = "connect: " + e.Message;
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException or IOException)
        {
            outcome = kind == KvOperationKind.Get ? OpOutcome.Fail : OpOutcome.Unknown;
            detail = e.GetType().Name + ": " + e.Message;
        }

        long complete = Stopwatch.GetTimestamp();
        var op = new RecordedOp(client, kind, key, value, expected, node.Name, invoke, complete, outcome, result, succeeded, detail);
        if (record)
        {
            _ops.Enqueue(op);
        }

        return op;
    }

    public static string Describe(RecordedOp op)
    {
        double invokeMs = op.InvokeTime * 1000.0 / Stopwatch.Frequency;
        double durationMs = (op.CompleteTime - op.InvokeTime) * 1000.0 / Stopwatch.Frequency;
        return string.Create(CultureInfo.InvariantCulture,
            $"c{op.Client} {op.Kind} {op.Key} value={op.Value ?? "-"} expected={op.Expected ?? "-"} via {op.Node} -> {op.Outcome} result={op.Result ?? "absent"} ok={op.Succeeded} [{op.Detail}] at {invokeMs:F1}ms for {durationMs:F1}ms");
    }
}
