using Microsoft.Extensions.Logging;
using Stcache.Raft;

namespace Stcache.Server;

/// <summary>RaftHost shell events, ids 1200-1299 (docs/OPERATIONS.md, "Logging"; the driver's own are in Stcache.Node's NodeLog).</summary>
internal static partial class Log
{
    [LoggerMessage(1290, LogLevel.Error, "Raft input queue full ({Capacity} peer messages and reports waiting): dropped a {Kind}; {Total} dropped since start (the loop is not keeping up; see stcache_raft_inputs_dropped_total)")]
    public static partial void PeerInputDropped(ILogger logger, int capacity, string kind, long total);

    [LoggerMessage(1211, LogLevel.Information, "Sending snapshot at index {Index} ({SizeBytes} bytes) to {NodeId}")]
    public static partial void SendingSnapshot(ILogger logger, NodeId nodeId, LogIndex index, long sizeBytes);

    [LoggerMessage(1250, LogLevel.Information, "Snapshot at index {Index} not sent again to {NodeId}: the previous one is still being sent")]
    public static partial void SnapshotStillSending(ILogger logger, NodeId nodeId, LogIndex index);

    [LoggerMessage(1212, LogLevel.Warning, "No snapshot at index {Index}, term {Term} in the store to send to {NodeId}")]
    public static partial void SnapshotMissing(ILogger logger, NodeId nodeId, LogIndex index, Term term);

    [LoggerMessage(1213, LogLevel.Warning, "Dropped a message from {NodeId}: {Reason}")]
    public static partial void DroppedMessage(ILogger logger, NodeId nodeId, string reason);

    [LoggerMessage(1215, LogLevel.Critical, "Raft host loop failed; the node stops")]
    public static partial void LoopFailed(ILogger logger, Exception exception);

    [LoggerMessage(1216, LogLevel.Warning, "Leadership change handler failed")]
    public static partial void HandlerFailed(ILogger logger, Exception exception);

    [LoggerMessage(1217, LogLevel.Error, "Write-ahead log writer: the disk refused a batch ({Reason}); nothing of it or queued behind it is acknowledged; retrying in {Delay}")]
    public static partial void WalWriterSaveFailed(ILogger logger, string reason, TimeSpan delay);

    [LoggerMessage(1218, LogLevel.Warning, "Write-ahead log writer: the disk accepts writes again")]
    public static partial void WalWriterRecovered(ILogger logger);
}

/// <summary>Node lifecycle and HTTP events, ids 1100-1199.</summary>
internal static partial class ServerLog
{
    [LoggerMessage(1113, LogLevel.Information, "io-threads {Requested}: socket completions observed running {Observed}; HTTP requests run {Http}")]
    public static partial void IoThreads(ILogger logger, string requested, string observed, string http);

    [LoggerMessage(1100, LogLevel.Information, "http server listen:{HttpAddress}, raft {RaftAddress}, node {NodeId} ({Name}), data {DataDirectory}")]
    public static partial void Listening(ILogger logger, string httpAddress, string raftAddress, NodeId nodeId, string name, string dataDirectory);

    [LoggerMessage(1101, LogLevel.Information, "Existing data directory found: resuming as node {NodeId} ({Name}); bootstrap/join flags are ignored")]
    public static partial void Resuming(ILogger logger, NodeId nodeId, string name);

    [LoggerMessage(1102, LogLevel.Information, "Asking {Address} to add this node to the cluster")]
    public static partial void Joining(ILogger logger, string address);

    [LoggerMessage(1103, LogLevel.Warning, "Join via {Address} failed, retrying: {Reason}")]
    public static partial void JoinRetry(ILogger logger, string address, string reason);

    [LoggerMessage(1104, LogLevel.Information, "Joined the cluster via {Address}")]
    public static partial void Joined(ILogger logger, string address);

    [LoggerMessage(1105, LogLevel.Warning, "This node was removed from the cluster; shutting down")]
    public static partial void RemovedShuttingDown(ILogger logger);

    [LoggerMessage(1106, LogLevel.Warning, "Forwarding to leader {LeaderAddress} failed: {Reason}")]
    public static partial void ForwardFailed(ILogger logger, string leaderAddress, string reason);

    [LoggerMessage(1112, LogLevel.Warning, "A forwarded write was answered before this node applied it: {Reason}")]
    public static partial void ForwardCatchUpFailed(ILogger logger, string reason);

    [LoggerMessage(1108, LogLevel.Warning, "SECURITY: raft address {RaftAddress} is not loopback and no cluster secret is set: any process that reaches it can join or inject Raft messages. Set --cluster-secret (or --cluster-secret-file, STCACHE_CLUSTER_SECRET)")]
    public static partial void PeersUnauthenticated(ILogger logger, string raftAddress);

    [LoggerMessage(1109, LogLevel.Warning, "SECURITY: HTTP address {HttpAddress} is not loopback and no API token is set: anyone who reaches it can read and write. Set --auth-token")]
    public static partial void ApiUnauthenticated(ILogger logger, string httpAddress);

    [LoggerMessage(1110, LogLevel.Warning, "Join refused: node {NodeId} is a member at raft address {MemberAddress}, but a process at {ClaimedAddress} claims its id")]
    public static partial void MemberIdConflict(ILogger logger, NodeId nodeId, string memberAddress, string claimedAddress);

    [LoggerMessage(1111, LogLevel.Warning, "HTTP {Method} request from {Remote} refused with {StatusCode}: {Reason}")]
    public static partial void BadRequestRefused(ILogger logger, string method, string remote, int statusCode, string reason);
}
