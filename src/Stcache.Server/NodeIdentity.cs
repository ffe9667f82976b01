using System.Text.Json;
using System.Text.Json.Serialization;

namespace Stcache.Server;

/// <summary>What a node persists about itself next to its Raft state.</summary>
public sealed record NodeIdentity(
    [property: JsonPropertyName("id")] ulong Id,
    [property: JsonPropertyName("name")] string Name,
    [property: JsonPropertyName("raftAddress")] string RaftAddress,
    [property: JsonPropertyName("httpAddress")] string HttpAddress,
    [property: JsonPropertyName("clusterId")] string ClusterId,
    [property: JsonPropertyName("joined")] bool Joined)
{
    public const string FileName = "stcached.json";

    /// <summary>A random non-zero 64-bit node id, for a data directory initialised now (one incarnation).</summary>
    public static ulong NewId()
    {
        Span<byte> bytes = stackalloc byte[8];
        ulong id;
        do
        {
            System.Security.Cryptography.RandomNumberGenerator.Fill(bytes);
            id = System.Buffers.Binary.BinaryPrimitives.ReadUInt64LittleEndian(bytes);
        }
        while (id == 0);
        return id;
    }

    public static NodeIdentity? Load(string directory)
    {
        string path = Path.Combine(directory, FileName);
        if (!File.Exists(path))
        {
            return null;
        }

        try
        {
            var identity = JsonSerializer.Deserialize(File.ReadAllBytes(path), IdentityJson.Default.NodeIdentity);
            if (identity is null || identity.Id == 0)
            {
                throw new InvalidDataException($"{path} holds no node identity");
            }

            return identity;
        }
        catch (JsonException e)
        {
            throw new InvalidDataException($"{path} is not a valid node identity", e);
        }
    }

    /// <summary>Writes atomically: temporary file, flush to disk, rename.</summary>
    public void Save(string directory)
    {
        string path = Path.Combine(directory, FileName);
        string temporary = path + ".tmp";
        using (var file = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None))
        {
            file.Write(JsonSerializer.SerializeToUtf8Bytes(this, IdentityJson.Default.NodeIdentity));
            file.Flush(true);
        }

        File.Move(temporary, path, true);
    }
}

[JsonSerializable(typeof(NodeIdentity))]
internal sealed partial class IdentityJson : JsonSerializerContext
{
}
