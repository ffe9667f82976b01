namespace Stcache.Raft;

public enum MessageType : byte
{
    /// <summary>Leader to follower: entries after (LogTerm, Index), and the leader's commit.</summary>
    Append = 1,

    /// <summary>Follower to leader: Index is the last index matched, or on Reject the probed index with a hint.</summary>
    AppendResponse = 2,

    /// <summary>Candidate to voter: asks for a vote for Term, with the candidate's last (LogTerm, Index).</summary>
    Vote = 3,

    VoteResponse = 4,

    /// <summary>Like Vote, but for Term + 1 without anyone raising their term (thesis §9.6).</summary>
    PreVote = 5,

    PreVoteResponse = 6,

    /// <summary>Leader to follower: keeps leadership, carries commit and the read round in <see cref="Message.Round"/>.</summary>
    Heartbeat = 7,

    HeartbeatResponse = 8,

    /// <summary>Leader to follower: install the snapshot described by <see cref="Message.Snapshot"/>.</summary>
    Snapshot = 9,

    /// <summary>Follower to leader: asks for a read index for the request <see cref="Message.RequestId"/>.</summary>
    ReadIndex = 10,

    /// <summary>Leader to follower: the read index (Index) for the request <see cref="Message.RequestId"/>; Reject if it cannot serve.</summary>
    ReadIndexResponse = 11,

    /// <summary>Leader to its chosen successor: start an election now, ignoring leases (thesis §3.10).</summary>
    TimeoutNow = 12,

    /// <summary>
    /// A node that has heard no leader for an election timeout, once per election timeout: one that may not campaign
    /// (a learner, or a voter that knows its log is stale) to each member of its configuration, one that campaigns to
    /// the learners, which its vote requests do not reach. It carries nothing and
    /// the receiving core ignores it: no term, vote, leader or timer changes. It exists to reach the member's
    /// transport, whose handshake tells a sender that its configuration no longer lists that it is not a member:
    /// a node removed while it lagged learns of its removal this way (docs/RAFT.md, "Removed nodes").
    /// </summary>
    Probe = 13,
}

/// <summary>Why a candidate asks for votes.</summary>
public enum CampaignKind : byte
{
    /// <summary>Its election timeout passed (or it was told its leader is gone).</summary>
    Election = 0,

    /// <summary>The leader handed leadership over (TimeoutNow): voters ignore their leader lease for it.</summary>
    Transfer = 1,
}

/// <summary>
/// A message between Raft nodes. Immutable; the host serializes it and must validate anything it decodes
/// before stepping it into a node (see <see cref="Message.Validate"/>).
/// </summary>
public sealed record Message
{
    public required MessageType Type { get; init; }

    public required NodeId From { get; init; }

    public required NodeId To { get; init; }

    public required Term Term { get; init; }

    /// <summary>Append: term of the entry at Index. Vote: candidate's last log term. AppendResponse reject: conflict hint term.</summary>
    public Term LogTerm { get; init; }

    /// <summary>Append: index preceding the entries. Vote: candidate's last index. AppendResponse: see type docs.</summary>
    public LogIndex Index { get; init; }

    public Entry[] Entries { get; init; } = [];

    public LogIndex Commit { get; init; }

    public bool Reject { get; init; }

    /// <summary>AppendResponse reject: the follower's hint for the next probe (its last index, or the first index of LogTerm).</summary>
    public LogIndex RejectHint { get; init; }

    /// <summary>Snapshot message only. The core sends metadata with empty data; the host attaches the data.</summary>
    public Snapshot? Snapshot { get; init; }

    /// <summary>Vote and PreVote: why the candidate campaigns.</summary>
    public CampaignKind Campaign { get; init; }

    /// <summary>Heartbeat and HeartbeatResponse: the leader's heartbeat round (read confirmation, leases).</summary>
    public ulong Round { get; init; }

    /// <summary>ReadIndex and ReadIndexResponse: the asking follower's read request id.</summary>
    public ulong RequestId { get; init; }

    /// <summary>
    /// ReadIndexResponse: the leader's wall time (Unix ms) when it confirmed the read index, the time the read is
    /// served at on the asking node. The core leaves it 0; the leader's host stamps it as it sends the answer.
    /// </summary>
    public long ReadTimeUnixMs { get; init; }

    /// <summary>
    /// Structural validation for messages decoded from the network. Returns null when acceptable, else why not.
    /// Semantic checks (terms, indexes against the log) are the core's job and never throw.
    /// </summary>
    public string? Validate()
    {
        if (Type is < MessageType.Append or > MessageType.Probe)
        {
            return "unknown message type";
        }

        if (From.IsNone || To.IsNone)
        {
            return "message without sender or receiver";
        }

        if (From == To)
        {
            return "message addressed to its sender";
        }

        if (Entries.Length > 0 && Type != MessageType.Append)
        {
            return "entries on a non-append message";
        }

        var previous = Index;
        var previousTerm = LogTerm;
        foreach (var entry in Entries)
        {
            if (entry.Index != previous.Next)
            {
                return "entries are not contiguous";
            }

            if (entry.Term < previousTerm || entry.Term > Term)
            {
                return "entry terms out of order";
            }

            if (entry.Type is not (EntryType.Normal or EntryType.ConfChange))
            {
                return "unknown entry type";
            }

            previous = entry.Index;
            previousTerm = entry.Term;
        }

        if (ReadTimeUnixMs < 0 || (ReadTimeUnixMs != 0 && Type != MessageType.ReadIndexResponse))
        {
            return "read time on a message other than a read index answer";
        }

        if (Type == MessageType.Snapshot && (Snapshot is null || Snapshot.IsEmpty))
        {
            return "snapshot message without a snapshot";
        }

        if (Type != MessageType.Snapshot && Snapshot is not null)
        {
            return "snapshot on a non-snapshot message";
        }

        return null;
    }

    public override string ToString() =>
        $"{From}->{To} {Type} term={Term} logTerm={LogTerm} index={Index} commit={Commit} entries={Entries.Length}" +
        (Reject ? $" reject hint={RejectHint}" : string.Empty) + (Campaign != CampaignKind.Election ? $" campaign={Campaign}" : string.Empty) +
        (Round != 0 ? $" round={Round}" : string.Empty) + (RequestId != 0 ? $" request={RequestId}" : string.Empty) +
        (ReadTimeUnixMs != 0 ? $" readTime={ReadTimeUnixMs}" : string.Empty);
}
