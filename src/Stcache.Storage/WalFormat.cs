using System.Buffers;
using System.Buffers.Binary;
using System.Numerics;
using Stcache.Raft;

namespace Stcache.Storage;

/// <summary>Kinds of WAL record. Values are on disk: never renumber.</summary>
public enum WalRecordType : byte
{
    /// <summary>A log entry. An entry whose index is already in the log replaces it and every later entry.</summary>
    Entry = 1,

    /// <summary>Term, vote and commit; the newest one wins.</summary>
    HardState = 2,

    /// <summary>The log starts after this snapshot: entries up to its index are discarded, later ones kept. Written
    /// when a snapshot matching the log is installed, and restated at the start of every segment so that older
    /// segments can be deleted.</summary>
    Snapshot = 3,

    /// <summary>A snapshot was installed over a log that does not contain it: every entry is discarded. The writer
    /// decides which of the two kinds to write, so recovery never needs entries from deleted segments.</summary>
    SnapshotReset = 4,
}

/// <summary>
/// Byte layout of WAL segments. Segment: a 32-byte header (magic, version, first index, CRC), then records
/// <c>[length u32][crc32c u32][type u8][payload][zero pad to 8]</c>, little endian. <c>length</c> counts type and
/// payload; the CRC-32C covers the same bytes. A zero length word ends the data (the rest is preallocated zeros).
/// </summary>
internal static class WalFormat
{
    public const int SegmentHeaderBytes = 32;
    public const uint FormatVersion = 1;
    public const int RecordHeaderBytes = 8;
    public const int RecordAlignmentBytes = 8;

    /// <summary>No record may be larger: bounds what a corrupt length word can make us read.</summary>
    public const int RecordLengthMax = 256 * 1024 * 1024;

    public const int EntryPayloadHeaderBytes = 8 + 8 + 1;
    public const int HardStatePayloadBytes = 24;
    private const int MembersMax = 1 << 16;

    // "STCWAL" + 0x00 + 0x1A: the trailing control bytes catch text-mode mangling and accidental `cat`.
    public static ReadOnlySpan<byte> Magic => "STCWAL\0\u001a"u8;

    public static int AlignedRecordBytes(int payloadBytes) => Align(RecordHeaderBytes + 1 + payloadBytes);

    public static int Align(int bytes) => (bytes + RecordAlignmentBytes - 1) & ~(RecordAlignmentBytes - 1);

    public static long Align(long bytes) => (bytes + RecordAlignmentBytes - 1) & ~(long)(RecordAlignmentBytes - 1);

    public static void WriteSegmentHeader(Span<byte> destination, ulong firstIndex)
    {
        destination[..SegmentHeaderBytes].Clear();
        Magic.CopyTo(destination);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[8..], FormatVersion);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[16..], firstIndex);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[24..], Crc(destination[..24]));
    }

    /// <summary>Returns null when the header is valid, else why not.</summary>
    public static string? ValidateSegmentHeader(ReadOnlySpan<byte> header, ulong expectedFirstIndex)
    {
        if (header.Length < SegmentHeaderBytes)
        {
            return $"segment header is {header.Length} bytes, expected {SegmentHeaderBytes}";
        }

        if (!header[..8].SequenceEqual(Magic))
        {
            return "bad magic: not a stcache WAL segment";
        }

        if (BinaryPrimitives.ReadUInt32LittleEndian(header[24..]) != Crc(header[..24]))
        {
            return "segment header checksum mismatch";
        }

        uint version = BinaryPrimitives.ReadUInt32LittleEndian(header[8..]);
        if (version != FormatVersion)
        {
            return $"unsupported WAL format version {version} (this build reads {FormatVersion})";
        }

        ulong firstIndex = BinaryPrimitives.ReadUInt64LittleEndian(header[16..]);
        if (firstIndex != expectedFirstIndex)
        {
            return $"header first index {firstIndex} does not match the file name's {expectedFirstIndex}";
        }

        return null;
    }

    public static uint Crc(ReadOnlySpan<byte> data) => Crc(0, data);

    /// <summary>CRC-32C (Castagnoli), hardware accelerated through <see cref="BitOperations.Crc32C(uint, ulong)"/>.</summary>
    public static uint Crc(uint crc, ReadOnlySpan<byte> data)
    {
        crc = ~crc;
        while (data.Length >= 8)
        {
            crc = BitOperations.Crc32C(crc, BinaryPrimitives.ReadUInt64LittleEndian(data));
            data = data[8..];
        }

        foreach (byte b in data)
        {
            crc = BitOperations.Crc32C(crc, b);
        }

        return ~crc;
    }

    public static void AppendEntry(ArrayBufferWriter<byte> writer, in Entry entry)
    {
        int payloadBytes = EntryPayloadHeaderBytes + entry.Data.Length;
        Span<byte> payload = BeginRecord(writer, WalRecordType.Entry, payloadBytes, out Span<byte> record);
        BinaryPrimitives.WriteUInt64LittleEndian(payload, entry.Term.Value);
        BinaryPrimitives.WriteUInt64LittleEndian(payload[8..], entry.Index.Value);
        payload[16] = (byte)entry.Type;
        entry.Data.Span.CopyTo(payload[EntryPayloadHeaderBytes..]);
        EndRecord(writer, record, payloadBytes);
    }

    public static void AppendHardState(ArrayBufferWriter<byte> writer, HardState hardState)
    {
        Span<byte> payload = BeginRecord(writer, WalRecordType.HardState, HardStatePayloadBytes, out Span<byte> record);
        BinaryPrimitives.WriteUInt64LittleEndian(payload, hardState.Term.Value);
        BinaryPrimitives.WriteUInt64LittleEndian(payload[8..], hardState.Vote.Value);
        BinaryPrimitives.WriteUInt64LittleEndian(payload[16..], hardState.Commit.Value);
        EndRecord(writer, record, HardStatePayloadBytes);
    }

    public static void AppendSnapshot(ArrayBufferWriter<byte> writer, SnapshotMetadata metadata, bool resetLog)
    {
        int payloadBytes = MetadataBytes(metadata);
        var type = resetLog ? WalRecordType.SnapshotReset : WalRecordType.Snapshot;
        Span<byte> payload = BeginRecord(writer, type, payloadBytes, out Span<byte> record);
        WriteMetadata(payload, metadata);
        EndRecord(writer, record, payloadBytes);
    }

    /// <summary>Snapshot metadata encoding, shared with snapshot file headers.</summary>
    public static int MetadataBytes(SnapshotMetadata metadata) =>
        8 + 8 + 4 + 4 + (8 * (metadata.ConfState.Voters.Count + metadata.ConfState.Learners.Count));

    public static void WriteMetadata(Span<byte> destination, SnapshotMetadata metadata)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(destination, metadata.Index.Value);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[8..], metadata.Term.Value);
        BinaryPrimitives.WriteInt32LittleEndian(destination[16..], metadata.ConfState.Voters.Count);
        BinaryPrimitives.WriteInt32LittleEndian(destination[20..], metadata.ConfState.Learners.Count);
        int offset = 24;
        foreach (NodeId id in metadata.ConfState.Voters)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(destination[offset..], id.Value);
            offset += 8;
        }

        foreach (NodeId id in metadata.ConfState.Learners)
        {
            BinaryPrimitives.WriteUInt64LittleEndian(destination[offset..], id.Value);
            offset += 8;
        }
    }

    /// <summary>Decodes snapshot metadata; returns null (with a reason) for malformed bytes, never throws.</summary>
    public static SnapshotMetadata? TryReadMetadata(ReadOnlySpan<byte> source, out int bytesRead, out string? error)
    {
        bytesRead = 0;
        error = null;
        if (source.Length < 24)
        {
            error = "snapshot metadata truncated";
            return null;
        }

        ulong index = BinaryPrimitives.ReadUInt64LittleEndian(source);
        ulong term = BinaryPrimitives.ReadUInt64LittleEndian(source[8..]);
        int voters = BinaryPrimitives.ReadInt32LittleEndian(source[16..]);
        int learners = BinaryPrimitives.ReadInt32LittleEndian(source[20..]);
        if (voters < 0 || learners < 0 || voters > MembersMax || learners > MembersMax)
        {
            error = $"implausible member counts {voters}/{learners}";
            return null;
        }

        int total = 24 + (8 * (voters + learners));
        if (source.Length < total)
        {
            error = "snapshot metadata member list truncated";
            return null;
        }

        var voterIds = new NodeId[voters];
        var learnerIds = new NodeId[learners];
        int offset = 24;
        for (int i = 0; i < voters; i++, offset += 8)
        {
            voterIds[i] = new NodeId(BinaryPrimitives.ReadUInt64LittleEndian(source[offset..]));
        }

        for (int i = 0; i < learners; i++, offset += 8)
        {
            learnerIds[i] = new NodeId(BinaryPrimitives.ReadUInt64LittleEndian(source[offset..]));
        }

        if (index == 0 && term != 0)
        {
            error = "snapshot at index 0 with a non-zero term";
            return null;
        }

        bytesRead = total;
        return new SnapshotMetadata(new LogIndex(index), new Term(term), new ConfState(voterIds, learnerIds));
    }

    private static Span<byte> BeginRecord(ArrayBufferWriter<byte> writer, WalRecordType type, int payloadBytes, out Span<byte> record)
    {
        int recordBytes = AlignedRecordBytes(payloadBytes);
        record = writer.GetSpan(recordBytes)[..recordBytes];
        record.Clear();
        BinaryPrimitives.WriteUInt32LittleEndian(record, (uint)(1 + payloadBytes));
        record[RecordHeaderBytes] = (byte)type;
        return record.Slice(RecordHeaderBytes + 1, payloadBytes);
    }

    private static void EndRecord(ArrayBufferWriter<byte> writer, Span<byte> record, int payloadBytes)
    {
        uint crc = Crc(record.Slice(RecordHeaderBytes, 1 + payloadBytes));
        BinaryPrimitives.WriteUInt32LittleEndian(record[4..], crc);
        writer.Advance(record.Length);
    }
}

/// <summary>One decoded WAL record. Exactly one of the payload fields is meaningful, per <see cref="Type"/>.</summary>
internal readonly record struct WalRecord(WalRecordType Type, Entry Entry, HardState HardState, SnapshotMetadata? Snapshot);

/// <summary>Decodes a single record whose frame and CRC already verified. Never throws on bad bytes.</summary>
internal static class WalRecordDecoder
{
    public static bool TryDecode(ReadOnlySpan<byte> typeAndPayload, out WalRecord record, out string? error)
    {
        record = default;
        error = null;
        var type = (WalRecordType)typeAndPayload[0];
        ReadOnlySpan<byte> payload = typeAndPayload[1..];
        switch (type)
        {
            case WalRecordType.Entry:
            {
                if (payload.Length < WalFormat.EntryPayloadHeaderBytes)
                {
                    error = "entry record too short";
                    return false;
                }

                ulong term = BinaryPrimitives.ReadUInt64LittleEndian(payload);
                ulong index = BinaryPrimitives.ReadUInt64LittleEndian(payload[8..]);
                var entryType = (EntryType)payload[16];
                if (index == 0)
                {
                    error = "entry with index 0";
                    return false;
                }

                if (entryType is not (EntryType.Normal or EntryType.ConfChange))
                {
                    error = $"unknown entry type {(byte)entryType}";
                    return false;
                }

                byte[] data = payload[WalFormat.EntryPayloadHeaderBytes..].ToArray();
                record = new WalRecord(type, new Entry(new Term(term), new LogIndex(index), entryType, data), default, null);
                return true;
            }

            case WalRecordType.HardState:
            {
                if (payload.Length != WalFormat.HardStatePayloadBytes)
                {
                    error = $"hard state record has {payload.Length} bytes, expected {WalFormat.HardStatePayloadBytes}";
                    return false;
                }

                var hardState = new HardState(
                    new Term(BinaryPrimitives.ReadUInt64LittleEndian(payload)),
                    new NodeId(BinaryPrimitives.ReadUInt64LittleEndian(payload[8..])),
                    new LogIndex(BinaryPrimitives.ReadUInt64LittleEndian(payload[16..])));
                record = new WalRecord(type, default, hardState, null);
                return true;
            }

            case WalRecordType.Snapshot:
            case WalRecordType.SnapshotReset:
            {
                SnapshotMetadata? metadata = WalFormat.TryReadMetadata(payload, out int read, out error);
                if (metadata is null)
                {
                    return false;
                }

                if (read != payload.Length)
                {
                    error = "snapshot record has trailing bytes";
                    return false;
                }

                record = new WalRecord(type, default, default, metadata);
                return true;
            }

            default:
                error = $"unknown record type {(byte)type}";
                return false;
        }
    }
}
