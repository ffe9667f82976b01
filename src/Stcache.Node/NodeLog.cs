using Microsoft.Extensions.Logging;
using Stcache.Raft;

namespace Stcache.Node;

/// <summary>NodeDriver events, ids 1000-1099 (docs/OPERATIONS.md, "Logging"; the RaftHost shell's are 1200-1299).</summary>
internal static partial class NodeLog
{
    [LoggerMessage(1041, LogLevel.Error, "Write-ahead log refused a batch ({Reason}); nothing of it is acknowledged; retrying in {Delay}")]
    public static partial void StorageSaveFailed(ILogger logger, string reason, TimeSpan delay);

    [LoggerMessage(1042, LogLevel.Warning, "Write-ahead log accepts writes again")]
    public static partial void StorageRecovered(ILogger logger);

    [LoggerMessage(1043, LogLevel.Warning, "Member {PeerId} does not list this node in its configuration as of index {AsOf}, newer than this node's applied {Applied}: this node was removed from the cluster while it was away")]
    public static partial void RemovedWhileAway(ILogger logger, NodeId peerId, LogIndex asOf, LogIndex applied);

    [LoggerMessage(1044, LogLevel.Debug, "Member {PeerId} does not list this node as of index {AsOf}; this node is at {Applied}, so that member is behind")]
    public static partial void NotAMemberIgnored(ILogger logger, NodeId peerId, LogIndex asOf, LogIndex applied);

    [LoggerMessage(1045, LogLevel.Warning, "Refused to add node {NodeId} as {ChangeType}: that id was removed from the cluster, and a removed id is never added again (a node that lost its data joins under a new id)")]
    public static partial void RemovedIdRefused(ILogger logger, NodeId nodeId, ConfChangeType changeType);

    [LoggerMessage(1046, LogLevel.Error, "Committed entry {Index} adds node {NodeId}, which an earlier entry removed (a log written before removed ids were refused)")]
    public static partial void RemovedIdAddedBack(ILogger logger, NodeId nodeId, LogIndex index);

    [LoggerMessage(1047, LogLevel.Debug, "Dropped a {MessageType} from node {PeerId}, which was removed from the cluster")]
    public static partial void MessageFromRemovedDropped(ILogger logger, MessageType messageType, NodeId peerId);

    [LoggerMessage(1048, LogLevel.Information, "The node's clock jumped {StallMs} ms (a stall): {DueTicks} ticks collapsed to {DeliveredTicks} as {Role}; a leader's lease ends here and its next quorum round renews it")]
    public static partial void ClockJumped(ILogger logger, long stallMs, long dueTicks, long deliveredTicks, RaftRole role);

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

    [LoggerMessage(1014, LogLevel.Error, "Malformed conf change entry at index {Index} ignored")]
    public static partial void BadConfChange(ILogger logger, LogIndex index);
}
