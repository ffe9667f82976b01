using System.Buffers;
using System.Buffers.Binary;
using System.IO.Pipelines;
using Stcache.Raft;

namespace Stcache.Transport;

/// <summary>
/// The receiving side of one authenticated inbound connection: reads frames, validates every message
/// (sender and receiver must be the handshaken peer and this node), reassembles chunked snapshots within
/// <see cref="TransportOptions.SnapshotBytesMax"/>, and delivers. The first violation ends the connection.
/// </summary>
internal sealed class InboundSession
{
    private readonly PeerTransport _transport;
    private readonly NodeId _peer;
    private readonly List<Message> _batch = [];

    // Invariant: _snapshotMessage is null exactly when _snapshotData is null; _snapshotReceived <= _snapshotData.Length.
    private Message? _snapshotMessage;
    private byte[]? _snapshotData;
    private int _snapshotReceived;

    public InboundSession(PeerTransport transport, NodeId peer)
    {
        _transport = transport;
        _peer = peer;
    }

    /// <summary>Receives until the peer closes (returns null) or violates the protocol (returns why).</summary>
    public async Task<string?> ReceiveAsync(PipeReader reader, CancellationToken cancellationToken)
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
                violation = HandleFrame(type, body);
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

                return _snapshotMessage is null ? null : "connection closed inside a snapshot";
            }
        }
    }

    internal string? HandleFrame(FrameType type, ReadOnlySequence<byte> body)
    {
        switch (type)
        {
            case FrameType.Messages:
                return HandleMessages(body);
            case FrameType.SnapshotBegin:
                return HandleSnapshotBegin(body);
            case FrameType.SnapshotChunk:
                return HandleSnapshotChunk(body);
            default:
                return $"unexpected {type} frame";
        }
    }

    private string? HandleMessages(ReadOnlySequence<byte> body)
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

        foreach (var message in _batch)
        {
            _transport.Deliver(message, _peer);
        }

        _batch.Clear();
        return null;
    }

    private string? HandleSnapshotBegin(ReadOnlySequence<byte> body)
    {
        if (_snapshotMessage is not null)
        {
            return "snapshot begun inside another snapshot";
        }

        if (body.Length < 8)
        {
            return "snapshot header too short";
        }

        Span<byte> lengthBytes = stackalloc byte[8];
        body.Slice(0, 8).CopyTo(lengthBytes);
        ulong dataLength = BinaryPrimitives.ReadUInt64LittleEndian(lengthBytes);
        if (dataLength > (ulong)_transport.Options.SnapshotBytesMax)
        {
            return "snapshot larger than SnapshotBytesMax";
        }

        var rest = body.Slice(8);
        var status = MessageCodec.TryDecode(rest, (int)Math.Min(int.MaxValue, rest.Length), out var message, out long consumed, out string? error);
        if (status != DecodeStatus.Complete)
        {
            return error ?? "malformed snapshot header";
        }

        if (consumed != rest.Length)
        {
            return "trailing bytes after the snapshot header";
        }

        if (message!.Type != MessageType.Snapshot || !message.Snapshot!.Data.IsEmpty)
        {
            return "snapshot header is not a snapshot message without data";
        }

        string? wrongAddress = CheckAddress(message);
        if (wrongAddress is not null)
        {
            return wrongAddress;
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
