using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using DotNext.IO;
using DotNext.Net.Cluster.Consensus.Raft;
using DotNext.Net.Cluster.Consensus.Raft.Http;
using DotNext.Net.Cluster.Consensus.Raft.StateMachine;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http.Features;

// A minimal 3-node key-value store on DotNext's Raft (DotNext.AspNetCore.Cluster, which runs DotNext.Net.Cluster's
// Raft over HTTP on the application's own Kestrel port), for bench/compare.sh. Library defaults throughout: its
// HTTP transport and election timeouts, its write-ahead log (WriteAheadLog with default options), and
// ApplyReadBarrierAsync for linearizable reads. The API has stcache's shape:
//
//   PUT /v1/kv/{key}                                   raw body; 204 once committed (a follower forwards it
//                                                      to the leader, as stcache and etcd do)
//   GET /v1/kv/{key}?consistency=linearizable|stale    raw value or 404 (default linearizable)
//   GET /v1/status                                     {"role":"leader"|"follower","leader":"<uri>"}
//
// Usage: dotnext-kv --port=P --members=P1,P2,P3 --data=DIR   (all on 127.0.0.1; --port is one of --members)
var settings = args.Select(a => a.TrimStart('-').Split('=', 2)).ToDictionary(p => p[0], p => p.Length > 1 ? p[1] : "true", StringComparer.Ordinal);
if (!settings.TryGetValue("port", out string? portText) || !settings.TryGetValue("members", out string? membersText) || !settings.TryGetValue("data", out string? data))
{
    Console.Error.WriteLine("usage: dotnext-kv --port=P --members=P1,P2,P3 --data=DIR");
    return 2;
}

int port = int.Parse(portText, CultureInfo.InvariantCulture);
int[] members = [.. membersText.Split(',').Select(p => int.Parse(p, CultureInfo.InvariantCulture))];
const long valueBytesMax = 1 << 20;
const string Forwarding = "forwarding";
const string ForwardedHeader = "X-Kv-Forwarded";

var builder = WebApplication.CreateSlimBuilder();
builder.Logging.ClearProviders();
builder.Logging.AddSimpleConsole(o => o.SingleLine = true);
builder.Logging.SetMinimumLevel(LogLevel.Warning);
builder.Configuration.AddInMemoryCollection(new Dictionary<string, string?>
{
    ["publicEndPoint"] = $"http://127.0.0.1:{port}/",
    ["coldStart"] = "false",
    [KvStateMachine.DataKey] = data,
});
builder.WebHost.ConfigureKestrel(kestrel =>
{
    kestrel.AddServerHeader = false;
    kestrel.ListenLocalhost(port);

    // No global body limit: DotNext sends its Raft traffic, snapshots included, through this Kestrel server, and a
    // global limit silently blocks snapshot transfers. The client API sets its own limit per endpoint (below).
    kestrel.Limits.MaxRequestBodySize = null;
});
builder.Services.UseInMemoryConfigurationStorage(list =>
{
    foreach (int member in members)
    {
        list.Add(new UriEndPoint(new Uri($"http://127.0.0.1:{member}/")));
    }
});
builder.Services.UseStateMachine<KvStateMachine>(new WriteAheadLog.Options { Location = Path.Combine(data, "wal") });
builder.JoinCluster();

builder.Services.AddHttpClient(Forwarding, client => client.Timeout = TimeSpan.FromSeconds(10));

var app = builder.Build();
await app.RestoreStateAsync<KvStateMachine>(CancellationToken.None);
var cluster = app.Services.GetRequiredService<IRaftCluster>();
var state = app.Services.GetRequiredService<KvStateMachine>();
app.UseConsensusProtocolHandler();

app.MapPut("/v1/kv/{key}", async (string key, HttpContext context) =>
{
    // The body limit of this endpoint alone (stcache's default value limit), not of the server.
    if (context.Features.Get<IHttpMaxRequestBodySizeFeature>() is { IsReadOnly: false } limit)
    {
        limit.MaxRequestBodySize = valueBytesMax + (64 * 1024);
    }

    using var body = new MemoryStream();
    await context.Request.Body.CopyToAsync(body, context.RequestAborted);
    if (cluster.LeadershipToken.IsCancellationRequested)
    {
        // A follower forwards the write to the leader it knows, once (a forwarded write is never forwarded again).
        if (cluster.Leader?.EndPoint is not UriEndPoint { Uri: { } leader } || context.Request.Headers.ContainsKey(ForwardedHeader))
        {
            return Results.Text("no leader known\n", statusCode: StatusCodes.Status503ServiceUnavailable);
        }

        using var forward = new HttpRequestMessage(HttpMethod.Put, new Uri(leader, "v1/kv/" + Uri.EscapeDataString(key)))
        {
            Content = new ByteArrayContent(body.GetBuffer(), 0, (int)body.Length),
        };
        forward.Headers.Add(ForwardedHeader, "1");
        try
        {
            using var answer = await app.Services.GetRequiredService<IHttpClientFactory>().CreateClient(Forwarding).SendAsync(forward, context.RequestAborted);
            return Results.StatusCode((int)answer.StatusCode);
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException)
        {
            return Results.Text("forwarding to the leader failed: " + e.Message + "\n", statusCode: StatusCodes.Status503ServiceUnavailable);
        }
    }

    byte[] keyBytes = Encoding.UTF8.GetBytes(key);
    byte[] command = new byte[2 + keyBytes.Length + body.Length];
    BinaryPrimitives.WriteUInt16LittleEndian(command, (ushort)keyBytes.Length);
    keyBytes.CopyTo(command, 2);
    body.GetBuffer().AsSpan(0, (int)body.Length).CopyTo(command.AsSpan(2 + keyBytes.Length));
    try
    {
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted, cluster.LeadershipToken);
        timeout.CancelAfter(TimeSpan.FromSeconds(5));
        // Completes once the entry is committed by a majority; throws when this node stops leading.
        await cluster.ReplicateAsync(new ReadOnlyMemory<byte>(command), null, timeout.Token);
        return Results.NoContent();
    }
    catch (Exception e) when (e is InvalidOperationException or OperationCanceledException)
    {
        return Results.Text(e.Message + "\n", statusCode: StatusCodes.Status503ServiceUnavailable);
    }
});

app.MapGet("/v1/kv/{key}", async (string key, string? consistency, HttpContext context) =>
{
    if (consistency is null or "linearizable")
    {
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
            timeout.CancelAfter(TimeSpan.FromSeconds(5));
            await cluster.ApplyReadBarrierAsync(timeout.Token);
        }
        catch (Exception e) when (e is QuorumUnreachableException or OperationCanceledException or InvalidOperationException)
        {
            return Results.Text(e.Message + "\n", statusCode: StatusCodes.Status503ServiceUnavailable);
        }
    }
    else if (consistency != "stale")
    {
        return Results.Text("consistency must be linearizable or stale\n", statusCode: StatusCodes.Status400BadRequest);
    }

    return state.TryGet(key, out byte[]? value) ? Results.Bytes(value, "application/octet-stream") : Results.NotFound();
});

app.MapGet("/v1/status", () => Results.Json(new Dictionary<string, string>
{
    ["role"] = cluster.LeadershipToken.IsCancellationRequested ? "follower" : "leader",
    ["leader"] = cluster.Leader?.EndPoint.ToString() ?? string.Empty,
}, KvJson.Default.DictionaryStringString));
app.MapGet("/health", () => Results.Text("ok"));

await app.RunAsync();
return 0;

/// <summary>
/// The whole state in memory (DotNext's <see cref="SimpleStateMachine"/>): a dictionary of keys to values,
/// persisted as a snapshot every <see cref="SnapshotEveryEntries"/> entries, or sooner once the entries applied since
/// the last one hold <see cref="SnapshotLogBytes"/> (stcache's default <c>--snapshot-log-bytes</c>). Without the byte
/// limit, 1 KiB writes grew the log to 100 MB between snapshots: DotNext keeps each 4 KiB page file of its log open
/// and mapped until a snapshot compacts it, and a node ran out of file descriptors, then of mappings. A command is
/// <c>[key length u16][key UTF-8][value]</c>; applying one is an idempotent set, so replaying entries over a
/// snapshot that already holds some of them gives the same state.
/// </summary>
internal sealed class KvStateMachine(IConfiguration configuration)
    : SimpleStateMachine(new DirectoryInfo(Path.Combine(configuration[DataKey] ?? ".", "snapshots")))
{
    public const string DataKey = "kvData";
    private const long SnapshotEveryEntries = 100_000;
    private const long SnapshotLogBytes = 16L << 20;
    private long _bytesSinceSnapshot;

    private readonly ConcurrentDictionary<string, byte[]> _values = new(StringComparer.Ordinal);

    public bool TryGet(string key, [System.Diagnostics.CodeAnalysis.NotNullWhen(true)] out byte[]? value) => _values.TryGetValue(key, out value);

    protected override ValueTask<bool> ApplyAsync(LogEntry entry, CancellationToken token)
    {
        if (entry.TryGetPayload(out var payload) && payload.Length >= 2)
        {
            byte[] command = payload.ToArray();
            int keyLength = BinaryPrimitives.ReadUInt16LittleEndian(command);
            string key = Encoding.UTF8.GetString(command, 2, keyLength);
            _values[key] = command[(2 + keyLength)..];
            _bytesSinceSnapshot += command.Length;
        }

        if (entry.Index % SnapshotEveryEntries != 0 && _bytesSinceSnapshot < SnapshotLogBytes)
        {
            return new(false);
        }

        _bytesSinceSnapshot = 0;
        return new(true);
    }

    protected override async ValueTask PersistAsync(IAsyncBinaryWriter writer, CancellationToken token)
    {
        var buffer = new byte[4];
        foreach (var (key, value) in _values)
        {
            byte[] keyBytes = Encoding.UTF8.GetBytes(key);
            BinaryPrimitives.WriteInt32LittleEndian(buffer, keyBytes.Length);
            await writer.Invoke(buffer, token);
            await writer.Invoke(keyBytes, token);
            BinaryPrimitives.WriteInt32LittleEndian(buffer, value.Length);
            await writer.Invoke(buffer, token);
            await writer.Invoke(value, token);
        }
    }

    protected override async ValueTask RestoreAsync(FileInfo snapshotFile, CancellationToken token)
    {
        _values.Clear();
        byte[] bytes = await File.ReadAllBytesAsync(snapshotFile.FullName, token);
        int offset = 0;
        while (offset + 4 <= bytes.Length)
        {
            int keyLength = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(offset));
            string key = Encoding.UTF8.GetString(bytes, offset + 4, keyLength);
            offset += 4 + keyLength;
            int valueLength = BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(offset));
            _values[key] = bytes[(offset + 4)..(offset + 4 + valueLength)];
            offset += 4 + valueLength;
        }
    }
}

[System.Text.Json.Serialization.JsonSerializable(typeof(Dictionary<string, string>))]
internal sealed partial class KvJson : System.Text.Json.Serialization.JsonSerializerContext;
