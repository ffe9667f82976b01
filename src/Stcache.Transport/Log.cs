using System.Net;
using Microsoft.Extensions.Logging;
using Stcache.Raft;

namespace Stcache.Transport;

/// <summary>Transport log messages; event ids 3000-3999 (docs/OPERATIONS.md, "Logging").</summary>
internal static partial class Log
{
    [LoggerMessage(EventId = 3000, Level = LogLevel.Information, Message = "Transport of node {NodeId} listening on {EndPoint}")]
    public static partial void Listening(ILogger logger, NodeId nodeId, EndPoint endPoint);

    [LoggerMessage(EventId = 3001, Level = LogLevel.Information, Message = "Connected to peer {PeerId} at {Address}")]
    public static partial void Connected(ILogger logger, NodeId peerId, string address);

    [LoggerMessage(EventId = 3002, Level = LogLevel.Warning, Message = "Connection to peer {PeerId} at {Address} failed ({Failures} in a row)")]
    public static partial void ConnectFailed(ILogger logger, NodeId peerId, string address, int failures, Exception exception);

    [LoggerMessage(EventId = 3003, Level = LogLevel.Debug, Message = "Connection to peer {PeerId} at {Address} failed again ({Failures} in a row): {Reason}")]
    public static partial void ConnectFailedAgain(ILogger logger, NodeId peerId, string address, int failures, string reason);

    [LoggerMessage(EventId = 3004, Level = LogLevel.Warning, Message = "Connection to peer {PeerId} lost")]
    public static partial void ConnectionLost(ILogger logger, NodeId peerId, Exception? exception);

    [LoggerMessage(EventId = 3005, Level = LogLevel.Warning, Message = "Inbound connection from {Remote} refused: {Reason}")]
    public static partial void InboundRefused(ILogger logger, EndPoint? remote, string reason);

    [LoggerMessage(EventId = 3006, Level = LogLevel.Information, Message = "Accepted peer {PeerId} from {Remote}")]
    public static partial void InboundAccepted(ILogger logger, NodeId peerId, EndPoint? remote);

    [LoggerMessage(EventId = 3007, Level = LogLevel.Warning, Message = "Inbound connection from peer {PeerId} at {Remote} closed: {Reason}")]
    public static partial void InboundClosed(ILogger logger, NodeId peerId, EndPoint? remote, string reason);

    [LoggerMessage(EventId = 3008, Level = LogLevel.Debug, Message = "Inbound connection from peer {PeerId} ended")]
    public static partial void InboundEnded(ILogger logger, NodeId peerId);

    [LoggerMessage(EventId = 3009, Level = LogLevel.Warning, Message = "Message to {PeerId} dropped: {Reason}")]
    public static partial void MessageDropped(ILogger logger, NodeId peerId, string reason);

    [LoggerMessage(EventId = 3010, Level = LogLevel.Error, Message = "Message handler failed for a message from {PeerId}")]
    public static partial void HandlerFailed(ILogger logger, NodeId peerId, Exception exception);

    [LoggerMessage(EventId = 3011, Level = LogLevel.Error, Message = "Accept loop failed")]
    public static partial void AcceptFailed(ILogger logger, Exception exception);

    [LoggerMessage(EventId = 3012, Level = LogLevel.Information, Message = "Sent snapshot at index {Index} ({Bytes} bytes) to peer {PeerId}")]
    public static partial void SnapshotSent(ILogger logger, NodeId peerId, LogIndex index, long bytes);

    [LoggerMessage(EventId = 3013, Level = LogLevel.Information, Message = "Received snapshot at index {Index} ({Bytes} bytes) from peer {PeerId}")]
    public static partial void SnapshotReceived(ILogger logger, NodeId peerId, LogIndex index, long bytes);

    [LoggerMessage(EventId = 3030, Level = LogLevel.Information, Message = "Receiving snapshot at index {Index} ({Bytes} bytes) from peer {PeerId} into the snapshot store")]
    public static partial void SnapshotReceiving(ILogger logger, NodeId peerId, LogIndex index, long bytes);

    [LoggerMessage(EventId = 3031, Level = LogLevel.Warning, Message = "Snapshot at index {Index} from peer {PeerId} rejected: {Reason}")]
    public static partial void SnapshotRejected(ILogger logger, NodeId peerId, LogIndex index, string reason);

    [LoggerMessage(EventId = 3014, Level = LogLevel.Error, Message = "Event handler {Event} failed")]
    public static partial void EventHandlerFailed(ILogger logger, string @event, Exception exception);

    [LoggerMessage(EventId = 3015, Level = LogLevel.Error, Message = "Unexpected failure in the transport (peer {PeerId})")]
    public static partial void Unexpected(ILogger logger, NodeId peerId, Exception exception);

    [LoggerMessage(EventId = 3016, Level = LogLevel.Information, Message = "Peer TLS on: certificate {Subject} ({Thumbprint}, expires {NotAfter}), trusting {Trust}, client certificates required: {ClientCertificateRequired}")]
    public static partial void TlsEnabled(ILogger logger, string subject, string thumbprint, DateTime notAfter, string trust, bool clientCertificateRequired);

    [LoggerMessage(EventId = 3017, Level = LogLevel.Information, Message = "Peer TLS off for node {NodeId}: peer links are plaintext")]
    public static partial void TlsDisabled(ILogger logger, NodeId nodeId);

    [LoggerMessage(EventId = 3018, Level = LogLevel.Warning, Message = "Peer {PeerId} connected from {Remote} while {Open} other connection(s) from peer {PeerId} are open: a restarted peer whose old connection has not closed yet, or two processes running as node {PeerId} (check --raft_id, --name and data directories)")]
    public static partial void InboundDuplicate(ILogger logger, NodeId peerId, EndPoint? remote, int open);
}
