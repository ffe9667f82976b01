using System.Globalization;
using System.Text;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Routing;
using Stcache.Cache;
using Stcache.Raft;

namespace Stcache.Server;

internal sealed partial class HttpApi
{
    /// <summary><c>/v1</c>'s cluster endpoints (status, members, leadership, snapshots), which the leader serves
    /// (a follower proxies them), and the internal endpoint a follower forwards key-value writes to.</summary>
    private void MapCluster(RouteGroupBuilder v1)
    {
        v1.MapGet("/status", (HttpContext _) => TypedResults.Json(StatusOf(host.Status), ApiJson.Default.StatusView));
        v1.MapGet("/cluster", (Delegate)Cluster);
        v1.MapPost("/cluster/members", (Delegate)AddMember);
        v1.MapDelete("/cluster/members/{id}", RemoveMember);
        v1.MapPost("/cluster/transfer-leader", (Delegate)TransferLeader);
        v1.MapPost("/snapshot", (Delegate)Snapshot);
        v1.MapPost(CommandService.ProposePath["/v1".Length..], (Delegate)ProposeForwarded);
    }

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
        if (host.Members.IsRemoved(new NodeId(id)))
        {
            // Removal is for good and this node has applied it, so the leader refuses too; say so without asking.
            return RemovedIdError(new NodeId(id), name);
        }

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

    /// <summary>A node id names one incarnation of a data directory: once removed, it is never added again (a wiped
    /// node that came back under it would vote without the votes and log it had acknowledged). 409, not applied.</summary>
    private static IResult RemovedIdError(NodeId id, string name) =>
        Error(StatusCodes.Status409Conflict,
            $"node id {id} ({name}) was removed from the cluster, and a removed id is never added again: "
            + "a node that lost its data joins as a new member under a new id (start it with a new --name, or with none)",
            "not-applied");

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

    /// <summary>Proposes a membership change; while another one is still in progress (a typed refusal), tries again
    /// each time this node has applied the log it held at the refusal (woken by the host, not polled), within the
    /// request timeout. Null on success, else the answer to send.</summary>
    private async Task<IResult?> ConfChangeAsync(ConfChange change, CancellationToken cancellationToken)
    {
        var deadline = DateTime.UtcNow + host.RequestTimeout;
        while (true)
        {
            RaftHostException refused;
            try
            {
                await host.ChangeMembershipAsync(change, cancellationToken);
                return null;
            }
            catch (RaftHostException e) when (e.Kind == HostErrorKind.ConfChangeInProgress && DateTime.UtcNow < deadline)
            {
                refused = e;
            }
            catch (RaftHostException e) when (e.Kind == HostErrorKind.MemberIdRemoved)
            {
                return Error(StatusCodes.Status409Conflict, e.Message, "not-applied");
            }
            catch (RaftHostException e)
            {
                return HostError(e);
            }

            var remaining = deadline - DateTime.UtcNow;
            if (remaining <= TimeSpan.Zero)
            {
                return HostError(refused);
            }

            try
            {
                await host.WaitForLogAppliedAsync(remaining, cancellationToken);
            }
            catch (RaftHostException e) when (e.Kind == HostErrorKind.Timeout)
            {
                return HostError(refused); // still in progress at the deadline
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

        // Woken by the host's leadership change, not polled.
        using (var deadline = service.Deadline(context.RequestAborted))
        {
            if (await service.WaitForLeaderChangeAsync(status => status.Leader == target, deadline.Token) is { } took)
            {
                return TypedResults.Json(StatusOf(took), ApiJson.Default.StatusView);
            }
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

    /// <summary>The leader's side of <see cref="CommandService"/>'s forwarding: a follower's batch of encoded commands.</summary>
    private async Task<IResult> ProposeForwarded(HttpContext context)
    {
        byte[] body = await ReadBodyAsync(context);
        service.Trace.Reached(FailoverStage.ForwardedReceived);
        if (WriteRequest.DecodeAll(body, out string? problem) is not { } commands)
        {
            return Failure(StatusCodes.Status400BadRequest, FailureKind.Invalid, "bad forwarded commands: " + problem, "not-applied");
        }

        if (!host.Status.IsLeader)
        {
            return Failure(StatusCodes.Status503ServiceUnavailable, FailureKind.NoLeader, "not the leader (any more); not applied", "not-applied");
        }

        var outcomes = await service.ProposeLocallyAsync(commands, context.RequestAborted);
        service.Trace.Reached(FailoverStage.ForwardedAnswered);
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
}
