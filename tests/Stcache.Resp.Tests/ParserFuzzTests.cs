using System.Buffers;
using System.Numerics;
using System.Text;
using System.Text.RegularExpressions;
using Xunit.Abstractions;

namespace Stcache.Resp.Tests;

/// <summary>
/// The parser against a slow reference written straight from Redis's networking.c: random valid pipelines and
/// corrupted ones, fed to the parser as a connection would see them, split at every byte boundary (as two reads,
/// and as one read whose buffer has two segments). Both must find the same commands and the same error.
/// </summary>
public sealed partial class ParserFuzzTests(ITestOutputHelper output)
{
    private const int Iterations = 1500;

    [Fact]
    public void ParserAgreesWithReferenceAtEverySplit()
    {
        int seed = Environment.GetEnvironmentVariable("STCACHE_SEED") is { } s ? int.Parse(s, System.Globalization.CultureInfo.InvariantCulture) : Random.Shared.Next();
        output.WriteLine($"seed {seed} (rerun with STCACHE_SEED={seed})");
        var random = new Random(seed);
        for (int n = 0; n < Iterations; n++)
        {
            bool authenticated = random.Next(4) != 0;
            long bulkMax = random.Next(3) == 0 ? random.Next(0, 40) : 512 * 1024 * 1024;
            var limits = new RespLimits(bulkMax, long.MaxValue, authenticated);
            byte[] input = Generate(random);
            if (random.Next(2) == 0)
            {
                Corrupt(random, ref input);
            }

            var expected = Reference(input, bulkMax, authenticated);
            for (int split = 0; split <= input.Length; split++)
            {
                var twoReads = Streamed(input, split, limits);
                Check(expected, twoReads, input, split, seed, "two reads");
                var twoSegments = Drain(Segmented(input, split), limits);
                Check(expected, twoSegments, input, split, seed, "two segments");
            }
        }
    }

    private static void Check(Outcome expected, Outcome actual, byte[] input, int split, int seed, string how)
    {
        string context = $"seed {seed}, {how} split at {split}, input {Escape(input)}";
        Assert.True(expected.Error == actual.Error, $"error: expected '{expected.Error}', got '{actual.Error}'; {context}");
        Assert.True(expected.Commands.Count == actual.Commands.Count, $"count: expected {expected.Commands.Count}, got {actual.Commands.Count}; {context}");
        for (int i = 0; i < expected.Commands.Count; i++)
        {
            Assert.True(expected.Commands[i].Length == actual.Commands[i].Length, $"command {i} arity; {context}");
            for (int j = 0; j < expected.Commands[i].Length; j++)
            {
                Assert.True(expected.Commands[i][j].AsSpan().SequenceEqual(actual.Commands[i][j]), $"command {i} argument {j}; {context}");
            }
        }
    }

    private sealed record Outcome(List<byte[][]> Commands, string? Error);

    /// <summary>A connection that receives the first <paramref name="split"/> bytes, parses what it can, then the rest.</summary>
    private static Outcome Streamed(byte[] input, int split, RespLimits limits)
    {
        var first = Drain(new ReadOnlySequence<byte>(input, 0, split), limits, out long used);
        if (first.Error is not null)
        {
            return first;
        }

        var rest = Drain(new ReadOnlySequence<byte>(input, (int)used, input.Length - (int)used), limits, out _);
        first.Commands.AddRange(rest.Commands);
        return first with { Error = rest.Error };
    }

    private static Outcome Drain(ReadOnlySequence<byte> buffer, RespLimits limits) => Drain(buffer, limits, out _);

    private static Outcome Drain(ReadOnlySequence<byte> buffer, RespLimits limits, out long used)
    {
        var commands = new List<byte[][]>();
        long start = buffer.Length;
        while (true)
        {
            var status = RespParser.TryParse(buffer, limits, out var consumed, out var arguments, out var error);
            if (status == ParseStatus.NeedMoreData)
            {
                used = start - buffer.Length;
                return new Outcome(commands, null);
            }

            if (status == ParseStatus.Malformed)
            {
                used = start - buffer.Length;
                return new Outcome(commands, error!.Message);
            }

            Assert.NotEqual(buffer.Start, consumed);
            if (arguments.Length > 0)
            {
                commands.Add(arguments);
            }

            buffer = buffer.Slice(consumed);
        }
    }

    // ---- the reference ------------------------------------------------------------------------------------------

    [GeneratedRegex(@"^(0|-?[1-9][0-9]*)\z")]
    private static partial Regex Integer();

    /// <summary>Redis's string2ll, from its definition rather than its code: a canonical decimal that fits a long.</summary>
    private static bool ReferenceInteger(byte[] text, out long value)
    {
        value = 0;
        string s = Encoding.Latin1.GetString(text);
        if (s.Length > 20 || !Integer().IsMatch(s))
        {
            return false;
        }

        var big = BigInteger.Parse(s, System.Globalization.CultureInfo.InvariantCulture);
        if (big < long.MinValue || big > long.MaxValue)
        {
            return false;
        }

        value = (long)big;
        return true;
    }

    private static Outcome Reference(byte[] data, long bulkMax, bool authenticated)
    {
        var commands = new List<byte[][]>();
        int pos = 0;
        while (pos < data.Length)
        {
            if (data[pos] == (byte)'*')
            {
                int cr = System.Array.IndexOf(data, (byte)'\r', pos);
                if (cr < 0 || cr + 1 >= data.Length)
                {
                    return new Outcome(commands, null);
                }

                if (!ReferenceInteger(data[(pos + 1)..cr], out long count) || count > int.MaxValue)
                {
                    return new Outcome(commands, "Protocol error: invalid multibulk length");
                }

                pos = cr + 2;
                if (count <= 0)
                {
                    continue;
                }

                if (!authenticated && count > 10)
                {
                    return new Outcome(commands, "Protocol error: unauthenticated multibulk length");
                }

                var arguments = new List<byte[]>();
                for (long i = 0; i < count; i++)
                {
                    if (pos >= data.Length)
                    {
                        return new Outcome(commands, null);
                    }

                    cr = System.Array.IndexOf(data, (byte)'\r', pos + 1);
                    if (cr < 0 || cr + 1 >= data.Length)
                    {
                        return new Outcome(commands, null);
                    }

                    if (data[pos] != (byte)'$')
                    {
                        return new Outcome(commands, "Protocol error: expected '$', got '" + (char)data[pos] + "'");
                    }

                    if (!ReferenceInteger(data[(pos + 1)..cr], out long length) || length < 0 || length > bulkMax)
                    {
                        return new Outcome(commands, "Protocol error: invalid bulk length");
                    }

                    if (!authenticated && length > 16384)
                    {
                        return new Outcome(commands, "Protocol error: unauthenticated bulk length");
                    }

                    pos = cr + 2;
                    if (data.Length - pos < length + 2)
                    {
                        return new Outcome(commands, null);
                    }

                    arguments.Add(data[pos..(pos + (int)length)]);
                    pos += (int)length + 2;
                }

                commands.Add([.. arguments]);
            }
            else
            {
                int lf = System.Array.IndexOf(data, (byte)'\n', pos);
                if (lf < 0)
                {
                    return new Outcome(commands, null);
                }

                int end = lf > pos && data[lf - 1] == (byte)'\r' ? lf - 1 : lf;
                string line = Encoding.Latin1.GetString(data, pos, end - pos);
                pos = lf + 1;
                var split = ReferenceSplit(line);
                if (split is null)
                {
                    return new Outcome(commands, "Protocol error: unbalanced quotes in request");
                }

                if (split.Count > 0)
                {
                    commands.Add([.. split.Select(a => Encoding.Latin1.GetBytes(a))]);
                }
            }
        }

        return new Outcome(commands, null);
    }

    /// <summary>sdssplitargs, as a character state machine over a string that a NUL ends.</summary>
    private static List<string>? ReferenceSplit(string line)
    {
        int nul = line.IndexOf('\0', StringComparison.Ordinal);
        if (nul >= 0)
        {
            line = line[..nul];
        }

        static bool IsSpace(char c) => c is ' ' or '\t' or '\n' or '\r' or '\v' or '\f';
        var result = new List<string>();
        int i = 0;
        while (true)
        {
            while (i < line.Length && IsSpace(line[i]))
            {
                i++;
            }

            if (i == line.Length)
            {
                return result;
            }

            var token = new StringBuilder();
            char quote = '\0';
            while (true)
            {
                char c = i < line.Length ? line[i] : '\0';
                bool atEnd = i >= line.Length;
                if (quote == '"')
                {
                    if (atEnd)
                    {
                        return null;
                    }

                    if (c == '\\' && i + 3 < line.Length && line[i + 1] == 'x' && Uri.IsHexDigit(line[i + 2]) && Uri.IsHexDigit(line[i + 3]))
                    {
                        token.Append((char)Convert.ToByte(line.Substring(i + 2, 2), 16));
                        i += 4;
                        continue;
                    }

                    if (c == '\\' && i + 1 < line.Length)
                    {
                        char e = line[i + 1];
                        token.Append(e switch { 'n' => '\n', 'r' => '\r', 't' => '\t', 'b' => '\b', 'a' => '\a', _ => e });
                        i += 2;
                        continue;
                    }

                    if (c == '"')
                    {
                        if (i + 1 < line.Length && !IsSpace(line[i + 1]))
                        {
                            return null;
                        }

                        i++;
                        break;
                    }

                    token.Append(c);
                    i++;
                }
                else if (quote == '\'')
                {
                    if (atEnd)
                    {
                        return null;
                    }

                    if (c == '\\' && i + 1 < line.Length && line[i + 1] == '\'')
                    {
                        token.Append('\'');
                        i += 2;
                        continue;
                    }

                    if (c == '\'')
                    {
                        if (i + 1 < line.Length && !IsSpace(line[i + 1]))
                        {
                            return null;
                        }

                        i++;
                        break;
                    }

                    token.Append(c);
                    i++;
                }
                else
                {
                    if (atEnd || c is ' ' or '\n' or '\r' or '\t')
                    {
                        if (!atEnd)
                        {
                            i++;
                        }

                        break;
                    }

                    if (c is '"' or '\'')
                    {
                        quote = c;
                    }
                    else
                    {
                        token.Append(c);
                    }

                    i++;
                }
            }

            result.Add(token.ToString());
        }
    }

    // ---- inputs -------------------------------------------------------------------------------------------------

    private static byte[] Generate(Random random)
    {
        var bytes = new List<byte>();
        int commands = random.Next(1, 5);
        for (int c = 0; c < commands; c++)
        {
            if (random.Next(3) == 0)
            {
                bytes.AddRange(Inline(random));
            }
            else
            {
                int count = random.Next(6) == 0 ? random.Next(-1, 1) : random.Next(1, 14);
                bytes.AddRange(Encoding.ASCII.GetBytes($"*{count}\r\n"));
                for (int a = 0; a < count; a++)
                {
                    var argument = new byte[random.Next(5) == 0 ? random.Next(0, 40) : random.Next(0, 8)];
                    random.NextBytes(argument);
                    bytes.AddRange(Encoding.ASCII.GetBytes($"${argument.Length}\r\n"));
                    bytes.AddRange(argument);
                    bytes.AddRange("\r\n"u8.ToArray());
                }
            }
        }

        return [.. bytes];
    }

    private static byte[] Inline(Random random)
    {
        string[] pieces = ["GET", "set", "k", " ", "  ", "\t", "\"a b\"", "\"\\x41\\n\"", "'it\\'s'", "\"\"", "''", "\"x\"y", "'q", "\"", "\\", "\v", "\0", "é"];
        var line = new StringBuilder();
        int count = random.Next(0, 6);
        for (int i = 0; i < count; i++)
        {
            line.Append(pieces[random.Next(pieces.Length)]);
            if (random.Next(2) == 0)
            {
                line.Append(' ');
            }
        }

        line.Append(random.Next(2) == 0 ? "\r\n" : "\n");
        return Encoding.Latin1.GetBytes(line.ToString());
    }

    private static void Corrupt(Random random, ref byte[] input)
    {
        var bytes = input.ToList();
        int edits = random.Next(1, 4);
        byte[] interesting = "*$\r\n-0123456789 \"'x\\"u8.ToArray();
        for (int e = 0; e < edits && bytes.Count > 0; e++)
        {
            int at = random.Next(bytes.Count);
            byte b = random.Next(2) == 0 ? interesting[random.Next(interesting.Length)] : (byte)random.Next(256);
            switch (random.Next(4))
            {
                case 0:
                    bytes[at] = b;
                    break;
                case 1:
                    bytes.Insert(at, b);
                    break;
                case 2:
                    bytes.RemoveAt(at);
                    break;
                default:
                    bytes.RemoveRange(at, bytes.Count - at);
                    break;
            }
        }

        input = [.. bytes];
    }

    private static ReadOnlySequence<byte> Segmented(byte[] input, int split)
    {
        if (split == 0 || split == input.Length)
        {
            return new ReadOnlySequence<byte>(input);
        }

        var first = new Segment(input.AsMemory(0, split), 0);
        var last = first.Append(input.AsMemory(split));
        return new ReadOnlySequence<byte>(first, 0, last, last.Memory.Length);
    }

    private static string Escape(byte[] input) =>
        string.Concat(input.Select(b => b is >= 32 and < 127 and not (byte)'\\' ? ((char)b).ToString() : $"\\x{b:x2}"));

    internal sealed class Segment : ReadOnlySequenceSegment<byte>
    {
        public Segment(ReadOnlyMemory<byte> memory, long runningIndex)
        {
            Memory = memory;
            RunningIndex = runningIndex;
        }

        public Segment Append(ReadOnlyMemory<byte> memory)
        {
            var next = new Segment(memory, RunningIndex + Memory.Length);
            Next = next;
            return next;
        }
    }
}
