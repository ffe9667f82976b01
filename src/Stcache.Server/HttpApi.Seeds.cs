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
    /// <summary>The seeds' command lines' endpoints, answered as each seed answered them.</summary>
    private void MapSeeds(WebApplication app)
    {
        // stcache seed (000/001) and raft-demo seed (002/003)
        app.MapGet("/set", SeedSet);
        app.MapGet("/get", SeedGet);
        app.MapGet("/join", SeedJoin);

        // shaj13 seed (004)
        app.MapMethods("/", ["PUT", "POST"], (Delegate)SeedPut);
        app.MapGet("/mgmt/nodes", MgmtNodes);
        app.MapDelete("/mgmt/nodes/{id}", RemoveMember);
        app.MapGet("/{key}", SeedGetPath);

        // The shaj13 walkthrough removes a node with "curl -X DELETE http://host:api/<ID>".
        app.MapDelete("/{id}", RemoveMember);
    }

    private async Task<IResult> SeedSet(HttpContext context, string? key, string? value)
    {
        if (string.IsNullOrEmpty(key) || value is null)
        {
            return TypedResults.Text("invalid key or value\n", statusCode: StatusCodes.Status400BadRequest);
        }

        return await WriteAsync(context, CacheCommand.Set(key, Encoding.UTF8.GetBytes(value)), _ => TypedResults.Text("ok\n"));
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

        return await WriteAsync(context, CacheCommand.Set(key, Encoding.UTF8.GetBytes(entry.Value)),
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
}
