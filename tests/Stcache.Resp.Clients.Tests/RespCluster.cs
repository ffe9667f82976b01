using System.Globalization;
using System.Net.Sockets;
using System.Text;
using Stcache.Integration.Tests;
using Stcache.Testing;

namespace Stcache.Resp.Clients.Tests;

using Node = Stcache.Integration.Tests.Node;

/// <summary>Three stcached processes on loopback (a static raft-demo cluster) with RESP listeners; killed at the end.</summary>
public abstract class RespClusterTest : ProcessTest
{
    protected static readonly TimeSpan Wait = TimeSpan.FromSeconds(30);

    protected Dictionary<Node, int> RespPorts { get; } = [];

    protected Node[] StartCluster(string name, params string[] extra)
    {
        var ports = Enumerable.Range(0, 3).Select(_ => (Http: FreePorts.Next(), Raft: FreePorts.Next(), Resp: FreePorts.Next())).ToArray();
        string cluster = string.Join(',', ports.Select((p, i) => $"{i + 1}/127.0.0.1:{p.Raft}"));
        var nodes = ports.Select((p, i) => new Node($"{name}{i + 1}", WorkDirectory.Path, p.Http, p.Raft, n =>
            [$"--http_addr={n.Http}", $"--raft_addr={n.Raft}", $"--raft_id={i + 1}", $"--raft_cluster={cluster}", $"--resp=127.0.0.1:{p.Resp}",
             $"--node={Path.Combine(WorkDirectory.Path, $"{name}-{i + 1}")}", .. extra])).ToArray();
        for (int i = 0; i < nodes.Length; i++)
        {
            RespPorts[nodes[i]] = ports[i].Resp;
            Nodes.Add(nodes[i]);
            nodes[i].Start();
        }

        return nodes;
    }

    protected Node StartSingle(string name, params string[] extra)
    {
        var node = new Node(name, WorkDirectory.Path, FreePorts.Next(), FreePorts.Next(), n =>
            [$"--http={n.Http}", $"--raft={n.Raft}", $"--node={Path.Combine(WorkDirectory.Path, name)}", "--bootstrap=true", .. extra]);
        int resp = FreePorts.Next();
        node.Arguments = WithResp(node.Arguments, resp);
        RespPorts[node] = resp;
        Nodes.Add(node);
        node.Start();
        return node;
    }

    private static Func<Node, string[]> WithResp(Func<Node, string[]> arguments, int port) => n => [.. arguments(n), $"--resp=127.0.0.1:{port}"];

    /// <summary>The nodes' logs, for a failing test's output.</summary>
    protected string Logs() => string.Join("\n", Nodes.Select(n => $"---- {n.Name} (running={n.IsRunning}) ----\n{Api.Tail(n.Output, 60)}"));

    protected string Endpoint(Node node) => "127.0.0.1:" + RespPorts[node].ToString(CultureInfo.InvariantCulture);

    /// <summary>Waits until every running node answers PING on RESP and they agree on a leader; returns the leader.</summary>
    protected async Task<Node> WaitForClusterAsync(Node[] nodes, Node? notThis = null)
    {
        var leader = await Api.WaitForLeaderAsync(nodes, Wait, notThis);
        foreach (var node in nodes.Where(n => n.IsRunning))
        {
            await Api.WaitUntilAsync($"{node.Name} answers PING on RESP", async () =>
            {
                await using var client = await RawClient.ConnectAsync(RespPorts[node]);
                return await client.CommandAsync("PING") == "+PONG";
            }, Wait, nodes);
        }

        return leader;
    }

    /// <summary>Runs a program to completion (bounded); returns exit code and output.</summary>
    public static async Task<(int Code, string Output)> RunAsync(string program, IEnumerable<string> arguments, string? input = null, TimeSpan? timeout = null)
    {
        var run = await ChildProcess.RunAsync(program, arguments, timeout ?? TimeSpan.FromSeconds(120), input);
        return (run.Code, run.Stdout + run.Stderr);
    }
}

/// <summary>A minimal RESP client for protocol tests: sends raw bytes, reads one reply as its RESP text.</summary>
public sealed class RawClient : IAsyncDisposable
{
    private readonly TcpClient _tcp;
    private readonly Stream _stream;
    private readonly byte[] _buffer = new byte[64 * 1024];
    private int _start;
    private int _end;

    private RawClient(TcpClient tcp, Stream? stream = null)
    {
        _tcp = tcp;
        _stream = stream ?? tcp.GetStream();
    }

    /// <summary>A connection over TLS that trusts only <paramref name="ca"/> and checks the name 127.0.0.1.</summary>
    public static async Task<RawClient> ConnectTlsAsync(int port, System.Security.Cryptography.X509Certificates.X509Certificate2 ca)
    {
        var tcp = new TcpClient { NoDelay = true };
        await tcp.ConnectAsync("127.0.0.1", port);
        var tls = new System.Net.Security.SslStream(tcp.GetStream(), leaveInnerStreamOpen: false);
        var trust = new System.Security.Cryptography.X509Certificates.X509ChainPolicy
        {
            TrustMode = System.Security.Cryptography.X509Certificates.X509ChainTrustMode.CustomRootTrust,
            RevocationMode = System.Security.Cryptography.X509Certificates.X509RevocationMode.NoCheck,
        };
        trust.CustomTrustStore.Add(ca);
        await tls.AuthenticateAsClientAsync(new System.Net.Security.SslClientAuthenticationOptions
        {
            TargetHost = "127.0.0.1",
            CertificateChainPolicy = trust,
        });
        return new RawClient(tcp, tls);
    }

    public static async Task<RawClient> ConnectAsync(int port)
    {
        var tcp = new TcpClient { NoDelay = true };
        await tcp.ConnectAsync("127.0.0.1", port);
        return new RawClient(tcp);
    }

    public static byte[] Encode(params string[] arguments)
    {
        var text = new StringBuilder($"*{arguments.Length}\r\n");
        foreach (string argument in arguments)
        {
            text.Append(CultureInfo.InvariantCulture, $"${Encoding.UTF8.GetByteCount(argument)}\r\n{argument}\r\n");
        }

        return Encoding.UTF8.GetBytes(text.ToString());
    }

    public Task SendAsync(byte[] bytes) => _stream.WriteAsync(bytes).AsTask();

    public async Task<string> CommandAsync(params string[] arguments)
    {
        await SendAsync(Encode(arguments));
        return await ReadReplyAsync();
    }

    /// <summary>One complete reply, as its RESP text with CRLF line ends (aggregates include their elements).</summary>
    public async Task<string> ReadReplyAsync(TimeSpan? timeout = null)
    {
        using var cancel = new CancellationTokenSource(timeout ?? TimeSpan.FromSeconds(20));
        var reply = new StringBuilder();
        await ReadValueAsync(reply, cancel.Token);
        string text = reply.ToString();
        return text.EndsWith("\r\n", StringComparison.Ordinal) && text.Count(c => c == '\n') == 1 ? text[..^2] : text;
    }

    /// <summary>True once the server closed the connection (reads end) within the timeout.</summary>
    public async Task<bool> IsClosedAsync(TimeSpan timeout)
    {
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            while (true)
            {
                if (_start < _end)
                {
                    _start = _end;
                }

                int read = await _stream.ReadAsync(_buffer, cancel.Token);
                if (read == 0)
                {
                    return true;
                }
            }
        }
        catch (OperationCanceledException)
        {
            return false;
        }
        catch (IOException)
        {
            return true;
        }
    }

    private async Task ReadValueAsync(StringBuilder reply, CancellationToken cancel)
    {
        string line = await ReadLineAsync(cancel);
        reply.Append(line).Append("\r\n");
        char type = line[0];
        if (type is '$' or '=' or '!')
        {
            int length = int.Parse(line[1..], CultureInfo.InvariantCulture);
            if (length >= 0)
            {
                byte[] data = await ReadExactlyAsync(length + 2, cancel);
                reply.Append(Encoding.UTF8.GetString(data));
            }
        }
        else if (type is '*' or '%' or '~' or '>')
        {
            int count = int.Parse(line[1..], CultureInfo.InvariantCulture);
            for (int i = 0; i < count * (type == '%' ? 2 : 1); i++)
            {
                await ReadValueAsync(reply, cancel);
            }
        }
    }

    private async Task FillAsync(CancellationToken cancel)
    {
        if (_start > 0)
        {
            Array.Copy(_buffer, _start, _buffer, 0, _end - _start);
            _end -= _start;
            _start = 0;
        }

        int read = await _stream.ReadAsync(_buffer.AsMemory(_end), cancel);
        if (read == 0)
        {
            throw new EndOfStreamException("server closed the connection");
        }

        _end += read;
    }

    private async Task<string> ReadLineAsync(CancellationToken cancel)
    {
        while (true)
        {
            int newline = Array.IndexOf(_buffer, (byte)'\n', _start, _end - _start);
            if (newline > _start && _buffer[newline - 1] == (byte)'\r')
            {
                string line = Encoding.UTF8.GetString(_buffer, _start, newline - 1 - _start);
                _start = newline + 1;
                return line;
            }

            await FillAsync(cancel);
        }
    }

    private async Task<byte[]> ReadExactlyAsync(int count, CancellationToken cancel)
    {
        var result = new byte[count];
        int copied = 0;
        while (copied < count)
        {
            if (_start == _end)
            {
                await FillAsync(cancel);
            }

            int take = Math.Min(count - copied, _end - _start);
            Array.Copy(_buffer, _start, result, copied, take);
            _start += take;
            copied += take;
        }

        return result;
    }

    public async ValueTask DisposeAsync()
    {
        await _stream.DisposeAsync();
        _tcp.Dispose();
    }
}
