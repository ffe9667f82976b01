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

/// <summary>The HTTP API: the seeds' endpoints and /v1. Handlers are thin; the host does the work.</summary>
internal sealed class HttpApi(RaftHost host, CommandService service, ServerOptions options, IHttpClientFactory clients, ILogger<HttpApi> logger)
{
    public const string VersionHeader = "X-Stcache-Version";
    public const string LeaderHeader = "X-Stcache-Leader";
    public const string OutcomeHeader = "X-Stcache-Outcome";
    public const string ForwardedHeader = "X-Stcache-Forwarded";

    /// <summary>On the leader's answer to a forwarded write: its applied index as it answered (the write included).</summary>
    public const string AppliedHeader = "X-Stcache-Applied";
    public const string ExpiresAtHeader = "X-Stcache-Expires-At";

    private static readonly UTF8Encoding s_strictUtf8 = new(false, true);

    public void Map(WebApplication app)
    {
        app.Use(RefuseBadRequestsAsync);
        app.MapGet("/healthz", () => TypedResults.Text("ok\n"));
        app.MapGet("/readyz", Ready);

        // stcache seed (000/001) and raft-demo seed (002/003)
        app.MapGet("/set", SeedSet);
        app.MapGet("/get", SeedGet);
        app.MapGet("/join", SeedJoin);

        // shaj13 seed (004)
        app.MapMethods("/", ["PUT", "POST"], (Delegate)SeedPut);
        app.MapGet("/mgmt/nodes", MgmtNodes);
        app.MapDelete("/mgmt/nodes/{id}", RemoveMember);

        var v1 = app.MapGroup("/v1");
        v1.MapGet("/kv/{**key}", GetKey);
        v1.MapPut("/kv/{**key}", PutKey);
        v1.MapPost("/kv/{**key}", PutKey);
        v1.MapDelete("/kv/{**key}", DeleteKey);
        v1.MapGet("/status", (HttpContext _) => TypedResults.Json(StatusOf(host.Status), ApiJson.Default.StatusView));
        v1.MapGet("/cluster", (Delegate)Cluster);
        v1.MapPost("/cluster/members", (Delegate)AddMember);
        v1.MapDelete("/cluster/members/{id}", RemoveMember);
        v1.MapPost("/cluster/transfer-leader", (Delegate)TransferLeader);
        v1.MapPost("/snapshot", (Delegate)Snapshot);
        v1.MapPost(CommandService.ProposePath["/v1".Length..], (Delegate)ProposeForwarded);

        app.MapGet("/{key}", SeedGetPath);

        // The shaj13 walkthrough removes a node with "curl -X DELETE http://host:api/<ID>".
        app.MapDelete("/{id}", RemoveMember);
    }

    /// <summary>
    /// Kestrel reports a request body that arrives below the minimum data rate (a slow client), exceeds the size
    /// limit or is malformed by throwing <see cref="BadHttpRequestException"/> from the body read. That is the
    /// client's fault, not a server error: answer with Kestrel's status (408, 413, 400) and one warning line,
    /// instead of an "unhandled exception" error with a stack trace for every slow client.
    /// </summary>
    private async Task RefuseBadRequestsAsync(HttpContext context, RequestDelegate next)
    {
        if (context.Request.Headers.ContainsKey(ForwardedHeader))
        {
            context.Response.OnStarting(() =>
            {
                context.Response.Headers[AppliedHeader] = host.Cache.AppliedIndex.Value.ToString(CultureInfo.InvariantCulture);
                return Task.CompletedTask;
            });
        }

        try
        {
            await next(context);
        }
        catch (BadHttpRequestException e) when (!context.Response.HasStarted)
        {
            string remote = context.Connection.RemoteIpAddress is { } address
                ? address + ":" + context.Connection.RemotePort.ToString(CultureInfo.InvariantCulture)
                : "unknown";
            ServerLog.BadRequestRefused(logger, context.Request.Method, remote, e.StatusCode, e.Message);
            context.Response.Clear();
            context.Response.StatusCode = e.StatusCode;
            await context.Response.WriteAsJsonAsync(new ErrorView(e.Message, "not-applied", null), ApiJson.Default.ErrorView);
        }
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

    // ---- seed endpoints -------------------------------------------------------------------------------------

    private async Task<IResult> SeedSet(HttpContext context, string? key, string? value)
    {
        if (string.IsNullOrEmpty(key) || value is null)
        {
            return TypedResults.Text("invalid key or value\n", statusCode: StatusCodes.Status400BadRequest);
        }

        return await WriteAsync(context, CacheCommand.Set(key, Encoding.UTF8.GetBytes(value)), null, _ => TypedResults.Text("ok\n"));
    }

    private async Task<IResult> SeedGet(HttpContext context, string? key, string? consistency)
    {
        if (string.IsNullOrEmpty(key))
        {
            return TypedResults.Text("invalid key\n", statusCode: StatusCodes.Status400BadRequest);
        }

        var (entry, error) = await ReadAsync(context, key, consistency);
        if (error is not null)
        {
            return error;
        }

        return entry is null ? TypedResults.Text(string.Empty) : TypedResults.Text(Encoding.UTF8.GetString(entry.Value));
    }

    private async Task<IResult> SeedGetPath(HttpContext context, string key, string? consistency)
    {
        var (entry, error) = await ReadAsync(context, key, consistency);
        if (error is not null)
        {
            return error;
        }

        return entry is null
            ? TypedResults.Text("key not found\n", statusCode: StatusCodes.Status404NotFound)
            : TypedResults.Text(Encoding.UTF8.GetString(entry.Value));
    }

    private async Task<IResult> SeedPut(HttpContext context)
    {
        byte[] body = await ReadBodyAsync(context);
        if (body.Length > options.ValueBytesMax + CacheCommand.KeyBytesMax * 6 + 64)
        {
            return Error(StatusCodes.Status413PayloadTooLarge, "request too large", "not-applied");
        }

        SeedEntry? entry;
        try
        {
            entry = JsonSerializer.Deserialize(body, ApiJson.Default.SeedEntry);
        }
        catch (JsonException e)
        {
            return Error(StatusCodes.Status400BadRequest, "malformed JSON: " + e.Message, "not-applied");
        }

        if (entry?.Key is not { Length: > 0 } key || entry.Value is null)
        {
            return Error(StatusCodes.Status400BadRequest, "expected {\"Key\":\"...\",\"Value\":\"...\"}", "not-applied");
        }

        return await WriteAsync(context, CacheCommand.Set(key, Encoding.UTF8.GetBytes(entry.Value)), body,
            result => WithVersion(context, result.Version, TypedResults.NoContent()));
    }

    private async Task<IResult> SeedJoin(HttpContext context, string? peerAddress, string? httpAddress, string? name, ulong? id)
    {
        if (string.IsNullOrEmpty(peerAddress))
        {
            return TypedResults.Text("invalid peerAddress\n", statusCode: StatusCodes.Status400BadRequest);
        }

        var result = await AddMemberCoreAsync(context, new MemberRequest(id, name, peerAddress, httpAddress), null);
        return result ?? TypedResults.Text("ok");
    }

    private IResult MgmtNodes() => TypedResults.Json(MemberViews(host.Status), ApiJson.Default.MemberViewArray);

    /// <summary>The leader's side of <see cref="CommandService"/>'s forwarding: a follower's batch of encoded commands.</summary>
    private async Task<IResult> ProposeForwarded(HttpContext context)
    {
        byte[] body = await ReadBodyAsync(context);
        if (WriteRequest.DecodeAll(body, out string? problem) is not { } commands)
        {
            return Failure(StatusCodes.Status400BadRequest, FailureKind.Invalid, "bad forwarded commands: " + problem, "not-applied");
        }

        if (!host.Status.IsLeader)
        {
            return Failure(StatusCodes.Status503ServiceUnavailable, FailureKind.NoLeader, "not the leader (any more); not applied", "not-applied");
        }

        var outcomes = await service.ProposeLocallyAsync(commands, context.RequestAborted);
        return TypedResults.Json(outcomes.Select(ForwardedResult.From).ToArray(), CommandJson.Default.ForwardedResultArray);
    }

    private static IResult Failure(int statusCode, FailureKind failure, string message, string outcome) =>
        new FailureResult(Error(statusCode, message, outcome), failure);

    private sealed class FailureResult(IResult inner, FailureKind failure) : IResult
    {
        public Task ExecuteAsync(HttpContext httpContext)
        {
            httpContext.Response.Headers[CommandService.FailureHeader] = failure.ToString();
            return inner.ExecuteAsync(httpContext);
        }
    }

    // ---- /v1/kv ---------------------------------------------------------------------------------------------

    private async Task<IResult> GetKey(HttpContext context, string key, string? consistency)
    {
        var (entry, error) = await ReadAsync(context, key, consistency);
        if (error is not null)
        {
            return error;
        }

        if (entry is null)
        {
            return Error(StatusCodes.Status404NotFound, "key not found", "none");
        }

        if (entry.ExpiresAtUnixMs != 0)
        {
            // The stamped expiry (Unix ms), the same on every node (docs/CACHE.md).
            context.Response.Headers[ExpiresAtHeader] = entry.ExpiresAtUnixMs.ToString(CultureInfo.InvariantCulture);
        }

        return WithVersion(context, entry.Version, TypedResults.Bytes(entry.Value, "application/octet-stream"));
    }

    private async Task<IResult> PutKey(HttpContext context, string key, ulong? prevVersion, string? prevValue, long? ttl)
    {
        if (ttl is <= 0 or > MaxTtlSeconds)
        {
            return Error(StatusCodes.Status400BadRequest, $"ttl must be a whole number of seconds from 1 to {MaxTtlSeconds}", "not-applied");
        }

        if (context.Request.ContentLength > options.ValueBytesMax)
        {
            return Error(StatusCodes.Status413PayloadTooLarge, $"value larger than {options.ValueBytesMax} bytes", "not-applied");
        }

        byte[] body;
        try
        {
            body = await ReadBodyAsync(context);
        }
        catch (BadHttpRequestException e) when (e.StatusCode == StatusCodes.Status413PayloadTooLarge)
        {
            return Error(StatusCodes.Status413PayloadTooLarge, $"value larger than {options.ValueBytesMax} bytes", "not-applied");
        }

        if (prevVersion is not null && prevValue is not null)
        {
            return Error(StatusCodes.Status400BadRequest, "give prevVersion or prevValue, not both", "not-applied");
        }

        var command = prevVersion is { } version
            ? CacheCommand.SetIfVersion(key, body, version)
            : prevValue is not null ? CacheCommand.SetIfValue(key, body, Encoding.UTF8.GetBytes(prevValue)) : CacheCommand.Set(key, body);
        return await WriteAsync(context, command, body, result => WriteAnswer(context, key, result), ttl ?? 0);
    }

    private async Task<IResult> DeleteKey(HttpContext context, string key, ulong? prevVersion, string? prevValue)
    {
        if (prevVersion is not null && prevValue is not null)
        {
            return Error(StatusCodes.Status400BadRequest, "give prevVersion or prevValue, not both", "not-applied");
        }

        var command = CacheCommand.Delete(key);
        if (prevVersion is { } version)
        {
            command = command with { Compare = CompareKind.Version, ExpectedVersion = version };
        }
        else if (prevValue is not null)
        {
            command = command with { Compare = CompareKind.Value, ExpectedValue = Encoding.UTF8.GetBytes(prevValue) };
        }

        return await WriteAsync(context, command, null, result => WriteAnswer(context, key, result));
    }

    private static IResult WriteAnswer(HttpContext context, string key, ApplyResult result)
    {
        var view = new KvWriteView(key, result.Succeeded, result.Version, result.PreviousExisted);
        return result.Status switch
        {
            ApplyStatus.Ok => WithVersion(context, result.Version, TypedResults.Json(view, ApiJson.Default.KvWriteView)),
            ApplyStatus.CompareFailed => WithVersion(context, result.Version,
                TypedResults.Json(view, ApiJson.Default.KvWriteView, statusCode: StatusCodes.Status412PreconditionFailed)),
            ApplyStatus.OutOfMemory => Error(StatusCodes.Status507InsufficientStorage, RedisErrors.OutOfMemory, "not-applied"),
            _ => Error(StatusCodes.Status400BadRequest, "invalid command", "not-applied"),
        };
    }

    // ---- cluster --------------------------------------------------------------------------------------------

    private async Task<IResult> AddMember(HttpContext context)
    {
        byte[] body = await ReadBodyAsync(context);
        MemberRequest? request;
        try
        {
            request = JsonSerializer.Deserialize(body, ApiJson.Default.MemberRequest);
        }
        catch (JsonException e)
        {
            return Error(StatusCodes.Status400BadRequest, "malformed JSON: " + e.Message, "not-applied");
        }

        if (request is null)
        {
            return Error(StatusCodes.Status400BadRequest, "expected {\"raftAddress\":\"host:port\",\"httpAddress\":\"host:port\"}", "not-applied");
        }

        var result = await AddMemberCoreAsync(context, request, body);
        return result ?? TypedResults.Json(MemberViews(host.Status), ApiJson.Default.MemberViewArray);
    }

    /// <summary>Adds a member; null on success, else the answer to send.</summary>
    private async Task<IResult?> AddMemberCoreAsync(HttpContext context, MemberRequest request, byte[]? body)
    {
        if (string.IsNullOrWhiteSpace(request.RaftAddress) || !request.RaftAddress.Contains(':', StringComparison.Ordinal))
        {
            return Error(StatusCodes.Status400BadRequest, "raftAddress must be host:port", "not-applied");
        }

        string raftAddress = CommandLine.NormalizeAddress(request.RaftAddress);
        string name = string.IsNullOrEmpty(request.Name) ? raftAddress : request.Name;
        ulong id = request.Id is > 0 ? request.Id.Value : MemberInfo.IdFromName(name);
        string httpAddress = string.IsNullOrEmpty(request.HttpAddress) ? string.Empty : CommandLine.NormalizeAddress(request.HttpAddress);
        var info = new MemberInfo(id, name, raftAddress, httpAddress);

        var status = host.Status;
        var existing = host.Members.Find(new NodeId(id));
        if (status.ConfState.IsVoter(new NodeId(id)) && existing is not null && existing.RaftAddress == raftAddress)
        {
            return null; // joining again is harmless
        }

        if (IdClaimedElsewhere(status, existing, raftAddress) is { } conflict)
        {
            return conflict;
        }

        var forward = await LeaderOrForwardAsync(context, body ?? JsonSerializer.SerializeToUtf8Bytes(request, ApiJson.Default.MemberRequest));
        if (forward is not null)
        {
            return forward;
        }

        // A new member joins as a learner; the leader's host promotes it to voter once it has caught up
        // (thesis §4.2.1, RaftHost.PromoteCaughtUpLearners). An empty voter would count towards the quorum at once,
        // stalling commits, or blocking them for good if it never came up.
        var nodeId = new NodeId(id);
        if (host.Status.ConfState.IsMember(nodeId))
        {
            return null;
        }

        return await ConfChangeAsync(new ConfChange(ConfChangeType.AddLearner, nodeId, info.ToContext()), context.RequestAborted);
    }

    /// <summary>
    /// A join that names an existing member's id at another raft address is a second process claiming that id (a
    /// copied data directory, a reused --name), not the member itself: refused with 409. Accepting it would let
    /// the node serving a raft-channel join point its link for that id at the newcomer, so the real member stops
    /// hearing the leader, which counts the newcomer's answers as the member's. A member's raft address changes
    /// only through the replicated member book (its conf change, or its own announcement as leader); to move a
    /// member, remove it first.
    /// </summary>
    private IResult? IdClaimedElsewhere(HostStatus status, MemberInfo? existing, string raftAddress)
    {
        if (existing is null || existing.RaftAddress.Length == 0 || !status.ConfState.IsMember(new NodeId(existing.Id))
            || string.Equals(CommandLine.NormalizeAddress(existing.RaftAddress), raftAddress, StringComparison.Ordinal))
        {
            return null;
        }

        ServerLog.MemberIdConflict(logger, new NodeId(existing.Id), existing.RaftAddress, raftAddress);
        return Error(StatusCodes.Status409Conflict,
            $"node id {existing.Id} ({existing.Name}) is already a member at raft address {existing.RaftAddress}, not {raftAddress}: "
            + "two processes claim one id; give the new node its own --name (or remove the old member first)",
            "not-applied");
    }

    private async Task<IResult> RemoveMember(HttpContext context, string id)
    {
        if (!TryParseMemberId(id, out var nodeId))
        {
            return Error(StatusCodes.Status400BadRequest, $"'{id}' is not a member id or name", "not-applied");
        }

        if (!host.Status.ConfState.IsMember(nodeId))
        {
            return Error(StatusCodes.Status404NotFound, $"node {nodeId} is not a member", "not-applied");
        }

        var forward = await LeaderOrForwardAsync(context, null);
        if (forward is not null)
        {
            return forward;
        }

        var result = await ConfChangeAsync(new ConfChange(ConfChangeType.RemoveNode, nodeId, ReadOnlyMemory<byte>.Empty), context.RequestAborted);
        return result ?? TypedResults.Text("ok\n");
    }

    private async Task<IResult?> ConfChangeAsync(ConfChange change, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + host.RequestTimeout;
        while (true)
        {
            try
            {
                await host.ChangeMembershipAsync(change, cancellationToken);
                return null;
            }
            catch (RaftHostException e) when (e.Kind == HostErrorKind.ConfChangeRejected && e.Message.Contains("in progress", StringComparison.Ordinal) && DateTime.UtcNow < deadline)
            {
                await Task.Delay(100, cancellationToken);
            }
            catch (RaftHostException e)
            {
                return HostError(e);
            }
        }
    }

    private async Task<IResult> TransferLeader(HttpContext context)
    {
        byte[] body = await ReadBodyAsync(context);
        TransferRequest? request = null;
        if (body.Length > 0)
        {
            try
            {
                request = JsonSerializer.Deserialize(body, ApiJson.Default.TransferRequest);
            }
            catch (JsonException e)
            {
                return Error(StatusCodes.Status400BadRequest, "malformed JSON: " + e.Message, "not-applied");
            }
        }

        string? targetText = request?.Id ?? context.Request.Query["id"].FirstOrDefault();
        var forward = await LeaderOrForwardAsync(context, body);
        if (forward is not null)
        {
            return forward;
        }

        var status = host.Status;
        NodeId target;
        if (targetText is not null)
        {
            if (!TryParseMemberId(targetText, out target) || !status.ConfState.IsVoter(target))
            {
                return Error(StatusCodes.Status400BadRequest, $"'{targetText}' is not a voting member", "not-applied");
            }
        }
        else
        {
            var best = status.Progress.Where(p => p.Id != host.Id && !p.IsLearner).OrderByDescending(p => p.Match).FirstOrDefault();
            if (best.Id.IsNone)
            {
                return Error(StatusCodes.Status400BadRequest, "no other voter to transfer to", "not-applied");
            }

            target = best.Id;
        }

        if (target == host.Id)
        {
            return TypedResults.Json(StatusOf(status), ApiJson.Default.StatusView);
        }

        var started = await host.TransferLeadershipAsync(target, context.RequestAborted);
        if (started != ProposeStatus.Accepted)
        {
            return Error(StatusCodes.Status503ServiceUnavailable, $"transfer refused: {started}", "not-applied");
        }

        var deadline = DateTime.UtcNow + host.RequestTimeout;
        while (DateTime.UtcNow < deadline)
        {
            if (host.Status.Leader == target)
            {
                return TypedResults.Json(StatusOf(host.Status), ApiJson.Default.StatusView);
            }

            await Task.Delay(20, context.RequestAborted);
        }

        return Error(StatusCodes.Status503ServiceUnavailable, $"node {target} did not take over within the request timeout", "unknown");
    }

    private async Task<IResult> Snapshot(HttpContext context)
    {
        try
        {
            var metadata = await host.SnapshotAsync(context.RequestAborted);
            return TypedResults.Json(new SnapshotView(metadata.Index.Value, metadata.Term.Value), ApiJson.Default.SnapshotView);
        }
        catch (RaftHostException e)
        {
            return HostError(e);
        }
        catch (IOException e)
        {
            return Error(StatusCodes.Status500InternalServerError, "snapshot failed: " + e.Message, "none");
        }
    }

    private async Task<IResult> Cluster(HttpContext context)
    {
        var status = host.Status;
        var members = MemberViews(status);
        using var client = clients.CreateClient();
        client.Timeout = TimeSpan.FromSeconds(1);
        var views = await Task.WhenAll(members.Select(async member =>
        {
            if (member.Id == host.Id.ToString())
            {
                return new ClusterMemberView(member, StatusOf(status), null);
            }

            if (member.ApiAddress.Length == 0)
            {
                return new ClusterMemberView(member, null, "API address unknown");
            }

            try
            {
                using var response = await client.GetAsync($"{options.HttpScheme}://{member.ApiAddress}/v1/status", context.RequestAborted);
                response.EnsureSuccessStatusCode();
                var remote = JsonSerializer.Deserialize(await response.Content.ReadAsByteArrayAsync(context.RequestAborted), ApiJson.Default.StatusView);
                return new ClusterMemberView(member, remote, null);
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException or JsonException)
            {
                return new ClusterMemberView(member, null, "unreachable: " + e.Message);
            }
        }));
        return TypedResults.Json(new ClusterView(status.Leader.ToString(), status.Term.Value, views), ApiJson.Default.ClusterView);
    }

    // ---- shared plumbing ------------------------------------------------------------------------------------

    // About 100 years: keeps now + ttl far from overflow.
    private const long MaxTtlSeconds = 3_153_600_000;

    /// <summary>The leader's log time for a write it proposes: its clock, never behind the last log time.</summary>
    private long LogTimeNow() => Math.Max(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), host.Cache.LastLogTimeUnixMs);

    private async Task<IResult> WriteAsync(HttpContext context, CacheCommand command, byte[]? body, Func<ApplyResult, IResult> success, long ttlSeconds = 0)
    {
        string? problem = command.Validate();
        if (problem is not null)
        {
            bool tooLarge = Encoding.UTF8.GetByteCount(command.Key) > CacheCommand.KeyBytesMax
                || command.Value.Length > CacheCommand.ValueBytesMax || command.ExpectedValue.Length > CacheCommand.ValueBytesMax;
            return Error(tooLarge ? StatusCodes.Status413PayloadTooLarge : StatusCodes.Status400BadRequest, problem, "not-applied");
        }

        if (command.Value.Length > options.ValueBytesMax)
        {
            return Error(StatusCodes.Status413PayloadTooLarge, $"value larger than {options.ValueBytesMax} bytes", "not-applied");
        }

        var forward = await LeaderOrForwardAsync(context, body);
        if (forward is not null)
        {
            return forward;
        }

        // On the leader: stamp the log time, and turn a relative TTL into an absolute expiry (docs/CACHE.md).
        long logTime = LogTimeNow();
        command = command with { LogTimeUnixMs = logTime, ExpiresAtUnixMs = ttlSeconds > 0 ? logTime + (ttlSeconds * 1000) : command.ExpiresAtUnixMs };
        var outcome = await service.ProposeLocallyAsync(WriteRequest.Of(command), context.RequestAborted);
        return outcome.Status == WriteStatus.Applied ? success(outcome.Result) : OutcomeError(outcome);
    }

    /// <summary>A write that did not complete, from its typed outcome.</summary>
    private IResult OutcomeError(WriteOutcome outcome)
    {
        string? leader = outcome.Leader.IsNone ? null : host.Members.Find(outcome.Leader)?.HttpAddress ?? outcome.Leader.ToString();
        int code = outcome.Failure == FailureKind.Invalid ? StatusCodes.Status400BadRequest : StatusCodes.Status503ServiceUnavailable;
        return Error(code, outcome.Detail, outcome.Status == WriteStatus.Unknown ? "unknown" : "not-applied", leader);
    }

    /// <summary>Null when this node is the leader; otherwise the answer: forwarded, refused, or no leader.</summary>
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

        var leader = host.Members.Find(status.Leader);
        string leaderAddress = leader?.HttpAddress ?? string.Empty;
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
        if (key.Length == 0)
        {
            return (null, Error(StatusCodes.Status400BadRequest, "key must not be empty", "none"));
        }

        if (Encoding.UTF8.GetByteCount(key) > CacheCommand.KeyBytesMax)
        {
            return (null, Error(StatusCodes.Status413PayloadTooLarge, "key too large", "none"));
        }

        var barrier = ReadOutcome.Ok;
        switch (consistency ?? "linearizable")
        {
            case "stale":
            case "linearizable":
            case "lease":
                // One confirmation round serves every read waiting at that moment, HTTP and RESP alike.
                barrier = await service.ReadBarrierAsync(
                    consistency switch { "stale" => ReadConsistency.Stale, "lease" => ReadConsistency.Lease, _ => ReadConsistency.Linearizable },
                    context.RequestAborted);
                if (!barrier.Succeeded)
                {
                    return (null, Error(StatusCodes.Status503ServiceUnavailable, barrier.Detail, "none"));
                }

                break;
            default:
                return (null, Error(StatusCodes.Status400BadRequest, "consistency must be linearizable, lease or stale", "none"));
        }

        // A key is visible while its expiry is later than the read's time: the leader's time when it confirmed the
        // read index for a linearizable or lease read, the last applied log time for a stale one (docs/CACHE.md).
        long readTime = service.ReadTime(barrier);
        return host.Cache.TryGet(key, out var entry, readTime) ? (entry, null) : (null, null);
    }

    private static async Task<byte[]> ReadBodyAsync(HttpContext context)
    {
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

        var byName = host.Members.All.FirstOrDefault(m => m.Name == text || m.RaftAddress == CommandLine.NormalizeAddress(text));
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
        public async Task ExecuteAsync(HttpContext httpContext)
        {
            httpContext.Response.StatusCode = statusCode;
            httpContext.Response.Headers[OutcomeHeader] = error.Outcome;
            httpContext.Response.ContentType = "application/json; charset=utf-8";
            await JsonSerializer.SerializeAsync(httpContext.Response.Body, error, ApiJson.Default.ErrorView, httpContext.RequestAborted);
            await httpContext.Response.Body.WriteAsync("\n"u8.ToArray(), httpContext.RequestAborted);
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
