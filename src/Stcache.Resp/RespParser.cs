using System.Buffers;
using System.Text;

namespace Stcache.Resp;

public enum ParseStatus
{
    /// <summary>One command was read (possibly empty: Redis skips <c>*0</c>, <c>*-1</c> and blank inline lines).</summary>
    Complete,

    /// <summary>The input holds only part of a command; nothing was consumed.</summary>
    NeedMoreData,

    /// <summary>The input breaks the protocol or a limit; the connection answers <see cref="RespProtocolError"/> and closes.</summary>
    Malformed,
}

/// <summary>Why a connection's input was refused. Redis answers the text as an error and then closes the connection;
/// for the query buffer limit it closes without a reply (<see cref="ReplyBeforeClose"/> false).</summary>
public sealed record RespProtocolError(string Message, bool ReplyBeforeClose = true);

/// <summary>What a connection accepts before it parses a command. Redis's defaults, except the bulk length, which is
/// the node's <c>--max-value-bytes</c>.</summary>
public readonly record struct RespLimits
{
    /// <summary>Longest line a count or an inline command may take before the CRLF (Redis's PROTO_INLINE_MAX_SIZE).</summary>
    public const int InlineBytesMax = 64 * 1024;

    /// <summary>Before AUTH, Redis refuses more than 10 arguments and bulks over 16 KiB.</summary>
    public const int UnauthenticatedMultibulkMax = 10;

    public const int UnauthenticatedBulkMax = 16 * 1024;

    public RespLimits(long bulkBytesMax, long queryBufferBytesMax, bool authenticated = true)
    {
        BulkBytesMax = bulkBytesMax;
        QueryBufferBytesMax = queryBufferBytesMax;
        Authenticated = authenticated;
    }

    /// <summary>Largest bulk string (proto-max-bulk-len).</summary>
    public long BulkBytesMax { get; }

    /// <summary>Largest amount of unparsed input one command may occupy (client-query-buffer-limit).</summary>
    public long QueryBufferBytesMax { get; }

    public bool Authenticated { get; }

    public static RespLimits For(int valueBytesMax) =>
        new(valueBytesMax, Math.Max(64L << 20, (4L * valueBytesMax) + (1 << 20)));
}

/// <summary>
/// The RESP2 request parser (multibulk and inline), as a pure function over the bytes received so far. It reads at
/// most one command and never keeps state between calls: a connection calls it again with the unconsumed rest
/// (plus whatever arrived since) until it answers <see cref="ParseStatus.NeedMoreData"/>. Error texts are Redis's
/// (networking.c, processMultibulkBuffer and processInlineBuffer).
/// </summary>
public static class RespParser
{
    private static readonly SearchValues<byte> s_spaces = SearchValues.Create(" \t\n\r\v\f"u8);

    /// <summary>Parses one command from the start of <paramref name="input"/>.</summary>
    /// <param name="consumed">On Complete: the position after the command. Otherwise the start of the input.</param>
    /// <param name="arguments">On Complete: the command's arguments, copied out of the input (empty for a skipped command).</param>
    public static ParseStatus TryParse(
        ReadOnlySequence<byte> input,
        in RespLimits limits,
        out SequencePosition consumed,
        out byte[][] arguments,
        out RespProtocolError? error)
    {
        consumed = input.Start;
        arguments = [];
        error = null;
        if (input.IsEmpty)
        {
            return ParseStatus.NeedMoreData;
        }

        var reader = new SequenceReader<byte>(input);
        var status = input.FirstSpan[0] == (byte)'*'
            ? ParseMultibulk(ref reader, limits, out arguments, out error)
            : ParseInline(ref reader, out arguments, out error);
        if (status == ParseStatus.Complete)
        {
            consumed = reader.Position;
        }
        else if (status == ParseStatus.NeedMoreData && input.Length > limits.QueryBufferBytesMax)
        {
            error = new RespProtocolError("closing client that reached max query buffer length", ReplyBeforeClose: false);
            arguments = [];
            return ParseStatus.Malformed;
        }

        return status;
    }

    private static ParseStatus ParseMultibulk(ref SequenceReader<byte> reader, in RespLimits limits, out byte[][] arguments, out RespProtocolError? error)
    {
        arguments = [];
        error = null;
        reader.Advance(1);
        bool complete = ReadCountLine(ref reader, out bool tooBig, out var count);
        if (tooBig)
        {
            error = new RespProtocolError("Protocol error: too big mbulk count string");
            return ParseStatus.Malformed;
        }

        if (!complete)
        {
            return ParseStatus.NeedMoreData;
        }

        if (!TryParseCount(count, out long length) || length > int.MaxValue)
        {
            error = new RespProtocolError("Protocol error: invalid multibulk length");
            return ParseStatus.Malformed;
        }

        if (length <= 0)
        {
            return ParseStatus.Complete;
        }

        if (!limits.Authenticated && length > RespLimits.UnauthenticatedMultibulkMax)
        {
            error = new RespProtocolError("Protocol error: unauthenticated multibulk length");
            return ParseStatus.Malformed;
        }

        // A peer may announce two billion arguments and send none: beyond 1,024, grow a list as arguments arrive.
        byte[][]? exact = length <= 1024 ? new byte[length][] : null;
        var grown = exact is null ? new List<byte[]>(1024) : null;
        for (long i = 0; i < length; i++)
        {
            if (reader.End)
            {
                return ParseStatus.NeedMoreData;
            }

            reader.TryPeek(out byte marker);
            complete = ReadCountLine(ref reader, out tooBig, out var bulkCount, skipFirst: true);
            if (tooBig)
            {
                error = new RespProtocolError("Protocol error: too big bulk count string");
                return ParseStatus.Malformed;
            }

            if (!complete)
            {
                return ParseStatus.NeedMoreData;
            }

            if (marker != (byte)'$')
            {
                error = new RespProtocolError("Protocol error: expected '$', got '" + (char)marker + "'");
                return ParseStatus.Malformed;
            }

            if (!TryParseCount(bulkCount, out long bulkLength) || bulkLength < 0 || bulkLength > limits.BulkBytesMax)
            {
                error = new RespProtocolError("Protocol error: invalid bulk length");
                return ParseStatus.Malformed;
            }

            if (!limits.Authenticated && bulkLength > RespLimits.UnauthenticatedBulkMax)
            {
                error = new RespProtocolError("Protocol error: unauthenticated bulk length");
                return ParseStatus.Malformed;
            }

            // Redis takes the two bytes after the data as the CRLF without looking at them.
            if (reader.Remaining < bulkLength + 2)
            {
                return ParseStatus.NeedMoreData;
            }

            var argument = new byte[bulkLength];
            reader.TryCopyTo(argument);
            reader.Advance(bulkLength + 2);
            if (exact is not null)
            {
                exact[i] = argument;
            }
            else
            {
                grown!.Add(argument);
            }
        }

        arguments = exact ?? [.. grown!];
        return ParseStatus.Complete;
    }

    /// <summary>
    /// Reads the digits of a count line up to its CR and skips the CR and the byte after it (Redis does not check
    /// that it is LF). Null when the CR, or the byte after it, has not arrived; <paramref name="tooBig"/> when no CR
    /// came within <see cref="RespLimits.InlineBytesMax"/> bytes of what is left.
    /// </summary>
    private static bool ReadCountLine(ref SequenceReader<byte> reader, out bool tooBig, out ReadOnlySequence<byte> digits, bool skipFirst = false)
    {
        tooBig = false;
        var start = reader;
        if (skipFirst)
        {
            reader.Advance(1);
        }

        if (!reader.TryReadTo(out digits, (byte)'\r', advancePastDelimiter: true))
        {
            tooBig = start.Remaining > RespLimits.InlineBytesMax;
            reader = start;
            return false;
        }

        if (reader.End)
        {
            reader = start;
            return false;
        }

        reader.Advance(1);
        return true;
    }

    /// <summary><see cref="TryParseInt64(ReadOnlySpan{byte}, out long)"/> over a count line's digits, wherever they lie.</summary>
    private static bool TryParseCount(in ReadOnlySequence<byte> digits, out long value)
    {
        if (digits.IsSingleSegment)
        {
            return TryParseInt64(digits.FirstSpan, out value);
        }

        value = 0;
        if (digits.Length > 20)
        {
            return false; // longer than any count TryParseInt64 takes
        }

        Span<byte> copy = stackalloc byte[20];
        digits.CopyTo(copy);
        return TryParseInt64(copy[..(int)digits.Length], out value);
    }

    private static ParseStatus ParseInline(ref SequenceReader<byte> reader, out byte[][] arguments, out RespProtocolError? error)
    {
        arguments = [];
        error = null;
        long remaining = reader.Remaining;
        if (!reader.TryReadTo(out ReadOnlySequence<byte> lineBytes, (byte)'\n', advancePastDelimiter: true))
        {
            if (remaining > RespLimits.InlineBytesMax)
            {
                error = new RespProtocolError("Protocol error: too big inline request");
                return ParseStatus.Malformed;
            }

            return ParseStatus.NeedMoreData;
        }

        var line = lineBytes.ToArray().AsSpan();
        if (line.Length > 0 && line[^1] == (byte)'\r')
        {
            line = line[..^1];
        }

        if (!TrySplitArguments(line, out var split))
        {
            error = new RespProtocolError("Protocol error: unbalanced quotes in request");
            return ParseStatus.Malformed;
        }

        arguments = split;
        return ParseStatus.Complete;
    }

    /// <summary>Splits an inline command as Redis's sdssplitargs does: spaces separate arguments; "double quotes"
    /// take \n \r \t \b \a \\ \" and \xHH escapes; 'single quotes' take \'; a closing quote must end the argument.</summary>
    internal static bool TrySplitArguments(ReadOnlySpan<byte> line, out byte[][] arguments)
    {
        // Redis splits a C string: a NUL byte ends the line.
        int nul = line.IndexOf((byte)0);
        if (nul >= 0)
        {
            line = line[..nul];
        }

        var result = new List<byte[]>();
        var current = new List<byte>();
        int i = 0;
        arguments = [];
        while (true)
        {
            while (i < line.Length && s_spaces.Contains(line[i]))
            {
                i++;
            }

            if (i >= line.Length)
            {
                arguments = [.. result];
                return true;
            }

            bool inDouble = false, inSingle = false, done = false;
            current.Clear();
            while (!done)
            {
                if (inDouble)
                {
                    if (i >= line.Length)
                    {
                        return false;
                    }

                    byte c = line[i];
                    if (c == (byte)'\\' && i + 3 < line.Length && line[i + 1] == (byte)'x' && IsHex(line[i + 2]) && IsHex(line[i + 3]))
                    {
                        current.Add((byte)((HexValue(line[i + 2]) << 4) | HexValue(line[i + 3])));
                        i += 3;
                    }
                    else if (c == (byte)'\\' && i + 1 < line.Length)
                    {
                        i++;
                        current.Add(line[i] switch
                        {
                            (byte)'n' => (byte)'\n',
                            (byte)'r' => (byte)'\r',
                            (byte)'t' => (byte)'\t',
                            (byte)'b' => (byte)'\b',
                            (byte)'a' => (byte)'\a',
                            var other => other,
                        });
                    }
                    else if (c == (byte)'"')
                    {
                        if (i + 1 < line.Length && !s_spaces.Contains(line[i + 1]))
                        {
                            return false;
                        }

                        done = true;
                    }
                    else
                    {
                        current.Add(c);
                    }
                }
                else if (inSingle)
                {
                    if (i >= line.Length)
                    {
                        return false;
                    }

                    byte c = line[i];
                    if (c == (byte)'\\' && i + 1 < line.Length && line[i + 1] == (byte)'\'')
                    {
                        i++;
                        current.Add((byte)'\'');
                    }
                    else if (c == (byte)'\'')
                    {
                        if (i + 1 < line.Length && !s_spaces.Contains(line[i + 1]))
                        {
                            return false;
                        }

                        done = true;
                    }
                    else
                    {
                        current.Add(c);
                    }
                }
                else if (i >= line.Length)
                {
                    done = true;
                }
                else
                {
                    byte c = line[i];
                    if (c is (byte)' ' or (byte)'\n' or (byte)'\r' or (byte)'\t')
                    {
                        done = true;
                    }
                    else if (c == (byte)'"')
                    {
                        inDouble = true;
                    }
                    else if (c == (byte)'\'')
                    {
                        inSingle = true;
                    }
                    else
                    {
                        current.Add(c);
                    }
                }

                if (i < line.Length)
                {
                    i++;
                }
            }

            result.Add([.. current]);
        }
    }

    /// <summary>Redis's string2ll: optional '-', no '+', no spaces, no leading zeros, at most 20 characters.</summary>
    public static bool TryParseInt64(ReadOnlySpan<byte> text, out long value)
    {
        value = 0;
        if (text.IsEmpty || text.Length > 20)
        {
            return false;
        }

        if (text.Length == 1 && text[0] == (byte)'0')
        {
            return true;
        }

        bool negative = text[0] == (byte)'-';
        int i = negative ? 1 : 0;
        if (i >= text.Length || text[i] < (byte)'1' || text[i] > (byte)'9')
        {
            return false;
        }

        ulong magnitude = 0;
        for (; i < text.Length; i++)
        {
            byte c = text[i];
            if (c < (byte)'0' || c > (byte)'9')
            {
                return false;
            }

            ulong next = (magnitude * 10) + (ulong)(c - '0');
            if (magnitude > ulong.MaxValue / 10 || next < magnitude)
            {
                return false;
            }

            magnitude = next;
        }

        if (negative)
        {
            if (magnitude > (ulong)long.MaxValue + 1)
            {
                return false;
            }

            value = magnitude == (ulong)long.MaxValue + 1 ? long.MinValue : -(long)magnitude;
            return true;
        }

        if (magnitude > long.MaxValue)
        {
            return false;
        }

        value = (long)magnitude;
        return true;
    }

    public static bool TryParseInt64(string text, out long value) => TryParseInt64(Encoding.UTF8.GetBytes(text), out value);

    private static bool IsHex(byte c) => c is (>= (byte)'0' and <= (byte)'9') or (>= (byte)'a' and <= (byte)'f') or (>= (byte)'A' and <= (byte)'F');

    private static int HexValue(byte c) => c <= (byte)'9' ? c - '0' : (c | 0x20) - 'a' + 10;
}
