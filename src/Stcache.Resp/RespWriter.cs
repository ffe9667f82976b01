using System.Buffers;
using System.Buffers.Text;
using System.Globalization;
using System.Text;

namespace Stcache.Resp;

/// <summary>
/// Writes replies in RESP2 or RESP3. Every RESP3 type has its RESP2 form here, so a command writes one reply and
/// the connection's protocol decides the bytes: a map is a flat array in RESP2, null is <c>$-1</c> or <c>*-1</c>,
/// a double is a bulk string, a boolean an integer, a push an array.
/// </summary>
public sealed class RespWriter(IBufferWriter<byte> output)
{
    public int Protocol { get; set; } = 2;

    public bool IsResp3 => Protocol >= 3;

    public void SimpleString(string text) => Line((byte)'+', text);

    public void SimpleString(ReadOnlySpan<byte> text) => Line((byte)'+', text);

    public void Ok() => Raw("+OK\r\n"u8);

    /// <summary>An error reply with Redis's generic code: <c>-ERR text</c>.</summary>
    public void Error(string text) => CodedError("ERR " + text);

    /// <summary>An error reply whose text starts with its own code (<c>WRONGTYPE …</c>, <c>NOAUTH …</c>).</summary>
    public void CodedError(string text) =>
        Line((byte)'-', text.Replace('\r', ' ').Replace('\n', ' ')); // a CR or LF would end the line early

    public void Integer(long value)
    {
        var span = output.GetSpan(24);
        span[0] = (byte)':';
        Utf8Formatter.TryFormat(value, span[1..], out int written);
        span[1 + written] = (byte)'\r';
        span[2 + written] = (byte)'\n';
        output.Advance(written + 3);
    }

    public void Bulk(ReadOnlySpan<byte> value)
    {
        Header((byte)'$', value.Length);
        Raw(value);
        Raw("\r\n"u8);
    }

    /// <summary>A bulk string of <paramref name="value"/>'s UTF-8 bytes, encoded straight into the output.</summary>
    public void Bulk(string value)
    {
        int length = Encoding.UTF8.GetByteCount(value);
        Header((byte)'$', length);
        var span = output.GetSpan(length + 2);
        int written = Encoding.UTF8.GetBytes(value, span);
        span[written] = (byte)'\r';
        span[written + 1] = (byte)'\n';
        output.Advance(written + 2);
    }

    /// <summary>A null bulk string (RESP2 <c>$-1</c>, RESP3 <c>_</c>).</summary>
    public void Null() => Raw(IsResp3 ? "_\r\n"u8 : "$-1\r\n"u8);

    /// <summary>A null array (RESP2 <c>*-1</c>, RESP3 <c>_</c>): EXEC aborted by WATCH, and similar.</summary>
    public void NullArray() => Raw(IsResp3 ? "_\r\n"u8 : "*-1\r\n"u8);

    public void Array(int count) => Header((byte)'*', count);

    /// <summary>A map of <paramref name="pairs"/> entries; in RESP2 a flat array of 2 × pairs.</summary>
    public void Map(int pairs)
    {
        if (IsResp3)
        {
            Header((byte)'%', pairs);
        }
        else
        {
            Header((byte)'*', pairs * 2);
        }
    }

    public void Set(int count) => Header(IsResp3 ? (byte)'~' : (byte)'*', count);

    /// <summary>An out-of-band push (pub/sub messages); in RESP2 an ordinary array.</summary>
    public void Push(int count) => Header(IsResp3 ? (byte)'>' : (byte)'*', count);

    public void Double(double value)
    {
        string text = double.IsPositiveInfinity(value) ? "inf"
            : double.IsNegativeInfinity(value) ? "-inf"
            : value.ToString("R", CultureInfo.InvariantCulture);
        if (IsResp3)
        {
            Line((byte)',', text);
        }
        else
        {
            Bulk(text);
        }
    }

    /// <summary>A double already formatted as Redis formats it (RESP3 <c>,</c>, RESP2 a bulk string).</summary>
    public void DoubleText(string text)
    {
        if (IsResp3)
        {
            Line((byte)',', text);
        }
        else
        {
            Bulk(text);
        }
    }

    public void Boolean(bool value)
    {
        if (IsResp3)
        {
            Raw(value ? "#t\r\n"u8 : "#f\r\n"u8);
        }
        else
        {
            Integer(value ? 1 : 0);
        }
    }

    /// <summary>Text meant for humans (INFO, CLIENT INFO): a verbatim string in RESP3, a bulk string in RESP2.</summary>
    public void Verbatim(string text)
    {
        if (!IsResp3)
        {
            Bulk(text);
            return;
        }

        byte[] bytes = Encoding.UTF8.GetBytes(text);
        Header((byte)'=', bytes.Length + 4);
        Raw("txt:"u8);
        Raw(bytes);
        Raw("\r\n"u8);
    }

    public void Raw(ReadOnlySpan<byte> bytes) => output.Write(bytes);

    private void Header(byte marker, long count)
    {
        var span = output.GetSpan(24);
        span[0] = marker;
        Utf8Formatter.TryFormat(count, span[1..], out int written);
        span[1 + written] = (byte)'\r';
        span[2 + written] = (byte)'\n';
        output.Advance(written + 3);
    }

    /// <summary>A line of <paramref name="text"/>'s UTF-8 bytes, encoded straight into the output.</summary>
    private void Line(byte marker, string text)
    {
        var span = output.GetSpan(Encoding.UTF8.GetByteCount(text) + 3);
        span[0] = marker;
        int written = Encoding.UTF8.GetBytes(text, span[1..]);
        span[1 + written] = (byte)'\r';
        span[2 + written] = (byte)'\n';
        output.Advance(written + 3);
    }

    private void Line(byte marker, ReadOnlySpan<byte> text)
    {
        var span = output.GetSpan(text.Length + 3);
        span[0] = marker;
        text.CopyTo(span[1..]);
        span[1 + text.Length] = (byte)'\r';
        span[2 + text.Length] = (byte)'\n';
        output.Advance(text.Length + 3);
    }
}
