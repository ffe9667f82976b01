using System.Globalization;
using System.Net;
using System.Text;
using Stcache.Cache;
using Stcache.Raft;
using Stcache.Storage;

namespace Stcache.Cli;

/// <summary>stcachectl: a small command-line client for stcached's /v1 API, plus offline data inspection.</summary>
public static class Program
{
    private const int ExitOk = 0;
    private const int ExitFailed = 1;
    private const int ExitUsage = 2;
    private const int ExitUnavailable = 3;

    private const string Usage = """
        usage: stcachectl [--endpoints [https://]host:port[,...]] [--token T] [--timeout seconds] <command> [args]

        commands:
          get <key> [--consistency linearizable|lease|stale]   print the value (raw bytes)
          set <key> <value> [--prev-version N]                 write a value (use - to read it from stdin)
          delete <key> [--prev-version N]                      delete a key
          members [list]                                       list members
          members add <raft host:port> <http host:port> [name] add a voting member
          members remove <id|name>                             remove a member
          transfer-leader [id|name]                            move leadership (default: most up-to-date voter)
          snapshot                                             take a snapshot on the node answering
          status                                               the answering node's status
          cluster                                              every member's status
          inspect <data-dir> [--from N] [--to N] [--limit N]   print a stopped or live node's stored state

        Endpoints default to $STCACHE_ENDPOINTS or 127.0.0.1:6000; each is tried in turn until one answers.
        Exit codes: 0 ok, 1 request failed, 2 usage, 3 no node answered.
        """;

    public static async Task<int> Main(string[] args)
    {
        var positional = new List<string>();
        var flags = new Dictionary<string, string>(StringComparer.Ordinal);
        for (int i = 0; i < args.Length; i++)
        {
            string arg = args[i];
            if (arg is "-h" or "--help" or "help")
            {
                Console.Out.Write(Usage);
                return ExitOk;
            }

            if (arg.StartsWith("--", StringComparison.Ordinal) && arg.Length > 2)
            {
                string name = arg[2..];
                string? value = null;
                int equals = name.IndexOf('=', StringComparison.Ordinal);
                if (equals >= 0)
                {
                    value = name[(equals + 1)..];
                    name = name[..equals];
                }
                else if (i + 1 < args.Length)
                {
                    value = args[++i];
                }

                if (value is null || name is not ("endpoints" or "token" or "timeout" or "consistency" or "prev-version" or "from" or "to" or "limit"))
                {
                    return Fail(ExitUsage, $"unknown or incomplete flag '{arg}'\n\n{Usage}");
                }

                flags[name] = value;
                continue;
            }

            positional.Add(arg);
        }

        if (positional.Count == 0)
        {
            return Fail(ExitUsage, Usage);
        }

        if (positional[0] == "inspect")
        {
            return Inspect(positional, flags);
        }

        string endpointList = flags.GetValueOrDefault("endpoints") ?? Environment.GetEnvironmentVariable("STCACHE_ENDPOINTS") ?? "127.0.0.1:6000";
        var endpoints = endpointList.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
        double timeoutSeconds = flags.TryGetValue("timeout", out string? t) && double.TryParse(t, CultureInfo.InvariantCulture, out double parsed) ? parsed : 10;
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(timeoutSeconds) };
        if ((flags.GetValueOrDefault("token") ?? Environment.GetEnvironmentVariable("STCACHE_AUTH_TOKEN")) is { Length: > 0 } token)
        {
            http.DefaultRequestHeaders.Authorization = new System.Net.Http.Headers.AuthenticationHeaderValue("Bearer", token);
        }

        var client = new Client(http, endpoints);
        try
        {
            return await RunAsync(client, positional, flags);
        }
        catch (NoNodeAnsweredException e)
        {
            return Fail(ExitUnavailable, e.Message);
        }
    }

    private static async Task<int> RunAsync(Client client, List<string> args, Dictionary<string, string> flags)
    {
        string command = args[0];
        string Arg(int index) => index < args.Count ? args[index] : throw new ArgumentException("missing argument");
        try
        {
            switch (command)
            {
                case "get":
                {
                    string consistency = flags.GetValueOrDefault("consistency") ?? "linearizable";
                    var response = await client.SendAsync(HttpMethod.Get, $"/v1/kv/{Escape(Arg(1))}?consistency={consistency}", null);
                    if (response.Status == HttpStatusCode.OK)
                    {
                        using var stdout = Console.OpenStandardOutput();
                        await stdout.WriteAsync(response.Body);
                        return ExitOk;
                    }

                    return Report(response);
                }

                case "set":
                {
                    string value = Arg(2);
                    byte[] body = value == "-" ? await ReadStdinAsync() : Encoding.UTF8.GetBytes(value);
                    string query = flags.TryGetValue("prev-version", out string? pv) ? $"?prevVersion={pv}" : string.Empty;
                    return Report(await client.SendAsync(HttpMethod.Put, $"/v1/kv/{Escape(Arg(1))}{query}", body));
                }

                case "delete":
                {
                    string query = flags.TryGetValue("prev-version", out string? pv) ? $"?prevVersion={pv}" : string.Empty;
                    return Report(await client.SendAsync(HttpMethod.Delete, $"/v1/kv/{Escape(Arg(1))}{query}", null));
                }

                case "members":
                {
                    string sub = args.Count > 1 ? args[1] : "list";
                    return sub switch
                    {
                        "list" => Report(await client.SendAsync(HttpMethod.Get, "/mgmt/nodes", null)),
                        "add" => Report(await client.SendAsync(HttpMethod.Post, "/v1/cluster/members", Encoding.UTF8.GetBytes(
                            $"{{\"raftAddress\":\"{Arg(2)}\",\"httpAddress\":\"{Arg(3)}\"{(args.Count > 4 ? $",\"name\":\"{args[4]}\"" : string.Empty)}}}"), "application/json")),
                        "remove" => Report(await client.SendAsync(HttpMethod.Delete, $"/v1/cluster/members/{Escape(Arg(2))}", null)),
                        _ => Fail(ExitUsage, $"unknown members command '{sub}'\n\n{Usage}"),
                    };
                }

                case "transfer-leader":
                {
                    string query = args.Count > 1 ? $"?id={Escape(args[1])}" : string.Empty;
                    return Report(await client.SendAsync(HttpMethod.Post, "/v1/cluster/transfer-leader" + query, null));
                }

                case "snapshot":
                    return Report(await client.SendAsync(HttpMethod.Post, "/v1/snapshot", null));
                case "status":
                    return Report(await client.SendAsync(HttpMethod.Get, "/v1/status", null));
                case "cluster":
                    return Report(await client.SendAsync(HttpMethod.Get, "/v1/cluster", null));
                default:
                    return Fail(ExitUsage, $"unknown command '{command}'\n\n{Usage}");
            }
        }
        catch (ArgumentException e)
        {
            return Fail(ExitUsage, $"{e.Message}\n\n{Usage}");
        }
    }

    private static int Inspect(List<string> args, Dictionary<string, string> flags)
    {
        if (args.Count < 2)
        {
            return Fail(ExitUsage, "inspect needs a data directory\n\n" + Usage);
        }

        var options = new InspectOptions
        {
            FromIndex = flags.TryGetValue("from", out string? from) ? new LogIndex(ulong.Parse(from, CultureInfo.InvariantCulture)) : null,
            ToIndex = flags.TryGetValue("to", out string? to) ? new LogIndex(ulong.Parse(to, CultureInfo.InvariantCulture)) : null,
            Limit = flags.TryGetValue("limit", out string? limit) ? int.Parse(limit, CultureInfo.InvariantCulture) : 100,
        };
        return new StorageInspector(args[1], DescribeEntry).Inspect(Console.Out, options);
    }

    /// <summary>Renders a cache command for the inspector's log listing.</summary>
    private static string DescribeEntry(ReadOnlyMemory<byte> data)
    {
        if (WriteCommand.TryDecode(data.Span, out var write, out long logTime, out _))
        {
            return $"{write!.Invocation.Op} at {logTime}: {string.Join(" ", write.Invocation.Args.Take(8).Select(arg => StorageInspector.Preview(arg.AsMemory())))}";
        }

        if (CacheCommand.TryDecode(data, out var command, out _))
        {
            string compare = command!.Compare switch
            {
                CompareKind.Version => $" if version={command.ExpectedVersion}",
                CompareKind.Value => " if value matches",
                _ => string.Empty,
            };
            return command.Kind == CommandKind.Set
                ? $"set {command.Key} = {StorageInspector.Preview(command.Value)}{compare}"
                : $"delete {command.Key}{compare}";
        }

        return StorageInspector.Preview(data);
    }

    private static int Report(Response response)
    {
        string text = Encoding.UTF8.GetString(response.Body);
        if ((int)response.Status is >= 200 and < 300)
        {
            Console.Out.Write(text.Length == 0 ? "ok\n" : text.EndsWith('\n') ? text : text + "\n");
            return ExitOk;
        }

        Console.Error.Write($"stcachectl: {(int)response.Status} {response.Status} from {response.Endpoint}: {text}{(text.EndsWith('\n') ? string.Empty : "\n")}");
        return ExitFailed;
    }

    private static int Fail(int code, string message)
    {
        Console.Error.Write("stcachectl: " + message + (message.EndsWith('\n') ? string.Empty : "\n"));
        return code;
    }

    private static string Escape(string segment) => Uri.EscapeDataString(segment);

    private static async Task<byte[]> ReadStdinAsync()
    {
        using var stdin = Console.OpenStandardInput();
        using var buffer = new MemoryStream();
        await stdin.CopyToAsync(buffer);
        return buffer.ToArray();
    }
}

internal sealed record Response(HttpStatusCode Status, byte[] Body, string Endpoint);

internal sealed class NoNodeAnsweredException(string message) : Exception(message);

/// <summary>Sends a request to the first endpoint that answers; only connection failures move on to the next,
/// so a write is never sent twice.</summary>
internal sealed class Client(HttpClient http, IReadOnlyList<string> endpoints)
{
    public async Task<Response> SendAsync(HttpMethod method, string pathAndQuery, byte[]? body, string contentType = "application/octet-stream")
    {
        var failures = new List<string>();
        foreach (string endpoint in endpoints)
        {
            using var request = new HttpRequestMessage(method, $"{(endpoint.Contains("://", StringComparison.Ordinal) ? endpoint : "http://" + endpoint)}{pathAndQuery}");
            if (body is not null)
            {
                request.Content = new ByteArrayContent(body);
                request.Content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue(contentType);
            }
            else if (method != HttpMethod.Get)
            {
                // HttpClient may resend a body-less request after the node read it (dotnet/runtime#86714); a body
                // rules that out, so a connection error below really means this node never got the write.
                request.Content = new ByteArrayContent([]);
            }

            try
            {
                using var response = await http.SendAsync(request);
                return new Response(response.StatusCode, await response.Content.ReadAsByteArrayAsync(), endpoint);
            }
            catch (HttpRequestException e) when (e.HttpRequestError == HttpRequestError.ConnectionError)
            {
                failures.Add($"{endpoint}: {e.Message}");
            }
            catch (TaskCanceledException)
            {
                throw new NoNodeAnsweredException($"{endpoint} did not answer within the timeout (the outcome of a write is unknown)");
            }
        }

        throw new NoNodeAnsweredException("no node answered:\n  " + string.Join("\n  ", failures));
    }
}
