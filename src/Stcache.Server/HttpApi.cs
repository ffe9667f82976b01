using System.Buffers;
using System.Globalization;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.Logging;
using Stcache.Cache;
using Stcache.Raft;

namespace Stcache.Server;

public sealed record ErrorView(
    [property: JsonPropertyName("error")] string Error,
    [property: JsonPropertyName("outcome")] string Outcome,
    [property: JsonPropertyName("leader")] string? Leader);

public sealed record KvWriteView(
    [property: JsonPropertyName("key")] string Key,
    [property: JsonPropertyName("succeeded")] bool Succeeded,
    [property: JsonPropertyName("version")] ulong Version,
    [property: JsonPropertyName("previousExisted")] bool PreviousExisted);

public sealed record MemberView(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("raftAddress")] string RaftAddress,
    [property: JsonPropertyName("apiAddress")] string ApiAddress,
    [property: JsonPropertyName("role")] string Role,
    [property: JsonPropertyName("match")] ulong? Match);

public sealed record StatusView(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("role")] string Role,
    [property: JsonPropertyName("term")] ulong Term,
    [property: JsonPropertyName("leader")] string Leader,
    [property: JsonPropertyName("leaderAddress")] string LeaderAddress,
    [property: JsonPropertyName("commit")] ulong Commit,
    [property: JsonPropertyName("applied")] ulong Applied,
    [property: JsonPropertyName("lastIndex")] ulong LastIndex,
    [property: JsonPropertyName("snapshotIndex")] ulong SnapshotIndex,
    [property: JsonPropertyName("keys")] int Keys,
    [property: JsonPropertyName("voters")] string[] Voters,
    [property: JsonPropertyName("learners")] string[] Learners);

public sealed record ClusterView(
    [property: JsonPropertyName("leader")] string Leader,
    [property: JsonPropertyName("term")] ulong Term,
    [property: JsonPropertyName("members")] ClusterMemberView[] Members);

public sealed record ClusterMemberView(
    [property: JsonPropertyName("member")] MemberView Member,
    [property: JsonPropertyName("status")] StatusView? Status,
    [property: JsonPropertyName("error")] string? Error);

public sealed record MemberRequest(
    [property: JsonPropertyName("id")] ulong? Id,
    [property: JsonPropertyName("name")] string? Name,
    [property: JsonPropertyName("raftAddress")] string? RaftAddress,
    [property: JsonPropertyName("httpAddress")] string? HttpAddress);

public sealed record TransferRequest([property: JsonPropertyName("id")] string? Id);

public sealed record SnapshotView(
    [property: JsonPropertyName("index")] ulong Index,
    [property: JsonPropertyName("term")] ulong Term);

public sealed record SeedEntry(string? Key, string? Value);

[JsonSerializable(typeof(ErrorView))]
[JsonSerializable(typeof(KvWriteView))]
[JsonSerializable(typeof(MemberView[]))]
[JsonSerializable(typeof(StatusView))]
[JsonSerializable(typeof(ClusterView))]
[JsonSerializable(typeof(MemberRequest))]
[JsonSerializable(typeof(MemberInfo))]
[JsonSerializable(typeof(TransferRequest))]
[JsonSerializable(typeof(SnapshotView))]
[JsonSerializable(typeof(SeedEntry))]
[JsonSerializable(typeof(Dictionary<string, string>))]
public sealed partial class ApiJson : JsonSerializerContext
{
}

/// <summary>
/// The HTTP API, in endpoint groups: the seeds' endpoints (HttpApi.Seeds.cs), <c>/v1/kv</c> (HttpApi.Kv.cs) and
/// <c>/v1</c> cluster and internal endpoints (HttpApi.Cluster.cs). Handlers are thin: key-value reads and writes go
/// through <see cref="CommandService"/>, the protocol-agnostic service the RESP front end uses too, and its typed
/// outcomes are mapped to HTTP statuses here.
/// </summary>
internal sealed partial class HttpApi(RaftHost host, CommandService service, ServerOptions options, IHttpClientFactory clients, ILogger<HttpApi> logger)
{
    public const string VersionHeader = "X-Stcache-Version";
    public const string LeaderHeader = "X-Stcache-Leader";
    public const string OutcomeHeader = "X-Stcache-Outcome";
    public const string ForwardedHeader = "X-Stcache-Forwarded";

    /// <summary>On the leader's answer to a forwarded write: its applied index as it answered (the write included).</summary>
    public const string AppliedHeader = "X-Stcache-Applied";
    public const string ExpiresAtHeader = "X-Stcache-Expires-At";

    public void Map(WebApplication app)
    {
        // Key-value requests are answered by this first middleware, before routing (ServeKv); routing, placed after
        // it, serves the rest.
        app.Use(RefuseBadRequestsAsync);
        app.UseRouting();
        app.MapGet("/healthz", () => TypedResults.Text("ok\n"));
        app.MapGet("/readyz", Ready);
        MapSeeds(app);
        var v1 = app.MapGroup("/v1");
        MapKv(v1);
        MapCluster(v1);
    }

    /// <summary>
    /// Kestrel reports a request body that arrives below the minimum data rate (a slow client), exceeds the size
    /// limit or is malformed by throwing <see cref="BadHttpRequestException"/> from the body read. That is the
    /// client's fault, not a server error: answer with Kestrel's status (408, 413, 400) and one warning line,
    /// instead of an "unhandled exception" error with a stack trace for every slow client. A request answered
    /// without an await (a stale read) passes through without one here either. Key-value requests go straight to
    /// their handlers (<see cref="ServeKv"/>), which refuse such requests themselves: no frame awaits them here.
    /// </summary>
    private Task RefuseBadRequestsAsync(HttpContext context, RequestDelegate next)
    {
        if (context.Request.Headers.ContainsKey(ForwardedHeader))
        {
            AnnounceApplied(context);
        }

        if (ServeKv(context) is { } kv)
        {
            return kv;
        }

        Task pending;
        try
        {
            pending = next(context);
        }
        catch (BadHttpRequestException e) when (!context.Response.HasStarted)
        {
            return RefuseAsync(context, e);
        }

        return pending.IsCompletedSuccessfully ? Task.CompletedTask : AwaitAsync(context, pending);

        async Task AwaitAsync(HttpContext context, Task pending)
        {
            try
            {
                await pending;
            }
            catch (BadHttpRequestException e) when (!context.Response.HasStarted)
            {
                await RefuseAsync(context, e);
            }
        }
    }

    /// <summary>A forwarded request's answer names the index applied here (a method of its own: a closure made in
    /// the middleware would be allocated for every request).</summary>
    private void AnnounceApplied(HttpContext context) => context.Response.OnStarting(() =>
    {
        context.Response.Headers[AppliedHeader] = host.Cache.AppliedIndex.Value.ToString(CultureInfo.InvariantCulture);
        return Task.CompletedTask;
    });

    private async Task RefuseAsync(HttpContext context, BadHttpRequestException e)
    {
        string remote = context.Connection.RemoteIpAddress is { } address
            ? address + ":" + context.Connection.RemotePort.ToString(CultureInfo.InvariantCulture)
            : "unknown";
        ServerLog.BadRequestRefused(logger, context.Request.Method, remote, e.StatusCode, e.Message);
        context.Response.Clear();
        context.Response.StatusCode = e.StatusCode;
        await context.Response.WriteAsJsonAsync(new ErrorView(e.Message, "not-applied", null), ApiJson.Default.ErrorView);
    }

    private IResult Ready()
    {
        var status = host.Status;
        if (host.StorageFailing)
        {
            return Error(StatusCodes.Status503ServiceUnavailable, "the write-ahead log refuses writes (disk full or failing); see the node's log", "not-applied");
        }

        return status.Leader.IsNone
            ? Error(StatusCodes.Status503ServiceUnavailable, "no leader known", "not-applied")
            : TypedResults.Text("ok\n");
    }

    // ---- shared plumbing ------------------------------------------------------------------------------------

    /// <summary>
    /// A key-value write (the seeds' and <c>/v1/kv</c>'s), through <see cref="CommandService"/>: proposed here on the
    /// leader, forwarded to the leader inside the cluster from a follower (a relative TTL resolved by the leader's
    /// clock), under one request deadline. The typed outcome becomes the HTTP answer.
    /// </summary>
    private async Task<IResult> WriteAsync(HttpContext context, CacheCommand command, Func<ApplyResult, IResult> success, long ttlSeconds = 0)
    {
        if (WriteProblem(command) is { } problem)
        {
            return problem;
        }

        var outcome = await service.WriteAsync(WriteRequestOf(command, ttlSeconds), context.RequestAborted);
        return FailureOf(context, outcome) ?? success(outcome.Result);
    }

    /// <summary>The answer to a write that breaks a limit (413 for a size, 400 for the rest), or null.</summary>
    private IResult? WriteProblem(CacheCommand command) => WriteProblem(command.Kind, command.Key, command.Value.Length,
        command.ExpectedValue.Length, command.ExpiresAtUnixMs, command.LogTimeUnixMs);

    /// <summary>The same, from a write's parts (a PUT makes no command object).</summary>
    private IResult? WriteProblem(CommandKind kind, ReadOnlySpan<char> key, int valueLength, int expectedValueLength,
        long expiresAtUnixMs = 0, long logTimeUnixMs = 0)
    {
        string? problem = CacheCommand.Validate(kind, key, valueLength, expectedValueLength, expiresAtUnixMs, logTimeUnixMs);
        if (problem is not null)
        {
            bool tooLarge = Encoding.UTF8.GetByteCount(key) > CacheCommand.KeyBytesMax
                || valueLength > CacheCommand.ValueBytesMax || expectedValueLength > CacheCommand.ValueBytesMax;
            return Error(tooLarge ? StatusCodes.Status413PayloadTooLarge : StatusCodes.Status400BadRequest, problem, "not-applied");
        }

        return valueLength > options.ValueBytesMax
            ? Error(StatusCodes.Status413PayloadTooLarge, $"value larger than {options.ValueBytesMax} bytes", "not-applied")
            : null;
    }

    /// <summary>The leader stamps the log time and turns a relative TTL into an absolute expiry (docs/CACHE.md).</summary>
    private static WriteRequest WriteRequestOf(CacheCommand command, long ttlSeconds) =>
        ttlSeconds > 0 ? WriteRequest.Of(command, ttlSeconds * 1000) : WriteRequest.Of(command);

    /// <summary>Null for an applied write; else its answer (403 from a follower that does not forward, or the
    /// outcome's error). Names the leader a follower forwarded to or points at.</summary>
    private IResult? FailureOf(HttpContext context, WriteOutcome outcome)
    {
        if (!outcome.Leader.IsNone && outcome.Leader != host.Id)
        {
            context.Response.Headers[LeaderHeader] = LeaderAddress(outcome.Leader);
        }

        return outcome switch
        {
            { Status: WriteStatus.Applied } => null,
            { Failure: FailureKind.ForwardingDisabled } => TypedResults.Text($"write method not allowed\nleader: {LeaderAddress(outcome.Leader)}\n",
                statusCode: StatusCodes.Status403Forbidden),
            _ => OutcomeError(outcome),
        };
    }

    /// <summary>A write that did not complete, from its typed outcome: 400 for a command that breaks a limit, 503
    /// for the rest, with the outcome (not applied, or unknown) in the body and the header.</summary>
    private IResult OutcomeError(WriteOutcome outcome)
    {
        string? leader = outcome.Leader.IsNone ? null : host.Members.Find(outcome.Leader)?.HttpAddress ?? outcome.Leader.ToString();
        int code = outcome.Failure == FailureKind.Invalid ? StatusCodes.Status400BadRequest : StatusCodes.Status503ServiceUnavailable;
        return Error(code, outcome.Detail, outcome.Status == WriteStatus.Unknown ? "unknown" : "not-applied", leader);
    }

    /// <summary>The leader's HTTP address, or its id while it has not published one.</summary>
    private string LeaderAddress(NodeId leader) =>
        host.Members.Find(leader)?.HttpAddress is { Length: > 0 } address ? address : leader.ToString();

    /// <summary>For the cluster endpoints, which the leader must serve: null when this node is the leader; otherwise
    /// the answer: the request proxied to the leader, refused, or no leader.</summary>
    private async Task<IResult?> LeaderOrForwardAsync(HttpContext context, byte[]? body)
    {
        var status = await WaitForLeaderAsync(context.RequestAborted);
        if (status is null)
        {
            return Error(StatusCodes.Status503ServiceUnavailable, "no leader elected within the request timeout (no quorum?); not applied", "not-applied");
        }

        if (status.Leader == host.Id)
        {
            return null;
        }

        string leaderAddress = host.Members.Find(status.Leader)?.HttpAddress ?? string.Empty;
        if (leaderAddress.Length == 0 && options.ForwardWrites && !context.Request.Headers.ContainsKey(ForwardedHeader))
        {
            // Just elected, its address not applied here yet: wait for it as a forwarded write does (CommandService).
            using var deadline = service.Deadline(context.RequestAborted);
            if (await service.LeaderAddressAsync(status.Leader, deadline.Token) is not { } known)
            {
                return Error(StatusCodes.Status503ServiceUnavailable, $"node {status.Leader} stopped leading before its HTTP address was known here; not applied", "not-applied");
            }

            leaderAddress = known;
        }

        context.Response.Headers[LeaderHeader] = leaderAddress.Length > 0 ? leaderAddress : status.Leader.ToString();
        if (!options.ForwardWrites)
        {
            return TypedResults.Text($"write method not allowed\nleader: {(leaderAddress.Length > 0 ? leaderAddress : status.Leader.ToString())}\n",
                statusCode: StatusCodes.Status403Forbidden);
        }

        if (context.Request.Headers.ContainsKey(ForwardedHeader))
        {
            return Error(StatusCodes.Status503ServiceUnavailable, "not the leader (request was already forwarded once); not applied", "not-applied", leaderAddress);
        }

        if (leaderAddress.Length == 0)
        {
            return Error(StatusCodes.Status503ServiceUnavailable, $"the leader (node {status.Leader}) has not published its HTTP address yet; not applied", "not-applied");
        }

        return await ForwardAsync(context, leaderAddress, body);
    }

    /// <summary>The status once a leader is known, or null after the request timeout; woken by leader changes.</summary>
    private async Task<HostStatus?> WaitForLeaderAsync(CancellationToken cancellationToken)
    {
        using var deadline = service.Deadline(cancellationToken);
        var status = await service.WaitForLeaderAsync(deadline.Token);
        cancellationToken.ThrowIfCancellationRequested();
        return status;
    }

    private async Task<IResult> ForwardAsync(HttpContext context, string leaderAddress, byte[]? body)
    {
        var request = context.Request;
        // Forward the target exactly as the client sent it: re-encoding the decoded path would turn a key holding a
        // literal escape such as "a%41b" into "aAb".
        string target = context.Features.Get<Microsoft.AspNetCore.Http.Features.IHttpRequestFeature>()?.RawTarget is { Length: > 0 } raw && raw[0] == '/'
            ? raw
            : $"{request.PathBase}{request.Path}{request.QueryString}";
        using var message = ForwardRequest(request.Method, new Uri($"{options.HttpScheme}://{leaderAddress}{target}", UriKind.Absolute), body, request.ContentType);
        message.Headers.TryAddWithoutValidation(ForwardedHeader, host.Id.ToString());

        using var client = clients.CreateClient();
        client.Timeout = host.RequestTimeout + TimeSpan.FromSeconds(1);
        HttpResponseMessage response;
        try
        {
            response = await client.SendAsync(message, context.RequestAborted);
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException)
        {
            ServerLog.ForwardFailed(logger, leaderAddress, e.Message);
            bool neverSent = e is HttpRequestException { HttpRequestError: HttpRequestError.ConnectionError };
            return Error(StatusCodes.Status503ServiceUnavailable,
                neverSent ? $"leader {leaderAddress} unreachable; not applied" : $"forwarding to leader {leaderAddress} failed: {e.Message}; outcome unknown",
                neverSent ? "not-applied" : "unknown", leaderAddress);
        }

        using (response)
        {
            byte[] answer = await response.Content.ReadAsByteArrayAsync(context.RequestAborted);
            await CatchUpWithLeaderAsync(response, context.RequestAborted);
            foreach (string header in new[] { VersionHeader, OutcomeHeader })
            {
                if (response.Headers.TryGetValues(header, out var values))
                {
                    context.Response.Headers[header] = values.ToArray();
                }
            }

            string contentType = response.Content.Headers.ContentType?.ToString() ?? "text/plain; charset=utf-8";
            return TypedResults.Bytes(answer, contentType) is var bytes && (int)response.StatusCode == 200
                ? bytes
                : new StatusBytesResult((int)response.StatusCode, answer, contentType);
        }
    }

    /// <summary>
    /// Read-your-writes on the node the client asked, as etcd gives: before a forwarded write is answered, this node
    /// applies as far as the leader had when it answered, the write included, so a stale read or a member list here
    /// right after the answer already shows it. A node that has not caught up within an election timeout is cut off
    /// from the leader's appends (its HTTP path to the leader still works): the answer goes out anyway, since the
    /// write is committed, and a warning is logged.
    /// </summary>
    private async Task CatchUpWithLeaderAsync(HttpResponseMessage response, CancellationToken cancellationToken)
    {
        if (!response.Headers.TryGetValues(AppliedHeader, out var values)
            || !ulong.TryParse(values.FirstOrDefault(), NumberStyles.None, CultureInfo.InvariantCulture, out ulong applied))
        {
            return;
        }

        try
        {
            await host.WaitForAppliedAsync(new LogIndex(applied), host.ElectionTimeout, cancellationToken);
        }
        catch (RaftHostException e)
        {
            ServerLog.ForwardCatchUpFailed(logger, e.Message);
        }
    }

    /// <summary>
    /// The request a follower sends to the leader for a write. It always carries a body, even an empty one: .NET's
    /// HttpClient silently resends a body-less request on a new connection when a reused connection closes before
    /// the response (dotnet/runtime#86714), even after the leader has read it. If the leader was killed, the resend
    /// fails with a connection error, and we would tell the client "not applied" about a write the leader may
    /// already have proposed and replicated. With a body, that resend cannot happen once the request is on the
    /// wire, so a connection error really means the leader never received it.
    /// </summary>
    internal static HttpRequestMessage ForwardRequest(string method, Uri target, byte[]? body, string? contentType)
    {
        var message = new HttpRequestMessage(new HttpMethod(method), target)
        {
            Content = new ByteArrayContent(body ?? []),
        };
        if (body is not null && contentType is not null && MediaTypeHeaderValue.TryParse(contentType, out var parsed))
        {
            message.Content.Headers.ContentType = parsed;
        }

        return message;
    }

    private async Task<(CacheEntry? Entry, IResult? Error)> ReadAsync(HttpContext context, string key, string? consistency)
    {
        if (KeyError(key) is { } keyError)
        {
            return (null, keyError);
        }

        if (ConsistencyOf(consistency) is not { } level)
        {
            return (null, ConsistencyError);
        }

        // One confirmation round serves every read waiting at that moment, HTTP and RESP alike.
        var barrier = await service.ReadBarrierAsync(level, context.RequestAborted);
        if (!barrier.Succeeded)
        {
            return (null, Error(StatusCodes.Status503ServiceUnavailable, barrier.Detail, "none"));
        }

        // A key is visible while its expiry is later than the read's time: the leader's time when it confirmed the
        // read index for a linearizable or lease read, the last applied log time for a stale one (docs/CACHE.md).
        long readTime = service.ReadTime(barrier);
        return host.Cache.TryGet(key, out var entry, readTime) ? (entry, null) : (null, null);
    }

    private static IResult ConsistencyError { get; } =
        Error(StatusCodes.Status400BadRequest, "consistency must be linearizable, lease or stale", "none");

    /// <summary>The answer to a key no read may name (empty, or over 4 KiB of UTF-8), or null.</summary>
    private static IResult? KeyError(string key)
    {
        if (key.Length == 0)
        {
            return Error(StatusCodes.Status400BadRequest, "key must not be empty", "none");
        }

        // A UTF-8 character takes at most 3 bytes per UTF-16 unit: only long keys are counted.
        return key.Length > CacheCommand.KeyBytesMax / 3 && Encoding.UTF8.GetByteCount(key) > CacheCommand.KeyBytesMax
            ? Error(StatusCodes.Status413PayloadTooLarge, "key too large", "none")
            : null;
    }

    /// <summary><c>?consistency=</c>: linearizable when absent; null for anything but the three levels.</summary>
    private static ReadConsistency? ConsistencyOf(string? consistency) => (consistency ?? "linearizable") switch
    {
        "stale" => ReadConsistency.Stale,
        "lease" => ReadConsistency.Lease,
        "linearizable" => ReadConsistency.Linearizable,
        _ => null,
    };

    private const int ExactBodyBytesMax = 64 * 1024;

    /// <summary>A request body whole: read straight into an array of its length when the client gave one.</summary>
    private static async ValueTask<byte[]> ReadBodyAsync(HttpContext context)
    {
        if (context.Request.ContentLength is { } length and <= ExactBodyBytesMax)
        {
            // A body that ends before its length is a client error Kestrel throws for. Larger bodies are copied, so
            // that a declared length is never allocated before Kestrel has checked it against the body limit.
            byte[] body = length == 0 ? [] : new byte[length];
            await context.Request.Body.ReadExactlyAsync(body, context.RequestAborted);
            return body;
        }

        using var buffer = new MemoryStream();
        await context.Request.Body.CopyToAsync(buffer, context.RequestAborted);
        return buffer.ToArray();
    }

    private static IResult WithVersion(HttpContext context, ulong version, IResult result)
    {
        context.Response.Headers[VersionHeader] = version.ToString(CultureInfo.InvariantCulture);
        return result;
    }

    private IResult HostError(RaftHostException e)
    {
        string? leader = e.Leader.IsNone ? null : host.Members.Find(e.Leader)?.HttpAddress ?? e.Leader.ToString();
        return Error(StatusCodes.Status503ServiceUnavailable, e.Message, e.OutcomeUnknown ? "unknown" : "not-applied", leader);
    }

    private static IResult Error(int statusCode, string message, string outcome, string? leader = null) =>
        new ErrorResult(statusCode, new ErrorView(message, outcome, leader));

    private bool TryParseMemberId(string text, out NodeId id)
    {
        if (ulong.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out ulong value) && value != 0)
        {
            id = new NodeId(value);
            return true;
        }

        // A name may have named a removed member before the current one (a node replaced under a new id): the
        // member in the configuration wins.
        var conf = host.Status.ConfState;
        var byName = host.Members.All.Where(m => m.Name == text || m.RaftAddress == CommandLine.NormalizeAddress(text))
            .OrderByDescending(m => conf.IsMember(new NodeId(m.Id))).FirstOrDefault();
        id = byName is null ? NodeId.None : new NodeId(byName.Id);
        return byName is not null;
    }

    private MemberView[] MemberViews(HostStatus status)
    {
        var ids = status.ConfState.Voters.Concat(status.ConfState.Learners).Distinct().OrderBy(i => i.Value);
        return ids.Select(id =>
        {
            var info = host.Members.Find(id);
            string role = id == status.Leader ? "leader" : status.ConfState.IsLearner(id) ? "learner" : id == host.Id ? status.Role : "follower";
            ulong? match = status.Progress.Where(p => p.Id == id).Select(p => (ulong?)p.Match.Value).FirstOrDefault();
            return new MemberView(id.ToString(), info?.Name ?? id.ToString(), info?.RaftAddress ?? string.Empty, info?.HttpAddress ?? string.Empty, role, match);
        }).ToArray();
    }

    private StatusView StatusOf(HostStatus status)
    {
        string leaderAddress = status.Leader.IsNone ? string.Empty : host.Members.Find(status.Leader)?.HttpAddress ?? string.Empty;
        return new StatusView(status.Id.ToString(), status.Name, status.Role, status.Term.Value, status.Leader.ToString(), leaderAddress,
            status.Commit.Value, status.Applied.Value, status.LastIndex.Value, status.SnapshotIndex.Value, host.Cache.Count,
            [.. status.ConfState.Voters.Select(v => v.ToString())], [.. status.ConfState.Learners.Select(v => v.ToString())]);
    }

    private sealed class ErrorResult(int statusCode, ErrorView error) : IResult
    {
        // Serialized on first use: a shared result (a key not found, a bad consistency) then costs no encoding.
        private byte[]? _body;

        /// <summary>The JSON body and a newline, with its length, in one write.</summary>
        public Task ExecuteAsync(HttpContext httpContext)
        {
            var response = httpContext.Response;
            response.StatusCode = statusCode;
            response.Headers[OutcomeHeader] = error.Outcome;
            byte[] body = _body ??= Serialize(error);
            response.ContentType = "application/json; charset=utf-8";
            response.ContentLength = body.Length;
            return response.Body.WriteAsync(body, httpContext.RequestAborted).AsTask();
        }

        private static byte[] Serialize(ErrorView error)
        {
            var body = new ArrayBufferWriter<byte>(128);
            using (var writer = new Utf8JsonWriter(body))
            {
                JsonSerializer.Serialize(writer, error, ApiJson.Default.ErrorView);
            }

            body.Write("\n"u8);
            return body.WrittenSpan.ToArray();
        }
    }

    private sealed class StatusBytesResult(int statusCode, byte[] body, string contentType) : IResult
    {
        public async Task ExecuteAsync(HttpContext httpContext)
        {
            httpContext.Response.StatusCode = statusCode;
            if (body.Length > 0 && statusCode is not (StatusCodes.Status204NoContent or StatusCodes.Status304NotModified))
            {
                httpContext.Response.ContentType = contentType;
                await httpContext.Response.Body.WriteAsync(body, httpContext.RequestAborted);
            }
        }
    }
}
