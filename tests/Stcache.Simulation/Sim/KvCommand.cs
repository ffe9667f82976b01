using System.Text;
using Stcache.Testing;

namespace Stcache.Simulation.Sim;

/// <summary>A client command as it travels in a log entry: the operation id lets checkers find it again.</summary>
public sealed record KvCommand(long OperationId, KvOperationKind Kind, string Key, string? Value, string? Expected)
{
    public byte[] Encode()
    {
        using var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true))
        {
            writer.Write((byte)Kind);
            writer.Write(OperationId);
            writer.Write(Key);
            WriteOptional(writer, Value);
            WriteOptional(writer, Expected);
        }

        return stream.ToArray();
    }

    public static KvCommand Decode(ReadOnlyMemory<byte> data)
    {
        using var stream = new MemoryStream(data.ToArray());
        using var reader = new BinaryReader(stream, Encoding.UTF8);
        var kind = (KvOperationKind)reader.ReadByte();
        long id = reader.ReadInt64();
        string key = reader.ReadString();
        string? value = ReadOptional(reader);
        string? expected = ReadOptional(reader);
        return new KvCommand(id, kind, key, value, expected);
    }

    private static void WriteOptional(BinaryWriter writer, string? value)
    {
        writer.Write(value is not null);
        if (value is not null)
        {
            writer.Write(value);
        }
    }

    private static string? ReadOptional(BinaryReader reader) => reader.ReadBoolean() ? reader.ReadString() : null;
}

/// <summary>The replicated state machine of the simulation: a dictionary with set, delete and compare-and-set.</summary>
public sealed class KvStateMachine
{
    private readonly SortedDictionary<string, string> _values = new(StringComparer.Ordinal);

    public string? Get(string key) => _values.TryGetValue(key, out string? value) ? value : null;

    /// <summary>Applies a command; returns whether it took effect (always true except a failed compare-and-set).</summary>
    public bool Apply(KvCommand command)
    {
        switch (command.Kind)
        {
            case KvOperationKind.Set:
                _values[command.Key] = command.Value!;
                return true;
            case KvOperationKind.Delete:
                _values.Remove(command.Key);
                return true;
            case KvOperationKind.CompareAndSet:
                if (Get(command.Key) != command.Expected)
                {
                    return false;
                }

                _values[command.Key] = command.Value!;
                return true;
            default:
                throw new SimulationFailureException($"unknown command kind {command.Kind}");
        }
    }

    public byte[] Serialize()
    {
        using var stream = new MemoryStream();
        using (var writer = new BinaryWriter(stream, Encoding.UTF8, leaveOpen: true))
        {
            writer.Write(_values.Count);
            foreach (var (key, value) in _values)
            {
                writer.Write(key);
                writer.Write(value);
            }
        }

        return stream.ToArray();
    }

    public void Restore(ReadOnlyMemory<byte> data)
    {
        _values.Clear();
        if (data.IsEmpty)
        {
            return;
        }

        using var stream = new MemoryStream(data.ToArray());
        using var reader = new BinaryReader(stream, Encoding.UTF8);
        int count = reader.ReadInt32();
        for (int i = 0; i < count; i++)
        {
            string key = reader.ReadString();
            _values[key] = reader.ReadString();
        }
    }
}
