using System.Buffers;
using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using Microsoft.Extensions.Logging;
using Stcache.Raft;

namespace Stcache.Transport;

/// <summary>
/// TCP transport between Raft peers. Each node dials one outbound connection per peer and only writes on it;
/// it accepts inbound connections from peers and only reads from them. So a pair of nodes uses two
/// connections, one per direction, and nothing on a connection ever waits for the other direction.
/// </summary>
/// <remarks>
/// <see cref="Send"/> never blocks: it puts the message on the peer's bounded queue (or drops it, counted, and
/// raises <see cref="PeerUnreachable"/>). A writer loop per peer connects lazily, handshakes, and drains all
/// queued messages into one frame and one socket write. Large snapshots are streamed in chunks interleaved
/// with ordinary messages. The message handler runs on the thread that received the message (with
/// <see cref="TransportOptions.ReceiveThreads"/>, the connection's own receive thread) and must not block long:
/// that connection receives nothing meanwhile.
/// </remarks>
public sealed class PeerTransport : IMessageSink, IAsyncDisposable
{
    private readonly TransportOptions _options;
    private readonly Action<Message> _onMessage;
    private readonly ILogger<PeerTransport> _logger;
    private readonly TimeProvider _timeProvider;
    private readonly PeerTls? _tls;
    private readonly ConcurrentDictionary<NodeId, PeerSender> _peers = new();
    private readonly ConcurrentDictionary<long, Task> _background = new();

    // Authenticated inbound sessions, each with its claimed peer id, so removing a peer can close what it has open.
    // More than one per id is only worth a warning: inbound connections are read-only and messages to a peer go to
    // the address in the replicated member book, so a second process claiming a member's id can send but never
    // receives (see docs/FAULTS.md, two nodes claiming one id).
    private readonly ConcurrentDictionary<long, (NodeId Peer, CancellationTokenSource Close)> _inboundSessions = new();
    private readonly CancellationTokenSource _stopping = new();

    // Per peer, snapshots handed to Send or SendSnapshot whose outcome was not raised yet.
    private readonly ConcurrentDictionary<NodeId, int> _snapshotsInFlight = new();
    private readonly object _lifecycleLock = new();
    private Socket? _listener;
    private IPEndPoint? _boundEndPoint;
    private long _backgroundIds;
    private long _inboundKeys;
    private int _inboundConnections;
    private int _receiveThreads;
    private int _receiveThreadYields;
    private bool _started;
    private bool _disposed;

    private long _messagesSent;
    private long _bytesSent;
    private long _framesSent;
    private long _messagesReceived;
    private long _bytesReceived;
    private long _messagesDropped;
    private long _connectionFailures;
    private long _inboundRefused;

    public PeerTransport(
        TransportOptions options, Action<Message> onMessage, ILogger<PeerTransport> logger, TimeProvider? timeProvider = null)
    {
        ArgumentNullException.ThrowIfNull(options);
        ArgumentNullException.ThrowIfNull(onMessage);
        ArgumentNullException.ThrowIfNull(logger);
        TransportOptionsValidator.ThrowIfInvalid(options);
        _options = options;
        _onMessage = onMessage;
        _logger = logger;
        _timeProvider = timeProvider ?? TimeProvider.System;
        _tls = options.TlsEnabled ? new PeerTls(options, _timeProvider) : null;
    }

    /// <summary>Raised when a message to a peer was dropped or its connection failed, so the host can call
    /// <c>RaftNode.ReportUnreachable</c>. May be raised on any thread, also from inside <see cref="Send"/>.</summary>
    public event Action<NodeId>? PeerUnreachable;

    /// <summary>
    /// Raised when a connection to or from a peer failed in a way that says the peer's process is gone: an
    /// established connection, in either direction, closed by the peer (EOF) or reset, or a dial refused. Never for
    /// timeouts, handshake refusals, protocol violations, address changes or closes this node made itself: a peer
    /// behind a partition looks like a timeout, not like this. The host calls <c>RaftNode.ReportConnectionLost</c>.
    /// May be raised on any thread, more than once for one failure (both directions see it).
    /// </summary>
    public event Action<NodeId>? PeerConnectionLost;

    /// <summary>Raised once per snapshot message passed to <see cref="Send"/>: true when all of it was written to
    /// the peer's socket, false when it was dropped or the connection failed (host calls <c>ReportSnapshot</c>).</summary>
    public event Action<NodeId, bool>? SnapshotSendCompleted;

    /// <summary>
    /// Raised when a peer accepted this node's connection but said that, as of its applied index, this node is not
    /// in its configuration. Whether that means this node was removed is for the host to judge: the peer may be
    /// the one that is behind. The connection is used as usual. May be raised on any thread.
    /// </summary>
    public event Action<NodeId, LogIndex>? ToldNotAMember;

    /// <summary>Raised on a connection thread for each <see cref="JoinFrame"/> a peer sent, with the peer's
    /// handshaken id. Handlers must not block.</summary>
    public event Action<NodeId, JoinFrame>? JoinReceived;

    /// <summary>
    /// Asked during each inbound handshake, on a connection thread: null when the dialer is a member of this node's
    /// configuration (or this node knows none yet), else the applied index that configuration is as of; the dialer
    /// is told so in the Accepted frame. Unset: every dialer is counted as a member.
    /// </summary>
    public Func<NodeId, LogIndex?>? NotAMemberAsOf { get; set; }

    /// <summary>
    /// Where snapshots streamed by peers go (see <see cref="SendSnapshot"/>): given the announced metadata and
    /// length, returns the receiver the chunks are written to, on the connection's thread, as they arrive. The
    /// message is delivered, without data, once the receiver completed. Unset: such snapshots are refused.
    /// </summary>
    public Func<SnapshotMetadata, long, ISnapshotReceiver>? BeginSnapshotReceive { get; set; }

    public NodeId NodeId => _options.NodeId;

    /// <summary>The endpoint actually bound (the real port when the options asked for port 0); null before start.</summary>
    public IPEndPoint? ListenEndPoint => _boundEndPoint;

    public long MessagesSent => Interlocked.Read(ref _messagesSent);

    public long BytesSent => Interlocked.Read(ref _bytesSent);

    /// <summary>Frames written; <see cref="MessagesSent"/> divided by this is the coalescing ratio.</summary>
    public long FramesSent => Interlocked.Read(ref _framesSent);

    public long MessagesReceived => Interlocked.Read(ref _messagesReceived);

    public long BytesReceived => Interlocked.Read(ref _bytesReceived);

    /// <summary>Messages dropped before reaching a socket: queue full, unknown peer, peer unreachable, too large.</summary>
    public long MessagesDropped => Interlocked.Read(ref _messagesDropped);

    /// <summary>Outbound connects or handshakes that failed, plus established outbound connections that broke.</summary>
    public long ConnectionFailures => Interlocked.Read(ref _connectionFailures);

    /// <summary>Inbound connections refused or closed for a protocol violation (bad handshake, malformed frame).</summary>
    public long InboundConnectionsRefused => Interlocked.Read(ref _inboundRefused);

    /// <summary>Inbound connections served on a thread of their own now (<see cref="TransportOptions.ReceiveThreads"/>).</summary>
    public int ReceiveThreadsRunning => Volatile.Read(ref _receiveThreads);

    /// <summary>Receive-thread sessions that left their thread at an await that did not complete at once (a bug: tests check it is zero).</summary>
    internal int ReceiveThreadYields => Volatile.Read(ref _receiveThreadYields);

    internal TransportOptions Options => _options;

    internal ILogger Logger => _logger;

    internal TimeProvider TimeProvider => _timeProvider;

    /// <summary>Binds <see cref="TransportOptions.ListenEndPoint"/> and starts accepting peers.</summary>
    public Task StartAsync(CancellationToken cancellationToken) => StartAsync(null, cancellationToken);

    /// <summary>
    /// Starts accepting peers on <paramref name="boundListener"/>, a socket already bound and listening (the server
    /// binds every listener before it opens its data directory), or on <see cref="TransportOptions.ListenEndPoint"/>
    /// when null. The transport owns the socket from here on and closes it when disposed.
    /// </summary>
    public Task StartAsync(Socket? boundListener, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        lock (_lifecycleLock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_started)
            {
                throw new InvalidOperationException("The transport is already started.");
            }

            var listener = boundListener ?? new Socket(_options.ListenEndPoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp);
            if (boundListener is null)
            {
                try
                {
                    listener.Bind(_options.ListenEndPoint);
                    listener.Listen(512);
                }
                catch
                {
                    listener.Dispose();
                    throw;
                }
            }

            _listener = listener;
            _boundEndPoint = (IPEndPoint)listener.LocalEndPoint!;
            _started = true;
            Log.Listening(_logger, _options.NodeId, _boundEndPoint);
            if (_options.TlsCertificate is { } certificate)
            {
                string trust = _options.TlsCaCertificates is { Count: > 0 } roots ? $"{roots.Count} configured CA certificate(s)" : "the system trust store";
                Log.TlsEnabled(_logger, certificate.Subject, certificate.Thumbprint, certificate.NotAfter, trust, _options.TlsClientCertificateRequired);
            }
            else
            {
                Log.TlsDisabled(_logger, _options.NodeId);
            }

            Track(AcceptLoopAsync(listener, _stopping.Token));
        }

        return Task.CompletedTask;
    }

    /// <summary>Adds a peer or changes its address (<c>host:port</c>); a changed address reconnects.</summary>
    public void SetPeer(NodeId id, string hostPort)
    {
        ArgumentException.ThrowIfNullOrWhiteSpace(hostPort);
        if (id.IsNone || id == _options.NodeId)
        {
            throw new ArgumentException("A peer needs a non-zero id other than this node's.", nameof(id));
        }

        if (!TryParseAddress(hostPort, out _))
        {
            throw new ArgumentException($"'{hostPort}' is not host:port.", nameof(hostPort));
        }

        lock (_lifecycleLock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_peers.TryGetValue(id, out var existing))
            {
                existing.SetAddress(hostPort);
                return;
            }

            var sender = new PeerSender(this, id, hostPort);
            _peers[id] = sender;
            Track(sender.RunAsync(_stopping.Token));
        }
    }

    /// <summary>
    /// Forgets a peer: nothing more is queued for it; what is already queued is still written for up to
    /// <see cref="TransportOptions.RemovedPeerDrain"/>, then its connection closes. So do the connections it opened
    /// to this node, so that when it dials again the handshake can tell it it is no longer a member (by then the
    /// host has published the configuration without it).
    /// </summary>
    public void RemovePeer(NodeId id)
    {
        lock (_lifecycleLock)
        {
            if (_disposed)
            {
                return;
            }

            _peers.TryRemove(id, out var sender);
            sender?.Complete();
            Track(ForgetAfterDrainAsync(id, sender));
        }
    }

    /// <summary>After the drain: closes the removed peer's outbound connection (if it has not ended already) and
    /// the connections it opened to this node.</summary>
    private async Task ForgetAfterDrainAsync(NodeId id, PeerSender? sender)
    {
        if (_options.RemovedPeerDrain > TimeSpan.Zero)
        {
            try
            {
                await Task.Delay(_options.RemovedPeerDrain, _timeProvider, _stopping.Token).ConfigureAwait(false);
            }
            catch (OperationCanceledException)
            {
                return; // Disposing stops every sender and session itself.
            }
        }

        sender?.Stop();
        foreach (var (_, session) in _inboundSessions)
        {
            if (session.Peer == id)
            {
                try
                {
                    session.Close.Cancel();
                }
                catch (ObjectDisposedException)
                {
                    // That session ended on its own meanwhile.
                }
            }
        }
    }

    /// <summary>True while an outbound connection to <paramref name="id"/> is established and handshaken.</summary>
    public bool IsConnected(NodeId id) => _peers.TryGetValue(id, out var sender) && sender.IsConnected;

    /// <summary>
    /// True while a snapshot to <paramref name="id"/> is queued or being streamed, that is until its
    /// <see cref="SnapshotSendCompleted"/> is raised. A host can skip sending the same snapshot again meanwhile.
    /// </summary>
    public bool IsSendingSnapshot(NodeId id) => _snapshotsInFlight.TryGetValue(id, out int count) && count > 0;

    /// <summary>
    /// Queues <paramref name="message"/> for its receiver without blocking. Drops it (counted, with
    /// <see cref="PeerUnreachable"/>) when the receiver is unknown or its queue is full.
    /// </summary>
    public void Send(Message message)
    {
        ArgumentNullException.ThrowIfNull(message);
        if (message.From != _options.NodeId)
        {
            throw new ArgumentException($"Message from {message.From} sent through the transport of {_options.NodeId}.", nameof(message));
        }

        string? invalid = message.Validate();
        if (invalid is not null)
        {
            throw new ArgumentException($"Invalid message {message}: {invalid}", nameof(message));
        }

        if (message.Type == MessageType.Snapshot)
        {
            _snapshotsInFlight.AddOrUpdate(message.To, 1, (_, count) => count + 1);
        }

        if (_disposed)
        {
            Drop(message, "transport stopped", logWarning: false);
            return;
        }

        if (!_peers.TryGetValue(message.To, out var sender))
        {
            Drop(message, "unknown peer", logWarning: true);
            return;
        }

        if (!sender.TryEnqueue(message))
        {
            Drop(message, "peer queue full", logWarning: false);
        }
    }

    /// <summary>
    /// Queues a snapshot for its receiver without blocking: <paramref name="header"/> is the snapshot message
    /// (its data, if any, is ignored) and <paramref name="stored"/> the snapshot as the store keeps it, which the
    /// transport now owns and reads one chunk at a time on the peer's writer, off the caller's thread, as fast as
    /// the peer takes it. <see cref="SnapshotSendCompleted"/> reports the outcome, once.
    /// </summary>
    public void SendSnapshot(Message header, Stream stored)
    {
        ArgumentNullException.ThrowIfNull(header);
        ArgumentNullException.ThrowIfNull(stored);
        if (header.Type != MessageType.Snapshot || header.From != _options.NodeId || header.Validate() is not null)
        {
            stored.Dispose();
            throw new ArgumentException($"Not a valid snapshot message from this node: {header}", nameof(header));
        }

        header = header with { Snapshot = header.Snapshot! with { Data = ReadOnlyMemory<byte>.Empty } };
        _snapshotsInFlight.AddOrUpdate(header.To, 1, (_, count) => count + 1);
        if (_disposed)
        {
            stored.Dispose();
            Drop(header, "transport stopped", logWarning: false);
            return;
        }

        if (!_peers.TryGetValue(header.To, out var sender))
        {
            stored.Dispose();
            Drop(header, "unknown peer", logWarning: true);
            return;
        }

        if (!sender.TryEnqueueSnapshot(header, stored))
        {
            stored.Dispose();
            Drop(header, "peer queue full", logWarning: false);
        }
    }

    /// <summary>
    /// Queues a join frame for <paramref name="to"/> without blocking (see <see cref="JoinFrame"/>). False when the
    /// peer is unknown, its queue is full, or the transport stopped; the joiner simply asks again.
    /// </summary>
    public bool SendJoin(NodeId to, JoinFrame frame)
    {
        ArgumentNullException.ThrowIfNull(frame);
        if (frame.Payload.IsEmpty || 1 + frame.Payload.Length > _options.FrameBytesMax)
        {
            throw new ArgumentException($"A join frame needs a payload of 1 to {_options.FrameBytesMax - 1} bytes.", nameof(frame));
        }

        return !_disposed && _peers.TryGetValue(to, out var sender) && sender.TryEnqueueJoin(frame);
    }

    public async ValueTask DisposeAsync()
    {
        lock (_lifecycleLock)
        {
            if (_disposed)
            {
                return;
            }

            _disposed = true;
            foreach (var sender in _peers.Values)
            {
                sender.Stop();
            }

            _peers.Clear();
        }

        await _stopping.CancelAsync().ConfigureAwait(false);
        _listener?.Dispose();
        foreach (var task in _background.Values)
        {
            try
            {
                await task.ConfigureAwait(false);
            }
            catch (Exception exception) when (exception is OperationCanceledException or ObjectDisposedException)
            {
                // Expected while stopping.
            }
            catch (Exception exception)
            {
                // Background loops log their own failures; stopping must still complete.
                Log.Unexpected(_logger, NodeId.None, exception);
            }
        }

        _stopping.Dispose();
    }

    internal void Drop(Message message, string reason, bool logWarning)
    {
        Interlocked.Increment(ref _messagesDropped);
        if (logWarning)
        {
            Log.MessageDropped(_logger, message.To, reason);
        }

        if (message.Type == MessageType.Snapshot)
        {
            RaiseSnapshotSendCompleted(message.To, ok: false);
        }

        RaisePeerUnreachable(message.To);
    }

    internal void CountSent(int messages, long bytes, int frames)
    {
        Interlocked.Add(ref _framesSent, frames);
        Interlocked.Add(ref _messagesSent, messages);
        Interlocked.Add(ref _bytesSent, bytes);
    }

    internal void CountConnectionFailure() => Interlocked.Increment(ref _connectionFailures);

    internal void RaisePeerConnectionLost(NodeId id)
    {
        try
        {
            PeerConnectionLost?.Invoke(id);
        }
        catch (Exception exception)
        {
            Log.EventHandlerFailed(_logger, nameof(PeerConnectionLost), exception);
        }
    }

    /// <summary>True when <paramref name="exception"/> (or one it wraps) is the kernel saying the other end is gone:
    /// a reset, a refused dial, a broken pipe. False for timeouts and everything else.</summary>
    internal static bool IsPeerGone(Exception? exception)
    {
        for (; exception is not null; exception = exception.InnerException)
        {
            if (exception is SocketException socket)
            {
                return socket.SocketErrorCode is SocketError.ConnectionRefused or SocketError.ConnectionReset
                    or SocketError.ConnectionAborted or SocketError.Shutdown;
            }
        }

        return false;
    }

    internal void RaisePeerUnreachable(NodeId id)
    {
        try
        {
            PeerUnreachable?.Invoke(id);
        }
        catch (Exception exception)
        {
            Log.EventHandlerFailed(_logger, nameof(PeerUnreachable), exception);
        }
    }

    internal void RaiseToldNotAMember(NodeId id, LogIndex asOf)
    {
        try
        {
            ToldNotAMember?.Invoke(id, asOf);
        }
        catch (Exception exception)
        {
            Log.EventHandlerFailed(_logger, nameof(ToldNotAMember), exception);
        }
    }

    internal void RaiseSnapshotSendCompleted(NodeId id, bool ok)
    {
        _snapshotsInFlight.AddOrUpdate(id, 0, (_, count) => Math.Max(0, count - 1));
        try
        {
            SnapshotSendCompleted?.Invoke(id, ok);
        }
        catch (Exception exception)
        {
            Log.EventHandlerFailed(_logger, nameof(SnapshotSendCompleted), exception);
        }
    }

    /// <summary>
    /// Turns a connected socket into the stream the handshake runs on: the socket itself without TLS, or an
    /// authenticated <see cref="System.Net.Security.SslStream"/> with it (see <see cref="PeerTls"/> for what is
    /// checked). The listener looks at the first byte first, so a plaintext peer of a TLS node, or a TLS peer of
    /// a plaintext node, is refused with a clear reason instead of a garbled frame or TLS alert. Throws
    /// <see cref="HandshakeException"/> on refusal; on failure the caller still owns <paramref name="socket"/>.
    /// </summary>
    internal async ValueTask<Stream> WrapStreamAsync(Socket socket, bool isDialer, string? targetHost, CancellationToken cancellationToken)
    {
        cancellationToken.ThrowIfCancellationRequested();
        if (isDialer)
        {
            ArgumentNullException.ThrowIfNull(targetHost);
            var plain = new NetworkStream(socket, ownsSocket: true);
            return _tls is null ? plain : await _tls.AuthenticateAsDialerAsync(plain, targetHost, cancellationToken).ConfigureAwait(false);
        }

        byte first;
        using (var timeout = new CancellationTokenSource(_options.HandshakeTimeout, _timeProvider))
        using (var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token))
        {
            first = await PeekFirstByteAsync(socket, linked.Token).ConfigureAwait(false);
        }

        bool peerUsesTls = first == PeerTls.HandshakeRecordType;
        if (_tls is null)
        {
            if (peerUsesTls)
            {
                throw new HandshakeException("TLS connection refused: the peer uses TLS but peer TLS is not configured on this node");
            }

            return new NetworkStream(socket, ownsSocket: true);
        }

        if (!peerUsesTls)
        {
            throw new HandshakeException("plaintext connection refused: this node requires TLS on peer links");
        }

        return await _tls.AuthenticateAsListenerAsync(new NetworkStream(socket, ownsSocket: true), cancellationToken).ConfigureAwait(false);
    }

    private static async ValueTask<byte> PeekFirstByteAsync(Socket socket, CancellationToken cancellationToken)
    {
        var first = new byte[1];
        int received = await socket.ReceiveAsync(first, SocketFlags.Peek, cancellationToken).ConfigureAwait(false);
        if (received == 0)
        {
            throw new HandshakeException("connection closed");
        }

        return first[0];
    }

    /// <summary>No Nagle delay (Raft messages are latency-bound); keep-alive so a vanished peer is noticed.</summary>
    internal static void ConfigureSocket(Socket socket)
    {
        socket.NoDelay = true;
        try
        {
            socket.SetSocketOption(SocketOptionLevel.Socket, SocketOptionName.KeepAlive, true);
            socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveTime, 10);
            socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveInterval, 2);
            socket.SetSocketOption(SocketOptionLevel.Tcp, SocketOptionName.TcpKeepAliveRetryCount, 3);
        }
        catch (Exception exception) when (exception is SocketException or PlatformNotSupportedException)
        {
            // Keep-alive tuning is best effort; write timeouts still bound a dead outbound connection.
        }
    }

    internal static bool TryParseAddress(string hostPort, out EndPoint endPoint)
    {
        endPoint = null!;
        if (IPEndPoint.TryParse(hostPort, out var ip) && ip.Port != 0)
        {
            endPoint = ip;
            return true;
        }

        int colon = hostPort.LastIndexOf(':');
        if (colon <= 0 || colon == hostPort.Length - 1)
        {
            return false;
        }

        string host = hostPort[..colon];
        if (!int.TryParse(hostPort.AsSpan(colon + 1), System.Globalization.NumberStyles.None, null, out int port)
            || port is < 1 or > 65535
            || Uri.CheckHostName(host) == UriHostNameType.Unknown)
        {
            return false;
        }

        endPoint = new DnsEndPoint(host, port);
        return true;
    }

    /// <summary>Reads one handshake frame of <paramref name="expected"/> type and returns a copy of its body.</summary>
    internal static async ValueTask<byte[]> ReadHandshakeFrameAsync(
        PipeReader reader, FrameType expected, CancellationToken cancellationToken)
    {
        while (true)
        {
            var result = await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            var status = FrameCodec.TryReadFrame(ref buffer, Handshake.FrameBytesMax, out var type, out var body, out string? error);
            if (status == DecodeStatus.Complete)
            {
                byte[] bytes = body.ToArray();
                reader.AdvanceTo(buffer.Start);
                if (type != expected)
                {
                    throw new HandshakeException($"expected a {expected} frame, got {type}");
                }

                return bytes;
            }

            reader.AdvanceTo(result.Buffer.Start, result.Buffer.End);
            if (status == DecodeStatus.Malformed)
            {
                throw new HandshakeException(error ?? "malformed frame");
            }

            if (result.IsCompleted || result.IsCanceled)
            {
                throw new HandshakeException(result.Buffer.IsEmpty ? "connection closed" : "connection closed inside a frame");
            }
        }
    }

    internal static async ValueTask WriteFrameAsync(
        PipeWriter writer, FrameType type, byte[] body, CancellationToken cancellationToken)
    {
        FrameCodec.WriteFrame(writer, type, body);
        var flush = await writer.FlushAsync(cancellationToken).ConfigureAwait(false);
        if (flush.IsCompleted)
        {
            throw new HandshakeException("connection closed");
        }
    }

    private void Track(Task task)
    {
        long id = Interlocked.Increment(ref _backgroundIds);
        _background[id] = task;
        _ = task.ContinueWith(
            (_, state) => ((ConcurrentDictionary<long, Task>)state!).TryRemove(id, out Task? _),
            _background,
            CancellationToken.None,
            TaskContinuationOptions.ExecuteSynchronously,
            TaskScheduler.Default);
    }

    private async Task AcceptLoopAsync(Socket listener, CancellationToken cancellationToken)
    {
        while (!cancellationToken.IsCancellationRequested)
        {
            Socket socket;
            try
            {
                socket = await listener.AcceptAsync(cancellationToken).ConfigureAwait(false);
            }
            catch (Exception exception) when (cancellationToken.IsCancellationRequested
                && exception is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }
            catch (SocketException exception)
            {
                // Transient accept errors (the client reset before accept) must not end the loop.
                Log.AcceptFailed(_logger, exception);
                continue;
            }

            if (Interlocked.Increment(ref _inboundConnections) > _options.InboundConnectionsMax)
            {
                Interlocked.Decrement(ref _inboundConnections);
                Interlocked.Increment(ref _inboundRefused);
                Log.InboundRefused(_logger, SafeRemoteEndPoint(socket), "too many inbound connections");
                socket.Dispose();
                continue;
            }

            // Without TLS on this node every accepted peer link is plaintext (a TLS dialer is refused).
            Track(_options.ReceiveThreads && _tls is null
                ? ServeInboundOnThread(socket, cancellationToken)
                : ServeInboundAsync(socket, onThread: false, cancellationToken));
        }
    }

    /// <summary>
    /// Serves an inbound plaintext connection on a thread of its own (<see cref="TransportOptions.ReceiveThreads"/>),
    /// from the first byte to the close, with blocking socket calls only: the socket is never handed to the runtime's
    /// readiness engine, so the kernel wakes this thread straight from the peer's send. Shutting the socket down
    /// (a handshake timeout, the peer's removal, the transport's disposal) ends any wait; the returned task
    /// completes as the thread's last act.
    /// </summary>
    private Task ServeInboundOnThread(Socket socket, CancellationToken cancellationToken)
    {
        var done = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        var thread = new Thread(() =>
        {
            try
            {
                // Every await inside completes synchronously (blocking calls), so all of it runs on this thread and
                // the task is complete when the call returns. Were one to yield, the rest would run on the pool.
                var serving = ServeInboundAsync(socket, onThread: true, cancellationToken);
                if (!serving.IsCompleted)
                {
                    Interlocked.Increment(ref _receiveThreadYields);
                }

                serving.GetAwaiter().GetResult();
            }
            catch (Exception exception)
            {
                Log.Unexpected(_logger, NodeId.None, exception);
            }
            finally
            {
                Interlocked.Decrement(ref _receiveThreads);
                done.SetResult();
            }
        })
        {
            IsBackground = true,
            Name = "peer-rx",
        };

        Interlocked.Increment(ref _receiveThreads);
        try
        {
            thread.Start();
        }
        catch (OutOfMemoryException exception)
        {
            Interlocked.Decrement(ref _receiveThreads);
            Interlocked.Decrement(ref _inboundConnections);
            Log.InboundRefused(_logger, SafeRemoteEndPoint(socket), $"no thread to serve it: {exception.Message}");
            socket.Dispose();
            return Task.CompletedTask;
        }

        return done.Task;
    }

    private async Task ServeInboundAsync(Socket socket, bool onThread, CancellationToken cancellationToken)
    {
        var remote = SafeRemoteEndPoint(socket);
        var peer = NodeId.None;
        Stream? stream = null;
        PipeReader? reader = null;
        PipeWriter? writer = null;
        try
        {
            ConfigureSocket(socket);

            // On a receive thread the blocking calls cannot watch a token: the deadline or stopping shuts the socket
            // down, which ends them.
            using var handshakeDeadline = onThread ? new CancellationTokenSource(_options.HandshakeTimeout, _timeProvider) : null;
            using var linkedDeadline = onThread ? CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, handshakeDeadline!.Token) : null;
            var unblockHandshake = linkedDeadline?.Token.Register(static state => ShutdownQuietly((Socket)state!), socket);
            try
            {
                stream = onThread
                    ? WrapBlocking(socket)
                    : await WrapStreamAsync(socket, isDialer: false, targetHost: null, cancellationToken).ConfigureAwait(false);
                reader = PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: 64 * 1024, leaveOpen: true));
                writer = PipeWriter.Create(stream, new StreamPipeWriterOptions(leaveOpen: true));
                peer = await AcceptHandshakeAsync(reader, writer, cancellationToken).ConfigureAwait(false);
                if (unblockHandshake is { } registration)
                {
                    // Unregister and wait for a shutdown already running; if it ran, the socket is unusable.
                    registration.Dispose();
                    if (linkedDeadline!.IsCancellationRequested)
                    {
                        throw new OperationCanceledException(linkedDeadline.Token);
                    }
                }
            }
            catch (Exception exception) when (exception is HandshakeException or OperationCanceledException or IOException or SocketException
                or System.Security.Authentication.AuthenticationException)
            {
                if (cancellationToken.IsCancellationRequested)
                {
                    return;
                }

                Interlocked.Increment(ref _inboundRefused);
                bool timedOut = exception is OperationCanceledException || handshakeDeadline is { IsCancellationRequested: true };
                string reason = timedOut ? "handshake timed out" : exception.Message;
                Log.InboundRefused(_logger, remote, reason);
                return;
            }

            Log.InboundAccepted(_logger, peer, remote);
            using var close = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            long key = Interlocked.Increment(ref _inboundKeys);
            _inboundSessions[key] = (peer, close);
            int others = _inboundSessions.Count(session => session.Key != key && session.Value.Peer == peer);
            if (others > 0)
            {
                Log.InboundDuplicate(_logger, peer, remote, others);
            }
            try
            {
                var inbound = new InboundSession(this, peer);
                string? violation = onThread
                    ? ReceiveBlocking(inbound, socket, reader, close.Token)
                    : await inbound.ReceiveAsync(reader, close.Token).ConfigureAwait(false);
                if (violation is not null)
                {
                    Interlocked.Increment(ref _inboundRefused);
                    Log.InboundClosed(_logger, peer, remote, violation);
                }
                else
                {
                    // The peer closed its end: it stopped, crashed (the kernel closes a killed process's sockets)
                    // or dropped the link itself; either way, word from it on this link has ended.
                    Log.InboundEnded(_logger, peer);
                    if (!cancellationToken.IsCancellationRequested)
                    {
                        RaisePeerConnectionLost(peer);
                    }
                }
            }
            catch (OperationCanceledException) when (close.IsCancellationRequested && !cancellationToken.IsCancellationRequested)
            {
                Log.InboundClosed(_logger, peer, remote, "the peer was removed from the cluster");
            }
            finally
            {
                _inboundSessions.TryRemove(key, out _);
            }
        }
        catch (Exception exception) when (exception is OperationCanceledException or IOException or SocketException or ObjectDisposedException)
        {
            if (!cancellationToken.IsCancellationRequested)
            {
                Log.InboundClosed(_logger, peer, remote, exception.Message);
                // Inbound reads have no timeout, so a read error here is the link failing, not a slow peer.
                if (!peer.IsNone && exception is IOException or SocketException)
                {
                    RaisePeerConnectionLost(peer);
                }
            }
        }
        catch (Exception exception)
        {
            // A bug, not bad input: log loudly, close this connection, keep the node running.
            Log.Unexpected(_logger, peer, exception);
        }
        finally
        {
            Interlocked.Decrement(ref _inboundConnections);

            if (reader is not null)
            {
                await reader.CompleteAsync().ConfigureAwait(false);
            }

            if (writer is not null)
            {
                await writer.CompleteAsync().ConfigureAwait(false);
            }

            if (stream is not null)
            {
                await stream.DisposeAsync().ConfigureAwait(false);
            }
            else
            {
                socket.Dispose();
            }
        }
    }

    /// <summary>
    /// The plaintext check of <see cref="WrapStreamAsync"/> with blocking calls, for a receive thread: peeks at the
    /// first byte (a TLS dialer is refused: this node has no TLS) and returns a stream of blocking calls.
    /// </summary>
    private static BlockingSocketStream WrapBlocking(Socket socket)
    {
        Span<byte> first = stackalloc byte[1];
        if (socket.Receive(first, SocketFlags.Peek) == 0)
        {
            throw new HandshakeException("connection closed");
        }

        if (first[0] == PeerTls.HandshakeRecordType)
        {
            throw new HandshakeException("TLS connection refused: the peer uses TLS but peer TLS is not configured on this node");
        }

        return new BlockingSocketStream(socket);
    }

    /// <summary>
    /// Receives on the calling thread (the connection's receive thread) until the peer closes or violates the
    /// protocol. Cancelling <paramref name="close"/> shuts the socket down, which ends the blocking receive; that
    /// then throws <see cref="OperationCanceledException"/>, as the asynchronous receive does.
    /// </summary>
    private static string? ReceiveBlocking(InboundSession inbound, Socket socket, PipeReader reader, CancellationToken close)
    {
        // What the handshake's reader took past the Proof frame (the dialer sends nothing before Accepted, so
        // normally nothing) goes first; the reader is not used again.
        byte[] buffered = [];
        if (reader.TryRead(out var read))
        {
            buffered = read.Buffer.ToArray();
            reader.AdvanceTo(read.Buffer.End);
        }

        string? violation;
        using (close.Register(static state => ShutdownQuietly((Socket)state!), socket))
        {
            try
            {
                violation = inbound.Receive(socket, new ReadOnlySequence<byte>(buffered));
            }
            catch (Exception exception) when (close.IsCancellationRequested
                && exception is SocketException or IOException or ObjectDisposedException)
            {
                throw new OperationCanceledException(close);
            }
        }

        close.ThrowIfCancellationRequested();
        return violation;
    }

    private static void ShutdownQuietly(Socket socket)
    {
        try
        {
            socket.Shutdown(SocketShutdown.Both);
        }
        catch (Exception exception) when (exception is SocketException or ObjectDisposedException)
        {
            // Already closed: whatever waited on it has ended or is ending.
        }
    }

    private async Task<NodeId> AcceptHandshakeAsync(PipeReader reader, PipeWriter writer, CancellationToken cancellationToken)
    {
        using var timeout = new CancellationTokenSource(_options.HandshakeTimeout, _timeProvider);
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken, timeout.Token);
        var token = linked.Token;

        byte[] helloBody = await ReadHandshakeFrameAsync(reader, FrameType.Hello, token).ConfigureAwait(false);
        if (!Handshake.TryDecodeHello(helloBody, out var hello))
        {
            throw new HandshakeException("malformed hello");
        }

        if (!string.Equals(hello.ClusterId, _options.ClusterId, StringComparison.Ordinal))
        {
            throw new HandshakeException($"cluster id '{hello.ClusterId}' is not this cluster's");
        }

        if (hello.To != _options.NodeId)
        {
            throw new HandshakeException($"dialer {hello.From} wants node {hello.To}, this is node {_options.NodeId}");
        }

        if (hello.From.IsNone || hello.From == _options.NodeId)
        {
            throw new HandshakeException($"invalid dialer id {hello.From}");
        }

        byte[] nonce = Handshake.NewNonce();
        var challenge = new Handshake.Challenge(
            _options.NodeId, hello.From, nonce, Handshake.ListenerMac(_options.ClusterSecret, hello, nonce));
        await WriteFrameAsync(writer, FrameType.Challenge, Handshake.EncodeChallenge(challenge), token).ConfigureAwait(false);

        byte[] proofBody = await ReadHandshakeFrameAsync(reader, FrameType.Proof, token).ConfigureAwait(false);
        if (!Handshake.TryDecodeProof(proofBody, out byte[] mac))
        {
            throw new HandshakeException("malformed proof");
        }

        if (!Handshake.Verify(Handshake.DialerMac(_options.ClusterSecret, hello, nonce), mac))
        {
            throw new HandshakeException($"dialer {hello.From} failed authentication");
        }

        byte[] accepted = [];
        if (NotAMemberAsOf?.Invoke(hello.From) is { } asOf)
        {
            accepted = new byte[8];
            BinaryPrimitives.WriteUInt64LittleEndian(accepted, asOf.Value);
        }

        await WriteFrameAsync(writer, FrameType.Accepted, accepted, token).ConfigureAwait(false);
        return hello.From;
    }

    /// <summary>
    /// True while the message handler runs for a message that is not the last one this thread has already received
    /// on its connection: another message of the same sender (in the same frame, or a later frame already read from
    /// the socket) is delivered right after it. A handler may then leave the message queued, to be handled together
    /// with the ones that follow, rather than handle it alone (docs/RAFT.md, "Who runs the host's passes").
    /// </summary>
    public static bool MoreReceived => s_moreReceived;

    [ThreadStatic]
    private static bool s_moreReceived;

    internal void Deliver(Message message, NodeId peer, bool moreReceived)
    {
        s_moreReceived = moreReceived;
        try
        {
            Deliver(message, peer);
        }
        finally
        {
            s_moreReceived = false;
        }
    }

    internal void Deliver(Message message, NodeId peer)
    {
        Interlocked.Increment(ref _messagesReceived);
        try
        {
            _onMessage(message);
        }
        catch (Exception exception)
        {
            Log.HandlerFailed(_logger, peer, exception);
        }
    }

    internal void DeliverJoin(JoinFrame frame, NodeId peer)
    {
        try
        {
            JoinReceived?.Invoke(peer, frame);
        }
        catch (Exception exception)
        {
            Log.EventHandlerFailed(_logger, nameof(JoinReceived), exception);
        }
    }

    internal void CountReceivedBytes(long bytes) => Interlocked.Add(ref _bytesReceived, bytes);

    private static EndPoint? SafeRemoteEndPoint(Socket socket)
    {
        try
        {
            return socket.RemoteEndPoint;
        }
        catch (Exception exception) when (exception is SocketException or ObjectDisposedException)
        {
            return null;
        }
    }
}

/// <summary>A handshake step failed; the message says why (logged, never sent to the peer).</summary>
internal sealed class HandshakeException : Exception
{
    public HandshakeException(string message)
        : base(message)
    {
    }
}
