using System.Threading.Channels;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.Logging;
using Stcache.Raft;

namespace Stcache.Server;

/// <summary>
/// Every member's HTTP and RESP addresses in the replicated member book before any failover. A static cluster
/// (<c>--raft_cluster</c>) starts knowing only raft addresses, and a leader announces its own when elected; a
/// follower's stayed unknown until it first led. So at the first failover to a node that had never led, the
/// surviving follower could not forward one write ("has not published its HTTP address yet") until the new
/// leader's announcement was committed and applied: one more commit round, by a leader that had only just started
/// to lead. Now each follower asks its leader to record its addresses as soon as it knows the leader's, and the
/// leader proposes the same member-address entry it writes for itself.
/// </summary>
internal static partial class AddressAnnouncement
{
    public const string Path = "/v1/internal/announce";

    /// <summary>The leader's side: records a member's HTTP and RESP addresses, if the request names the member's id
    /// and raft address as the member book has them.</summary>
    public static void Map(WebApplication app, RaftHost host) =>
        app.MapPost(Path, (Delegate)((HttpContext context) => AcceptAsync(context, host)));

    /// <summary>The follower's side: announces <paramref name="self"/>'s addresses to each new leader that does not
    /// have them yet, until the node stops.</summary>
    public static void Start(RaftHost host, MemberInfo self, ServerOptions options, IHttpClientFactory clients, ILogger logger, CancellationToken stopping)
    {
        var wake = Channel.CreateBounded<bool>(new BoundedChannelOptions(1) { FullMode = BoundedChannelFullMode.DropWrite });
        host.LeadershipChanged += _ => wake.Writer.TryWrite(true);
        host.Members.Changed += _ => wake.Writer.TryWrite(true);
        wake.Writer.TryWrite(true);
        _ = Task.Run(() => AnnounceLoopAsync(host, self, options, clients, logger, wake.Reader, stopping), CancellationToken.None);
    }

    private static async Task AnnounceLoopAsync(RaftHost host, MemberInfo self, ServerOptions options, IHttpClientFactory clients, ILogger logger, ChannelReader<bool> wake, CancellationToken stopping)
    {
        try
        {
            while (await wake.WaitToReadAsync(stopping).ConfigureAwait(false))
            {
                wake.TryRead(out _);
                while (Needed(host, self) is { } leaderAddress)
                {
                    string? problem = await AnnounceAsync(leaderAddress, self, options, clients, stopping).ConfigureAwait(false);
                    if (problem is null)
                    {
                        // The entry's apply changes the member book, which wakes this loop to check again.
                        break;
                    }

                    AnnounceFailed(logger, leaderAddress, problem);
                    await Task.Delay(host.ElectionTimeout, stopping).ConfigureAwait(false);
                }
            }
        }
        catch (OperationCanceledException) when (stopping.IsCancellationRequested)
        {
        }
    }

    /// <summary>The leader's HTTP address when this node's addresses should be announced to it; otherwise null.</summary>
    private static string? Needed(RaftHost host, MemberInfo self)
    {
        var status = host.Status;
        if (status.Leader.IsNone || status.Leader == host.Id || !status.ConfState.IsMember(host.Id))
        {
            return null;
        }

        var known = host.Members.Find(host.Id);
        // A RESP address is never unset by an announcement (the book keeps a known one when an update has none).
        if (known is null || (known.HttpAddress == self.HttpAddress && (self.RespAddress is null || known.RespAddress == self.RespAddress)))
        {
            return null;
        }

        string? leaderAddress = host.Members.Find(status.Leader)?.HttpAddress;
        return string.IsNullOrEmpty(leaderAddress) ? null : leaderAddress;
    }

    /// <summary>Null once the leader has the entry applied; else why not.</summary>
    private static async Task<string?> AnnounceAsync(string leaderAddress, MemberInfo self, ServerOptions options, IHttpClientFactory clients, CancellationToken stopping)
    {
        using var message = HttpApi.ForwardRequest("POST", new Uri($"{options.HttpScheme}://{leaderAddress}{Path}", UriKind.Absolute), self.ToContext(), "application/json");
        using var client = clients.CreateClient();
        client.Timeout = options.RequestTimeout + TimeSpan.FromSeconds(1);
        try
        {
            using var response = await client.SendAsync(message, stopping).ConfigureAwait(false);
            return response.IsSuccessStatusCode ? null : $"{(int)response.StatusCode} {await response.Content.ReadAsStringAsync(stopping).ConfigureAwait(false)}".Trim();
        }
        catch (HttpRequestException e)
        {
            return e.Message;
        }
        catch (TaskCanceledException e) when (!stopping.IsCancellationRequested)
        {
            return e.Message;
        }
    }

    private static async Task<IResult> AcceptAsync(HttpContext context, RaftHost host)
    {
        using var buffer = new MemoryStream();
        await context.Request.Body.CopyToAsync(buffer, context.RequestAborted);
        var claimed = MemberInfo.FromContext(buffer.ToArray());
        if (claimed is null || claimed.Id == 0 || !IsAddress(claimed.HttpAddress) || (claimed.RespAddress is { } resp && !IsAddress(resp)))
        {
            return Refuse(StatusCodes.Status400BadRequest, "expected a member's JSON with its id, raft address and HTTP address (host:port)");
        }

        var id = new NodeId(claimed.Id);
        var status = host.Status;
        var known = host.Members.Find(id);
        if (!status.ConfState.IsMember(id) || known is null
            || !string.Equals(known.RaftAddress, CommandLine.NormalizeAddress(claimed.RaftAddress), StringComparison.Ordinal))
        {
            return Refuse(StatusCodes.Status409Conflict, $"node {id} is not a member at raft address {claimed.RaftAddress}");
        }

        if (!status.IsLeader)
        {
            return Refuse(StatusCodes.Status503ServiceUnavailable, "not the leader; not applied");
        }

        var updated = known with
        {
            HttpAddress = CommandLine.NormalizeAddress(claimed.HttpAddress),
            RespAddress = claimed.RespAddress is { } r ? CommandLine.NormalizeAddress(r) : known.RespAddress,
        };
        if (updated == known)
        {
            return TypedResults.Text("ok\n");
        }

        try
        {
            await host.ProposeAsync(HostCommand.EncodeMemberAddress(updated), context.RequestAborted);
            return TypedResults.Text("ok\n");
        }
        catch (RaftHostException e)
        {
            return Refuse(StatusCodes.Status503ServiceUnavailable, e.Message);
        }
    }

    private static bool IsAddress(string? address) =>
        !string.IsNullOrWhiteSpace(address) && address.Length <= 300 && address.LastIndexOf(':') is > 0 and var colon && colon < address.Length - 1;

    private static IResult Refuse(int statusCode, string message) =>
        TypedResults.Text(message + "\n", "text/plain; charset=utf-8", statusCode: statusCode);

    [LoggerMessage(1143, LogLevel.Warning, "Could not announce this node's addresses to the leader at {LeaderAddress}: {Reason}; retrying")]
    private static partial void AnnounceFailed(ILogger logger, string leaderAddress, string reason);
}
