using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net;
using System.Net.Security;
using System.Net.Sockets;
using System.Security.Cryptography.X509Certificates;
using System.Text;
using Microsoft.Extensions.Logging;
using Stcache.Raft;

namespace Stcache.Server.Resp;

/// <summary>
/// The Redis protocol listener of one node: accepts connections (TLS with the API certificate when one is set),
/// bounds them by <c>--max-clients</c>, keeps the registry CLIENT LIST and KILL read, and the node-local pub/sub
/// on which the node announces leader changes to StackExchange.Redis (<c>__Booksleeve_MasterChanged</c>).
/// </summary>
internal sealed class RespServer : IAsyncDisposable
{
    public const string MasterChangedChannel = "__Booksleeve_MasterChanged";

    /// <summary>When a new leader is announced, in election timeouts after it is first known.</summary>
    private static readonly int[] s_announceAfter = [0, 2, 6, 20];

    private readonly CommandService _service;
    private readonly ServerOptions _options;
    private readonly X509Certificate2? _certificate;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stopping = new();
    private readonly ConcurrentDictionary<long, RespConnection> _connections = new();
    private readonly ConcurrentDictionary<string, ConcurrentDictionary<long, RespConnection>> _channels = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, ConcurrentDictionary<long, RespConnection>> _patterns = new(StringComparer.Ordinal);
    private Socket? _listener;
    private EpollLoop[]? _loops;
    private Task? _accepting;
    private long _nextId;
    private NodeId _announcedLeader;

    public RespServer(CommandService service, ServerOptions options, X509Certificate2? certificate, ILogger<RespServer> logger)
    {
        _service = service;
        _options = options;
        _certificate = certificate;
        _logger = logger;
        Commands = new RespCommands(this);
        StartedAt = DateTimeOffset.UtcNow;
        service.Host.LeadershipChanged += OnLeadershipChanged;
    }

    public CommandService Service => _service;

    public ILogger Logger => _logger;

    public ServerOptions Options => _options;

    public RespCommands Commands { get; }

    public DateTimeOffset StartedAt { get; }

    public int Port { get; private set; }

    /// <summary>Counters for INFO stats.</summary>
    public long CommandsProcessed;

    public long ConnectionsReceived;

    public long ConnectionsRejected;

    public IEnumerable<RespConnection> Connections => _connections.Values;

    public int ConnectionCount => _connections.Count;

    /// <summary>Serves on <paramref name="socket"/>, bound and listening already (<see cref="Listeners.Bind"/>), which
    /// the server now owns.</summary>
    public void Start(Socket socket)
    {
        ArgumentNullException.ThrowIfNull(socket);
        _listener = socket;
        Port = ((IPEndPoint)socket.LocalEndPoint!).Port;
        // Plain-text connections get their own readiness loop where it exists, unless sockets go to the pool.
        _loops = _certificate is null && _options.InlineIo ? EpollLoop.TryStart(_logger) : null;
        RespLog.Listening(_logger, _options.RespAddress!, _certificate is not null,
            _loops is null ? "sockets" : _loops.Length == 1 ? "epoll" : $"epoll x{_loops.Length}");
        _accepting = Task.Run(AcceptLoopAsync);
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stopping.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener!.AcceptAsync(_stopping.Token).ConfigureAwait(false);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException)
            {
                return;
            }
            catch (SocketException e)
            {
                RespLog.AcceptFailed(_logger, e.Message);
                continue;
            }

            client.NoDelay = true;
            Interlocked.Increment(ref ConnectionsReceived);
            _ = Task.Run(() => ServeAsync(client));
        }
    }

    private async Task ServeAsync(Socket socket)
    {
        Stream? stream = null;
        EpollConnection? epoll = null;
        long id = Interlocked.Increment(ref _nextId);
        try
        {
            if (_connections.Count >= _options.RespClientsMax)
            {
                // Redis accepts, answers and closes; the client sees why.
                Interlocked.Increment(ref ConnectionsRejected);
                stream = new NetworkStream(socket, ownsSocket: true);
                await stream.WriteAsync("-ERR max number of clients reached\r\n"u8.ToArray(), _stopping.Token).ConfigureAwait(false);
                return;
            }

            PipeReader input;
            PipeWriter output;
            if (_loops is not null)
            {
                epoll = _loops[id % _loops.Length].Add(socket);
                input = epoll.Input;
                output = epoll.Output;
            }
            else
            {
                stream = new NetworkStream(socket, ownsSocket: true);
                if (_certificate is not null)
                {
                    var hop = new HandshakeHopStream(stream);
                    var tls = new SslStream(hop, leaveInnerStreamOpen: false);
                    stream = tls;
                    using var handshake = CancellationTokenSource.CreateLinkedTokenSource(_stopping.Token);
                    handshake.CancelAfter(TimeSpan.FromSeconds(10));
                    await tls.AuthenticateAsServerAsync(new SslServerAuthenticationOptions { ServerCertificate = _certificate }, handshake.Token).ConfigureAwait(false);
                    hop.OffSocketThread = false;
                }

                input = PipeReader.Create(stream, new StreamPipeReaderOptions(leaveOpen: true));
                output = PipeWriter.Create(stream, new StreamPipeWriterOptions(leaveOpen: true));
            }

            var connection = new RespConnection(this, id, socket.RemoteEndPoint, socket.LocalEndPoint, input, output,
                authenticated: _options.AuthToken is null);
            _connections[id] = connection;
            try
            {
                await connection.RunAsync(_stopping.Token).ConfigureAwait(false);
            }
            finally
            {
                _connections.TryRemove(id, out _);
                Unsubscribe(connection);
            }
        }
        catch (Exception e) when (e is IOException or SocketException or OperationCanceledException or System.Security.Authentication.AuthenticationException or ObjectDisposedException)
        {
            RespLog.ConnectionEnded(_logger, id, e.Message);
        }
        catch (Exception e)
        {
            // A bug in one connection must not take the node down: log it and drop only that connection.
            RespLog.ConnectionFailed(_logger, id, e);
        }
        finally
        {
            if (stream is not null)
            {
                await stream.DisposeAsync().ConfigureAwait(false);
            }
            else if (epoll is not null)
            {
                epoll.Close();
            }
            else
            {
                socket.Dispose();
            }
        }
    }

    public RespConnection? Find(long id) => _connections.TryGetValue(id, out var connection) ? connection : null;

    // ---- pub/sub ---------------------------------------------------------------------------------------------------

    public void Subscribe(RespConnection connection, string channel, bool pattern) =>
        (pattern ? _patterns : _channels).GetOrAdd(channel, _ => new ConcurrentDictionary<long, RespConnection>())[connection.Id] = connection;

    public void Unsubscribe(RespConnection connection, string channel, bool pattern)
    {
        if ((pattern ? _patterns : _channels).TryGetValue(channel, out var members))
        {
            members.TryRemove(connection.Id, out _);
        }
    }

    private void Unsubscribe(RespConnection connection)
    {
        foreach (string channel in connection.Channels)
        {
            Unsubscribe(connection, channel, pattern: false);
        }

        foreach (string pattern in connection.Patterns)
        {
            Unsubscribe(connection, pattern, pattern: true);
        }
    }

    public int ChannelCount => _channels.Count(c => !c.Value.IsEmpty);

    public int PatternCount => _patterns.Count(c => !c.Value.IsEmpty);

    /// <summary>Delivers a message to this node's subscribers; returns how many received it (as Redis's PUBLISH).</summary>
    public int Publish(string channel, byte[] message)
    {
        int receivers = 0;
        if (_channels.TryGetValue(channel, out var members))
        {
            foreach (var connection in members.Values)
            {
                connection.PushMessage(channel, message);
                receivers++;
            }
        }

        foreach (var (pattern, subscribers) in _patterns)
        {
            if (!Glob.IsMatch(pattern, channel))
            {
                continue;
            }

            foreach (var connection in subscribers.Values)
            {
                connection.PushPatternMessage(pattern, channel, message);
                receivers++;
            }
        }

        return receivers;
    }

    /// <summary>
    /// StackExchange.Redis subscribes to <c>__Booksleeve_MasterChanged</c> and reconfigures at once when a message
    /// arrives there, so a new leader is found without waiting for the next configuration check.
    /// </summary>
    private void OnLeadershipChanged(LeadershipChange change)
    {
        if (change.Leader.IsNone || change.Leader == _announcedLeader)
        {
            return;
        }

        bool failover = !_announcedLeader.IsNone;
        _announcedLeader = change.Leader;
        var leader = change.Leader;
        if (failover)
        {
            // As Redis Sentinel does after a failover (CLIENT KILL TYPE normal), close the ordinary connections: the
            // clients reconnect, ask INFO replication again and find the new leader at once. Subscribers stay and
            // get the broadcast below.
            foreach (var connection in _connections.Values.Where(c => !c.Subscribed))
            {
                connection.Kill();
            }
        }

        _ = Task.Run(async () =>
        {
            // StackExchange.Redis drops a broadcast that arrives while it is still reconfiguring after losing the
            // old leader (it then waits for its next configuration check, a minute by default). So the news is
            // repeated a few times over the following seconds, while this leader stands.
            foreach (int electionTimeouts in s_announceAfter)
            {
                if (electionTimeouts > 0)
                {
                    await Task.Delay(_service.Host.ElectionTimeout * electionTimeouts, _stopping.Token).ConfigureAwait(false);
                }

                if (_service.Host.Status.Leader != leader)
                {
                    return;
                }

                string address = _service.Host.Members.Find(leader)?.RespAddress ?? leader.ToString();
                Publish(MasterChangedChannel, Encoding.UTF8.GetBytes(address));
            }
        });
    }

    public async ValueTask DisposeAsync()
    {
        _service.Host.LeadershipChanged -= OnLeadershipChanged;
        await _stopping.CancelAsync().ConfigureAwait(false);
        _listener?.Dispose();
        foreach (var loop in _loops ?? [])
        {
            loop.Dispose();
        }
        if (_accepting is not null)
        {
            await _accepting.ConfigureAwait(false);
        }

        foreach (var connection in _connections.Values)
        {
            connection.Kill();
        }

        _stopping.Dispose();
    }
}

internal static partial class RespLog
{
    [LoggerMessage(1300, LogLevel.Information, "RESP server listen:{Address} (tls: {Tls}, transport: {Transport})")]
    public static partial void Listening(ILogger logger, string address, bool tls, string transport);

    [LoggerMessage(1301, LogLevel.Warning, "RESP accept failed: {Reason}")]
    public static partial void AcceptFailed(ILogger logger, string reason);

    [LoggerMessage(1302, LogLevel.Debug, "RESP connection {Id} ended: {Reason}")]
    public static partial void ConnectionEnded(ILogger logger, long id, string reason);

    [LoggerMessage(1303, LogLevel.Error, "RESP connection {Id} failed; only it was closed")]
    public static partial void ConnectionFailed(ILogger logger, long id, Exception exception);

    [LoggerMessage(1304, LogLevel.Information, "RESP connection {Id} from {Remote} closed: {Reason}")]
    public static partial void ProtocolError(ILogger logger, long id, string remote, string reason);

    [LoggerMessage(1305, LogLevel.Error, "RESP epoll loop stopped: epoll_wait failed with errno {Errno}; new RESP requests are not served")]
    public static partial void EpollFailed(ILogger logger, int errno);

    [LoggerMessage(1306, LogLevel.Error, "RESP connection failed on the epoll loop; only it was closed")]
    public static partial void EpollConnectionFailed(ILogger logger, Exception exception);
}

/// <summary>Redis's glob matching (stringmatchlen): * ? [abc] [^a] [a-z] and \ escapes.</summary>
internal static class Glob
{
    public static bool IsMatch(string pattern, string text) => IsMatch(pattern.AsSpan(), text.AsSpan());

    private static bool IsMatch(ReadOnlySpan<char> pattern, ReadOnlySpan<char> text)
    {
        while (pattern.Length > 0)
        {
            switch (pattern[0])
            {
                case '*':
                    while (pattern.Length > 1 && pattern[1] == '*')
                    {
                        pattern = pattern[1..];
                    }

                    if (pattern.Length == 1)
                    {
                        return true;
                    }

                    for (int i = 0; i <= text.Length; i++)
                    {
                        if (IsMatch(pattern[1..], text[i..]))
                        {
                            return true;
                        }
                    }

                    return false;
                case '?':
                    if (text.Length == 0)
                    {
                        return false;
                    }

                    text = text[1..];
                    break;
                case '[':
                    {
                        if (text.Length == 0)
                        {
                            return false;
                        }

                        pattern = pattern[1..];
                        bool not = pattern.Length > 0 && pattern[0] == '^';
                        if (not)
                        {
                            pattern = pattern[1..];
                        }

                        bool match = false;
                        while (pattern.Length > 0 && pattern[0] != ']')
                        {
                            if (pattern[0] == '\\' && pattern.Length >= 2)
                            {
                                pattern = pattern[1..];
                                match |= pattern[0] == text[0];
                            }
                            else if (pattern.Length >= 3 && pattern[1] == '-')
                            {
                                char low = pattern[0], high = pattern[2];
                                if (low > high)
                                {
                                    (low, high) = (high, low);
                                }

                                match |= text[0] >= low && text[0] <= high;
                                pattern = pattern[2..];
                            }
                            else
                            {
                                match |= pattern[0] == text[0];
                            }

                            pattern = pattern[1..];
                        }

                        if (not)
                        {
                            match = !match;
                        }

                        if (!match)
                        {
                            return false;
                        }

                        text = text[1..];
                        if (pattern.Length == 0)
                        {
                            return text.Length == 0;
                        }

                        break;
                    }

                case '\\' when pattern.Length >= 2:
                    pattern = pattern[1..];
                    if (text.Length == 0 || pattern[0] != text[0])
                    {
                        return false;
                    }

                    text = text[1..];
                    break;
                default:
                    if (text.Length == 0 || pattern[0] != text[0])
                    {
                        return false;
                    }

                    text = text[1..];
                    break;
            }

            pattern = pattern[1..];
        }

        return text.Length == 0;
    }
}

/// <summary>
/// The socket stream under a RESP connection's TLS: while <see cref="OffSocketThread"/> is set (the handshake), a read
/// that completed on the runtime's socket thread (<c>--io-threads inline</c>) moves to the thread pool before
/// returning, so the handshake's key exchange and signature run there and not on the thread every socket shares;
/// a burst of reconnecting TLS clients (after a failover) then delays no other connection. Afterwards reads stay
/// where they complete.
/// </summary>
internal sealed class HandshakeHopStream(Stream inner) : Stream
{
    public bool OffSocketThread { get; set; } = true;

    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => true;

    public override long Length => throw new NotSupportedException();

    public override long Position
    {
        get => throw new NotSupportedException();
        set => throw new NotSupportedException();
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        int read = await inner.ReadAsync(buffer, cancellationToken).ConfigureAwait(false);
        if (OffSocketThread && !Thread.CurrentThread.IsThreadPoolThread)
        {
            await Task.Yield();
        }

        return read;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override ValueTask WriteAsync(ReadOnlyMemory<byte> buffer, CancellationToken cancellationToken = default) =>
        inner.WriteAsync(buffer, cancellationToken);

    public override Task WriteAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        inner.WriteAsync(buffer, offset, count, cancellationToken);

    public override Task FlushAsync(CancellationToken cancellationToken) => inner.FlushAsync(cancellationToken);

    public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, count);

    public override void Write(byte[] buffer, int offset, int count) => inner.Write(buffer, offset, count);

    public override void Flush() => inner.Flush();

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing)
        {
            inner.Dispose();
        }

        base.Dispose(disposing);
    }

    public override async ValueTask DisposeAsync()
    {
        await inner.DisposeAsync().ConfigureAwait(false);
        await base.DisposeAsync().ConfigureAwait(false);
    }
}
