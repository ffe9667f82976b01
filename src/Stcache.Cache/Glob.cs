namespace Stcache.Cache;

/// <summary>Redis's glob matching (<c>stringmatchlen</c>): <c>*</c>, <c>?</c>, <c>[abc]</c>, <c>[^a-z]</c>, and <c>\</c>
/// escapes, byte by byte and case-sensitive.</summary>
public static class Glob
{
    public static bool IsMatch(ReadOnlySpan<byte> pattern, ReadOnlySpan<byte> text) => Match(pattern, text, 0);

    private static bool Match(ReadOnlySpan<byte> pattern, ReadOnlySpan<byte> text, int depth)
    {
        // Redis bounds the recursion the same way, so a hostile pattern cannot exhaust the stack.
        if (depth > 1000)
        {
            return false;
        }

        while (pattern.Length > 0 && text.Length > 0)
        {
            switch (pattern[0])
            {
                case (byte)'*':
                    while (pattern.Length > 1 && pattern[1] == (byte)'*')
                    {
                        pattern = pattern[1..];
                    }

                    if (pattern.Length == 1)
                    {
                        return true;
                    }

                    for (int start = 0; start < text.Length; start++)
                    {
                        if (Match(pattern[1..], text[start..], depth + 1))
                        {
                            return true;
                        }
                    }

                    return false;
                case (byte)'?':
                    text = text[1..];
                    break;
                case (byte)'[':
                    {
                        pattern = pattern[1..];
                        bool not = pattern.Length > 0 && pattern[0] == (byte)'^';
                        if (not)
                        {
                            pattern = pattern[1..];
                        }

                        bool matched = false;
                        while (true)
                        {
                            if (pattern.Length == 0)
                            {
                                // An unterminated class: Redis treats the end of the pattern as its close.
                                break;
                            }

                            if (pattern[0] == (byte)'\\' && pattern.Length >= 2)
                            {
                                pattern = pattern[1..];
                                matched |= pattern[0] == text[0];
                            }
                            else if (pattern[0] == (byte)']')
                            {
                                break;
                            }
                            else if (pattern.Length >= 3 && pattern[1] == (byte)'-')
                            {
                                byte low = pattern[0];
                                byte high = pattern[2];
                                if (low > high)
                                {
                                    (low, high) = (high, low);
                                }

                                matched |= text[0] >= low && text[0] <= high;
                                pattern = pattern[2..];
                            }
                            else
                            {
                                matched |= pattern[0] == text[0];
                            }

                            pattern = pattern[1..];
                        }

                        if (pattern.Length == 0)
                        {
                            // Keep the position on the last byte so the common advance below ends the pattern.
                            pattern = "]"u8;
                        }

                        if (not)
                        {
                            matched = !matched;
                        }

                        if (!matched)
                        {
                            return false;
                        }

                        text = text[1..];
                        break;
                    }

                case (byte)'\\' when pattern.Length >= 2:
                    pattern = pattern[1..];
                    if (pattern[0] != text[0])
                    {
                        return false;
                    }

                    text = text[1..];
                    break;
                default:
                    if (pattern[0] != text[0])
                    {
                        return false;
                    }

                    text = text[1..];
                    break;
            }

            pattern = pattern[1..];
            if (text.Length == 0)
            {
                while (pattern.Length > 0 && pattern[0] == (byte)'*')
                {
                    pattern = pattern[1..];
                }

                break;
            }
        }

        return pattern.Length == 0 && text.Length == 0;
    }
}
