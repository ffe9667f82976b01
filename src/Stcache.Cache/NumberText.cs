using System.Globalization;
using System.Text;

namespace Stcache.Cache;

/// <summary>Redis's number rules: strict integers (<c>string2ll</c>), floats (<c>string2ld</c>) and the
/// human-friendly float text of INCRBYFLOAT.</summary>
public static class NumberText
{
    /// <summary>Parses like Redis's <c>string2ll</c>: optional <c>-</c>, no <c>+</c>, no spaces, no leading zeros.</summary>
    public static bool TryParseInt64(ReadOnlySpan<byte> text, out long value)
    {
        value = 0;
        if (text.Length == 0 || text.Length > 20)
        {
            return false;
        }

        if (text.Length == 1 && text[0] == (byte)'0')
        {
            return true;
        }

        bool negative = text[0] == (byte)'-';
        int position = negative ? 1 : 0;
        if (position >= text.Length || text[position] is < (byte)'1' or > (byte)'9')
        {
            return false;
        }

        ulong magnitude = 0;
        for (; position < text.Length; position++)
        {
            byte digit = text[position];
            if (digit is < (byte)'0' or > (byte)'9')
            {
                return false;
            }

            if (magnitude > (ulong.MaxValue - 9) / 10)
            {
                return false;
            }

            magnitude = (magnitude * 10) + (ulong)(digit - '0');
        }

        if (negative)
        {
            if (magnitude > (ulong)long.MaxValue + 1)
            {
                return false;
            }

            value = unchecked(-(long)magnitude);
            return true;
        }

        if (magnitude > long.MaxValue)
        {
            return false;
        }

        value = (long)magnitude;
        return true;
    }

    public static bool TryParseUInt64(ReadOnlySpan<byte> text, out ulong value)
    {
        value = 0;
        if (text.Length == 0 || text.Length > 20 || (text.Length > 1 && text[0] == (byte)'0'))
        {
            return false;
        }

        foreach (byte digit in text)
        {
            if (digit is < (byte)'0' or > (byte)'9' || value > (ulong.MaxValue - (ulong)(digit - '0')) / 10)
            {
                return false;
            }

            value = (value * 10) + (ulong)(digit - '0');
        }

        return true;
    }

    /// <summary>Parses a float like Redis's <c>string2ld</c>: no surrounding spaces, NaN refused, infinities allowed.</summary>
    public static bool TryParseDouble(ReadOnlySpan<byte> text, out double value)
    {
        value = 0;
        if (text.Length == 0 || text.Length > 5000 || text[0] is (byte)' ' or (byte)'\t' or (byte)'\r' or (byte)'\n')
        {
            return false;
        }

        string s = Encoding.ASCII.GetString(text);
        switch (s.ToLowerInvariant())
        {
            case "inf" or "+inf" or "infinity" or "+infinity":
                value = double.PositiveInfinity;
                return true;
            case "-inf" or "-infinity":
                value = double.NegativeInfinity;
                return true;
        }

        const NumberStyles style = NumberStyles.AllowLeadingSign | NumberStyles.AllowDecimalPoint | NumberStyles.AllowExponent;
        return double.TryParse(s, style, CultureInfo.InvariantCulture, out value) && double.IsFinite(value);
    }

    /// <summary>Formats like INCRBYFLOAT's reply: no exponent, no trailing zeros (about 15 significant digits, so
    /// <c>0.1 + 0.2</c> prints <c>0.3</c> as it does in Redis with its long doubles).</summary>
    public static string FormatDouble(double value)
    {
        if (double.IsNaN(value))
        {
            return "nan";
        }

        if (double.IsInfinity(value))
        {
            return value > 0 ? "inf" : "-inf";
        }

        string text = Math.Abs(value) < 7.9e27
            ? ((decimal)value).ToString(CultureInfo.InvariantCulture)
            : value.ToString("F0", CultureInfo.InvariantCulture);
        if (text.Contains('.', StringComparison.Ordinal))
        {
            text = text.TrimEnd('0').TrimEnd('.');
        }

        return text == "-0" ? "0" : text;
    }

    public static byte[] Int64Bytes(long value) => Encoding.ASCII.GetBytes(value.ToString(CultureInfo.InvariantCulture));
}
