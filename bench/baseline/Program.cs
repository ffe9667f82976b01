using System.Collections.Concurrent;

// The HTTP ceiling of the machine: Kestrel answering from a dictionary, with no replication, no logging and no
// durability. It speaks the same dialects as the benchmark scripts: stcache's /v1/kv/{key} (raw bodies), the
// seeds' /set and /get, and etcd's v3 JSON gateway paths (the body is stored and echoed, not parsed), so that one
// wrk script can be pointed at it unchanged.
var builder = WebApplication.CreateSlimBuilder(args);
builder.Logging.ClearProviders();
builder.WebHost.ConfigureKestrel(kestrel => kestrel.AddServerHeader = false);
var app = builder.Build();
var store = new ConcurrentDictionary<string, byte[]>(StringComparer.Ordinal);

app.MapPut("/v1/kv/{key}", async (string key, HttpRequest request) =>
{
    store[key] = await ReadBodyAsync(request);
    return Results.NoContent();
});
app.MapGet("/v1/kv/{key}", (string key) =>
    store.TryGetValue(key, out var value) ? Results.Bytes(value, "application/octet-stream") : Results.NotFound());
app.MapDelete("/v1/kv/{key}", (string key) => store.TryRemove(key, out _) ? Results.NoContent() : Results.NotFound());
app.MapGet("/set", (string key, string value) =>
{
    store[key] = System.Text.Encoding.UTF8.GetBytes(value);
    return Results.Text("ok");
});
app.MapGet("/get", (string key) =>
    store.TryGetValue(key, out var value) ? Results.Bytes(value, "text/plain") : Results.Text(string.Empty));

// etcd-gateway-shaped paths: the request body stands in for both key and value, so the work per request
// (read a JSON body, answer a small JSON body) is comparable without parsing JSON.
app.MapPost("/v3/kv/put", async (HttpRequest request) =>
{
    var body = await ReadBodyAsync(request);
    store[body.Length.ToString(System.Globalization.CultureInfo.InvariantCulture)] = body;
    return Results.Text("{\"header\":{}}", "application/json");
});
app.MapPost("/v3/kv/range", async (HttpRequest request) =>
{
    var body = await ReadBodyAsync(request);
    return Results.Text(store.TryGetValue(body.Length.ToString(System.Globalization.CultureInfo.InvariantCulture), out _) ? "{\"header\":{},\"kvs\":[],\"count\":\"1\"}" : "{\"header\":{}}", "application/json");
});
app.MapGet("/health", () => Results.Text("ok"));

app.Run();

static async Task<byte[]> ReadBodyAsync(HttpRequest request)
{
    using var buffer = new MemoryStream(request.ContentLength is > 0 and < int.MaxValue ? (int)request.ContentLength.Value : 256);
    await request.Body.CopyToAsync(buffer);
    return buffer.ToArray();
}
