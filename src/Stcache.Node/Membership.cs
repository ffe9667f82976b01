using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Text;
using System.Text.Json;
using System.Text.Json.Serialization;
using Stcache.Raft;

namespace Stcache.Node;

/// <summary>A member's addresses, carried in the context of its conf change so every replica learns them.</summary>
public sealed record MemberInfo(
    [property: JsonPropertyName("id")] ulong Id,
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("raftAddress")] string RaftAddress,
    [property: JsonPropertyName("httpAddress")] string HttpAddress,
    [property: JsonPropertyName("respAddress"), JsonIgnore(Condition = JsonIgnoreCondition.WhenWritingNull)] string? RespAddress = null)
{
    public byte[] ToContext() => JsonSerializer.SerializeToUtf8Bytes(this, MembershipJson.Default.MemberInfo);

    public static MemberInfo? FromContext(ReadOnlySpan<byte> context)
    {
        if (context.IsEmpty)
        {
            return null;
        }

        try
        {
            return JsonSerializer.Deserialize(context, MembershipJson.Default.MemberInfo);
        }
        catch (JsonException)
        {
            return null;
        }
    }

    /// <summary>A stable non-zero node id from a member name (FNV-1a, 64 bit), for seeds whose ids are strings.</summary>
    public static ulong IdFromName(string name)
    {
        ulong hash = 14695981039346656037UL;
        foreach (byte b in Encoding.UTF8.GetBytes(name))
        {
            hash ^= b;
            hash *= 1099511628211UL;
        }

        return hash == 0 ? 1 : hash;
    }
}

/// <summary>
/// The address book: the members' names and addresses, learned from conf change contexts and member-address
/// commands in the log, and carried inside snapshots. Written by the host loop, read by anyone.
/// </summary>
public sealed class MemberBook
{
    private readonly ConcurrentDictionary<ulong, MemberInfo> _members = new();

    // Every id a committed RemoveNode named (replicated: applied from the log and carried in snapshots). A node id
    // names one incarnation of a data directory, so a removed id is never added again (docs/RAFT.md, "Node ids").
    private readonly ConcurrentDictionary<ulong, bool> _removed = new();

    public event Action<MemberInfo>? Changed;

    public event Action<NodeId>? Removed;

    public IReadOnlyList<MemberInfo> All => [.. _members.Values.OrderBy(m => m.Id)];

    public MemberInfo? Find(NodeId id) => _members.TryGetValue(id.Value, out var info) ? info : null;

    public void Set(MemberInfo info)
    {
        if (_members.TryGetValue(info.Id, out var existing) && existing == info)
        {
            return;
        }

        _members[info.Id] = info;
        Changed?.Invoke(info);
    }

    /// <summary>Merges an update that may lack an address (keeps the known one).</summary>
    public void Merge(MemberInfo info)
    {
        if (_members.TryGetValue(info.Id, out var existing))
        {
            info = info with
            {
                HttpAddress = info.HttpAddress.Length > 0 ? info.HttpAddress : existing.HttpAddress,
                RaftAddress = info.RaftAddress.Length > 0 ? info.RaftAddress : existing.RaftAddress,
                Name = info.Name.Length > 0 ? info.Name : existing.Name,
                RespAddress = info.RespAddress ?? existing.RespAddress,
            };
        }

        Set(info);
    }

    /// <summary>Forgets the member's addresses and records its id as removed for good.</summary>
    public void Remove(NodeId id)
    {
        _removed[id.Value] = true;
        if (_members.TryRemove(id.Value, out _))
        {
            Removed?.Invoke(id);
        }
    }

    /// <summary>True if a committed change removed <paramref name="id"/>: it may never be added again.</summary>
    public bool IsRemoved(NodeId id) => _removed.ContainsKey(id.Value);

    /// <summary>The ids removed so far, in ascending order (the snapshot carries them).</summary>
    public IReadOnlyList<NodeId> RemovedIds => [.. _removed.Keys.Order().Select(id => new NodeId(id))];

    /// <summary>Adds the removed ids a snapshot names. The set only grows: removal is for good.</summary>
    public void MergeRemoved(IEnumerable<NodeId> ids)
    {
        foreach (var id in ids)
        {
            _removed[id.Value] = true;
        }
    }

    /// <summary>
    /// Adds or updates the members a snapshot names. Members it does not name are kept: the node may have learned
    /// them after the snapshot was taken (the leader that sends it, say, from the join answer), and forgetting the
    /// leader's address would leave the node unable to answer it. Removal happens only through RemoveNode entries.
    /// </summary>
    public void MergeAll(IEnumerable<MemberInfo> members)
    {
        foreach (var member in members)
        {
            Set(member);
        }
    }

    public byte[] Serialize() => JsonSerializer.SerializeToUtf8Bytes(All.ToArray(), MembershipJson.Default.MemberInfoArray);

    public static MemberInfo[] Deserialize(ReadOnlySpan<byte> data) =>
        JsonSerializer.Deserialize(data, MembershipJson.Default.MemberInfoArray) ?? [];
}

/// <summary>
/// Log entries the host itself interprets (all other normal entries go to the cache). Their first byte is a
/// format tag the cache never uses.
/// </summary>
public static class HostCommand
{
    public const byte MemberAddressTag = 0xA0;

    /// <summary>Records a member's current addresses; proposed by a node when it becomes leader.</summary>
    public static byte[] EncodeMemberAddress(MemberInfo info)
    {
        byte[] json = info.ToContext();
        var bytes = new byte[1 + json.Length];
        bytes[0] = MemberAddressTag;
        json.CopyTo(bytes, 1);
        return bytes;
    }

    public static bool IsHostCommand(ReadOnlySpan<byte> data) => data.Length > 0 && data[0] == MemberAddressTag;

    public static MemberInfo? DecodeMemberAddress(ReadOnlySpan<byte> data) =>
        data.Length > 1 && data[0] == MemberAddressTag ? MemberInfo.FromContext(data[1..]) : null;
}

/// <summary>
/// Snapshot data: [magic u32][members length u32][members json][removed count u32][removed ids u64 each][cache
/// snapshot]. The first format (magic "STSN") had no removed ids; it is still read, as an empty set.
/// </summary>
public static class SnapshotFormat
{
    private const uint MagicWithoutRemoved = 0x4E535453; // "STSN"
    private const uint Magic = 0x32535453; // "STS2"
    private const int RemovedMax = 1 << 20;

    /// <summary>The first format, without removed ids (a snapshot seeding a new cluster has none).</summary>
    public static void WriteHeader(Stream stream, byte[] members)
    {
        Span<byte> header = stackalloc byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(header, MagicWithoutRemoved);
        BinaryPrimitives.WriteInt32LittleEndian(header[4..], members.Length);
        stream.Write(header);
        stream.Write(members);
    }

    public static void WriteHeader(Stream stream, byte[] members, IReadOnlyList<NodeId> removed)
    {
        Span<byte> header = stackalloc byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(header, Magic);
        BinaryPrimitives.WriteInt32LittleEndian(header[4..], members.Length);
        stream.Write(header);
        stream.Write(members);
        var ids = new byte[4 + (8 * removed.Count)];
        BinaryPrimitives.WriteInt32LittleEndian(ids, removed.Count);
        for (int i = 0; i < removed.Count; i++)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(ids.AsSpan(4 + (8 * i)), removed[i].Value);
        }

        stream.Write(ids);
    }

    /// <summary>Reads the header and member list, leaving the stream at the cache snapshot.</summary>
    public static MemberInfo[] ReadHeader(Stream stream) => ReadHeader(stream, out _);

    /// <summary>Reads the header, member list and removed ids, leaving the stream at the cache snapshot.</summary>
    public static MemberInfo[] ReadHeader(Stream stream, out NodeId[] removed)
    {
        Span<byte> header = stackalloc byte[8];
        try
        {
            stream.ReadExactly(header);
            uint magic = BinaryPrimitives.ReadUInt32LittleEndian(header);
            if (magic is not (Magic or MagicWithoutRemoved))
            {
                throw new InvalidDataException("not an stcache snapshot");
            }

            int length = BinaryPrimitives.ReadInt32LittleEndian(header[4..]);
            if (length < 0 || length > 64 << 20)
            {
                throw new InvalidDataException("bad member list length in snapshot");
            }

            var members = new byte[length];
            stream.ReadExactly(members);
            removed = [];
            if (magic == Magic)
            {
                stream.ReadExactly(header[..4]);
                int count = BinaryPrimitives.ReadInt32LittleEndian(header);
                if (count < 0 || count > RemovedMax)
                {
                    throw new InvalidDataException("bad removed id count in snapshot");
                }

                var ids = new byte[8 * count];
                stream.ReadExactly(ids);
                removed = new NodeId[count];
                for (int i = 0; i < count; i++)
                {
                    removed[i] = new NodeId(BinaryPrimitives.ReadUInt64LittleEndian(ids.AsSpan(8 * i)));
                }
            }

            return MemberBook.Deserialize(members);
        }
        catch (EndOfStreamException e)
        {
            throw new InvalidDataException("truncated snapshot", e);
        }
        catch (JsonException e)
        {
            throw new InvalidDataException("bad member list in snapshot", e);
        }
    }
}

/// <summary>Source-generated JSON for the member records (the join API and the raft-port join use it too).</summary>
[JsonSerializable(typeof(MemberInfo))]
[JsonSerializable(typeof(MemberInfo[]))]
public sealed partial class MembershipJson : JsonSerializerContext
{
}
