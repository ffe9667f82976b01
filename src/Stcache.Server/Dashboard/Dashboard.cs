using System.Text.Json;
using System.Text.Json.Serialization;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Stcache.Raft;

namespace Stcache.Server;

public sealed record DashboardEvent(
    [property: JsonPropertyName("at")] long At,
    [property: JsonPropertyName("term")] ulong Term,
    [property: JsonPropertyName("leader")] string Leader,
    [property: JsonPropertyName("leaderName")] string? LeaderName);

public sealed record DashboardPeer(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("lastContactMs")] long? LastContactMs,
    [property: JsonPropertyName("roundTripMs")] double? RoundTripMs);

public sealed record DashboardHistogram(
    [property: JsonPropertyName("count")] long Count,
    [property: JsonPropertyName("buckets")] long[] Buckets);

/// <summary>One node as it sees itself: Raft position, cache, memory, the totals behind the rates, its peers.</summary>
public sealed record DashboardNode(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("role")] string Role,
    [property: JsonPropertyName("term")] ulong Term,
    [property: JsonPropertyName("leader")] string Leader,
    [property: JsonPropertyName("commit")] ulong Commit,
    [property: JsonPropertyName("applied")] ulong Applied,
    [property: JsonPropertyName("lastIndex")] ulong LastIndex,
    [property: JsonPropertyName("snapshotIndex")] ulong SnapshotIndex,
    [property: JsonPropertyName("keys")] int Keys,
    [property: JsonPropertyName("memoryBytes")] long MemoryBytes,
    [property: JsonPropertyName("memoryLimitBytes")] long? MemoryLimitBytes,
    [property: JsonPropertyName("requests")] DashboardHistogram Requests,
    [property: JsonPropertyName("fsync")] DashboardHistogram Fsync,
    [property: JsonPropertyName("expirations")] long Expirations,
    [property: JsonPropertyName("evictions")] long Evictions,
    [property: JsonPropertyName("peers")] DashboardPeer[] Peers,
    [property: JsonPropertyName("events")] DashboardEvent[] Events,
    [property: JsonPropertyName("at")] long At);

public sealed record DashboardMember(
    [property: JsonPropertyName("id")] string Id,
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("raftAddress")] string RaftAddress,
    [property: JsonPropertyName("apiAddress")] string ApiAddress,
    [property: JsonPropertyName("voter")] bool Voter,
    [property: JsonPropertyName("node")] DashboardNode? Node,
    [property: JsonPropertyName("error")] string? Error);

public sealed record DashboardCluster(
    [property: JsonPropertyName("self")] string Self,
    [property: JsonPropertyName("bounds")] IReadOnlyList<double> Bounds,
    [property: JsonPropertyName("members")] DashboardMember[] Members);

[JsonSerializable(typeof(DashboardNode))]
[JsonSerializable(typeof(DashboardCluster))]
public sealed partial class DashboardJson : JsonSerializerContext
{
}

/// <summary>
/// The dashboard at <c>/ui</c>: three static files embedded in the binary (no CDN, no build step) and two JSON
/// endpoints the page polls. <c>/ui/api/node</c> is this node alone; <c>/ui/api/cluster</c> gathers every
/// member's (a member that does not answer within a second is shown down). The page's actions call the ordinary
/// API, so they need the token when one is set; the static shell itself is served without it.
/// </summary>
internal static class Dashboard
{
    /// <summary>Served without the API token: they hold no data, and the page asks for the token.</summary>
    public static readonly string[] StaticPaths = ["/ui", "/ui/", "/ui/app.js", "/ui/app.css"];

    private const int EventsKept = 100;

    public static void Map(WebApplication app, NodeRuntime node, ServerOptions options, LocalAggregates aggregates)
    {
        var events = new LeaderEvents(node.Host);
        app.Lifetime.ApplicationStopped.Register(events.Dispose);

        var index = Asset("index.html");
        var script = Asset("app.js");
        var style = Asset("app.css");
        app.MapGet("/ui", () => Results.Bytes(index, "text/html; charset=utf-8"));
        app.MapGet("/ui/app.js", () => Results.Bytes(script, "text/javascript; charset=utf-8"));
        app.MapGet("/ui/app.css", () => Results.Bytes(style, "text/css; charset=utf-8"));
        app.MapGet("/ui/api/node", () => TypedResults.Json(NodeOf(node, aggregates, events), DashboardJson.Default.DashboardNode));
        app.MapGet("/ui/api/cluster", (Delegate)((HttpContext context) => ClusterAsync(context, node, options, aggregates, events)));
    }

    private static async Task<IResult> ClusterAsync(HttpContext context, NodeRuntime node, ServerOptions options, LocalAggregates aggregates, LeaderEvents events)
    {
        var status = node.Host.Status;
        var ids = status.ConfState.Voters.Concat(status.ConfState.Learners).Distinct().OrderBy(id => id.Value).ToList();
        using var client = context.RequestServices.GetRequiredService<IHttpClientFactory>().CreateClient();
        client.Timeout = TimeSpan.FromSeconds(1);
        var members = await Task.WhenAll(ids.Select(async id =>
        {
            var info = node.Host.Members.Find(id);
            string name = info?.Name ?? id.ToString();
            string api = info?.HttpAddress ?? string.Empty;
            string raft = info?.RaftAddress ?? string.Empty;
            bool voter = status.ConfState.IsVoter(id);
            if (id == node.Host.Id)
            {
                return new DashboardMember(id.ToString(), name, raft, api, voter, NodeOf(node, aggregates, events), null);
            }

            if (api.Length == 0)
            {
                return new DashboardMember(id.ToString(), name, raft, api, voter, null, "API address unknown");
            }

            try
            {
                using var response = await client.GetAsync($"{options.HttpScheme}://{api}/ui/api/node", context.RequestAborted);
                response.EnsureSuccessStatusCode();
                var remote = JsonSerializer.Deserialize(await response.Content.ReadAsByteArrayAsync(context.RequestAborted), DashboardJson.Default.DashboardNode);
                return new DashboardMember(id.ToString(), name, raft, api, voter, remote, null);
            }
            catch (Exception e) when (e is HttpRequestException or TaskCanceledException or JsonException)
            {
                return new DashboardMember(id.ToString(), name, raft, api, voter, null, "unreachable: " + e.Message);
            }
        }));
        return TypedResults.Json(new DashboardCluster(node.Host.Id.ToString(), LocalAggregates.Bounds, members), DashboardJson.Default.DashboardCluster);
    }

    private static DashboardNode NodeOf(NodeRuntime node, LocalAggregates aggregates, LeaderEvents events)
    {
        var host = node.Host;
        var status = host.Status;
        var requests = aggregates.Histogram("stcache.http.request");
        var fsync = aggregates.Histogram("stcache.wal.save");
        var peers = status.ConfState.Voters.Concat(status.ConfState.Learners).Where(id => id != host.Id).Distinct()
            .Select(id => new DashboardPeer(id.ToString(),
                node.Peers.SinceLastContact(id) is { } since ? (long)since.TotalMilliseconds : null,
                node.Peers.LastRoundTrip(id)?.TotalMilliseconds))
            .ToArray();
        return new DashboardNode(status.Id.ToString(), status.Name, status.Role, status.Term.Value, status.Leader.ToString(),
            status.Commit.Value, status.Applied.Value, status.LastIndex.Value, status.SnapshotIndex.Value, host.Cache.Count,
            host.Cache.UsedMemoryBytes, host.Cache.MaxMemoryBytes > 0 ? host.Cache.MaxMemoryBytes : null,
            new DashboardHistogram(requests.Count, requests.Buckets), new DashboardHistogram(fsync.Count, fsync.Buckets),
            host.Cache.ExpiredKeys, host.Cache.EvictedKeys,
            peers, events.Recent(), DateTimeOffset.UtcNow.ToUnixTimeMilliseconds());
    }

    private static byte[] Asset(string name)
    {
        using var stream = typeof(Dashboard).Assembly.GetManifestResourceStream("Stcache.Server.Dashboard." + name)
            ?? throw new InvalidOperationException($"dashboard asset {name} is not embedded");
        using var copy = new MemoryStream();
        stream.CopyTo(copy);
        return copy.ToArray();
    }

    /// <summary>The last leader changes this node saw (including "no leader"), newest last.</summary>
    private sealed class LeaderEvents : IDisposable
    {
        private readonly RaftHost _host;
        private readonly Queue<DashboardEvent> _events = new();
        private NodeId _leader = NodeId.None;

        public LeaderEvents(RaftHost host)
        {
            _host = host;
            host.LeadershipChanged += OnChanged;
            var status = host.Status;
            if (!status.Leader.IsNone)
            {
                OnChanged(new LeadershipChange(host.Id, status.Leader, RaftRole.Follower, status.Term));
            }
        }

        public void Dispose() => _host.LeadershipChanged -= OnChanged;

        public DashboardEvent[] Recent()
        {
            lock (_events)
            {
                return [.. _events];
            }
        }

        private void OnChanged(LeadershipChange change)
        {
            lock (_events)
            {
                if (change.Leader == _leader)
                {
                    return;
                }

                _leader = change.Leader;
                string? name = change.Leader.IsNone ? null : _host.Members.Find(change.Leader)?.Name;
                _events.Enqueue(new DashboardEvent(DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), change.Term.Value, change.Leader.ToString(), name));
                while (_events.Count > EventsKept)
                {
                    _events.Dequeue();
                }
            }
        }
    }
}
