using Microsoft.Extensions.Logging;
using Stcache.Raft;

namespace Stcache.Server;

/// <summary>RaftHost events, ids 1000-1099.</summary>
internal static partial class Log
{
    [LoggerMessage(1041, LogLevel.Error, "Write-ahead log refused a batch ({Reason}); nothing of it is acknowledged; retrying in {Delay}")]
    public static partial void StorageSaveFailed(ILogger logger, string reason, TimeSpan delay);

    [LoggerMessage(1042, LogLevel.Warning, "Write-ahead log accepts writes again")]
    public static partial void StorageRecovered(ILogger logger);

    [LoggerMessage(1043, LogLevel.Warning, "Member {PeerId} does not list this node in its configuration as of index {AsOf}, newer than this node's applied {Applied}: this node was removed from the cluster while it was away")]
    public static partial void RemovedWhileAway(ILogger logger, NodeId peerId, LogIndex asOf, LogIndex applied);

    [LoggerMessage(1044, LogLevel.Debug, "Member {PeerId} does not list this node as of index {AsOf}; this node is at {Applied}, so that member is behind")]
    public static partial void NotAMemberIgnored(ILogger logger, NodeId peerId, LogIndex asOf, LogIndex applied);

    [LoggerMessage(1040, LogLevel.Information, "Learner {NodeId} has caught up (match {Match}); proposing it as a voter")]
    public static partial void PromotingLearner(ILogger logger, NodeId nodeId, LogIndex match);

    [LoggerMessage(1000, LogLevel.Information, "Node {NodeId} starting: term {Term}, commit {Commit}, snapshot {SnapshotIndex}, {EntryCount} log entries")]
    public static partial void HostStarted(ILogger logger, NodeId nodeId, Term term, LogIndex commit, LogIndex snapshotIndex, int entryCount);

    [LoggerMessage(1001, LogLevel.Information, "Node {NodeId} became leader at term {Term}, enable write api (last index {LastIndex}, commit {Commit})")]
    public static partial void BecameLeader(ILogger logger, NodeId nodeId, Term term, LogIndex lastIndex, LogIndex commit);

    [LoggerMessage(1002, LogLevel.Information, "Node {NodeId} became follower at term {Term}, leader {Leader} (last index {LastIndex}, commit {Commit})")]
    public static partial void BecameFollower(ILogger logger, NodeId nodeId, Term term, NodeId leader, LogIndex lastIndex, LogIndex commit);

    [LoggerMessage(1003, LogLevel.Information, "Node {NodeId} started an election at term {Term} as {Role} (last index {LastIndex}, commit {Commit})")]
    public static partial void BecameCandidate(ILogger logger, NodeId nodeId, Term term, RaftRole role, LogIndex lastIndex, LogIndex commit);

    [LoggerMessage(1004, LogLevel.Information, "Member {MemberId} added as {ChangeType} (raft {RaftAddress}, http {HttpAddress}) at index {Index}")]
    public static partial void MemberAdded(ILogger logger, NodeId memberId, ConfChangeType changeType, string raftAddress, string httpAddress, LogIndex index);

    [LoggerMessage(1005, LogLevel.Information, "Member {MemberId} removed at index {Index}")]
    public static partial void MemberRemoved(ILogger logger, NodeId memberId, LogIndex index);

    [LoggerMessage(1006, LogLevel.Information, "Snapshot started at index {Index}, term {Term}")]
    public static partial void SnapshotStarted(ILogger logger, LogIndex index, Term term);

    [LoggerMessage(1007, LogLevel.Information, "Snapshot taken at index {Index}, term {Term}")]
    public static partial void SnapshotTaken(ILogger logger, LogIndex index, Term term);

    [LoggerMessage(1008, LogLevel.Error, "Snapshot at index {Index} failed")]
    public static partial void SnapshotFailed(ILogger logger, LogIndex index, Exception exception);

    [LoggerMessage(1009, LogLevel.Information, "Snapshot from the leader installed at index {Index}, term {Term}: {KeyCount} keys")]
    public static partial void SnapshotInstalled(ILogger logger, LogIndex index, Term term, int keyCount);

    [LoggerMessage(1010, LogLevel.Information, "Restored snapshot at index {Index}: {KeyCount} keys")]
    public static partial void SnapshotRestored(ILogger logger, LogIndex index, int keyCount);

    [LoggerMessage(1011, LogLevel.Information, "Sending snapshot at index {Index} ({SizeBytes} bytes) to {NodeId}")]
    public static partial void SendingSnapshot(ILogger logger, NodeId nodeId, LogIndex index, long sizeBytes);

    [LoggerMessage(1150, LogLevel.Information, "Snapshot at index {Index} not sent again to {NodeId}: the previous one is still being sent")]
    public static partial void SnapshotStillSending(ILogger logger, NodeId nodeId, LogIndex index);

    [LoggerMessage(1012, LogLevel.Warning, "No snapshot at index {Index} to send to {NodeId}")]
    public static partial void SnapshotMissing(ILogger logger, NodeId nodeId, LogIndex index);

    [LoggerMessage(1013, LogLevel.Warning, "Dropped a message from {NodeId}: {Reason}")]
    public static partial void DroppedMessage(ILogger logger, NodeId nodeId, string reason);

    [LoggerMessage(1014, LogLevel.Error, "Malformed conf change entry at index {Index} ignored")]
    public static partial void BadConfChange(ILogger logger, LogIndex index);

    [LoggerMessage(1015, LogLevel.Critical, "Raft host loop failed; the node stops")]
    public static partial void LoopFailed(ILogger logger, Exception exception);

    [LoggerMessage(1016, LogLevel.Warning, "Leadership change handler failed")]
    public static partial void HandlerFailed(ILogger logger, Exception exception);
}

/// <summary>Node lifecycle and HTTP events, ids 1100-1199.</summary>
internal static partial class ServerLog
{
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

    [LoggerMessage(1107, LogLevel.Warning, "No transport available: running without peers")]
    public static partial void NoTransport(ILogger logger);

    [LoggerMessage(1110, LogLevel.Warning, "Join refused: node {NodeId} is a member at raft address {MemberAddress}, but a process at {ClaimedAddress} claims its id")]
    public static partial void MemberIdConflict(ILogger logger, NodeId nodeId, string memberAddress, string claimedAddress);

    [LoggerMessage(1111, LogLevel.Warning, "HTTP {Method} request from {Remote} refused with {StatusCode}: {Reason}")]
    public static partial void BadRequestRefused(ILogger logger, string method, string remote, int statusCode, string reason);
}
