using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;
using Stcache.Raft;

namespace Stcache.Transport;

/// <summary>
/// The outbound side for one peer: a bounded queue and a writer loop that connects lazily, handshakes,
/// coalesces everything queued into one frame per write, streams snapshots in chunks between batches, and
/// reconnects with exponential back-off and jitter. A stored snapshot is read from its stream one chunk at a
/// time, just before the chunk is written, so at most a chunk or two of it is in memory, and a peer that reads
/// slowly slows the reading (each chunk waits for the flush of the one before).
/// </summary>
[System.Diagnostics.CodeAnalysis.SuppressMessage("Design", "CA1001",
    Justification = "_stop has no timer and no registrations to release; Stop() may race the loop's end, so it is never disposed")]
internal sealed class PeerSender
{
    private const int CountBytes = 4;

    private readonly PeerTransport _transport;
    private readonly TransportOptions _options;
    private readonly Channel<Outbound> _queue;
    private readonly CancellationTokenSource _stop = new();
    private readonly Queue<Outbound> _pendingSnapshots = new();
    private readonly Queue<JoinFrame> _pendingJoins = new();
    private readonly List<Message> _batch = [];
    private readonly object _sessionLock = new();
    private CancellationTokenSource? _session;
    private volatile string _address;
    private volatile bool _connected;

    // Set by the close watcher when the listener closed or reset the current session's connection.
    private volatile bool _closedByPeer;

    // The snapshot being streamed, and how many of its data bytes are written. Only the writer loop touches these.
    private Message? _currentSnapshot;
    private Stream? _currentStored;
    private long _snapshotLength;
    private long _snapshotOffset;

    // A message read from the queue that did not fit the last batch; it goes first in the next one.
    private Message? _carried;

    public PeerSender(PeerTransport transport, NodeId id, string address)
    {
        _transport = transport;
        _options = transport.Options;
        Id = id;
        _address = address;
        _queue = Channel.CreateBounded<Outbound>(new BoundedChannelOptions(_options.PeerQueueCapacity)
        {
            FullMode = BoundedChannelFullMode.Wait,
            SingleReader = true,
            SingleWriter = false,

            // An idle link (the writer loop parked on an empty queue, no flush in flight) sends on the thread that
            // enqueues, usually the Raft loop: the writer loop resumes inline, frames the message and flushes, and
            // a socket send that completes at once returns to the enqueuer without waking another thread. A flush
            // that would block parks the writer loop as before, and the enqueuer goes on; while it is parked, or
            // busy, messages queue up for its next batch, in order. Over TLS the encryption stays off the
            // enqueuer's thread.
            AllowSynchronousContinuations = !_options.TlsEnabled,
        });
    }

    public NodeId Id { get; }

    public bool IsConnected => _connected;

    public bool TryEnqueue(Message message) => _queue.Writer.TryWrite(new Outbound(message, null));

    /// <summary>Queues a snapshot to stream from <paramref name="stored"/>; on success the sender owns the stream.</summary>
    public bool TryEnqueueSnapshot(Message header, Stream stored) => _queue.Writer.TryWrite(new Outbound(header, stored));

    public bool TryEnqueueJoin(JoinFrame frame) => _queue.Writer.TryWrite(new Outbound(null, null, frame));

    public void SetAddress(string address)
    {
        if (string.Equals(address, _address, StringComparison.Ordinal))
        {
            return;
        }

        _address = address;
        lock (_sessionLock)
        {
            _session?.Cancel();
        }
    }

    /// <summary>Accepts no more messages; the writer loop writes what is queued, then ends.</summary>
    public void Complete() => _queue.Writer.TryComplete();

    /// <summary>Accepts no more messages and ends the writer loop now; what is still queued is dropped.</summary>
    public void Stop()
    {
        Complete();
        _stop.Cancel();
    }

    public async Task RunAsync(CancellationToken transportStopping)
    {
        using var linked = CancellationTokenSource.CreateLinkedTokenSource(transportStopping, _stop.Token);
        var token = linked.Token;
        int failures = 0;
        try
        {
            while (!token.IsCancellationRequested)
            {
                if (_carried is null && !await WaitForWorkAsync(token).ConfigureAwait(false))
                {
                    return;
                }

                string address = _address;
                Connection connection;
                try
                {
                    connection = await ConnectAsync(address, token).ConfigureAwait(false);
                }
                catch (Exception exception)
                {
                    if (token.IsCancellationRequested)
                    {
                        return;
                    }

                    if (!IsConnectionError(exception))
                    {
                        Log.Unexpected(_transport.Logger, Id, exception);
                    }

                    failures++;
                    _transport.CountConnectionFailure();
                    if (failures == 1)
                    {
                        Log.ConnectFailed(_transport.Logger, Id, address, failures, exception);
                    }
                    else
                    {
                        Log.ConnectFailedAgain(_transport.Logger, Id, address, failures, exception.Message);
                    }

                    DropQueued("peer unreachable");
                    if (PeerTransport.IsPeerGone(exception))
                    {
                        // Refused: nothing listens at the peer's address (a timeout would mean we cannot tell).
                        _transport.RaisePeerConnectionLost(Id);
                    }

                    await Task.Delay(Backoff(failures), _transport.TimeProvider, token).ConfigureAwait(false);
                    continue;
                }

                failures = 0;
                Log.Connected(_transport.Logger, Id, address);
                try
                {
                    _connected = true;
                    await RunSessionAsync(connection, token).ConfigureAwait(false);
                }
                catch (Exception exception)
                {
                    if (token.IsCancellationRequested)
                    {
                        return;
                    }

                    if (!IsConnectionError(exception))
                    {
                        Log.Unexpected(_transport.Logger, Id, exception);
                    }

                    failures = 1;
                    _transport.CountConnectionFailure();
                    Log.ConnectionLost(_transport.Logger, Id, exception);
                    _transport.RaisePeerUnreachable(Id);
                    if (_closedByPeer || PeerTransport.IsPeerGone(exception))
                    {
                        _transport.RaisePeerConnectionLost(Id);
                    }
                }
                finally
                {
                    _connected = false;
                    FailSnapshots();
                    _batch.Clear();
                    _pendingJoins.Clear(); // the joiner asks again
                    await connection.DisposeAsync().ConfigureAwait(false);
                }

                if (failures > 0)
                {
                    await Task.Delay(Backoff(failures), _transport.TimeProvider, token).ConfigureAwait(false);
                }
            }
        }
        catch (OperationCanceledException) when (token.IsCancellationRequested)
        {
            // Stopped: the peer was removed or the transport disposed.
        }
        finally
        {
            _queue.Writer.TryComplete();
            FailSnapshots();
            while (_queue.Reader.TryRead(out var outbound))
            {
                outbound.Stored?.Dispose();
                if (outbound.Message?.Type == MessageType.Snapshot)
                {
                    _transport.RaiseSnapshotSendCompleted(Id, ok: false);
                }
            }
        }
    }

    /// <summary>False once the queue is completed and drained; otherwise true when a connection is wanted: at once
    /// with <see cref="TransportOptions.KeepConnected"/>, else when a message is queued.</summary>
    private async ValueTask<bool> WaitForWorkAsync(CancellationToken token)
    {
        if (!_options.KeepConnected)
        {
            return await _queue.Reader.WaitToReadAsync(token).ConfigureAwait(false);
        }

        return !_queue.Reader.Completion.IsCompleted;
    }

    internal TimeSpan Backoff(int failures)
    {
        double min = _options.ReconnectBackoffMin.TotalMilliseconds;
        double max = _options.ReconnectBackoffMax.TotalMilliseconds;
        double cap = Math.Min(max, min * Math.Pow(2, Math.Min(failures - 1, 30)));

        // "Equal jitter": at least half the exponential step, so peers that failed together spread out;
        // never below the configured minimum.
#pragma warning disable CA5394 // back-off jitter, not security
        return TimeSpan.FromMilliseconds(Math.Max(min, (cap / 2) + (Random.Shared.NextDouble() * cap / 2)));
#pragma warning restore CA5394
    }

    private static bool IsConnectionError(Exception exception) =>
        exception is IOException or SocketException or HandshakeException or OperationCanceledException
            or ObjectDisposedException or System.Security.Authentication.AuthenticationException;

    private async Task RunSessionAsync(Connection connection, CancellationToken token)
    {
        using var session = CancellationTokenSource.CreateLinkedTokenSource(token);
        lock (_sessionLock)
        {
            _session = session;
        }

        // Nothing is expected from the listener after Accepted; reading only notices when it closes.
        _closedByPeer = false;
        var watch = WatchForCloseAsync(connection.Reader, session);
        try
        {
            await WriteLoopAsync(connection.Writer, session.Token).ConfigureAwait(false);
        }
        catch (OperationCanceledException) when (!token.IsCancellationRequested)
        {
            throw new IOException("connection closed by the peer, its address changed, or a write timed out");
        }
        finally
        {
            lock (_sessionLock)
            {
                _session = null;
            }

            await session.CancelAsync().ConfigureAwait(false);
            await watch.ConfigureAwait(false);
        }
    }

    private async Task WatchForCloseAsync(PipeReader reader, CancellationTokenSource session)
    {
        try
        {
            while (true)
            {
                var result = await reader.ReadAsync(session.Token).ConfigureAwait(false);
                bool unexpected = !result.Buffer.IsEmpty;
                reader.AdvanceTo(result.Buffer.End);
                if (result.IsCompleted && !unexpected && !session.IsCancellationRequested)
                {
                    _closedByPeer = true;
                }

                if (result.IsCompleted || result.IsCanceled || unexpected)
                {
                    break;
                }
            }
        }
        catch (Exception exception) when (exception is OperationCanceledException or IOException or SocketException or ObjectDisposedException)
        {
            // Any error ends the session below; a reset says the peer is gone.
            if (!session.IsCancellationRequested && PeerTransport.IsPeerGone(exception))
            {
                _closedByPeer = true;
            }
        }
        finally
        {
            try
            {
                await session.CancelAsync().ConfigureAwait(false);
            }
            catch (ObjectDisposedException)
            {
                // The session already ended.
            }
        }
    }

    private async Task WriteLoopAsync(PipeWriter writer, CancellationToken token)
    {
        var reader = _queue.Reader;

        // Bounds each flush: a peer that stops reading (host gone, no RST) would otherwise hold the connection
        // until the kernel gives up. Armed around each flush and disarmed after, so no allocation per write.
        using var flushTimeout = CancellationTokenSource.CreateLinkedTokenSource(token);
        while (true)
        {
            if (_currentSnapshot is null && _pendingSnapshots.Count == 0 && _carried is null)
            {
                if (!await reader.WaitToReadAsync(token).ConfigureAwait(false))
                {
                    return;
                }
            }

            long written = 0;
            int frames = 0;
            long batchBodyBytes = CollectBatch();
            if (_batch.Count > 0)
            {
                FrameCodec.WriteHeader(writer, FrameType.Messages, (int)batchBodyBytes);
                var countSpan = writer.GetSpan(CountBytes);
                BinaryPrimitives.WriteUInt32LittleEndian(countSpan, (uint)_batch.Count);
                writer.Advance(CountBytes);
                foreach (var message in _batch)
                {
                    MessageCodec.Encode(message, writer);
                }

                written += FrameCodec.HeaderBytes + batchBodyBytes;
                frames++;
            }

            while (_pendingJoins.TryDequeue(out var join))
            {
                byte[] joinBody = join.EncodeBody();
                FrameCodec.WriteFrame(writer, FrameType.Join, joinBody);
                written += FrameCodec.HeaderBytes + joinBody.Length;
                frames++;
            }

            bool snapshotDone = false;
            if (_currentSnapshot is null)
            {
                if (_pendingSnapshots.Count > 0)
                {
                    // A snapshot's start (a stored one opens its file) and its chunks go to the thread pool, never
                    // onto the thread this writer may be running on: the Raft loop that enqueued a message to an idle
                    // link (itself a pool task, so "is a pool thread" cannot tell it apart), or a socket thread.
                    await Task.Yield();
                }

                if (_pendingSnapshots.TryDequeue(out var snapshot))
                {
                    long beginBytes = WriteSnapshotBegin(writer, snapshot);
                    written += beginBytes;
                    frames += beginBytes > 0 ? 1 : 0;
                    snapshotDone = _currentSnapshot is not null && _snapshotLength == 0;
                }
            }
            else
            {
                // Each chunk (and a stored snapshot's file read) on the thread pool, as above: a hop per chunk of
                // a megabyte costs nothing beside it.
                await Task.Yield();

                int length = (int)Math.Min(_options.SnapshotChunkBytes, _snapshotLength - _snapshotOffset);
                if (_currentStored is null)
                {
                    FrameCodec.WriteHeader(writer, FrameType.SnapshotChunk, length);
                    writer.Write(_currentSnapshot.Snapshot!.Data.Span.Slice((int)_snapshotOffset, length));
                }
                else
                {
                    await WriteStoredChunkAsync(writer, length, token).ConfigureAwait(false);
                }

                _snapshotOffset += length;
                written += FrameCodec.HeaderBytes + length;
                frames++;
                snapshotDone = _snapshotOffset == _snapshotLength;
            }

            if (written == 0)
            {
                continue;
            }

            flushTimeout.CancelAfter(_options.WriteTimeout);
            var flush = await writer.FlushAsync(flushTimeout.Token).ConfigureAwait(false);
            flushTimeout.CancelAfter(Timeout.InfiniteTimeSpan);
            if (flush.IsCompleted || flush.IsCanceled)
            {
                throw new IOException("connection closed while writing");
            }

            _transport.CountSent(_batch.Count + (snapshotDone ? 1 : 0), written, frames);
            _batch.Clear();
            if (snapshotDone)
            {
                var done = _currentSnapshot!;
                long doneBytes = _snapshotLength;
                EndCurrentSnapshot();
                Log.SnapshotSent(_transport.Logger, Id, done.Snapshot!.Metadata.Index, doneBytes);
                _transport.RaiseSnapshotSendCompleted(Id, ok: true);
            }
        }
    }

    /// <summary>Moves queued messages into <see cref="_batch"/> up to the batch target; returns the frame body length.</summary>
    private long CollectBatch()
    {
        var reader = _queue.Reader;
        long bodyBytes = CountBytes;
        while (true)
        {
            Message? message = _carried;
            _carried = null;
            if (message is null)
            {
                if (!reader.TryRead(out var outbound))
                {
                    break;
                }

                if (outbound.Message is null)
                {
                    _pendingJoins.Enqueue(outbound.Join!);
                    continue;
                }

                if (outbound.Message.Type == MessageType.Snapshot)
                {
                    _pendingSnapshots.Enqueue(outbound);
                    continue;
                }

                message = outbound.Message;
            }

            long length = MessageCodec.GetEncodedLength(message);
            if (CountBytes + length > _options.FrameBytesMax)
            {
                _transport.Drop(message, "message larger than FrameBytesMax", logWarning: true);
                continue;
            }

            if (_batch.Count > 0 && bodyBytes + length > _options.BatchBytesTarget)
            {
                // Opens the next frame; keeps order without peeking (one channel lock per message).
                _carried = message;
                break;
            }

            _batch.Add(message);
            bodyBytes += length;
        }

        return bodyBytes;
    }

    /// <summary>
    /// Writes the SnapshotBegin frame (data in the message) or SnapshotFileBegin frame (a stored snapshot) and
    /// makes the snapshot current; returns the bytes written.
    /// </summary>
    private long WriteSnapshotBegin(PipeWriter writer, Outbound outbound)
    {
        var message = outbound.Message!;
        var snapshot = message.Snapshot!;
        var header = message with { Snapshot = snapshot with { Data = ReadOnlyMemory<byte>.Empty } };
        long bodyLength = 8 + MessageCodec.GetEncodedLength(header);
        long length;
        try
        {
            length = outbound.Stored?.Length ?? snapshot.Data.Length;
        }
        catch (Exception exception) when (exception is IOException or NotSupportedException or ObjectDisposedException)
        {
            DropSnapshot(outbound, $"its stream has no length ({exception.Message})");
            return 0;
        }

        if (bodyLength > _options.FrameBytesMax)
        {
            DropSnapshot(outbound, "snapshot metadata larger than FrameBytesMax");
            return 0;
        }

        FrameCodec.WriteHeader(writer, outbound.Stored is null ? FrameType.SnapshotBegin : FrameType.SnapshotFileBegin, (int)bodyLength);
        var lengthSpan = writer.GetSpan(8);
        BinaryPrimitives.WriteUInt64LittleEndian(lengthSpan, (ulong)length);
        writer.Advance(8);
        MessageCodec.Encode(header, writer);
        _currentSnapshot = message;
        _currentStored = outbound.Stored;
        _snapshotLength = length;
        _snapshotOffset = 0;
        return FrameCodec.HeaderBytes + bodyLength;
    }

    /// <summary>Reads the next <paramref name="length"/> bytes of the stored snapshot straight into a chunk frame.</summary>
    private async ValueTask WriteStoredChunkAsync(PipeWriter writer, int length, CancellationToken token)
    {
        var memory = writer.GetMemory(FrameCodec.HeaderBytes + length);
        var body = memory.Slice(FrameCodec.HeaderBytes, length);
        int read = 0;
        try
        {
            while (read < length)
            {
                int n = await _currentStored!.ReadAsync(body[read..], token).ConfigureAwait(false);
                if (n == 0)
                {
                    break;
                }

                read += n;
            }
        }
        catch (IOException exception)
        {
            throw new IOException($"reading snapshot {_currentSnapshot!.Snapshot!.Metadata.Index} to send failed: {exception.Message}", exception);
        }

        if (read < length)
        {
            // The peer is mid-snapshot: only a new connection can tell it to forget the partial one.
            throw new IOException($"snapshot {_currentSnapshot!.Snapshot!.Metadata.Index} ended after {_snapshotOffset + read} of {_snapshotLength} bytes while being sent");
        }

        FrameCodec.WriteHeader(memory.Span, FrameType.SnapshotChunk, length);
        writer.Advance(FrameCodec.HeaderBytes + length);
    }

    private void EndCurrentSnapshot()
    {
        _currentStored?.Dispose();
        _currentStored = null;
        _currentSnapshot = null;
        _snapshotLength = 0;
        _snapshotOffset = 0;
    }

    private void DropSnapshot(Outbound outbound, string reason)
    {
        outbound.Stored?.Dispose();
        _transport.Drop(outbound.Message!, reason, logWarning: true);
    }

    private void DropQueued(string reason)
    {
        bool any = false;
        if (_carried is not null)
        {
            any = true;
            _transport.Drop(_carried, reason, logWarning: false);
            _carried = null;
        }

        while (_queue.Reader.TryRead(out var outbound))
        {
            any = true;
            outbound.Stored?.Dispose();
            if (outbound.Message is not null)
            {
                _transport.Drop(outbound.Message, reason, logWarning: false);
            }
        }

        if (!any)
        {
            _transport.RaisePeerUnreachable(Id);
        }
    }

    private void FailSnapshots()
    {
        if (_currentSnapshot is not null)
        {
            EndCurrentSnapshot();
            _transport.RaiseSnapshotSendCompleted(Id, ok: false);
        }

        while (_pendingSnapshots.TryDequeue(out var pending))
        {
            pending.Stored?.Dispose();
            _transport.RaiseSnapshotSendCompleted(Id, ok: false);
        }
    }

    private async Task<Connection> ConnectAsync(string address, CancellationToken token)
    {
        if (!PeerTransport.TryParseAddress(address, out var endPoint))
        {
            throw new HandshakeException($"'{address}' is not host:port");
        }

        var socket = endPoint is IPEndPoint ip
            ? new Socket(ip.AddressFamily, SocketType.Stream, ProtocolType.Tcp)
            : new Socket(SocketType.Stream, ProtocolType.Tcp);
        Stream? stream = null;
        try
        {
            PeerTransport.ConfigureSocket(socket);
            using (var timeout = new CancellationTokenSource(_options.ConnectTimeout, _transport.TimeProvider))
            using (var linked = CancellationTokenSource.CreateLinkedTokenSource(token, timeout.Token))
            {
                await socket.ConnectAsync(endPoint, linked.Token).ConfigureAwait(false);
            }

            string targetHost = endPoint is DnsEndPoint dns ? dns.Host : ((IPEndPoint)endPoint).Address.ToString();
            stream = await _transport.WrapStreamAsync(socket, isDialer: true, targetHost, token).ConfigureAwait(false);
            var connection = new Connection(
                stream,
                PipeReader.Create(stream, new StreamPipeReaderOptions(bufferSize: 4096, leaveOpen: true)),
                PipeWriter.Create(stream, new StreamPipeWriterOptions(minimumBufferSize: 64 * 1024, leaveOpen: true)));
            try
            {
                using var timeout = new CancellationTokenSource(_options.HandshakeTimeout, _transport.TimeProvider);
                using var linked = CancellationTokenSource.CreateLinkedTokenSource(token, timeout.Token);
                await DialHandshakeAsync(connection, linked.Token).ConfigureAwait(false);
                return connection;
            }
            catch
            {
                await connection.DisposeAsync().ConfigureAwait(false);
                throw;
            }
        }
        catch when (stream is null)
        {
            socket.Dispose();
            throw;
        }
    }

    private async Task DialHandshakeAsync(Connection connection, CancellationToken token)
    {
        var hello = new Handshake.Hello(_options.ClusterId, _options.NodeId, Id, Handshake.NewNonce());
        await PeerTransport.WriteFrameAsync(connection.Writer, FrameType.Hello, Handshake.EncodeHello(hello), token)
            .ConfigureAwait(false);
        byte[] body = await PeerTransport.ReadHandshakeFrameAsync(connection.Reader, FrameType.Challenge, token)
            .ConfigureAwait(false);
        if (!Handshake.TryDecodeChallenge(body, out var challenge))
        {
            throw new HandshakeException("malformed challenge");
        }

        if (challenge.From != Id || challenge.To != _options.NodeId)
        {
            throw new HandshakeException($"the listener is node {challenge.From} answering {challenge.To}, expected {Id} answering {_options.NodeId}");
        }

        if (!Handshake.Verify(Handshake.ListenerMac(_options.ClusterSecret, hello, challenge.Nonce), challenge.Mac))
        {
            throw new HandshakeException("the listener failed authentication");
        }

        byte[] proof = Handshake.DialerMac(_options.ClusterSecret, hello, challenge.Nonce);
        await PeerTransport.WriteFrameAsync(connection.Writer, FrameType.Proof, Handshake.EncodeProof(proof), token)
            .ConfigureAwait(false);
        byte[] accepted = await PeerTransport.ReadHandshakeFrameAsync(connection.Reader, FrameType.Accepted, token)
            .ConfigureAwait(false);
        if (accepted.Length == 8)
        {
            _transport.RaiseToldNotAMember(Id, new LogIndex(BinaryPrimitives.ReadUInt64LittleEndian(accepted)));
        }
        else if (accepted.Length != 0)
        {
            throw new HandshakeException("malformed accept");
        }
    }

    private sealed class Connection : IAsyncDisposable
    {
        private readonly Stream _stream;

        public Connection(Stream stream, PipeReader reader, PipeWriter writer)
        {
            _stream = stream;
            Reader = reader;
            Writer = writer;
        }

        public PipeReader Reader { get; }

        public PipeWriter Writer { get; }

        /// <summary>
        /// Never throws a connection error: completing the writer flushes buffered bytes, which fails on a broken
        /// socket, and an exception escaping the sender's finally block would end its reconnect loop for good.
        /// </summary>
        public async ValueTask DisposeAsync()
        {
            // Close the socket first: completing a writer flushes what it still buffers, which would block on
            // a peer that stopped reading. With the stream closed that flush fails at once instead.
            try
            {
                await _stream.DisposeAsync().ConfigureAwait(false);
            }
            catch (Exception exception) when (exception is IOException or ObjectDisposedException or SocketException or OperationCanceledException)
            {
                // The connection is already gone.
            }

            await CompleteQuietlyAsync(Reader.CompleteAsync()).ConfigureAwait(false);
            await CompleteQuietlyAsync(Writer.CompleteAsync()).ConfigureAwait(false);
        }

        private static async ValueTask CompleteQuietlyAsync(ValueTask completion)
        {
            try
            {
                await completion.ConfigureAwait(false);
            }
            catch (Exception exception) when (exception is IOException or ObjectDisposedException or SocketException or OperationCanceledException)
            {
                // The connection is already gone.
            }
        }
    }
}

/// <summary>A message on a sender's queue; a snapshot to stream from its store carries the stream.</summary>
/// <summary>A queued message (with the stored snapshot it announces, if any), or a join frame (no message).</summary>
internal readonly record struct Outbound(Message? Message, Stream? Stored, JoinFrame? Join = null);
