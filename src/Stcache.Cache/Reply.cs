using System.Globalization;
using System.Text;

namespace Stcache.Cache;

public enum ReplyKind : byte
{
    /// <summary>A status line such as <c>OK</c> or <c>string</c> (RESP <c>+</c>).</summary>
    SimpleString = 1,

    /// <summary>An error; <see cref="Reply.Text"/> starts with its code (<c>ERR</c>, <c>WRONGTYPE</c>, <c>OOM</c>...).</summary>
    Error = 2,

    Integer = 3,

    /// <summary>A binary-safe string (RESP <c>$</c>).</summary>
    Bulk = 4,

    /// <summary>The absent value (RESP2 <c>$-1</c>, RESP3 <c>_</c>).</summary>
    Null = 5,

    Array = 6,

    /// <summary>A floating point number: RESP3 <c>,</c>, RESP2 a bulk string of <see cref="Reply.Text"/>.</summary>
    Double = 7,

    /// <summary>Key-value pairs, flattened in <see cref="Reply.Items"/> (RESP3 <c>%</c>, RESP2 a flat array).</summary>
    Map = 8,
}

/// <summary>
/// A protocol-agnostic command reply, shaped like Redis's so that RESP2, RESP3 and HTTP can each render it.
/// Immutable; the shared instances below may be reused freely.
/// </summary>
public sealed class Reply : IEquatable<Reply>
{
    private static readonly Reply[] s_smallIntegers = Enumerable.Range(-2, 12).Select(i => new Reply(ReplyKind.Integer, integer: i)).ToArray();

    private Reply(ReplyKind kind, string? text = null, long integer = 0, byte[]? bulk = null, Reply[]? items = null)
    {
        Kind = kind;
        Text = text;
        Integer = integer;
        Bulk = bulk;
        _items = items ?? [];
    }

    public static Reply Ok { get; } = new(ReplyKind.SimpleString, "OK");

    public static Reply Nil { get; } = new(ReplyKind.Null);

    public static Reply EmptyArray { get; } = new(ReplyKind.Array, items: []);

    private readonly Reply[] _items;

    public ReplyKind Kind { get; }

    /// <summary>Simple string, error text (without the RESP <c>-</c>), or a double's decimal text.</summary>
    public string? Text { get; }

    public long Integer { get; }

    public byte[]? Bulk { get; }

    /// <summary>Array elements, or a map's keys and values alternating.</summary>
    public IReadOnlyList<Reply> Items => _items;

    public bool IsError => Kind == ReplyKind.Error;

    public static Reply Simple(string text) => new(ReplyKind.SimpleString, text);

    /// <summary>An error reply; <paramref name="text"/> starts with the code, e.g. <c>ERR syntax error</c>.</summary>
    public static Reply Error(string text) => new(ReplyKind.Error, text);

    public static Reply Int(long value) => value is >= -2 and < 10 ? s_smallIntegers[value + 2] : new Reply(ReplyKind.Integer, integer: value);

    public static Reply BulkOf(byte[] value) => new(ReplyKind.Bulk, bulk: value);

    /// <summary>A bulk reply holding a copy of <paramref name="value"/>.</summary>
    public static Reply BulkOf(ReadOnlySpan<byte> value) => new(ReplyKind.Bulk, bulk: value.ToArray());

    public static Reply BulkOf(string value) => new(ReplyKind.Bulk, bulk: Encoding.UTF8.GetBytes(value));

    public static Reply BulkOrNil(byte[]? value) => value is null ? Nil : BulkOf(value);

    public static Reply Array(Reply[] items) => new(ReplyKind.Array, items: items);

    public static Reply Map(Reply[] keysAndValues)
    {
        if (keysAndValues.Length % 2 != 0)
        {
            throw new ArgumentException("a map needs an even number of items", nameof(keysAndValues));
        }

        return new Reply(ReplyKind.Map, items: keysAndValues);
    }

    public static Reply Double(double value) => new(ReplyKind.Double, NumberText.FormatDouble(value));

    public bool Equals(Reply? other)
    {
        if (other is null || other.Kind != Kind || other.Text != Text || other.Integer != Integer)
        {
            return false;
        }

        if (Bulk is not null || other.Bulk is not null)
        {
            return Bulk is not null && other.Bulk is not null && Bulk.AsSpan().SequenceEqual(other.Bulk);
        }

        return _items.Length == other._items.Length && _items.Zip(other._items).All(pair => pair.First.Equals(pair.Second));
    }

    public override bool Equals(object? obj) => obj is Reply other && Equals(other);

    public override int GetHashCode() => HashCode.Combine(Kind, Text, Integer, Bulk?.Length ?? 0, _items.Length);

    /// <summary>A readable rendering for tests and logs: <c>+OK</c>, <c>-ERR ...</c>, <c>:1</c>, <c>"v"</c>, <c>(nil)</c>, <c>[...]</c>.</summary>
    public override string ToString() => Kind switch
    {
        ReplyKind.SimpleString => "+" + Text,
        ReplyKind.Error => "-" + Text,
        ReplyKind.Integer => ":" + Integer.ToString(CultureInfo.InvariantCulture),
        ReplyKind.Bulk => "\"" + Encoding.UTF8.GetString(Bulk!) + "\"",
        ReplyKind.Null => "(nil)",
        ReplyKind.Double => "," + Text,
        ReplyKind.Map => "{" + string.Join(", ", _items.Chunk(2).Select(pair => pair[0] + ": " + pair[1])) + "}",
        _ => "[" + string.Join(", ", _items.Select(item => item.ToString())) + "]",
    };
}

/// <summary>Redis's exact error texts (7.x), without the RESP <c>-</c>.</summary>
public static class RedisErrors
{
    public const string Syntax = "ERR syntax error";
    public const string NotInteger = "ERR value is not an integer or out of range";
    public const string NotFloat = "ERR value is not a valid float";
    public const string WrongType = "WRONGTYPE Operation against a key holding the wrong kind of value";
    public const string Overflow = "ERR increment or decrement would overflow";
    public const string DecrementOverflow = "ERR decrement would overflow";
    public const string FloatOverflow = "ERR increment would produce NaN or Infinity";
    public const string HashNotInteger = "ERR hash value is not an integer";
    public const string HashNotFloat = "ERR hash value is not a float";
    public const string NoSuchKey = "ERR no such key";
    public const string OutOfMemory = "OOM command not allowed when used memory > 'maxmemory'.";
    public const string InvalidCursor = "ERR invalid cursor";
    public const string StringTooLong = "ERR string exceeds maximum allowed size (proto-max-bulk-len)";
    public const string OffsetOutOfRange = "ERR offset is out of range";
    public const string NxXxGtLt = "ERR NX and XX, GT or LT options at the same time are not compatible";
    public const string GtLt = "ERR GT and LT options at the same time are not compatible";
    public const string DbIndexOutOfRange = "ERR DB index is out of range";

    public static string Arity(string command) => $"ERR wrong number of arguments for '{command.ToLowerInvariant()}' command";

    public static string InvalidExpire(string command) => $"ERR invalid expire time in '{command.ToLowerInvariant()}' command";

    public static string UnsupportedOption(string option) => $"ERR Unsupported option {option}";

    /// <summary>Redis's unknown-command text, with its trailing space after each quoted argument.</summary>
    public static string UnknownCommand(string name, IEnumerable<string> args)
    {
        var text = new StringBuilder();
        text.Append("ERR unknown command '").Append(Clip(name, 128)).Append("', with args beginning with: ");
        int budget = 128;
        foreach (string arg in args)
        {
            if (budget <= 0)
            {
                break;
            }

            string clipped = Clip(arg, budget);
            budget -= clipped.Length;
            text.Append('\'').Append(clipped).Append("' ");
        }

        return text.ToString().Replace('\r', ' ').Replace('\n', ' ');
    }

    private static string Clip(string text, int length) => text.Length <= length ? text : text[..length];
}
