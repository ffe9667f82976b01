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
    // About 100 years: keeps now + ttl far from overflow.
    private const long MaxTtlSeconds = 3_153_600_000;

    /// <summary><c>/v1/kv</c>: a thin adapter over <see cref="CommandService"/> (reads at the asked consistency,
    /// writes proposed on or forwarded to the leader), mapping its typed outcomes to HTTP statuses.</summary>
    private void MapKv(RouteGroupBuilder v1)
    {
        v1.MapGet("/kv/{**key}", GetKey);
        v1.MapPut("/kv/{**key}", PutKey);
        v1.MapPost("/kv/{**key}", PutKey);
        v1.MapDelete("/kv/{**key}", DeleteKey);
    }

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
        return await WriteAsync(context, command, result => WriteAnswer(context, key, result), ttl ?? 0);
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

        return await WriteAsync(context, command, result => WriteAnswer(context, key, result));
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
}
