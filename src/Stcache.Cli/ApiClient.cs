using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using System.Text.Json.Serialization.Metadata;

namespace Stcache.Cli;

internal sealed record Response(HttpStatusCode Status, byte[] Body, string Endpoint)
{
    public bool IsSuccess => (int)Status is >= 200 and < 300;
}

internal sealed class NoNodeAnsweredException(string message) : Exception(message);

/// <summary>A request that answered with an error status; the message is the node's own text.</summary>
internal sealed class RequestFailedException(Response response)
    : Exception($"{(int)response.Status} {response.Status} from {response.Endpoint}: {System.Text.Encoding.UTF8.GetString(response.Body).Trim()}")
{
    public Response Response { get; } = response;
}

/// <summary>Sends a request to the first endpoint that answers; only connection failures move on to the next,
/// so a write is never sent twice.</summary>
internal sealed class ApiClient(HttpClient http, IReadOnlyList<string> endpoints)
{
    public HttpClient Http => http;

    public IReadOnlyList<string> Endpoints => endpoints;

    public static string BaseUrl(string endpoint) =>
        endpoint.Contains("://", StringComparison.Ordinal) ? endpoint.TrimEnd('/') : "http://" + endpoint;

    public async Task<Response> SendAsync(HttpMethod method, string pathAndQuery, byte[]? body = null, string contentType = "application/octet-stream", CancellationToken cancellationToken = default)
    {
        var failures = new List<string>();
        foreach (string endpoint in endpoints)
        {
            using var request = new HttpRequestMessage(method, BaseUrl(endpoint) + pathAndQuery);
            if (body is not null)
            {
                request.Content = new ByteArrayContent(body);
                request.Content.Headers.ContentType = new MediaTypeHeaderValue(contentType);
            }
            else if (method != HttpMethod.Get)
            {
                // HttpClient may resend a body-less request after the node read it (dotnet/runtime#86714); a body
                // rules that out, so a connection error below really means this node never got the write.
                request.Content = new ByteArrayContent([]);
            }

            try
            {
                using var response = await http.SendAsync(request, cancellationToken);
                return new Response(response.StatusCode, await response.Content.ReadAsByteArrayAsync(cancellationToken), endpoint);
            }
            catch (HttpRequestException e) when (e.HttpRequestError == HttpRequestError.ConnectionError)
            {
                failures.Add($"{endpoint}: {e.Message}");
            }
            catch (TaskCanceledException) when (!cancellationToken.IsCancellationRequested)
            {
                throw new NoNodeAnsweredException($"{endpoint} did not answer within the timeout (the outcome of a write is unknown)");
            }
        }

        throw new NoNodeAnsweredException("no node answered:\n  " + string.Join("\n  ", failures));
    }

    /// <summary>GET and parse JSON; a non-2xx answer throws <see cref="RequestFailedException"/>.</summary>
    public async Task<T> GetJsonAsync<T>(string pathAndQuery, JsonTypeInfo<T> type, CancellationToken cancellationToken = default)
    {
        var response = await SendAsync(HttpMethod.Get, pathAndQuery, cancellationToken: cancellationToken);
        if (!response.IsSuccess)
        {
            throw new RequestFailedException(response);
        }

        return JsonSerializer.Deserialize(response.Body, type) ?? throw new JsonException($"empty answer to {pathAndQuery}");
    }
}
