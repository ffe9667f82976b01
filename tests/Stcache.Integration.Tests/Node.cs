using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.Json;

namespace Stcache.Integration.Tests;

/// <summary>One real stcached process on loopback. Always killed on dispose.</summary>
public sealed class Node : IAsyncDisposable
{
    /// <summary>The build output, or the node named by STCACHE_TEST_NODE (a stcached.dll, e.g. out/stcached.dll from
    /// build.sh, ReadyToRun) to time that binary against the plain build (docs/PERFORMANCE.md, "Where a failover's
    /// time goes"). Named explicitly: a copy left beside the tests would silently test an old build.</summary>
    private static readonly string s_serverDll = Environment.GetEnvironmentVariable("STCACHE_TEST_NODE") is { Length: > 0 } chosen
        ? (File.Exists(chosen) ? Path.GetFullPath(chosen) : throw new FileNotFoundException("STCACHE_TEST_NODE names no file", chosen))
        : Path.Combine(AppContext.BaseDirectory, "stcached.dll");
    private readonly StringBuilder _output = new();
    private Process? _process;

    public Node(string name, string workDirectory, int httpPort, int raftPort, Func<Node, string[]> arguments)
    {
        Name = name;
        WorkDirectory = workDirectory;
        HttpPort = httpPort;
        RaftPort = raftPort;
        Arguments = arguments;
    }

    public string Name { get; }

    public string WorkDirectory { get; }

    public int HttpPort { get; }

    public int RaftPort { get; }

    public string Http => $"127.0.0.1:{HttpPort}";

    public string Raft => $"127.0.0.1:{RaftPort}";

    public Func<Node, string[]> Arguments { get; set; }

    /// <summary>The WAL segment size the node gets from its environment (<see cref="TestNodeSettings.WalSegmentSize"/>);
    /// null: none, the node's own default (64 MiB).</summary>
    public string? WalSegmentSize { get; set; } = TestNodeSettings.WalSegmentSize;

    public bool IsRunning => _process is { HasExited: false };

    public string Output
    {
        get
        {
            lock (_output)
            {
                return _output.ToString();
            }
        }
    }

    public int? ExitCode => _process is { HasExited: true } p ? p.ExitCode : null;

    public void Start(params string[] extra)
    {
        if (IsRunning)
        {
            throw new InvalidOperationException($"{Name} is already running");
        }

        var info = new ProcessStartInfo("dotnet")
        {
            WorkingDirectory = WorkDirectory,
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(s_serverDll);
        // STCACHE_TEST_NODE_ARGS: flags every node gets too (space-separated), e.g. --wal-pipeline=true to run the
        // process tests under the pipelined WAL.
        var common = (Environment.GetEnvironmentVariable("STCACHE_TEST_NODE_ARGS") ?? string.Empty).Split(' ', StringSplitOptions.RemoveEmptyEntries);
        foreach (string arg in Arguments(this).Concat(common).Concat(extra))
        {
            info.ArgumentList.Add(arg);
        }

        if (WalSegmentSize is not null)
        {
            info.Environment[TestNodeSettings.WalSegmentSizeVariable] = WalSegmentSize;
        }

        Directory.CreateDirectory(WorkDirectory);
        var process = new Process { StartInfo = info };
        process.OutputDataReceived += (_, e) => Append(e.Data);
        process.ErrorDataReceived += (_, e) => Append(e.Data);
        process.Start();
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _process = process;
    }

    /// <summary>kill -9.</summary>
    /// <summary>SIGKILL and wait for the exit. The process-tree walk reads /proc, which on a loaded machine can take
    /// long before the signal leaves; a measurement of what follows the kill skips it (stcached starts no
    /// children).</summary>
    public async Task KillAsync(bool entireProcessTree = true)
    {
        if (_process is { HasExited: false } p)
        {
            p.Kill(entireProcessTree);
            await p.WaitForExitAsync();
        }
    }

    /// <summary>Sends <paramref name="signal"/> (e.g. <c>STOP</c>, <c>CONT</c>) to every running node of
    /// <paramref name="nodes"/> with one <c>kill</c>, so they receive it at nearly the same moment. A stopped node is
    /// still killed on dispose: SIGKILL ends a stopped process.</summary>
    public static async Task SignalAsync(string signal, params Node[] nodes)
    {
        var pids = nodes.Where(n => n.IsRunning).Select(n => n._process!.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToList();
        using var kill = Process.Start("kill", ["-" + signal, .. pids]);
        await kill!.WaitForExitAsync();
        Assert.True(kill.ExitCode == 0, $"kill -{signal} {string.Join(' ', pids)} failed");
    }

    /// <summary>SIGTERM and wait for a clean exit (bounded), then kill.</summary>
    public async Task StopAsync()
    {
        if (_process is not { HasExited: false } p)
        {
            return;
        }

        using (var term = Process.Start("kill", ["-TERM", p.Id.ToString(System.Globalization.CultureInfo.InvariantCulture)]))
        {
            await term!.WaitForExitAsync();
        }

        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(10));
        try
        {
            await p.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            await KillAsync();
        }
    }

    /// <summary>Waits for the process to exit on its own; on timeout the failure carries its last log lines.</summary>
    public async Task WaitForExitAsync(TimeSpan timeout)
    {
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            await _process!.WaitForExitAsync(cancel.Token);
        }
        catch (OperationCanceledException)
        {
            throw new TimeoutException($"{Name} did not exit within {timeout.TotalSeconds:0}s; its log ends:\n{Api.Tail(Output, 40)}");
        }
    }

    public async ValueTask DisposeAsync()
    {
        await KillAsync();
        _process?.Dispose();
    }

    private void Append(string? line)
    {
        if (line is null)
        {
            return;
        }

        lock (_output)
        {
            _output.AppendLine(line);
        }
    }

}

/// <summary>HTTP helpers and bounded waits.</summary>
public static class Api
{
    public static readonly HttpClient Client = new() { Timeout = TimeSpan.FromSeconds(15) };

    public static async Task<(HttpStatusCode Status, string Body, HttpResponseMessage Response)> SendAsync(HttpMethod method, string url, byte[]? body = null)
    {
        using var request = new HttpRequestMessage(method, url);
        if (body is not null)
        {
            request.Content = new ByteArrayContent(body);
        }

        var response = await Client.SendAsync(request);
        string text = await response.Content.ReadAsStringAsync();
        return (response.StatusCode, text, response);
    }

    /// <summary>GET that must answer 200, through elections (see <see cref="SendThroughElectionsAsync"/>).</summary>
    public static async Task<string> GetStringAsync(string url)
    {
        var (status, body, _) = await SendThroughElectionsAsync(HttpMethod.Get, url);
        Assert.True(status == HttpStatusCode.OK, $"GET {url}: {(int)status} {body}");
        return body;
    }

    /// <summary>
    /// <see cref="SendAsync"/>, retried for up to 15 s while the answer is a 503 saying the request certainly had no
    /// effect (outcome "not-applied" or "none"): an election, which two loaded cores can cause at any time.
    /// </summary>
    public static async Task<(HttpStatusCode Status, string Body, HttpResponseMessage Response)> SendThroughElectionsAsync(HttpMethod method, string url, byte[]? body = null)
    {
        (HttpStatusCode Status, string Body, HttpResponseMessage Response) answer = default;
        await WaitUntilAsync($"{method} {url} answered with an effect (not a 503 of an election)", async () =>
        {
            answer = await SendAsync(method, url, body);
            return !(answer.Status == HttpStatusCode.ServiceUnavailable
                && (answer.Body.Contains("\"outcome\":\"not-applied\"", StringComparison.Ordinal) || answer.Body.Contains("\"outcome\":\"none\"", StringComparison.Ordinal)));
        }, TimeSpan.FromSeconds(15));
        return answer;
    }

    public static async Task<JsonElement?> StatusAsync(Node node)
    {
        if (!node.IsRunning)
        {
            return null;
        }

        try
        {
            using var response = await Client.GetAsync($"http://{node.Http}/v1/status");
            if (!response.IsSuccessStatusCode)
            {
                return null;
            }

            return JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement.Clone();
        }
        catch (HttpRequestException)
        {
            return null;
        }
    }

    /// <summary>Polls until the condition holds; fails with the nodes' output after the deadline. No fixed sleeps.</summary>
    public static async Task WaitUntilAsync(string what, Func<Task<bool>> condition, TimeSpan timeout, params Node[] nodes)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            try
            {
                if (await condition())
                {
                    return;
                }
            }
            catch (HttpRequestException)
            {
            }
            catch (TaskCanceledException)
            {
            }

            await Task.Delay(50);
        }

        var logs = string.Join("\n", nodes.Select(n => $"---- {n.Name} (running={n.IsRunning}) ----\n{Tail(n.Output, 40)}"));
        Assert.Fail($"timed out after {timeout.TotalSeconds}s waiting for: {what}\n{logs}");
    }

    /// <summary>Waits until every running node in <paramref name="nodes"/> agrees on one leader; returns it.</summary>
    public static async Task<Node> WaitForLeaderAsync(IReadOnlyList<Node> nodes, TimeSpan timeout, Node? notThis = null)
    {
        Node? leader = null;
        await WaitUntilAsync("one leader that every running node knows", async () =>
        {
            var running = nodes.Where(n => n.IsRunning && n != notThis).ToList();
            var statuses = await Task.WhenAll(running.Select(StatusAsync));
            if (statuses.Any(s => s is null))
            {
                return false;
            }

            var leaders = statuses.Select(s => s!.Value.GetProperty("leader").GetString()).Distinct().ToList();
            if (leaders.Count != 1 || leaders[0] == "0")
            {
                return false;
            }

            int index = Array.FindIndex(statuses, s => s!.Value.GetProperty("role").GetString() == "leader");
            leader = index >= 0 ? running[index] : null;
            return leader is not null;
        }, timeout, [.. nodes]);
        return leader!;
    }

    public static string Tail(string text, int lines)
    {
        var all = text.Split('\n');
        return string.Join('\n', all.Skip(Math.Max(0, all.Length - lines)));
    }
}

/// <summary>A temporary directory for one test's nodes; removed at the end.</summary>
public sealed class TempDirectory : IDisposable
{
    public TempDirectory()
    {
        Path = System.IO.Path.Combine(System.IO.Path.GetTempPath(), "stcache-it-" + Guid.NewGuid().ToString("N")[..8]);
        Directory.CreateDirectory(Path);
    }

    public string Path { get; }

    public void Dispose()
    {
        try
        {
            Directory.Delete(Path, true);
        }
        catch (IOException)
        {
        }
    }
}
