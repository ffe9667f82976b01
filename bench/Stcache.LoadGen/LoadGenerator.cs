using System.Diagnostics;
using System.Globalization;
using System.Net;

namespace Stcache.LoadGen;

/// <summary>
/// A closed-loop HTTP load generator: <see cref="LoadOptions.Connections"/> workers each send one request, wait
/// for the answer, record its latency and send the next, until the run's time is up. Operations that complete
/// during the warm-up are not measured. A run is bounded: it ends at warm-up + duration, and a request still in
/// flight then is cancelled and not counted.
/// </summary>
public sealed class LoadGenerator : IDisposable
{
    private const string VersionHeader = "X-Stcache-Version";

    private readonly LoadOptions _options;
    private readonly HttpClient[] _clients;
    private readonly string[] _keys;
    private readonly byte[] _value;
    private readonly string _valueText;
    private readonly string _consistencyQuery;
    private readonly string _valueBase64;
    private long _finished;
    private long _failed;

    public LoadGenerator(LoadOptions options)
    {
        ArgumentNullException.ThrowIfNull(options);
        options.Validate();
        _options = options;
        int perTarget = (options.Connections + options.Targets.Count - 1) / options.Targets.Count;
        _clients = options.Targets.Select(target => new HttpClient(
            new SocketsHttpHandler
            {
                MaxConnectionsPerServer = perTarget,
                PooledConnectionLifetime = Timeout.InfiniteTimeSpan,
                PooledConnectionIdleTimeout = TimeSpan.FromMinutes(5),
                ConnectTimeout = options.RequestTimeout,
                UseCookies = false,
                UseProxy = false,
                AllowAutoRedirect = false,
                AutomaticDecompression = DecompressionMethods.None,
            })
        {
            BaseAddress = target,
            Timeout = Timeout.InfiniteTimeSpan,
        }).ToArray();
        _keys = Enumerable.Range(0, options.KeyCount).Select(i => options.KeyPrefix + i.ToString(CultureInfo.InvariantCulture)).ToArray();

        // Printable value so that the seed API can carry it in a query string unescaped.
        var random = new Random(options.RandomSeed);
        _value = new byte[options.ValueSizeBytes];
        for (int i = 0; i < _value.Length; i++)
        {
            _value[i] = (byte)('a' + random.Next(26));
        }

        _valueText = System.Text.Encoding.ASCII.GetString(_value);
        _valueBase64 = Convert.ToBase64String(_value);
        _consistencyQuery = options.Consistency.Length == 0 ? string.Empty : "?consistency=" + options.Consistency;
    }

    /// <summary>Writes every key once (with the configured connections) so that reads find values. etcd gets
    /// transactions of <see cref="LoadOptions.PreloadBatchSize"/> puts. Returns the number of keys acknowledged.</summary>
    public async Task<long> PreloadAsync(CancellationToken cancellationToken = default)
    {
        int batch = _options.Api == ApiStyle.Etcd ? _options.PreloadBatchSize : 1;
        int batches = (_keys.Length + batch - 1) / batch;
        long acknowledged = 0;
        int next = -1;
        var workers = new Task[_options.Connections];
        for (int w = 0; w < workers.Length; w++)
        {
            var client = _clients[w % _clients.Length];
            workers[w] = Task.Run(
                async () =>
                {
                    int b;
                    while ((b = Interlocked.Increment(ref next)) < batches)
                    {
                        int first = b * batch;
                        int count = Math.Min(batch, _keys.Length - first);
                        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
                        timeout.CancelAfter(_options.RequestTimeout);
                        using var request = batch == 1 ? WriteRequest(_keys[first]) : EtcdTransaction(first, count);
                        try
                        {
                            using var response = await client.SendAsync(request, timeout.Token).ConfigureAwait(false);
                            if (response.IsSuccessStatusCode)
                            {
                                Interlocked.Add(ref acknowledged, count);
                            }
                        }
                        catch (Exception exception) when (exception is HttpRequestException or OperationCanceledException && !cancellationToken.IsCancellationRequested)
                        {
                            // Counted as not acknowledged; the caller compares the total with the key count.
                        }
                    }
                },
                cancellationToken);
        }

        await Task.WhenAll(workers).ConfigureAwait(false);
        return acknowledged;
    }

    /// <summary>Operations finished so far in the current run, warm-up included (for a live progress line).</summary>
    public long FinishedOperations => Interlocked.Read(ref _finished);

    /// <summary>Of <see cref="FinishedOperations"/>, those that failed.</summary>
    public long FailedOperations => Interlocked.Read(ref _failed);

    public async Task<LoadReport> RunAsync(CancellationToken cancellationToken = default)
    {
        long start = Stopwatch.GetTimestamp();
        long measureFrom = start + ToTicks(_options.Warmup);
        long end = measureFrom + ToTicks(_options.Duration);
        var workers = new Worker[_options.Connections];
        var tasks = new Task[workers.Length];
        for (int w = 0; w < workers.Length; w++)
        {
            workers[w] = new Worker(this, _clients[w % _clients.Length], _options.RandomSeed + w + 1, measureFrom, end);
            var worker = workers[w];
            tasks[w] = Task.Run(() => worker.RunAsync(cancellationToken), cancellationToken);
        }

        await Task.WhenAll(tasks).ConfigureAwait(false);
        long stopped = Math.Min(Stopwatch.GetTimestamp(), end);

        var all = new LatencyHistogram();
        var reads = new LatencyHistogram();
        var writes = new LatencyHistogram();
        var cas = new LatencyHistogram();
        var errors = Enum.GetValues<ErrorKind>().ToDictionary(k => k, _ => 0L);
        long succeeded = 0;
        foreach (var worker in workers)
        {
            reads.Add(worker.Reads);
            writes.Add(worker.Writes);
            cas.Add(worker.Cas);
            succeeded += worker.Succeeded;
            for (int k = 0; k < worker.Errors.Length; k++)
            {
                errors[(ErrorKind)k] += worker.Errors[k];
            }
        }

        all.Add(reads);
        all.Add(writes);
        all.Add(cas);
        var measured = Stopwatch.GetElapsedTime(measureFrom, Math.Max(measureFrom, stopped));
        return new LoadReport(_options, measured, succeeded, LatencySummary.From(all), LatencySummary.From(reads), LatencySummary.From(writes), LatencySummary.From(cas), errors);
    }

    public void Dispose()
    {
        foreach (var client in _clients)
        {
            client.Dispose();
        }
    }

    private static long ToTicks(TimeSpan span) => (long)(span.TotalSeconds * Stopwatch.Frequency);

    private HttpRequestMessage WriteRequest(string key) => _options.Api switch
    {
        ApiStyle.Etcd => EtcdRequest("/v3/kv/put", "{\"key\":\"" + Base64(key) + "\",\"value\":\"" + _valueBase64 + "\"}"),
        ApiStyle.Seed => new HttpRequestMessage(HttpMethod.Get, "/set?key=" + key + "&value=" + _valueText),
        _ => new HttpRequestMessage(HttpMethod.Put, "/v1/kv/" + key) { Content = new ByteArrayContent(_value) },
    };

    private HttpRequestMessage ReadRequest(string key) => _options.Api switch
    {
        ApiStyle.Etcd => EtcdRequest("/v3/kv/range", "{\"key\":\"" + Base64(key) + (_options.Consistency == "stale" ? "\",\"serializable\":true}" : "\"}")),
        ApiStyle.Seed => new HttpRequestMessage(HttpMethod.Get, "/get?key=" + key),
        _ => new HttpRequestMessage(HttpMethod.Get, "/v1/kv/" + key + _consistencyQuery),
    };

    private static string Base64(string text) => Convert.ToBase64String(System.Text.Encoding.UTF8.GetBytes(text));

    private static HttpRequestMessage EtcdRequest(string path, string json) =>
        new(HttpMethod.Post, path) { Content = new StringContent(json, System.Text.Encoding.UTF8, "application/json") };

    private HttpRequestMessage EtcdTransaction(int first, int count)
    {
        var body = new System.Text.StringBuilder("{\"success\":[");
        for (int i = first; i < first + count; i++)
        {
            body.Append(i == first ? string.Empty : ",").Append("{\"requestPut\":{\"key\":\"").Append(Base64(_keys[i])).Append("\",\"value\":\"").Append(_valueBase64).Append("\"}}");
        }

        return EtcdRequest("/v3/kv/txn", body.Append("]}").ToString());
    }

    private HttpRequestMessage CasRequest(string key, string version) =>
        new(HttpMethod.Put, "/v1/kv/" + key + "?prevVersion=" + version) { Content = new ByteArrayContent(_value) };

    private enum OpKind
    {
        Read,
        Write,
        Cas,
    }

    private sealed class Worker
    {
        private readonly LoadGenerator _owner;
        private readonly HttpClient _client;
        private readonly Random _random;
        private readonly long _measureFrom;
        private readonly long _end;

        public Worker(LoadGenerator owner, HttpClient client, int seed, long measureFrom, long end)
        {
            _owner = owner;
            _client = client;
            _random = new Random(seed);
            _measureFrom = measureFrom;
            _end = end;
        }

        public LatencyHistogram Reads { get; } = new();

        public LatencyHistogram Writes { get; } = new();

        public LatencyHistogram Cas { get; } = new();

        public long Succeeded { get; private set; }

        public long[] Errors { get; } = new long[Enum.GetValues<ErrorKind>().Length];

        public async Task RunAsync(CancellationToken cancellationToken)
        {
            var options = _owner._options;
            var timeoutTicks = ToTicks(options.RequestTimeout);
            var timeoutSource = new CancellationTokenSource();
            try
            {
                await LoopAsync().ConfigureAwait(false);
            }
            finally
            {
                timeoutSource.Dispose();
            }

            async Task LoopAsync()
            {
                while (!cancellationToken.IsCancellationRequested)
                {
                    long begin = Stopwatch.GetTimestamp();
                    if (begin >= _end)
                    {
                        return;
                    }

                    // Stop the request at the end of the run or at its own timeout, whichever comes first.
                    long remaining = Math.Min(timeoutTicks, _end - begin);
                    if (!timeoutSource.TryReset())
                    {
                        timeoutSource.Dispose();
                        timeoutSource = new CancellationTokenSource();
                    }

                    timeoutSource.CancelAfter(TimeSpan.FromSeconds((double)remaining / Stopwatch.Frequency));
                    string key = _owner._keys[_random.Next(_owner._keys.Length)];
                    var kind = _random.NextDouble() < options.ReadRatio ? OpKind.Read
                        : options.CasRatio > 0 && _random.NextDouble() < options.CasRatio ? OpKind.Cas
                        : OpKind.Write;
                    ErrorKind? error;
                    bool connectionFailed = false;
                    try
                    {
                        error = kind switch
                        {
                            OpKind.Read => await SendAsync(_owner.ReadRequest(key), read: true, timeoutSource.Token).ConfigureAwait(false),
                            OpKind.Write => await SendAsync(_owner.WriteRequest(key), read: false, timeoutSource.Token).ConfigureAwait(false),
                            _ => await CompareAndSetAsync(key, timeoutSource.Token).ConfigureAwait(false),
                        };
                    }
                    catch (OperationCanceledException) when (!cancellationToken.IsCancellationRequested)
                    {
                        if (Stopwatch.GetTimestamp() >= _end)
                        {
                            return; // Cut off by the end of the run: neither a success nor an error.
                        }

                        error = ErrorKind.Timeout;
                    }
                    catch (HttpRequestException exception) when (exception.InnerException is not OperationCanceledException)
                    {
                        error = ErrorKind.Connection;
                        connectionFailed = true;
                    }

                    long finish = Stopwatch.GetTimestamp();
                    if (finish > _end)
                    {
                        return;
                    }

                    Interlocked.Increment(ref _owner._finished);
                    if (error is not null)
                    {
                        Interlocked.Increment(ref _owner._failed);
                    }

                    if (begin >= _measureFrom)
                    {
                        if (error is { } failed)
                        {
                            Errors[(int)failed]++;
                        }
                        else
                        {
                            Succeeded++;
                            long nanoseconds = (long)((finish - begin) * (1_000_000_000.0 / Stopwatch.Frequency));
                            var histogram = kind switch { OpKind.Read => Reads, OpKind.Write => Writes, _ => Cas };
                            histogram.Record(nanoseconds);
                        }
                    }

                    if (connectionFailed)
                    {
                        // A refused connection fails in microseconds; do not spin on a dead node.
                        await Task.Delay(10, cancellationToken).ConfigureAwait(false);
                    }
                }
            }
        }

        private async Task<ErrorKind?> SendAsync(HttpRequestMessage request, bool read, CancellationToken cancellationToken)
        {
            using (request)
            {
                using var response = await _client.SendAsync(request, HttpCompletionOption.ResponseContentRead, cancellationToken).ConfigureAwait(false);
                return Classify(response.StatusCode, read);
            }
        }

        private async Task<ErrorKind?> CompareAndSetAsync(string key, CancellationToken cancellationToken)
        {
            string version = "0";
            using (var get = _owner.ReadRequest(key))
            {
                using var response = await _client.SendAsync(get, HttpCompletionOption.ResponseContentRead, cancellationToken).ConfigureAwait(false);
                if (Classify(response.StatusCode, read: true) is { } failed)
                {
                    return failed;
                }

                if (response.Headers.TryGetValues(VersionHeader, out var values))
                {
                    version = values.First();
                }
                else if (response.Headers.ETag is { } etag)
                {
                    version = etag.Tag.Trim('"');
                }
            }

            using var put = _owner.CasRequest(key, version);
            using var answer = await _client.SendAsync(put, HttpCompletionOption.ResponseContentRead, cancellationToken).ConfigureAwait(false);
            return answer.StatusCode is HttpStatusCode.Conflict or HttpStatusCode.PreconditionFailed
                ? ErrorKind.CasConflict
                : Classify(answer.StatusCode, read: false);
        }

        private static ErrorKind? Classify(HttpStatusCode status, bool read)
        {
            int code = (int)status;
            return code switch
            {
                >= 200 and < 300 => null,
                404 when read => null, // a key not written yet is a valid answer
                >= 400 and < 500 => ErrorKind.Status4xx,
                >= 500 and < 600 => ErrorKind.Status5xx,
                _ => ErrorKind.StatusOther,
            };
        }
    }
}
