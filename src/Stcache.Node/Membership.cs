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

    public void Remove(NodeId id)
    {
        if (_members.TryRemove(id.Value, out _))
        {
            Removed?.Invoke(id);
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

/// <summary>Snapshot data: [magic u32][members length u32][members json][cache snapshot].</summary>
public static class SnapshotFormat
{
    private const uint Magic = 0x4E535453; // "STSN"

    public static void WriteHeader(Stream stream, byte[] members)
    {
        Span<byte> header = stackalloc byte[8];
        BinaryPrimitives.WriteUInt32LittleEndian(header, Magic);
        BinaryPrimitives.WriteInt32LittleEndian(header[4..], members.Length);
        stream.Write(header);
        stream.Write(members);
    }

    /// <summary>Reads the header and member list, leaving the stream at the cache snapshot.</summary>
    public static MemberInfo[] ReadHeader(Stream stream)
    {
        Span<byte> header = stackalloc byte[8];
        try
        {
            stream.ReadExactly(header);
            if (BinaryPrimitives.ReadUInt32LittleEndian(header) != Magic)
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
