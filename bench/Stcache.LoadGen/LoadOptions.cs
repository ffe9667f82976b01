namespace Stcache.LoadGen;

/// <summary>Which HTTP dialect the generator speaks.</summary>
public enum ApiStyle
{
    /// <summary>stcache's <c>/v1/kv/{key}</c> API (PUT raw body, GET with ?consistency=).</summary>
    V1 = 1,

    /// <summary>The seeds' <c>/set?key=&amp;value=</c> and <c>/get?key=</c>.</summary>
    Seed = 2,

    /// <summary>etcd v3's JSON gateway: POST /v3/kv/put and /v3/kv/range with base64 keys and values
    /// (stale reads map to "serializable"); preloading uses transactions of many puts.</summary>
    Etcd = 3,
}

/// <summary>Settings of one closed-loop run. Immutable; validate with <see cref="Validate"/>.</summary>
public sealed record LoadOptions
{
    /// <summary>Base URLs of the nodes (e.g. http://127.0.0.1:6000); workers are spread over them round-robin.</summary>
    public IReadOnlyList<Uri> Targets { get; init; } = [new Uri("http://127.0.0.1:6000")];

    /// <summary>Closed-loop workers; each has at most one request in flight.</summary>
    public int Connections { get; init; } = 16;

    public TimeSpan Duration { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Load is applied but not measured during the warm-up.</summary>
    public TimeSpan Warmup { get; init; } = TimeSpan.FromSeconds(2);

    public int KeyCount { get; init; } = 10_000;

    public int ValueSizeBytes { get; init; } = 100;

    /// <summary>Share of operations that are reads, 0..1.</summary>
    public double ReadRatio { get; init; }

    /// <summary>Share of the writes that are compare-and-set (read the X-Stcache-Version header, then PUT ?prevVersion=; 412 is a conflict), 0..1.</summary>
    public double CasRatio { get; init; }

    /// <summary>linearizable, lease or stale; empty sends no consistency parameter.</summary>
    public string Consistency { get; init; } = "linearizable";

    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(5);

    public ApiStyle Api { get; init; } = ApiStyle.V1;

    public string KeyPrefix { get; init; } = "k";

    public int RandomSeed { get; init; } = 1;

    /// <summary>etcd preload: puts per transaction (etcd's --max-txn-ops defaults to 128).</summary>
    public int PreloadBatchSize { get; init; } = 128;

    public void Validate()
    {
        if (Targets.Count == 0)
        {
            throw new ArgumentException("at least one target URL is required");
        }

        ArgumentOutOfRangeException.ThrowIfLessThan(Connections, 1);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(Connections, 100_000);
        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(Duration, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(Warmup, TimeSpan.Zero);
        ArgumentOutOfRangeException.ThrowIfLessThan(KeyCount, 1);
        ArgumentOutOfRangeException.ThrowIfLessThan(ValueSizeBytes, 0);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(ValueSizeBytes, 64 << 20);
        if (ReadRatio is < 0 or > 1 || double.IsNaN(ReadRatio))
        {
            throw new ArgumentOutOfRangeException(nameof(ReadRatio), "must be within 0..1");
        }

        if (CasRatio is < 0 or > 1 || double.IsNaN(CasRatio))
        {
            throw new ArgumentOutOfRangeException(nameof(CasRatio), "must be within 0..1");
        }

        if (Consistency is not ("" or "linearizable" or "lease" or "stale"))
        {
            throw new ArgumentException("consistency must be linearizable, lease, stale or empty", nameof(Consistency));
        }

        ArgumentOutOfRangeException.ThrowIfLessThanOrEqual(RequestTimeout, TimeSpan.Zero);
        if (CasRatio > 0 && Api != ApiStyle.V1)
        {
            throw new ArgumentException("compare-and-set needs the v1 API", nameof(CasRatio));
        }
    }
}
