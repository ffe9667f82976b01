using System.Globalization;
using System.Runtime.CompilerServices;

namespace Stcache.Raft;

/// <summary>Identifies a cluster member. Zero means "no node".</summary>
public readonly record struct NodeId(ulong Value) : IComparable<NodeId>
{
    public static readonly NodeId None = new(0);

    public bool IsNone => Value == 0;

    public int CompareTo(NodeId other) => Value.CompareTo(other.Value);

    public static bool operator <(NodeId left, NodeId right) => left.Value < right.Value;
    public static bool operator >(NodeId left, NodeId right) => left.Value > right.Value;
    public static bool operator <=(NodeId left, NodeId right) => left.Value <= right.Value;
    public static bool operator >=(NodeId left, NodeId right) => left.Value >= right.Value;

    public override string ToString() => Value.ToString(CultureInfo.InvariantCulture);
}

/// <summary>A Raft term. Terms only grow on every node (§3.3 of the thesis).</summary>
public readonly record struct Term(ulong Value) : IComparable<Term>
{
    public static readonly Term Zero = new(0);

    public Term Next => new(Value + 1);

    public int CompareTo(Term other) => Value.CompareTo(other.Value);

    public static bool operator <(Term left, Term right) => left.Value < right.Value;
    public static bool operator >(Term left, Term right) => left.Value > right.Value;
    public static bool operator <=(Term left, Term right) => left.Value <= right.Value;
    public static bool operator >=(Term left, Term right) => left.Value >= right.Value;

    public static Term Max(Term a, Term b) => a > b ? a : b;

    public override string ToString() => Value.ToString(CultureInfo.InvariantCulture);
}

/// <summary>A position in the replicated log. The first entry has index 1; zero means "before the log".</summary>
public readonly record struct LogIndex(ulong Value) : IComparable<LogIndex>
{
    public static readonly LogIndex Zero = new(0);

    public LogIndex Next => new(Value + 1);

    public LogIndex Previous => new(Value - 1);

    public int CompareTo(LogIndex other) => Value.CompareTo(other.Value);

    public static bool operator <(LogIndex left, LogIndex right) => left.Value < right.Value;
    public static bool operator >(LogIndex left, LogIndex right) => left.Value > right.Value;
    public static bool operator <=(LogIndex left, LogIndex right) => left.Value <= right.Value;
    public static bool operator >=(LogIndex left, LogIndex right) => left.Value >= right.Value;
    public static LogIndex operator +(LogIndex left, ulong count) => new(left.Value + count);
    public static LogIndex operator -(LogIndex left, ulong count) => new(left.Value - count);

    /// <summary>Number of indexes in (right, left]; zero when left &lt;= right.</summary>
    public static ulong Distance(LogIndex from, LogIndex to) => to.Value > from.Value ? to.Value - from.Value : 0;

    public static LogIndex Min(LogIndex a, LogIndex b) => a < b ? a : b;
    public static LogIndex Max(LogIndex a, LogIndex b) => a > b ? a : b;

    public override string ToString() => Value.ToString(CultureInfo.InvariantCulture);
}

public enum EntryType : byte
{
    /// <summary>An application command; the data is opaque to Raft. Empty data is the leader's no-op.</summary>
    Normal = 1,

    /// <summary>A membership change; the data is an encoded <see cref="ConfChange"/>.</summary>
    ConfChange = 2,
}

/// <summary>One log entry. Immutable once created; the data buffer must not be mutated by anyone.</summary>
public readonly record struct Entry(Term Term, LogIndex Index, EntryType Type, ReadOnlyMemory<byte> Data)
{
    /// <summary>Bytes this entry counts for in size limits (payload plus a fixed header estimate).</summary>
    public long SizeBytes => Data.Length + 24;

    public bool IsNoop => Type == EntryType.Normal && Data.IsEmpty;

    public override string ToString() => $"{Term}/{Index} {Type} {Data.Length}B";
}

/// <summary>The state a node must have on stable storage before it answers any message that depends on it.</summary>
public readonly record struct HardState(Term Term, NodeId Vote, LogIndex Commit)
{
    public static readonly HardState Empty = new(Term.Zero, NodeId.None, LogIndex.Zero);

    public bool IsEmpty => this == Empty;
}

/// <summary>The voting and non-voting members of the cluster.</summary>
public sealed record ConfState(IReadOnlyList<NodeId> Voters, IReadOnlyList<NodeId> Learners)
{
    public static readonly ConfState Empty = new([], []);

    public bool IsVoter(NodeId id) => Contains(Voters, id);

    public bool IsLearner(NodeId id) => Contains(Learners, id);

    public bool IsMember(NodeId id) => IsVoter(id) || IsLearner(id);

    /// <summary>Returns the configuration after applying <paramref name="change"/>. Pure; the receiver is unchanged.</summary>
    public ConfState Apply(ConfChange change)
    {
        var voters = Voters.Where(v => v != change.NodeId).ToList();
        var learners = Learners.Where(v => v != change.NodeId).ToList();
        switch (change.Type)
        {
            case ConfChangeType.AddVoter:
                voters.Add(change.NodeId);
                break;
            case ConfChangeType.AddLearner:
                learners.Add(change.NodeId);
                break;
            case ConfChangeType.RemoveNode:
                break;
            default:
                throw new ArgumentOutOfRangeException(nameof(change), change.Type, "unknown conf change type");
        }

        voters.Sort();
        learners.Sort();
        return new ConfState(voters, learners);
    }

    public bool Equals(ConfState? other) =>
        other is not null && Voters.SequenceEqual(other.Voters) && Learners.SequenceEqual(other.Learners);

    public override int GetHashCode() => HashCode.Combine(Voters.Count, Learners.Count);

    public override string ToString() =>
        $"voters=({string.Join(' ', Voters)}) learners=({string.Join(' ', Learners)})";

    private static bool Contains(IReadOnlyList<NodeId> list, NodeId id)
    {
        for (int i = 0; i < list.Count; i++)
        {
            if (list[i] == id)
            {
                return true;
            }
        }

        return false;
    }
}

public enum ConfChangeType : byte
{
    AddVoter = 1,
    AddLearner = 2,
    RemoveNode = 3,
}

/// <summary>
/// A single-server membership change (thesis §4.1). <see cref="Context"/> is opaque to Raft; the host uses it
/// to carry the new member's addresses so every replica learns them through the log.
/// </summary>
public sealed record ConfChange(ConfChangeType Type, NodeId NodeId, ReadOnlyMemory<byte> Context)
{
    public const int EncodedHeaderBytes = 1 + 8 + 4;

    public byte[] Encode()
    {
        var bytes = new byte[EncodedHeaderBytes + Context.Length];
        bytes[0] = (byte)Type;
        System.Buffers.Binary.BinaryPrimitives.WriteUInt64LittleEndian(bytes.AsSpan(1), NodeId.Value);
        System.Buffers.Binary.BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(9), Context.Length);
        Context.Span.CopyTo(bytes.AsSpan(EncodedHeaderBytes));
        return bytes;
    }

    /// <summary>Decodes a conf change; returns false for malformed input (never throws on bad bytes).</summary>
    public static bool TryDecode(ReadOnlySpan<byte> data, out ConfChange? change)
    {
        change = null;
        if (data.Length < EncodedHeaderBytes)
        {
            return false;
        }

        var type = (ConfChangeType)data[0];
        if (type is not (ConfChangeType.AddVoter or ConfChangeType.AddLearner or ConfChangeType.RemoveNode))
        {
            return false;
        }

        ulong id = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(data[1..]);
        int contextLength = System.Buffers.Binary.BinaryPrimitives.ReadInt32LittleEndian(data[9..]);
        if (id == 0 || contextLength < 0 || contextLength != data.Length - EncodedHeaderBytes)
        {
            return false;
        }

        change = new ConfChange(type, new NodeId(id), data[EncodedHeaderBytes..].ToArray());
        return true;
    }
}

public sealed record SnapshotMetadata(LogIndex Index, Term Term, ConfState ConfState)
{
    public static readonly SnapshotMetadata Empty = new(LogIndex.Zero, Term.Zero, ConfState.Empty);
}

/// <summary>
/// A point-in-time image of the state machine covering every entry up to <see cref="SnapshotMetadata.Index"/>.
/// The data is opaque to Raft. Hosts may keep it out of memory: the core only ever reads the metadata.
/// </summary>
public sealed record Snapshot(SnapshotMetadata Metadata, ReadOnlyMemory<byte> Data)
{
    public bool IsEmpty => Metadata.Index == LogIndex.Zero;
}

public enum RaftRole : byte
{
    Follower = 1,
    PreCandidate = 2,
    Candidate = 3,
    Leader = 4,
}

/// <summary>Volatile state worth telling the host about when it changes.</summary>
public readonly record struct SoftState(NodeId Leader, RaftRole Role, Term Term);

/// <summary>
/// A read that has become safe to serve once the node has applied up to <see cref="Index"/>.
/// <see cref="LeaderTimeUnixMs"/> is the leader's wall time when it confirmed the index, as its host stamped it on
/// the <see cref="MessageType.ReadIndexResponse"/>; 0 for a read this node confirmed itself (as leader), which its
/// host stamps with its own clock. The core never reads a clock.
/// </summary>
public readonly record struct ReadState(ulong RequestId, LogIndex Index, long LeaderTimeUnixMs = 0);

/// <summary>Thrown when a Raft invariant is broken. Always a bug, never bad input.</summary>
public sealed class InvariantViolationException : Exception
{
    public InvariantViolationException(string message)
        : base(message)
    {
    }
}

internal static class Invariant
{
    public static void Check(bool condition, string message)
    {
        if (!condition)
        {
            throw new InvariantViolationException(message);
        }
    }

    /// <summary>As <see cref="Check(bool, string)"/>, with a message formatted only when the check fails: the
    /// checks run on every pass of the loop, and an interpolated string there was allocated for every write.</summary>
    public static void Check(bool condition, [InterpolatedStringHandlerArgument(nameof(condition))] ref MessageHandler message)
    {
        if (!condition)
        {
            throw new InvariantViolationException(message.ToStringAndClear());
        }
    }

    /// <summary>Formats an invariant's message only when its condition is false.</summary>
    [InterpolatedStringHandler]
    public ref struct MessageHandler
    {
        private DefaultInterpolatedStringHandler _inner;

        public MessageHandler(int literalLength, int formattedCount, bool condition, out bool shouldAppend)
        {
            _inner = condition ? default : new DefaultInterpolatedStringHandler(literalLength, formattedCount, CultureInfo.InvariantCulture);
            shouldAppend = !condition;
        }

        public void AppendLiteral(string value) => _inner.AppendLiteral(value);

        public void AppendFormatted<T>(T value) => _inner.AppendFormatted(value);

        public string ToStringAndClear() => _inner.ToStringAndClear();
    }
}
