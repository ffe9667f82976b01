using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using System.Net.Sockets;
using Stcache.Raft;

namespace Stcache.Transport;

/// <summary>
/// The receiving side of one authenticated inbound connection: reads frames, validates every message
/// (sender and receiver must be the handshaken peer and this node), reassembles chunked snapshots within
/// <see cref="TransportOptions.SnapshotBytesMax"/> or streams stored snapshots into the snapshot store's receiver,
/// and delivers. The first violation ends the connection; a snapshot that did not complete is discarded.
/// </summary>
internal sealed class InboundSession
{
    /// <summary>The receive buffer of a blocking session; it grows to hold one larger frame, and shrinks back after.</summary>
    internal const int ReceiveBufferBytes = 64 * 1024;

    private readonly PeerTransport _transport;
    private readonly NodeId _peer;
    private readonly List<Message> _batch = [];

    // Invariant: _snapshotMessage is null exactly when _snapshotData is null; _snapshotReceived <= _snapshotData.Length.
    private Message? _snapshotMessage;
    private byte[]? _snapshotData;
    private int _snapshotReceived;

    // A stored snapshot being received: its message and where its bytes go. Both null or both set.
    private Message? _fileMessage;
    private ISnapshotReceiver? _fileReceiver;
    private long _fileLength;

    public InboundSession(PeerTransport transport, NodeId peer)
    {
        _transport = transport;
        _peer = peer;
    }

    /// <summary>Receives until the peer closes (returns null) or violates the protocol (returns why).</summary>
    public async Task<string?> ReceiveAsync(PipeReader reader, CancellationToken cancellationToken)
    {
        try
        {
            return await ReceiveFramesAsync(reader, cancellationToken).ConfigureAwait(false);
        }
        finally
        {
            AbandonFile("the connection ended");
        }
    }

    /// <summary>
    /// Receives on the calling thread, which blocks in the socket's receive, until the peer closes (returns null)
    /// or violates the protocol (returns why); a socket error throws. <paramref name="buffered"/> holds what was
    /// read past the handshake. Shutting the socket down ends the wait.
    /// </summary>
    public string? Receive(Socket socket, ReadOnlySequence<byte> buffered)
    {
        try
        {
            return ReceiveFrames(socket, buffered);
        }
        finally
        {
            AbandonFile("the connection ended");
        }
    }

    private string? ReceiveFrames(Socket socket, ReadOnlySequence<byte> buffered)
    {
        int frameBytesMax = _transport.Options.FrameBytesMax;
        byte[] buffer = new byte[Math.Max(ReceiveBufferBytes, (int)buffered.Length)];
        buffered.CopyTo(buffer);
        int start = 0;
        int end = (int)buffered.Length;
        while (true)
        {
            var pending = new ReadOnlySequence<byte>(buffer, start, end - start);
            while (true)
            {
                var status = FrameCodec.TryReadFrame(ref pending, frameBytesMax, out var type, out var body, out string? error);
                if (status == DecodeStatus.NeedMoreData)
                {
                    break;
                }

                if (status == DecodeStatus.Malformed)
                {
                    return error ?? "malformed frame";
                }

                _transport.CountReceivedBytes(FrameCodec.HeaderBytes + body.Length);

                // This thread is the connection's own: a stored snapshot's file work may block it.
                string? violation = HandleFrame(type, body, moreReceived: !pending.IsEmpty);
                if (violation is not null)
                {
                    return violation;
                }
            }

            start = end - (int)pending.Length;
            int partial = end - start;

            // A partial frame's header passed TryReadFrame's checks, so its length is within FrameBytesMax.
            int needed = partial >= FrameCodec.HeaderBytes
                ? FrameCodec.HeaderBytes + (int)BinaryPrimitives.ReadUInt32LittleEndian(buffer.AsSpan(start + 2, 4))
                : FrameCodec.HeaderBytes;
            if (needed > buffer.Length || (buffer.Length > ReceiveBufferBytes && needed <= ReceiveBufferBytes))
            {
                var resized = new byte[Math.Max(ReceiveBufferBytes, needed)];
                Buffer.BlockCopy(buffer, start, resized, 0, partial);
                buffer = resized;
                start = 0;
                end = partial;
            }
            else if (start > 0)
            {
                Buffer.BlockCopy(buffer, start, buffer, 0, partial);
                start = 0;
                end = partial;
            }

            int received = socket.Receive(buffer, end, buffer.Length - end, SocketFlags.None);
            if (received == 0)
            {
                if (partial > 0)
                {
                    return "connection closed inside a frame";
                }

                return _snapshotMessage is null && _fileMessage is null ? null : "connection closed inside a snapshot";
            }

            end += received;
        }
    }

    private async Task<string?> ReceiveFramesAsync(PipeReader reader, CancellationToken cancellationToken)
    {
        int frameBytesMax = _transport.Options.FrameBytesMax;
        while (true)
        {
            var result = await reader.ReadAsync(cancellationToken).ConfigureAwait(false);
            var buffer = result.Buffer;
            string? violation = null;
            while (violation is null)
            {
                var status = FrameCodec.TryReadFrame(ref buffer, frameBytesMax, out var type, out var body, out string? error);
                if (status == DecodeStatus.NeedMoreData)
                {
                    break;
                }

                if (status == DecodeStatus.Malformed)
                {
                    violation = error ?? "malformed frame";
                    break;
                }

                _transport.CountReceivedBytes(FrameCodec.HeaderBytes + body.Length);
                if (WritesToDisk(type) && !Thread.CurrentThread.IsThreadPoolThread)
                {
                    // On the runtime's socket thread (--io-threads inline), which serves every other socket too: a
                    // stored snapshot's file work (create, write, sync, verify) goes to the thread pool. The body
                    // stays valid: nothing is released to the pipe before AdvanceTo.
                    await Task.Yield();
                }

                violation = HandleFrame(type, body, moreReceived: !buffer.IsEmpty);
            }

            reader.AdvanceTo(buffer.Start, buffer.End);
            if (violation is not null)
            {
                return violation;
            }

            if (result.IsCompleted)
            {
                if (!buffer.IsEmpty)
                {
                    return "connection closed inside a frame";
                }

                return _snapshotMessage is null && _fileMessage is null ? null : "connection closed inside a snapshot";
            }
        }
    }

    /// <summary>Frames whose handling writes the stored snapshot's file.</summary>
    private bool WritesToDisk(FrameType type) =>
        type == FrameType.SnapshotFileBegin || (type == FrameType.SnapshotChunk && _fileReceiver is not null);

    /// <summary>Handles one frame; <paramref name="moreReceived"/>: more bytes of this connection are already read
    /// behind it (see <see cref="PeerTransport.MoreReceived"/>).</summary>
    internal string? HandleFrame(FrameType type, ReadOnlySequence<byte> body, bool moreReceived = false)
    {
        switch (type)
        {
            case FrameType.Messages:
                return HandleMessages(body, moreReceived);
            case FrameType.SnapshotBegin:
                return HandleSnapshotBegin(body);
            case FrameType.SnapshotFileBegin:
                return HandleSnapshotFileBegin(body);
            case FrameType.SnapshotChunk:
                return _fileReceiver is null ? HandleSnapshotChunk(body) : HandleSnapshotFileChunk(body);
            case FrameType.Join:
                if (JoinFrame.TryDecodeBody(body, out var join, out string? error) != DecodeStatus.Complete)
                {
                    return error ?? "malformed join frame";
                }

                _transport.DeliverJoin(join!, _peer);
                return null;
            default:
                return $"unexpected {type} frame";
        }
    }

    private string? HandleMessages(ReadOnlySequence<byte> body, bool moreReceived)
    {
        if (FrameCodec.TryDecodeMessages(body, _batch, out string? error) != DecodeStatus.Complete)
        {
            return error ?? "malformed messages frame";
        }

        foreach (var message in _batch)
        {
            string? wrongAddress = CheckAddress(message);
            if (wrongAddress is not null)
            {
                _batch.Clear();
                return wrongAddress;
            }
        }

        for (int i = 0; i < _batch.Count; i++)
        {
            _transport.Deliver(_batch[i], _peer, moreReceived || i < _batch.Count - 1);
        }

        _batch.Clear();
        return null;
    }

    private string? HandleSnapshotBegin(ReadOnlySequence<byte> body)
    {
        string? problem = DecodeSnapshotHeader(body, out ulong dataLength, out var message);
        if (problem is not null)
        {
            return problem;
        }

        if (dataLength > (ulong)_transport.Options.SnapshotBytesMax)
        {
            return "snapshot larger than SnapshotBytesMax";
        }

        if (dataLength == 0)
        {
            _transport.Deliver(message, _peer);
            return null;
        }

        _snapshotMessage = message;
        _snapshotData = GC.AllocateUninitializedArray<byte>((int)dataLength);
        _snapshotReceived = 0;
        return null;
    }

    private string? HandleSnapshotChunk(ReadOnlySequence<byte> body)
    {
        if (_snapshotMessage is null || _snapshotData is null)
        {
            return "snapshot chunk without a snapshot header";
        }

        if (body.IsEmpty || body.Length > _snapshotData.Length - _snapshotReceived)
        {
            return "snapshot chunk beyond the announced length";
        }

        body.CopyTo(_snapshotData.AsSpan(_snapshotReceived));
        _snapshotReceived += (int)body.Length;
        if (_snapshotReceived < _snapshotData.Length)
        {
            return null;
        }

        var snapshot = _snapshotMessage.Snapshot! with { Data = _snapshotData };
        var complete = _snapshotMessage with { Snapshot = snapshot };
        _snapshotMessage = null;
        _snapshotData = null;
        _snapshotReceived = 0;
        Log.SnapshotReceived(_transport.Logger, _peer, snapshot.Metadata.Index, snapshot.Data.Length);
        _transport.Deliver(complete, _peer);
        return null;
    }

    /// <summary>Decodes a SnapshotBegin or SnapshotFileBegin body: the length, then a snapshot message without data.</summary>
    private string? DecodeSnapshotHeader(ReadOnlySequence<byte> body, out ulong length, out Message message)
    {
        length = 0;
        message = null!;
        if (_snapshotMessage is not null || _fileMessage is not null)
        {
            return "snapshot begun inside another snapshot";
        }

        if (body.Length < 8)
        {
            return "snapshot header too short";
        }

        Span<byte> lengthBytes = stackalloc byte[8];
        body.Slice(0, 8).CopyTo(lengthBytes);
        length = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
        var rest = body.Slice(8);
        var status = MessageCodec.TryDecode(rest, (int)Math.Min(int.MaxValue, rest.Length), out var decoded, out long consumed, out string? error);
        if (status != DecodeStatus.Complete)
        {
            return error ?? "malformed snapshot header";
        }

        if (consumed != rest.Length)
        {
            return "trailing bytes after the snapshot header";
        }

        if (decoded!.Type != MessageType.Snapshot || !decoded.Snapshot!.Data.IsEmpty)
        {
            return "snapshot header is not a snapshot message without data";
        }

        message = decoded;
        return CheckAddress(message);
    }

    private string? HandleSnapshotFileBegin(ReadOnlySequence<byte> body)
    {
        string? problem = DecodeSnapshotHeader(body, out ulong length, out var message);
        if (problem is not null)
        {
            return problem;
        }

        var begin = _transport.BeginSnapshotReceive;
        if (begin is null)
        {
            return "stored snapshot sent to a node that takes none";
        }

        if (length == 0 || length > long.MaxValue)
        {
            return $"implausible snapshot length {length}";
        }

        var metadata = message.Snapshot!.Metadata;
        try
        {
            _fileReceiver = begin(metadata, (long)length);
        }
        catch (Exception exception) when (exception is IOException or InvalidDataException or UnauthorizedAccessException or NotSupportedException)
        {
            Log.SnapshotRejected(_transport.Logger, _peer, metadata.Index, exception.Message);
            return $"snapshot at index {metadata.Index} cannot be received: {exception.Message}";
        }

        _fileMessage = message;
        _fileLength = (long)length;
        Log.SnapshotReceiving(_transport.Logger, _peer, metadata.Index, (long)length);
        return null;
    }

    private string? HandleSnapshotFileChunk(ReadOnlySequence<byte> body)
    {
        var receiver = _fileReceiver!;
        var message = _fileMessage!;
        var metadata = message.Snapshot!.Metadata;
        if (body.IsEmpty || body.Length > _fileLength - receiver.Received)
        {
            AbandonFile("a chunk went beyond the announced length");
            return "snapshot chunk beyond the announced length";
        }

        try
        {
            foreach (var segment in body)
            {
                receiver.Write(segment.Span);
            }
        }
        catch (Exception exception) when (exception is IOException or InvalidDataException or UnauthorizedAccessException)
        {
            AbandonFile(exception.Message);
            return $"snapshot at index {metadata.Index} rejected: {exception.Message}";
        }

        return MaybeCompleteFile();
    }

    /// <summary>Called after each chunk: completes the stored snapshot once all of it arrived.</summary>
    private string? MaybeCompleteFile()
    {
        var receiver = _fileReceiver!;
        var message = _fileMessage!;
        if (receiver.Received < _fileLength)
        {
            return null;
        }

        var metadata = message.Snapshot!.Metadata;
        SnapshotMetadata stored;
        try
        {
            stored = receiver.Complete();
        }
        catch (Exception exception) when (exception is IOException or InvalidDataException or UnauthorizedAccessException)
        {
            AbandonFile(exception.Message);
            return $"snapshot at index {metadata.Index} rejected: {exception.Message}";
        }

        receiver.Dispose();
        _fileReceiver = null;
        _fileMessage = null;
        Log.SnapshotReceived(_transport.Logger, _peer, metadata.Index, _fileLength);

        // What the leader's core sent, with the configuration the verified file holds.
        _transport.Deliver(message with { Snapshot = new Snapshot(stored, ReadOnlyMemory<byte>.Empty) }, _peer);
        return null;
    }

    /// <summary>Discards a stored snapshot that did not complete (nothing of it is kept), logging why.</summary>
    private void AbandonFile(string reason)
    {
        if (_fileReceiver is null)
        {
            return;
        }

        var index = _fileMessage!.Snapshot!.Metadata.Index;
        long received = _fileReceiver.Received;
        _fileReceiver.Dispose();
        _fileReceiver = null;
        _fileMessage = null;
        Log.SnapshotRejected(_transport.Logger, _peer, index, $"{reason} (after {received} of {_fileLength} bytes); discarded");
    }

    private string? CheckAddress(Message message)
    {
        if (message.From != _peer)
        {
            return $"message from {message.From} on the connection of peer {_peer}";
        }

        if (message.To != _transport.NodeId)
        {
            return $"message to {message.To} delivered to node {_transport.NodeId}";
        }

        return null;
    }
}
