using System.Buffers.Binary;
using System.Text;
using System.Text.Unicode;

namespace Stcache.Cache;

public enum CommandKind : byte
{
    Set = 1,
    Delete = 2,
}

/// <summary>What a command requires of the key's current state before it takes effect (etcd-style compare).</summary>
public enum CompareKind : byte
{
    None = 0,

    /// <summary>The key's version must equal <see cref="CacheCommand.ExpectedVersion"/>; version 0 means "the key must not exist".</summary>
    Version = 1,

    /// <summary>The key must exist and its value must equal <see cref="CacheCommand.ExpectedValue"/> byte for byte.</summary>
    Value = 2,
}

/// <summary>
/// One replicated cache command. Encoded in a versioned little-endian binary form that the leader writes into
/// the log and every replica decodes (and validates) in <see cref="CacheStateMachine.Apply"/>.
/// <para>Layout v1: [format u8 = 1][kind u8][compare u8][flags u8][key length u16][key utf-8]
/// (Set: [value length u32][value]) (flags &amp; HasExpiry: [expiry unix ms i64]) (flags &amp; HasLogTime: [log time unix ms i64])
/// (compare Version: [expected version u64]) (compare Value: [expected length u32][expected value]).</para>
/// </summary>
public sealed record CacheCommand
{
    public const byte FormatVersion = 1;

    /// <summary>Longest key in UTF-8 bytes.</summary>
    public const int KeyBytesMax = 4096;

    /// <summary>Hard ceiling on a value; the server's configured limit is usually far lower.</summary>
    public const int ValueBytesMax = 64 << 20;

    private const byte FlagHasExpiry = 1;

    private const byte FlagHasLogTime = 2;

    public required CommandKind Kind { get; init; }

    public required string Key { get; init; }

    public ReadOnlyMemory<byte> Value { get; init; }

    /// <summary>Absolute expiry in Unix milliseconds, stamped by the leader; 0 means never. Apply never reads a clock.</summary>
    public long ExpiresAtUnixMs { get; init; }

    /// <summary>The leader's clock when it proposed the command (Unix ms; 0 = not stamped): the time at which apply
    /// judges expiry, as for a <see cref="WriteCommand"/>.</summary>
    public long LogTimeUnixMs { get; init; }

    public CompareKind Compare { get; init; }

    public ulong ExpectedVersion { get; init; }

    public ReadOnlyMemory<byte> ExpectedValue { get; init; }

    public static CacheCommand Set(string key, ReadOnlyMemory<byte> value) =>
        new() { Kind = CommandKind.Set, Key = key, Value = value };

    public static CacheCommand Delete(string key) => new() { Kind = CommandKind.Delete, Key = key };

    public static CacheCommand SetIfVersion(string key, ReadOnlyMemory<byte> value, ulong expectedVersion) =>
        new() { Kind = CommandKind.Set, Key = key, Value = value, Compare = CompareKind.Version, ExpectedVersion = expectedVersion };

    public static CacheCommand SetIfValue(string key, ReadOnlyMemory<byte> value, ReadOnlyMemory<byte> expectedValue) =>
        new() { Kind = CommandKind.Set, Key = key, Value = value, Compare = CompareKind.Value, ExpectedValue = expectedValue };

    /// <summary>Checks the limits a command must respect before it is proposed. Returns null when valid.</summary>
    public string? Validate() => Validate(Kind, Key, Value.Length, ExpectedValue.Length, ExpiresAtUnixMs, LogTimeUnixMs);

    /// <summary>What <see cref="Validate()"/> checks, from a command's parts: for a caller that makes no command
    /// object (an HTTP PUT laid out as its entry, <see cref="SetFrame"/>). Returns null when valid.</summary>
    public static string? Validate(CommandKind kind, ReadOnlySpan<char> key, int valueLength, int expectedValueLength,
        long expiresAtUnixMs = 0, long logTimeUnixMs = 0)
    {
        if (key.IsEmpty)
        {
            return "key must not be empty";
        }

        if (Encoding.UTF8.GetByteCount(key) > KeyBytesMax)
        {
            return "key too large";
        }

        if (valueLength > ValueBytesMax || expectedValueLength > ValueBytesMax)
        {
            return "value too large";
        }

        if (kind == CommandKind.Delete && valueLength != 0)
        {
            return "delete carries no value";
        }

        if (expiresAtUnixMs < 0)
        {
            return "expiry must not be negative";
        }

        if (logTimeUnixMs < 0)
        {
            return "log time must not be negative";
        }

        return null;
    }

    public byte[] Encode() => Encode(ExpiresAtUnixMs, LogTimeUnixMs);

    /// <summary>Encodes this command as if its expiry and log time were the ones given (what <c>with</c> and
    /// <see cref="Encode()"/> would give, without the copy of the command).</summary>
    public byte[] Encode(long expiresAtUnixMs, long logTimeUnixMs)
    {
        string? error = Validate(Kind, Key, Value.Length, ExpectedValue.Length, expiresAtUnixMs, logTimeUnixMs);
        if (error is not null)
        {
            throw new ArgumentException(error);
        }

        byte[] buffer = Layout(Kind, Key, Value.Length, expiresAtUnixMs != 0, logTimeUnixMs != 0, Compare, ExpectedVersion,
            ExpectedValue.Span, out int valueOffset);
        Value.Span.CopyTo(buffer.AsSpan(valueOffset));
        WriteStamp(buffer, valueOffset + Value.Length, expiresAtUnixMs, logTimeUnixMs);
        return buffer;
    }

    /// <summary>
    /// A set laid out as its entry before its value is read and before the leader stamps it: an HTTP PUT reads its body
    /// straight into <see cref="Frame.Value"/>, and the leader writes its log time (and the expiry, when
    /// <paramref name="expires"/>) into it when it makes the entry (<see cref="Frame.Stamp"/>): no command object and
    /// no copy of the value. Stamped, it is what <see cref="Encode(long, long)"/> gives for the same command. Throws
    /// for a command <see cref="Validate(CommandKind, ReadOnlySpan{char}, int, int, long, long)"/> refuses.
    /// </summary>
    public static Frame SetFrame(ReadOnlySpan<char> key, int valueLength, bool expires, CompareKind compare, ulong expectedVersion,
        ReadOnlySpan<byte> expectedValue)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(valueLength);
        string? error = Validate(CommandKind.Set, key, valueLength, expectedValue.Length);
        if (error is not null)
        {
            throw new ArgumentException(error);
        }

        byte[] buffer = Layout(CommandKind.Set, key, valueLength, expires, hasLogTime: true, compare, expectedVersion, expectedValue,
            out _);
        return new Frame(buffer);
    }

    /// <summary>A command's bytes with everything but its value and its stamp (expiry, log time) written: the value
    /// goes at <paramref name="valueOffset"/>, the stamp right after it (<see cref="WriteStamp"/>).</summary>
    private static byte[] Layout(CommandKind kind, ReadOnlySpan<char> key, int valueLength, bool hasExpiry, bool hasLogTime,
        CompareKind compare, ulong expectedVersion, ReadOnlySpan<byte> expectedValue, out int valueOffset)
    {
        int keyBytes = Encoding.UTF8.GetByteCount(key);
        int size = 4 + 2 + keyBytes;
        if (kind == CommandKind.Set)
        {
            size += 4 + valueLength;
        }

        size += StampBytes(hasExpiry, hasLogTime);
        size += compare switch
        {
            CompareKind.Version => 8,
            CompareKind.Value => 4 + expectedValue.Length,
            _ => 0,
        };

        var buffer = new byte[size];
        var span = buffer.AsSpan();
        span[0] = FormatVersion;
        span[1] = (byte)kind;
        span[2] = (byte)compare;
        span[3] = (byte)((hasExpiry ? FlagHasExpiry : 0) | (hasLogTime ? FlagHasLogTime : 0));
        BinaryPrimitives.WriteUInt16LittleEndian(span[4..], (ushort)keyBytes);
        int offset = 6;
        offset += Encoding.UTF8.GetBytes(key, span[offset..]);
        if (kind == CommandKind.Set)
        {
            BinaryPrimitives.WriteInt32LittleEndian(span[offset..], valueLength);
            offset += 4;
        }

        valueOffset = offset;
        offset += (kind == CommandKind.Set ? valueLength : 0) + StampBytes(hasExpiry, hasLogTime);
        switch (compare)
        {
            case CompareKind.Version:
                BinaryPrimitives.WriteUInt64LittleEndian(span[offset..], expectedVersion);
                offset += 8;
                break;
            case CompareKind.Value:
                BinaryPrimitives.WriteInt32LittleEndian(span[offset..], expectedValue.Length);
                offset += 4;
                expectedValue.CopyTo(span[offset..]);
                offset += expectedValue.Length;
                break;
        }

        if (offset != buffer.Length)
        {
            throw new InvalidOperationException("command encoding size mismatch");
        }

        return buffer;
    }

    private static int StampBytes(bool hasExpiry, bool hasLogTime) => (hasExpiry ? 8 : 0) + (hasLogTime ? 8 : 0);

    /// <summary>Writes the expiry and the log time (each when not 0, as the flags say) at <paramref name="offset"/>.</summary>
    private static void WriteStamp(Span<byte> span, int offset, long expiresAtUnixMs, long logTimeUnixMs)
    {
        if (expiresAtUnixMs != 0)
        {
            BinaryPrimitives.WriteInt64LittleEndian(span[offset..], expiresAtUnixMs);
            offset += 8;
        }

        if (logTimeUnixMs != 0)
        {
            BinaryPrimitives.WriteInt64LittleEndian(span[offset..], logTimeUnixMs);
        }
    }

    /// <summary>A set laid out as its entry, its stamp still to write (<see cref="SetFrame"/>). Only its bytes: where
    /// the value and the stamp are is read from them (one reference to carry per write).</summary>
    public readonly struct Frame
    {
        private readonly byte[] _bytes;

        internal Frame(byte[] bytes) => _bytes = bytes;

        /// <summary>False for the default value (no frame).</summary>
        public bool HasValue => _bytes is not null;

        /// <summary>Where the value's bytes go.</summary>
        public Memory<byte> Value => _bytes.AsMemory(ValueOffset, ValueLength);

        /// <summary>Whether the frame has room for an expiry: the stamp must give one exactly when it has.</summary>
        public bool Expires => (_bytes[3] & FlagHasExpiry) != 0;

        private int ValueOffset => 6 + BinaryPrimitives.ReadUInt16LittleEndian(_bytes.AsSpan(4)) + 4;

        private int ValueLength => BinaryPrimitives.ReadInt32LittleEndian(_bytes.AsSpan(ValueOffset - 4));

        private int StampOffset => ValueOffset + ValueLength;

        private int StampLength => StampBytes(Expires, hasLogTime: true);

        /// <summary>Writes the leader's log time (and the expiry) into the frame and returns its bytes: the entry. The
        /// frame is the entry from then on: stamp a <see cref="Copy"/> to make another.</summary>
        public byte[] Stamp(long expiresAtUnixMs, long logTimeUnixMs)
        {
            if (logTimeUnixMs <= 0)
            {
                throw new ArgumentOutOfRangeException(nameof(logTimeUnixMs), "a frame is stamped with a log time");
            }

            if (Expires ? expiresAtUnixMs <= 0 : expiresAtUnixMs != 0)
            {
                throw new ArgumentOutOfRangeException(nameof(expiresAtUnixMs), "a frame's expiry is given exactly when it has room for one");
            }

            WriteStamp(_bytes, StampOffset, expiresAtUnixMs, logTimeUnixMs);
            return _bytes;
        }

        /// <summary>The same frame in a new array.</summary>
        public Frame Copy() => new((byte[])_bytes.Clone());

        /// <summary>The command without its stamp (what <see cref="Encode()"/> gives for it unstamped): how a follower
        /// forwards it to the leader, which stamps it with its own clock.</summary>
        public byte[] Unstamped()
        {
            int stampOffset = StampOffset;
            int stampLength = StampLength;
            byte[] command = new byte[_bytes.Length - stampLength];
            _bytes.AsSpan(0, stampOffset).CopyTo(command);
            _bytes.AsSpan(stampOffset + stampLength).CopyTo(command.AsSpan(stampOffset));
            command[3] = 0;
            return command;
        }
    }

    /// <summary>Decodes and validates a command. Never throws on bad bytes; returns false with a reason instead.
    /// The returned command's buffers alias <paramref name="data"/>, which must stay immutable.</summary>
    public static bool TryDecode(ReadOnlyMemory<byte> data, out CacheCommand? command, out string? error)
    {
        command = null;
        if (!TryRead(data.Span, out var view, out error))
        {
            return false;
        }

        command = new CacheCommand
        {
            Kind = view.Kind,
            Key = Encoding.UTF8.GetString(view.Key), // valid UTF-8: TryRead checked it
            Value = view.Kind == CommandKind.Set ? data.Slice(view.ValueOffset, view.Value.Length) : ReadOnlyMemory<byte>.Empty,
            ExpiresAtUnixMs = view.ExpiresAtUnixMs,
            LogTimeUnixMs = view.LogTimeUnixMs,
            Compare = view.Compare,
            ExpectedVersion = view.ExpectedVersion,
            ExpectedValue = view.Compare == CompareKind.Value ? data.Slice(view.ExpectedValueOffset, view.ExpectedValue.Length) : ReadOnlyMemory<byte>.Empty,
        };
        return true;
    }

    /// <summary>
    /// Reads and validates a command in place: what <see cref="TryDecode"/> accepts, with the same fields, but as
    /// spans of <paramref name="data"/> (no command object, no key string, no copy). The state machine applies an
    /// HTTP write this way on every node. Never throws on bad bytes; returns false with a reason instead.
    /// </summary>
    public static bool TryRead(ReadOnlySpan<byte> data, out View command, out string? error)
    {
        command = default;
        if (data.Length < 6)
        {
            error = "command too short";
            return false;
        }

        if (data[0] != FormatVersion)
        {
            error = "unknown command format version";
            return false;
        }

        var kind = (CommandKind)data[1];
        var compare = (CompareKind)data[2];
        byte flags = data[3];
        if (kind is not (CommandKind.Set or CommandKind.Delete))
        {
            error = "unknown command kind";
            return false;
        }

        if (compare is not (CompareKind.None or CompareKind.Version or CompareKind.Value) || (flags & ~(FlagHasExpiry | FlagHasLogTime)) != 0)
        {
            error = "unknown compare or flags";
            return false;
        }

        int keyBytes = BinaryPrimitives.ReadUInt16LittleEndian(data[4..]);
        int offset = 6;
        if (keyBytes == 0 || keyBytes > KeyBytesMax || data.Length - offset < keyBytes)
        {
            error = "bad key length";
            return false;
        }

        var key = data.Slice(offset, keyBytes);
        if (!Utf8.IsValid(key))
        {
            error = "key is not valid utf-8";
            return false;
        }

        offset += keyBytes;
        int valueOffset = offset;
        int valueLength = 0;
        if (kind == CommandKind.Set && !TryReadBlob(data, ref offset, out valueOffset, out valueLength))
        {
            error = "bad value length";
            return false;
        }

        long expires = 0;
        if ((flags & FlagHasExpiry) != 0)
        {
            if (data.Length - offset < 8)
            {
                error = "truncated expiry";
                return false;
            }

            expires = BinaryPrimitives.ReadInt64LittleEndian(data[offset..]);
            offset += 8;
            if (expires <= 0)
            {
                error = "bad expiry";
                return false;
            }
        }

        long logTime = 0;
        if ((flags & FlagHasLogTime) != 0)
        {
            if (data.Length - offset < 8)
            {
                error = "truncated log time";
                return false;
            }

            logTime = BinaryPrimitives.ReadInt64LittleEndian(data[offset..]);
            offset += 8;
            if (logTime <= 0)
            {
                error = "bad log time";
                return false;
            }
        }

        ulong expectedVersion = 0;
        int expectedOffset = offset;
        int expectedLength = 0;
        if (compare == CompareKind.Version)
        {
            if (data.Length - offset < 8)
            {
                error = "truncated expected version";
                return false;
            }

            expectedVersion = BinaryPrimitives.ReadUInt64LittleEndian(data[offset..]);
            offset += 8;
        }
        else if (compare == CompareKind.Value && !TryReadBlob(data, ref offset, out expectedOffset, out expectedLength))
        {
            error = "bad expected value length";
            return false;
        }

        if (offset != data.Length)
        {
            error = "trailing bytes after command";
            return false;
        }

        command = new View(data, kind, compare, keyBytes, valueOffset, valueLength, expires, logTime, expectedVersion, expectedOffset, expectedLength);
        error = null;
        return true;
    }

    /// <summary>A command as <see cref="TryRead"/> found it in its entry's bytes (its spans alias them).</summary>
    public readonly ref struct View
    {
        private const int KeyOffset = 6;
        private readonly ReadOnlySpan<byte> _data;
        private readonly int _keyLength;
        private readonly int _valueLength;
        private readonly int _expectedValueLength;

        internal View(ReadOnlySpan<byte> data, CommandKind kind, CompareKind compare, int keyLength, int valueOffset, int valueLength,
            long expiresAtUnixMs, long logTimeUnixMs, ulong expectedVersion, int expectedValueOffset, int expectedValueLength)
        {
            _data = data;
            Kind = kind;
            Compare = compare;
            _keyLength = keyLength;
            ValueOffset = valueOffset;
            _valueLength = valueLength;
            ExpiresAtUnixMs = expiresAtUnixMs;
            LogTimeUnixMs = logTimeUnixMs;
            ExpectedVersion = expectedVersion;
            ExpectedValueOffset = expectedValueOffset;
            _expectedValueLength = expectedValueLength;
        }

        public CommandKind Kind { get; }

        public CompareKind Compare { get; }

        /// <summary>The key's UTF-8 bytes (valid UTF-8, not empty).</summary>
        public ReadOnlySpan<byte> Key => _data.Slice(KeyOffset, _keyLength);

        /// <summary>A set's value (empty for a delete).</summary>
        public ReadOnlySpan<byte> Value => _data.Slice(ValueOffset, _valueLength);

        public long ExpiresAtUnixMs { get; }

        public long LogTimeUnixMs { get; }

        public ulong ExpectedVersion { get; }

        public ReadOnlySpan<byte> ExpectedValue => _data.Slice(ExpectedValueOffset, _expectedValueLength);

        internal int ValueOffset { get; }

        internal int ExpectedValueOffset { get; }
    }

    private static bool TryReadBlob(ReadOnlySpan<byte> data, ref int offset, out int blobOffset, out int blobLength)
    {
        blobOffset = offset;
        blobLength = 0;
        if (data.Length - offset < 4)
        {
            return false;
        }

        int length = BinaryPrimitives.ReadInt32LittleEndian(data[offset..]);
        offset += 4;
        if (length < 0 || length > ValueBytesMax || data.Length - offset < length)
        {
            return false;
        }

        blobOffset = offset;
        blobLength = length;
        offset += length;
        return true;
    }
}
