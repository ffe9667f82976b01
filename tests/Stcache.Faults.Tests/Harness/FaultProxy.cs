using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;

namespace Stcache.Faults.Tests.Harness;

/// <summary>What a <see cref="FaultProxy"/> does with the traffic of its link.</summary>
public enum LinkMode
{
    /// <summary>Bytes flow (after <see cref="FaultProxy.Delay"/>, if any).</summary>
    Pass,

    /// <summary>
    /// Connections are accepted and kept open, but every byte in either direction is read and thrown away: the
    /// sender sees a silent peer, as with a pulled cable. When the link heals, connections that lost bytes are
    /// closed, so no stream resumes in the middle of a frame.
    /// </summary>
    Blackhole,

    /// <summary>Open connections are reset and new ones are closed at once, as with a dead host.</summary>
    Refuse,
}

/// <summary>
/// A TCP proxy on loopback for one directed link (for the Raft transport: the connection node A dials to send
/// to node B). Faults are switched at run time and take effect on open connections too.
/// </summary>
public sealed class FaultProxy : IAsyncDisposable
{
    private const int ChunkBytesMax = 64 * 1024;

    private readonly Socket _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly Lock _lock = new();
    private readonly HashSet<Connection> _connections = [];
    private readonly Task _acceptLoop;
    private LinkMode _mode = LinkMode.Pass;
    private long _bytesForwarded;
    private long _bytesDropped;
    private long _connectionsAccepted;

    public FaultProxy(string name, int targetPort, int listenPort = 0)
    {
        Name = name;
        TargetPort = targetPort;
        _listener = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _listener.Bind(new IPEndPoint(IPAddress.Loopback, listenPort));
        _listener.Listen(64);
        Port = ((IPEndPoint)_listener.LocalEndPoint!).Port;
        _acceptLoop = Task.Run(AcceptLoopAsync);
    }

    public string Name { get; }

    public int Port { get; }

    public int TargetPort { get; set; }

    /// <summary>Added to every chunk in both directions while the mode is <see cref="LinkMode.Pass"/>.</summary>
    public TimeSpan Delay { get; set; }

    public long BytesForwarded => Interlocked.Read(ref _bytesForwarded);

    public long BytesDropped => Interlocked.Read(ref _bytesDropped);

    public long ConnectionsAccepted => Interlocked.Read(ref _connectionsAccepted);

    public LinkMode Mode
    {
        get => _mode;
        set
        {
            List<Connection> toClose;
            lock (_lock)
            {
                _mode = value;
                toClose = value == LinkMode.Refuse
                    ? [.. _connections]
                    : value == LinkMode.Pass ? [.. _connections.Where(c => c.LostBytes)] : [];
            }

            foreach (var connection in toClose)
            {
                connection.Abort();
            }
        }
    }

    public int OpenConnections
    {
        get
        {
            lock (_lock)
            {
                return _connections.Count;
            }
        }
    }

    public override string ToString() =>
        $"{Name} :{Port} -> :{TargetPort} {Mode}{(Delay > TimeSpan.Zero ? $" +{Delay.TotalMilliseconds}ms" : string.Empty)} open {OpenConnections} accepted {ConnectionsAccepted} forwarded {BytesForwarded}B dropped {BytesDropped}B";

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Dispose();
        List<Connection> all;
        lock (_lock)
        {
            all = [.. _connections];
        }

        foreach (var connection in all)
        {
            connection.Abort();
        }

        try
        {
            await _acceptLoop.WaitAsync(TimeSpan.FromSeconds(5));
        }
        catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException or TimeoutException)
        {
        }

        _stop.Dispose();
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptAsync(_stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                return;
            }

            Interlocked.Increment(ref _connectionsAccepted);
            client.NoDelay = true;
            if (Mode == LinkMode.Refuse)
            {
                client.LingerState = new LingerOption(true, 0);
                client.Dispose();
                continue;
            }

            _ = Task.Run(() => ServeAsync(client));
        }
    }

    private async Task ServeAsync(Socket client)
    {
        var connection = new Connection(this, client);
        lock (_lock)
        {
            _connections.Add(connection);
        }

        try
        {
            await connection.RunAsync(_stop.Token);
        }
        finally
        {
            lock (_lock)
            {
                _connections.Remove(connection);
            }

            connection.Abort();
        }
    }

    [System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001",
        Justification = "_abort has no timer and no registrations to release; Abort() may race the copy loops' end")]
    private sealed class Connection(FaultProxy proxy, Socket client)
    {
        private readonly CancellationTokenSource _abort = new();
        private Socket? _server;
        private volatile bool _lostBytes;
        private int _aborted;

        public bool LostBytes => _lostBytes;

        public async Task RunAsync(CancellationToken stop)
        {
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(stop, _abort.Token);
            var token = linked.Token;
            try
            {
                // While blackholed, do not even reach the target: the dialer must see silence, not a handshake.
                while (proxy.Mode == LinkMode.Blackhole)
                {
                    await DrainUntilHealedAsync(client, token);
                }

                var server = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                _server = server;
                await server.ConnectAsync(new IPEndPoint(IPAddress.Loopback, proxy.TargetPort), token);
                var up = PumpAsync(client, server, token);
                var down = PumpAsync(server, client, token);
                await Task.WhenAny(up, down);
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException or IOException or ChannelClosedException)
            {
            }
        }

        public void Abort()
        {
            if (Interlocked.Exchange(ref _aborted, 1) == 1)
            {
                return;
            }

            try
            {
                _abort.Cancel();
            }
            catch (ObjectDisposedException)
            {
            }

            foreach (var socket in new[] { client, _server })
            {
                if (socket is null)
                {
                    continue;
                }

                try
                {
                    socket.LingerState = new LingerOption(true, 0);
                }
                catch (Exception e) when (e is SocketException or ObjectDisposedException)
                {
                }

                socket.Dispose();
            }
        }

        /// <summary>Reads and discards; returns when the link heals, throws when the peer closes.</summary>
        private async Task DrainUntilHealedAsync(Socket from, CancellationToken token)
        {
            var buffer = new byte[ChunkBytesMax];
            while (proxy.Mode == LinkMode.Blackhole)
            {
                using var poll = CancellationTokenSource.CreateLinkedTokenSource(token);
                poll.CancelAfter(TimeSpan.FromMilliseconds(50));
                int read;
                try
                {
                    read = await from.ReceiveAsync(buffer, SocketFlags.None, poll.Token);
                }
                catch (OperationCanceledException) when (!token.IsCancellationRequested)
                {
                    continue;
                }

                if (read == 0)
                {
                    throw new IOException("closed");
                }

                _lostBytes = true;
                Interlocked.Add(ref proxy._bytesDropped, read);
            }
        }

        private async Task PumpAsync(Socket from, Socket to, CancellationToken token)
        {
            // Chunks keep their order; a delayed chunk holds back the ones behind it, like a slow link.
            var queue = Channel.CreateBounded<(long DueTimestamp, byte[] Bytes)>(new BoundedChannelOptions(1024) { SingleReader = true, SingleWriter = true });
            var writer = Task.Run(async () =>
            {
                await foreach (var (due, bytes) in queue.Reader.ReadAllAsync(token))
                {
                    var wait = System.Diagnostics.Stopwatch.GetElapsedTime(due);
                    long remainingTicks = -wait.Ticks;
                    if (remainingTicks > 0)
                    {
                        await Task.Delay(TimeSpan.FromTicks(remainingTicks), token);
                    }

                    if (proxy.Mode != LinkMode.Pass)
                    {
                        _lostBytes = true;
                        Interlocked.Add(ref proxy._bytesDropped, bytes.Length);
                        continue;
                    }

                    await to.SendAsync(bytes, SocketFlags.None, token);
                    Interlocked.Add(ref proxy._bytesForwarded, bytes.Length);
                }
            }, token);
            try
            {
                var buffer = new byte[ChunkBytesMax];
                while (true)
                {
                    int read = await from.ReceiveAsync(buffer, SocketFlags.None, token);
                    if (read == 0)
                    {
                        break;
                    }

                    if (proxy.Mode != LinkMode.Pass)
                    {
                        _lostBytes = true;
                        Interlocked.Add(ref proxy._bytesDropped, read);
                        continue;
                    }

                    long due = System.Diagnostics.Stopwatch.GetTimestamp() + (long)(proxy.Delay.TotalSeconds * System.Diagnostics.Stopwatch.Frequency);
                    await queue.Writer.WriteAsync((due, buffer.AsSpan(0, read).ToArray()), token);
                }
            }
            finally
            {
                queue.Writer.TryComplete();
            }

            await writer;
            to.Shutdown(SocketShutdown.Send);
        }
    }
}
